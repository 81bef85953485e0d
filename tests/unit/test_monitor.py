"""Monitoring without a server: histograms, hop gaps, busy fraction, samplers, transfer counters."""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

import numpy as np
import pytest

from clara_rt.arrays import count_transfer, to_host, transfer_counters
from clara_rt.monitor import Monitor, RuntimeMetrics
from clara_rt.monitor.gpu import NvmlSampler
from clara_rt.monitor.runtime import Histogram, hop_gaps


def _record(job_id: str, rows: list[dict[str, Any]], *, status: str = "healthy",
            created: float = 100.0, started: float = 101.0, stopped: float = 103.0
            ) -> dict[str, Any]:
    return {"id": job_id, "pipeline": "p", "pipeline_id": "pid", "state": "stopped",
            "status": status, "created": created, "started": started, "stopped": stopped,
            "operators": rows}


def _row(name: str, start_ms: float | None, duration_ms: float | None) -> dict[str, Any]:
    return {"name": name, "state": "succeeded", "start_ms": start_ms, "duration_ms": duration_ms}


def test_histogram_buckets_are_cumulative_with_le_semantics() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        hist.observe(value)
    snap = hist.snapshot()
    assert snap.buckets == ((0.1, 2), (1.0, 4), (math.inf, 5))  # 0.1 <= le 0.1
    assert snap.count == 5 and snap.sum == pytest.approx(8.65)


def test_hop_gap_is_consumer_start_minus_last_producer_end() -> None:
    rows = [_row("a", 0.0, 10.0), _row("b", 0.0, 4.0), _row("c", 12.5, 1.0),
            _row("d", 20.0, 1.0), _row("x", 5.0, None)]
    upstream = {"a": [], "b": [], "c": ["a", "b"], "d": ["c"], "x": ["b"]}
    gaps = dict(hop_gaps(rows, upstream))
    assert gaps == pytest.approx({"c": 0.0025, "d": 0.0065, "x": 0.001})


def test_hop_gap_counts_an_inserted_folder_loader_as_producer() -> None:
    # The definition says reader -> seg; the builder ran reader -> reader-out-npy -> seg.
    rows = [_row("reader", 0.0, 5.0), _row("reader-out-npy", 5.0, 3.0), _row("seg", 8.2, 1.0)]
    gaps = hop_gaps(rows, {"reader": [], "seg": ["reader"]})
    assert gaps == [("seg", pytest.approx(0.0002))]


def test_job_stopped_fills_histograms_once_per_job() -> None:
    metrics = RuntimeMetrics(workers=2, window=10.0, clock=lambda: 105.0)
    rows = [_row("a", 0.0, 1000.0), _row("b", 1000.5, 500.0)]
    upstream = {"a": [], "b": ["a"]}
    assert metrics.job_stopped(_record("j1", rows), upstream)
    assert not metrics.job_stopped(_record("j1", rows), upstream)  # a repeat is ignored
    assert metrics.seen("j1") and not metrics.seen("j2")
    assert not metrics.job_stopped({**_record("j2", rows), "state": "running"}, upstream)
    assert metrics.job_stopped(_record("j3", [_row("a", 0.0, 2.0), _row("b", None, None)],
                                       status="faulted"), upstream)
    ops = metrics.operator_histograms()
    assert ops[("p", "a")].count == 2 and ops[("p", "b")].count == 1
    assert ops[("p", "a")].sum == pytest.approx(1.002)
    jobs = metrics.job_histograms()
    assert jobs[("p", "healthy")].count == 1 and jobs[("p", "faulted")].count == 1
    assert jobs[("p", "healthy")].sum == pytest.approx(3.0)  # created -> stopped
    hops = metrics.hop_histograms()
    assert list(hops) == [("p", "b")] and hops[("p", "b")].sum == pytest.approx(0.0005)
    assert metrics.jobs_observed == 2
    assert metrics.busy_seconds == pytest.approx(1.502)


def test_busy_fraction_counts_operator_time_inside_the_window() -> None:
    metrics = RuntimeMetrics(workers=2, window=10.0)
    # Job started at t=100: op a runs 100-104, op b 103-108 (wall clock).
    metrics.job_stopped(_record("j", [_row("a", 0.0, 4000.0), _row("b", 3000.0, 5000.0)],
                                started=100.0, stopped=108.0), {})
    assert metrics.busy_fraction(now=108.0) == pytest.approx(9.0 / 20.0)
    assert metrics.busy_fraction(now=112.0) == pytest.approx((2.0 + 5.0) / 20.0)  # window 102-112
    assert metrics.busy_fraction(now=200.0) == 0.0
    metrics.running = lambda: [195.0, 150.0]  # two operators still running, since 195 and 150
    assert metrics.busy_fraction(now=200.0) == pytest.approx((5.0 + 10.0) / 20.0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        RuntimeMetrics(workers=0)


def test_nvml_sampler_says_why_once_without_a_gpu(caplog: pytest.LogCaptureFixture) -> None:
    sampler = NvmlSampler()
    with caplog.at_level(logging.INFO, logger="clara_rt.monitor"):
        samples = [sampler.sample() for _ in range(3)]
    sampler.close()
    if samples[0].available:  # a machine with a GPU and a driver
        assert samples[0].devices
        return
    reason = samples[0].reason
    assert reason and all(s.reason == reason and not s.devices for s in samples)
    if importlib.util.find_spec("pynvml") is None:
        assert "nvidia-ml-py is not installed" in reason
    else:
        assert reason.startswith("NVML")
    said = [r for r in caplog.records if "GPU metrics not available" in r.getMessage()]
    assert len(said) == 1 and reason in said[0].getMessage()


def test_monitor_samples_host_and_keeps_history(tmp_path: Any) -> None:
    monitor = Monitor(interval=0.02, disk_path=tmp_path, workers=2, history=5)
    monitor.start()
    try:
        import time

        deadline = time.monotonic() + 5.0
        while len(monitor.history()) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        gpu, host, busy = monitor.latest()
    finally:
        monitor.close()
    history = monitor.history()
    assert len(history) == 5  # bounded
    assert [h["time"] for h in history] == sorted(h["time"] for h in history)
    assert set(history[0]) == {"time", "cpu_percent", "memory_used", "gpu_utilization",
                               "gpu_memory_used", "busy_fraction"}
    assert host.disk_total > 0 and host.disk_free > 0
    if importlib.util.find_spec("psutil") is not None:
        assert host.memory_total > host.memory_used > 0 and host.rss > 0 and host.threads >= 2
    assert busy == 0.0
    assert gpu.available == bool(gpu.devices)
    with pytest.raises(ValueError, match="interval must be positive"):
        Monitor(interval=0)


def test_transfer_counters_count_device_copies_only() -> None:
    before = transfer_counters()
    host = np.ones(4)
    assert to_host(host) is host  # no copy, nothing counted
    count_transfer("host_to_device", 1000)
    count_transfer("device_to_host", 24)
    after = transfer_counters()
    assert after.host_to_device_bytes - before.host_to_device_bytes == 1000
    assert after.host_to_device - before.host_to_device == 1
    assert after.device_to_host_bytes - before.device_to_host_bytes == 24
    with pytest.raises(ValueError, match="direction must be"):
        count_transfer("sideways", 1)


@pytest.mark.gpu
def test_transfer_counters_on_the_gpu() -> None:
    from clara_rt.arrays import to_device

    before = transfer_counters()
    device = to_device(np.zeros(1000, dtype=np.float32))
    assert to_device(device) is device
    back = to_host(device)
    assert isinstance(back, np.ndarray) and back.shape == (1000,)
    after = transfer_counters()
    assert after.host_to_device_bytes - before.host_to_device_bytes == 4000
    assert after.device_to_host_bytes - before.device_to_host_bytes == 4000


@pytest.mark.gpu
def test_nvml_reads_every_gpu() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML not usable here: {exc}")
    pynvml.nvmlShutdown()
    import cupy

    held = cupy.zeros(64 << 20, dtype=cupy.uint8)  # a CUDA context and 64 MiB on GPU 0
    sampler = NvmlSampler()
    try:
        sample = sampler.sample()
    finally:
        sampler.close()
    assert sample.available and sample.reason is None and sample.driver
    assert len(sample.devices) >= 1
    dev = sample.devices[0]
    assert dev.name and 0.0 <= dev.utilization <= 100.0
    assert 0 < dev.memory_used <= dev.memory_total
    assert dev.temperature is None or 0 < dev.temperature < 120
    assert dev.power_w is None or dev.power_w > 0
    # In a container NVML may not see this process's id (its own PID namespace): 0 then.
    assert dev.process_memory is None or dev.process_memory == 0 or \
        dev.process_memory >= held.nbytes


@pytest.mark.parametrize("interval", [0.0, -1.0, math.nan, math.inf])
def test_server_config_checks_the_monitor_interval(interval: float, tmp_path: Any) -> None:
    from clara_rt.server.config import ServerConfig

    with pytest.raises(ValueError, match=r"^monitor_interval must be positive seconds"):
        ServerConfig(data=tmp_path, monitor_interval=interval)
    assert ServerConfig(data=tmp_path).monitor_interval == 5.0
