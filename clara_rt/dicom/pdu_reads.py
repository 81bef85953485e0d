"""Bounded PDU reads for the listener's connections (issue 16.18).

pynetdicom reads a PDU by taking the 4-byte length from its header and calling ``recv`` on a
blocking socket until that many bytes came. A peer that announces a PDU and then sends part of
it (or one byte a second, or 4 GiB of zeros) holds its association thread, and so one of
``max-associations``, for as long as it likes, and the thread buffers whatever was announced:
``acse-timeout`` and ``network-timeout`` never fire, because the thread that would act on them
waits for the reader to finish.

:func:`bound_reads` replaces the ``recv`` of one accepted connection by one that

* refuses a PDU longer than the listener accepts (``max-pdu``, at least 1 MiB; 16 MiB when
  ``max-pdu`` is 0) before reading a byte of it, and
* gives one PDU at most ``acse-timeout`` seconds to arrive before the association is
  requested, ``network-timeout`` after (so a trickle cannot stretch it).

Either way it returns what it has, which pynetdicom reads as a connection closed mid-PDU: the
association ends and its slot is free.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from typing import Any

__all__ = ["bound_reads"]

logger = logging.getLogger("clara_rt.dicom.scp")

_HEADER = 6
_FLOOR = 1 << 20  # PDU bytes always accepted (an A-ASSOCIATE-RQ with many contexts)
_UNLIMITED = 16 << 20  # the bound when max-pdu is 0 ("no limit" for P-DATA as negotiated)
_CHUNK = 1 << 16


def bound_reads(assoc: Any, *, max_pdu: int, acse_timeout: float | None,
                network_timeout: float | None) -> None:
    """Bound every read of ``assoc``'s connection in size and time (see the module text)."""
    transport = assoc.dul.socket
    if transport is None or transport.socket is None:
        return
    limit = _HEADER + (max(max_pdu, _FLOOR) if max_pdu > 0 else _UNLIMITED)
    peer = f"{assoc.requestor.address}:{assoc.requestor.port}"

    def recv(nr_bytes: int) -> bytearray:
        sock: socket.socket | None = transport.socket
        if sock is None:
            return bytearray()
        if nr_bytes > limit:
            logger.warning("connection from %s announced a PDU of %d bytes (the listener takes "
                           "at most %d); closed", peer, nr_bytes, limit - _HEADER)
            return bytearray()
        requested = assoc.requestor.primitive is not None
        budget = (network_timeout if requested else acse_timeout) or network_timeout or 60.0
        return _read(sock, nr_bytes, time.monotonic() + budget, peer)

    transport.recv = recv


def _read(sock: socket.socket, nr_bytes: int, deadline: float, peer: str) -> bytearray:
    data = bytearray()
    previous = sock.gettimeout()
    try:
        while len(data) < nr_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning("connection from %s sent %d of %d bytes of a PDU in time; closed",
                               peer, len(data), nr_bytes)
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(min(_CHUNK, nr_bytes - len(data)))
            except TimeoutError:
                continue  # the deadline check above ends it
            if not chunk:
                break
            data += chunk
    finally:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.settimeout(previous)
    return data
