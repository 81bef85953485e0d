"""Shared fixtures: array modules, GPU detection, peers policy, the real inference peers.

``triton`` and ``mlserver`` start their server once per test session (see :mod:`tests.peers`)
for every folder (integration and e2e tests share one server) and yield a
:class:`~tests.peers.PeerServer` with ``http_url`` and ``grpc_url``. Without tritonclient or a
startable server the tests that use them skip locally and fail in CI.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from clara_rt.arrays import cuda_available

if TYPE_CHECKING:
    from tests.peers import PeerServer

REQUIRE_PEERS = os.environ.get("CLARA_RT_REQUIRE_PEERS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run whenever CuPy finds a device; otherwise they are skipped, never faked."""
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Test extras some modules import with pytest.importorskip: in CI their absence is a failure.
# (pydicom-data imports as data_store.)
TEST_EXTRA_MODULES = ("onnx", "onnxruntime", "tritonclient", "data_store", "pylibjpeg",
                      "fastapi", "uvicorn", "multipart", "schemathesis", "psutil",
                      "prometheus_client", "pynetdicom", "playwright", "ray", "torch")


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI (CLARA_RT_REQUIRE_PEERS=1) fail at once when a test extra is not installed."""
    missing = [m for m in TEST_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if REQUIRE_PEERS and missing:
        raise pytest.UsageError(f"test extras missing ({', '.join(missing)}) with "
                                "CLARA_RT_REQUIRE_PEERS=1: pip install -e '.[test]'")


def need_peer(available: bool, what: str) -> None:
    """Skip when a peer is missing, except in CI (CLARA_RT_REQUIRE_PEERS=1) where it fails."""
    if available:
        return
    if REQUIRE_PEERS:
        pytest.fail(f"{what} is required (CLARA_RT_REQUIRE_PEERS=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request: pytest.FixtureRequest) -> ModuleType:
    """The array module under test: numpy always, cupy when a GPU is present."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every test must stop the threads it starts (runtimes closed)."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t for t in threading.enumerate()
              if t.ident not in before and t.name.startswith("clara-rt") and t.is_alive()]
    for t in leaked:
        t.join(timeout=2.0)
    leaked = [t.name for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def _need_tritonclient() -> None:
    need_peer(importlib.util.find_spec("tritonclient") is not None,
              "tritonclient (pip install 'clara-rt[triton]')")


@pytest.fixture(scope="session")
def triton() -> Iterator[PeerServer]:
    """A Triton 2.51 server with the models double, threshold_mask and threshold_mask_2d."""
    from tests.peers import triton_server  # tests.peers imports this module

    _need_tritonclient()
    with triton_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlserver() -> Iterator[PeerServer]:
    """An MLServer 1.7.1 with the models doubler, classifier and onnx_classifier."""
    from tests.peers import mlserver_server

    _need_tritonclient()
    with mlserver_server() as server:
        yield server


@pytest.fixture(scope="module")
def seg_net(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny 3-D segmentation ONNX net of tests/data/onnx_nets.py, written once per module."""
    from tests.data.onnx_nets import seg3d

    return seg3d(tmp_path_factory.mktemp("models") / "seg3d.onnx")


@pytest.fixture(scope="module")
def cls_net(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny 2-D classifier ONNX net of tests/data/onnx_nets.py, written once per module."""
    from tests.data.onnx_nets import classifier2d

    return classifier2d(tmp_path_factory.mktemp("models") / "classifier2d.onnx")
