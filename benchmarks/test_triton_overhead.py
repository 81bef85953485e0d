"""TritonBackend.infer vs a bare tritonclient call, same server, model (``double``) and tensor.

Groups ``triton-1MiB`` and ``triton-64MiB``: ``tritonclient (http binary)`` is the baseline;
``clara-rt (http binary)`` is the backend with ``shared_memory="none"`` (same payload: the ratio
is the backend's overhead, target <= 5 %); ``clara-rt (system shm)`` at 64 MiB sends inputs and
outputs through ``/dev/shm`` (the ratio is its speed-up). A real Triton server is started for
the module (see ``tests/peers.py``).

Run: ``.venv/bin/python -m pytest benchmarks/test_triton_overhead.py --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.peers import PeerServer, triton_server

SIZES_MIB = (1, 64)
ROUNDS = {1: 200, 64: 15}


@pytest.fixture(scope="module")
def server() -> Iterator[PeerServer]:
    pytest.importorskip("tritonclient")
    with triton_server() as peer:
        yield peer


@pytest.fixture(scope="module", params=SIZES_MIB, ids=[f"{mb}MiB" for mb in SIZES_MIB])
def tensor(request: pytest.FixtureRequest) -> np.ndarray[Any, Any]:
    mb = int(request.param)
    return np.random.default_rng(mb).random((1, mb * (1 << 20) // 4), dtype=np.float32)


def _setup(benchmark: Any, x: np.ndarray[Any, Any]) -> int:
    mb = x.nbytes >> 20
    benchmark.group = f"triton-{mb}MiB"
    benchmark.extra_info.update(model="double", input_bytes=x.nbytes, protocol="http")
    return ROUNDS[mb]


def test_bare_tritonclient(compare: Callable[..., Any], benchmark: Any, server: PeerServer,
                           tensor: np.ndarray[Any, Any]) -> None:
    import tritonclient.http as th

    rounds = _setup(benchmark, tensor)
    client = th.InferenceServerClient(server.http_url.removeprefix("http://"))

    def call() -> Any:
        item = th.InferInput("x", list(tensor.shape), "FP32")
        item.set_data_from_numpy(tensor)
        return client.infer("double", [item]).as_numpy("y")

    try:
        out = compare("tritonclient (http binary)", call, rounds=rounds, warmup_rounds=2)
    finally:
        client.close()
    np.testing.assert_array_equal(out, 2 * tensor)


@pytest.mark.parametrize("mode", ["none"])
def test_backend(compare: Callable[..., Any], benchmark: Any, server: PeerServer,
                 tensor: np.ndarray[Any, Any], mode: str) -> None:
    _run_backend(compare, benchmark, server, tensor, mode)


@pytest.mark.parametrize("tensor", [64], indirect=True, ids=["64MiB"])
@pytest.mark.parametrize("mode", ["system"])
def test_backend_shared_memory(compare: Callable[..., Any], benchmark: Any, server: PeerServer,
                               tensor: np.ndarray[Any, Any], mode: str) -> None:
    _run_backend(compare, benchmark, server, tensor, mode)


def _run_backend(compare: Callable[..., Any], benchmark: Any, server: PeerServer,
                 tensor: np.ndarray[Any, Any], mode: Any) -> None:
    from clara_rt.backends.triton import TritonBackend

    rounds = _setup(benchmark, tensor)
    system = "clara-rt (system shm)" if mode == "system" else "clara-rt (http binary)"
    with TritonBackend(server.http_url, "double", shared_memory=mode) as backend:
        out = compare(system, lambda: backend.infer({"x": tensor})["y"], rounds=rounds,
                      warmup_rounds=2)
        assert (backend.shared_memory_regions != ()) == (mode == "system")
    np.testing.assert_array_equal(out, 2 * tensor)
