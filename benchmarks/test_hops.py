"""Per-job latency of a 10-stage no-op chain, one job in flight: clara-rt vs queue threads.

pytest-benchmark times whole calls, so this suite measures submit -> result per job. The per-hop
gaps (end of one operator -> start of the next) come from ``clara-rt bench hops``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clara_rt import Runtime
from clara_rt.bench import QueueChain, chain_pipeline

STAGES = 10
pytestmark = pytest.mark.benchmark(group="hops")


@pytest.fixture(scope="module")
def pipe() -> Any:
    return chain_pipeline(STAGES, "hops")


@pytest.fixture(scope="module")
def array() -> Any:
    import numpy as np

    return np.zeros(1024, dtype=np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_clara_rt(compare: Callable[..., Any], pipe: Any, array: Any, workers: int) -> None:
    payload = {"op0.in": array}
    with Runtime(workers=workers) as rt:
        out = compare(f"clara-rt (workers={workers})",
                      lambda: rt.submit(pipe, payload).result(), rounds=2000, warmup_rounds=100)
    assert out[f"op{STAGES - 1}.out"] is array


@pytest.fixture(scope="module")
def queue_chain() -> Iterator[QueueChain]:
    with QueueChain(STAGES) as chain:
        yield chain


def test_queue_threads(compare: Callable[..., Any], queue_chain: QueueChain, array: Any) -> None:
    out = compare("queue-threads", lambda: queue_chain.run_one(array), rounds=2000,
                  warmup_rounds=100)
    assert out is array
