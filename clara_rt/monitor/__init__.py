"""Monitoring: GPU (NVML), host and runtime metrics, and per-job traces.

* :class:`Monitor` samples GPUs (``nvidia-ml-py``) and the host (``psutil``) on a background
  thread and holds :class:`RuntimeMetrics` (latency histograms, busy fraction) fed by finished
  jobs; the platform server shows them at ``/metrics`` (Prometheus) and ``/v1/monitor`` (JSON).
* :func:`chrome_trace` turns a job's operator times into Chrome trace JSON for Perfetto
  (``clara-rt run --trace FILE``, ``GET /v1/jobs/{id}/trace``).

``pynvml`` and ``psutil`` are imported only when a monitor is created: ``import clara_rt`` and
this package need neither.
"""

from __future__ import annotations

from clara_rt.monitor.gpu import GpuDevice as GpuDevice
from clara_rt.monitor.gpu import GpuSample as GpuSample
from clara_rt.monitor.host import HostSample as HostSample
from clara_rt.monitor.runtime import RuntimeMetrics as RuntimeMetrics
from clara_rt.monitor.sampler import Monitor as Monitor
from clara_rt.monitor.trace import Span as Span
from clara_rt.monitor.trace import chrome_trace as chrome_trace

__all__ = ["GpuDevice", "GpuSample", "HostSample", "Monitor", "RuntimeMetrics", "Span",
           "chrome_trace"]
