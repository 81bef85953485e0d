"""GPU metrics through NVML (``nvidia-ml-py``, imported as ``pynvml``, lazily).

:class:`NvmlSampler` opens NVML once, on its first :meth:`~NvmlSampler.sample`. When NVML cannot
be used (``nvidia-ml-py`` not installed, no driver, no GPU) the sampler says why once in the log
and from then on returns ``GpuSample(available=False, reason=...)``; nothing else depends on it.
A GPU that fails later (``NVMLError`` on a required query, e.g. "GPU is lost") is handled the
same way: one log record, then "not available" with the reason.

Per device: utilisation (percent of the last sample period a kernel ran), memory used and total,
temperature (degrees C), power draw (W) and the memory this process holds on it. The optional
queries (temperature, power, per-process memory) may be unsupported by a board or a driver (MIG
instances, vGPU); they read ``None`` then. Per-process memory matches NVML's process ids against
this process's id, so inside a container with its own PID namespace it may read 0.

Not thread-safe: one sampler belongs to one sampling thread.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["GpuDevice", "GpuSample", "NvmlSampler"]

log = logging.getLogger("clara_rt.monitor")


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU at one moment. Memory in bytes; ``None`` where the board does not report it."""

    index: int
    name: str
    utilization: float
    memory_used: int
    memory_total: int
    temperature: float | None
    power_w: float | None
    process_memory: int | None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """All GPUs at one moment, or why there are none (``available`` false, ``reason``)."""

    time: float
    available: bool
    reason: str | None = None
    devices: tuple[GpuDevice, ...] = field(default_factory=tuple)
    driver: str | None = None


class NvmlSampler:
    """Reads every GPU through NVML; reports "not available" (once) when it cannot."""

    def __init__(self) -> None:
        self._nvml: ModuleType | None = None
        self._handles: list[Any] = []
        self._driver: str | None = None
        self.reason: str | None = None  # why NVML is not available; None while it is (or untried)

    @property
    def available(self) -> bool:
        """Whether NVML is open and has GPUs (false before the first sample)."""
        return self._nvml is not None

    def sample(self) -> GpuSample:
        """Read every GPU now (opening NVML on the first call)."""
        now = time.time()
        if self._nvml is None and self.reason is None:
            self._open()
        nvml = self._nvml
        if nvml is None:
            return GpuSample(now, False, self.reason)
        try:
            devices = tuple(_read(nvml, i, handle) for i, handle in enumerate(self._handles))
        except nvml.NVMLError as exc:
            self._give_up(f"NVML failed while reading the GPUs: {exc}")
            return GpuSample(now, False, self.reason)
        return GpuSample(now, True, None, devices, self._driver)

    def close(self) -> None:
        """Shut NVML down (when it was opened)."""
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                log.debug("nvmlShutdown failed", exc_info=True)

    def _open(self) -> None:
        try:
            import pynvml
        except ImportError:
            self._give_up("nvidia-ml-py is not installed (pip install 'clara-rt[gpu]')")
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self._give_up(f"NVML could not start: {exc}")
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            self._give_up(f"NVML could not list the GPUs: {exc}")
            return
        if not handles:
            pynvml.nvmlShutdown()
            self._give_up("NVML found no GPU")
            return
        self._nvml, self._handles, self._driver = pynvml, handles, driver
        log.info("GPU metrics: %d GPU(s) through NVML (driver %s)", len(handles), driver)

    def _give_up(self, reason: str) -> None:
        self.close()
        self.reason = reason
        log.info("GPU metrics not available: %s", reason)


def _read(nvml: Any, index: int, handle: Any) -> GpuDevice:
    """One device's sample; the required queries raise ``NVMLError``, optional ones read None."""
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError_NotSupported:  # MIG instances report no utilisation
        utilization = 0.0
    return GpuDevice(
        index=index,
        name=_text(nvml.nvmlDeviceGetName(handle)),
        utilization=utilization,
        memory_used=int(memory.used),
        memory_total=int(memory.total),
        temperature=_optional(nvml, lambda: float(
            nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
        power_w=_optional(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),  # mW
        process_memory=_optional(nvml, lambda: _process_memory(nvml, handle)),
    )


def _process_memory(nvml: Any, handle: Any) -> int | None:
    """Bytes this process holds on the device (compute and graphics contexts)."""
    pid = os.getpid()
    total, known = 0, True
    for query in (nvml.nvmlDeviceGetComputeRunningProcesses,
                  nvml.nvmlDeviceGetGraphicsRunningProcesses):
        for proc in query(handle):
            if proc.pid != pid:
                continue
            if proc.usedGpuMemory is None:  # not reported (Windows WDDM, some vGPU setups)
                known = False
            else:
                total += int(proc.usedGpuMemory)
    return total if known else None


def _optional(nvml: Any, read: Any) -> Any:
    try:
        return read()
    except nvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
