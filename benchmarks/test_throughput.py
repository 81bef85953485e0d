"""Jobs/s of a 10-stage no-op chain with up to 1,000 jobs in flight.

clara-rt (``Runtime(workers=2)``, and ``workers=1`` for reference), one thread per stage joined
by ``queue.Queue``, and dask's threaded scheduler (one merged graph per 1,000 jobs, see
:func:`clara_rt.bench.dask_stream`).
Each round runs ``JOBS`` jobs; the summary compares the median time per job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from clara_rt import Runtime
from clara_rt.bench import QueueChain, chain_pipeline, clara_stream, dask_stream

STAGES, JOBS, WINDOW, WORKERS = 10, 5000, 1000, 2
pytestmark = pytest.mark.benchmark(group="throughput")


@pytest.mark.parametrize("workers", [WORKERS, 1])
def test_clara_rt(compare: Callable[..., Any], workers: int) -> None:
    pipe = chain_pipeline(STAGES, "throughput")
    with Runtime(workers=workers) as rt:
        compare(f"clara-rt (workers={workers})", lambda: clara_stream(rt, pipe, JOBS, WINDOW),
                units=JOBS, rounds=10)
        assert rt.stats().jobs_finished >= JOBS


def test_queue_threads(compare: Callable[..., Any]) -> None:
    value = np.zeros(1024, dtype=np.float32)
    with QueueChain(STAGES) as chain:
        compare("queue-threads", lambda: chain.stream(JOBS, value, WINDOW), units=JOBS,
                rounds=10)


def test_dask_threaded(compare: Callable[..., Any]) -> None:
    pytest.importorskip("dask")
    jobs = JOBS // 5  # dask is ~20x slower per task; the summary compares time per job
    compare(f"dask-threaded (workers={WORKERS})",
            lambda: dask_stream(STAGES, jobs, WINDOW, WORKERS), units=jobs, rounds=5)
