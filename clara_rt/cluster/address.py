"""Cluster addresses as ``clara-rt serve --cluster`` and :class:`ClusterRuntime` take them."""

from __future__ import annotations

import re

__all__ = ["ADDRESS_HELP", "check_address"]

ADDRESS_HELP = ("ray://HOST:PORT (Ray Client, usually port 10001 of the head: the server may run "
                "off the cluster), HOST:PORT (the head's GCS port, usually 6379: this machine "
                "must be a node of the cluster), 'auto' (the cluster this machine is a node of) "
                "or 'local' (a private one-node cluster started for the server, for trying out)")

_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


def check_address(address: str) -> str:
    """Return ``address`` when it has one of Ray's forms (see :data:`ADDRESS_HELP`).

    Raises:
        ValueError: It has none of them.
    """
    if address in ("auto", "local") or _ADDRESS.match(address):
        return address
    raise ValueError(f"cluster address {address!r} is not one of: {ADDRESS_HELP}")
