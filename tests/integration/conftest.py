"""Session fixtures for the real inference peers: ``triton`` and ``mlserver``.

Each starts its server once per test session (see :mod:`tests.peers`) and yields a
:class:`~tests.peers.PeerServer` with ``http_url`` and ``grpc_url``. Without tritonclient or a
startable server the tests that use them skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.conftest import need_peer
from tests.peers import PeerServer, mlserver_server, triton_server


def _need_tritonclient() -> None:
    need_peer(importlib.util.find_spec("tritonclient") is not None,
              "tritonclient (pip install 'clara-rt[triton]')")


@pytest.fixture(scope="session")
def triton() -> Iterator[PeerServer]:
    """A Triton 2.51 server with the models double, threshold_mask and threshold_mask_2d."""
    _need_tritonclient()
    with triton_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlserver() -> Iterator[PeerServer]:
    """An MLServer 1.7.1 with the models doubler, classifier and onnx_classifier."""
    _need_tritonclient()
    with mlserver_server() as server:
        yield server
