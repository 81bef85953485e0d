"""The monitor: GPUs and host sampled on a background thread, recent history, runtime metrics.

One thread (``clara-rt-monitor``) samples every ``interval`` seconds: NVML (:mod:`.gpu`), the
host (:mod:`.host`) and the workers' busy fraction (:mod:`.runtime`), keeps the latest sample
and the last ``history`` ones. Readers (``/metrics``, ``/v1/monitor``) take the latest sample
and never wait for NVML or psutil themselves, except for the very first sample.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from clara_rt.monitor.gpu import GpuSample, NvmlSampler
from clara_rt.monitor.host import HostSample, HostSampler
from clara_rt.monitor.runtime import RuntimeMetrics

__all__ = ["Monitor"]

log = logging.getLogger("clara_rt.monitor")


class Monitor:
    """Samples GPUs and host periodically; holds the runtime metrics fed by finished jobs.

    Args:
        interval: Seconds between samples.
        disk_path: A path on the file system whose usage is reported (the data directory).
        workers: Runtime worker threads (the busy fraction's denominator).
        history: Samples kept for :meth:`history`.
        busy_window: Seconds over which the busy fraction is measured.

    Thread-safety: every method may be called from any thread.
    """

    def __init__(self, *, interval: float = 5.0, disk_path: Path | None = None,
                 workers: int = 1, history: int = 120, busy_window: float = 60.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval}")
        self.interval = float(interval)
        self.runtime = RuntimeMetrics(workers, window=busy_window)
        self._gpu = NvmlSampler()
        self._host = HostSampler(disk_path)
        self._lock = threading.Lock()  # guards _latest, _history and the samplers
        self._latest: tuple[GpuSample, HostSample, float] | None = None
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def start(self) -> None:
        """Start the sampling thread (the first sample is taken at once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="clara-rt-monitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the sampling thread and shut NVML down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        with self._lock:
            self._gpu.close()

    def sample(self) -> None:
        """Take one sample now (the thread calls this every ``interval`` seconds)."""
        with self._lock:
            gpu = self._gpu.sample()
            host = self._host.sample()
            busy = self.runtime.busy_fraction(host.time)
            self._latest = (gpu, host, busy)
            self._history.append({
                "time": host.time, "cpu_percent": host.cpu_percent,
                "memory_used": host.memory_used,
                "gpu_utilization": [d.utilization for d in gpu.devices],
                "gpu_memory_used": [d.memory_used for d in gpu.devices],
                "busy_fraction": busy,
            })

    def latest(self) -> tuple[GpuSample, HostSample, float]:
        """The latest ``(gpu, host, busy_fraction)`` sample (taken now if there is none yet)."""
        latest = self._latest
        if latest is None:
            self.sample()
            latest = self._latest
            assert latest is not None
        return latest

    def history(self) -> list[dict[str, Any]]:
        """The last samples, oldest first: time, cpu_percent, memory_used, gpu_utilization,
        gpu_memory_used (one entry per GPU), busy_fraction."""
        with self._lock:
            return list(self._history)

    @property
    def gpu_reason(self) -> str | None:
        """Why GPU metrics are not available (``None`` while they are, or before sampling)."""
        return self._gpu.reason

    def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.sample()
            except Exception:  # a failing sampler must not end monitoring (nor the server)
                if not self._failed:
                    log.exception("monitor: sampling failed (later failures are logged at "
                                  "debug level)")
                    self._failed = True
                else:
                    log.debug("monitor: sampling failed", exc_info=True)
            if self._stop.wait(max(self.interval - (time.monotonic() - started), 0.0)):
                return
