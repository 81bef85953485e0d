"""A long-lived server does not grow (issue 18.2): after a warm-up, a few hundred small jobs of
several pipelines (Python and command operators, builds churning through the cache, results
deleted) leave its RSS, threads and open files flat. The long version is
benchmarks/soak_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_rt.monitor.runtime import RuntimeMetrics
from tests.server_process import ServerProcess
from tests.soak import pipeline_yaml, run_jobs, sample

pytest.importorskip("fastapi")

RSS_MARGIN_KIB = 4096


def test_server_stays_flat_over_hundreds_of_jobs(tmp_path: Path) -> None:
    import time

    with ServerProcess(tmp_path / "data", "--workers", "2") as server:
        assert server.proc is not None
        client = server.client()
        names = [f"soak{k}" for k in range(4)]
        for k, name in enumerate(names):
            client.create_pipeline(pipeline_yaml(name, command=k == 3))
        (tmp_path / "x.txt").write_text("x")
        payload = client.create_payload([tmp_path / "x.txt"])["id"]
        t0 = time.monotonic()
        run_jobs(client, names, payload, 96)  # warm-up: every build, thread and cache made
        warm = sample(server.proc.pid, 96, t0)
        samples = [warm]
        for start in (96, 192):
            run_jobs(client, names, payload, 96, start=start)
            samples.append(sample(server.proc.pid, start + 96, t0))
        last = samples[-1]
        assert last.threads == warm.threads, samples
        assert last.fds <= warm.fds + 2, samples
        assert last.rss_kib - warm.rss_kib < RSS_MARGIN_KIB, samples


def test_runtime_metrics_keep_a_bounded_memory_of_jobs() -> None:
    metrics = RuntimeMetrics(workers=2, window=10.0, clock=lambda: 0.0)
    for i in range(20_000):  # one job per second, each with two operators
        started = float(i)
        rows = [{"name": "a", "start_ms": 0.0, "duration_ms": 300.0},
                {"name": "b", "start_ms": 300.0, "duration_ms": 300.0}]
        metrics.job_stopped({"id": f"job{i}", "state": "stopped", "pipeline": "p",
                             "status": "healthy", "operators": rows, "created": started,
                             "started": started, "stopped": started + 0.6}, {})
    assert len(metrics._intervals) <= 2 * 2 * 10 + 4  # the last two windows of intervals only
    assert len(metrics._seen) <= 4096
    assert metrics.busy_fraction(now=20_000.0) == pytest.approx(10 * 0.6 / 20)  # still right
    assert len(metrics.operator_histograms()) == 2  # labels by pipeline and operator, not job
