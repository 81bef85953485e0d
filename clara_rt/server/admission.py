"""Resource admission: a job starts only when the memory and GPUs it asks for are free.

A pipeline's ``requests:`` (Clara's per-operator ``memory`` and ``gpu``, and clara-rt's
``gpu-memory``) say what one job needs: its operators' memory requests added up (they may all
hold data at once in one process), the same for device memory, and the largest GPU request.
The server admits a queued job into the runtime only when

* **estimated**: the sum over running jobs stays within the budgets (``--memory-budget``,
  default 80 % of physical memory; ``--gpu-jobs``, default one job per GPU NVML reports, no GPU
  limit without NVML), and
* **measured**: the host has the job's memory free now (``MemAvailable``), and with a
  ``gpu-memory`` request and NVML, some GPU has that much free (NVML's free memory plus what
  this process's CuPy memory pool holds unused, which CuPy hands out again).

A job that does not fit waits in the queue, in priority order, instead of running the host or
the GPU out of memory, and its history says what it waits for; a job that could never fit is
refused when it is created. Operators without ``requests:`` count as zero.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

from clara_rt.runner.needs import JobNeeds, gib, memory_bytes

__all__ = ["Admission", "FreeMemory", "JobNeeds", "memory_bytes", "physical_memory"]


def physical_memory() -> int:
    """Bytes of physical memory of this host."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class _GpuMemory:
    """One NVML reading: when, free bytes per device (``None`` without NVML), largest total."""

    at: float = -1e9
    free: list[int] | None = None
    total: int | None = None


class FreeMemory:
    """Measured free memory, asked each time a job could start (GPUs cached ``every`` seconds).

    ``host()``: ``MemAvailable`` of ``/proc/meminfo`` (what the kernel can hand out without
    swapping). ``gpus()``: per device, free memory from the monitor's
    :class:`~clara_rt.monitor.gpu.NvmlSampler` (total minus used) plus the unused blocks of this
    process's CuPy memory pool (counted once, on the device it was made on); ``None`` without
    NVML or a GPU. CuPy is asked only when a pipeline has already imported it.
    """

    def __init__(self, every: float = 0.5) -> None:
        from clara_rt.monitor.gpu import NvmlSampler

        self._every = every
        self._lock = threading.Lock()  # the sampler belongs to one thread at a time
        self._nvml = NvmlSampler()
        self._sample = _GpuMemory()

    def host(self) -> int | None:
        try:
            with open("/proc/meminfo", encoding="ascii") as info:
                for line in info:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) << 10
        except OSError:
            pass
        return None

    def gpus(self) -> list[int] | None:
        return self._read().free

    def total_gpu(self) -> int | None:
        """The largest device's total memory (NVML), or ``None``."""
        return self._read().total

    def _read(self) -> _GpuMemory:
        with self._lock:
            if time.monotonic() - self._sample.at >= self._every:
                sample = self._nvml.sample()
                free: list[int] | None = None
                total: int | None = None
                if sample.available:
                    free = [d.memory_total - d.memory_used for d in sample.devices]
                    total = max(d.memory_total for d in sample.devices)
                    _add_cupy_pool(free)
                self._sample = _GpuMemory(time.monotonic(), free, total)
            return self._sample


class Admission:
    """Counts what running jobs hold against the budgets and checks what is free. Thread-safe.

    ``free`` measures free memory (:class:`FreeMemory`); ``None`` admits on the budgets alone.
    """

    def __init__(self, memory_budget: int | None, gpu_jobs: int | None,
                 free: FreeMemory | None = None) -> None:
        self.memory_budget = memory_budget
        self.gpu_jobs = gpu_jobs
        self.free = free
        self._lock = threading.Lock()
        self.memory_in_use = 0
        self.gpu_jobs_running = 0

    def never_fits(self, needs: JobNeeds) -> str | None:
        """Why a job with ``needs`` could never start here, or ``None``."""
        if self.memory_budget is not None and needs.memory > self.memory_budget:
            return (f"the pipeline's requests add up to {gib(needs.memory)} of memory, more "
                    f"than the server's budget of {gib(self.memory_budget)} (--memory-budget)")
        if needs.gpus and self.gpu_jobs == 0:
            return "the pipeline requests a GPU and this server runs no GPU jobs (--gpu-jobs 0)"
        total = self.free.total_gpu() if self.free is not None and needs.gpu_memory else None
        if total is not None and needs.gpu_memory > total:
            return (f"the pipeline's requests add up to {gib(needs.gpu_memory)} of GPU memory, "
                    f"more than the largest GPU here has ({gib(total)})")
        return None

    def wait_reason(self, needs: JobNeeds) -> str | None:
        """What a job with ``needs`` waits for now, or ``None`` when it can start."""
        with self._lock:
            if (self.memory_budget is not None
                    and self.memory_in_use + needs.memory > self.memory_budget):
                return (f"needs {gib(needs.memory)} of memory; running jobs hold "
                        f"{gib(self.memory_in_use)} of the {gib(self.memory_budget)} budget")
            if (needs.gpus and self.gpu_jobs is not None
                    and self.gpu_jobs_running >= self.gpu_jobs):
                return f"needs a GPU; {self.gpu_jobs_running} GPU job(s) run, the limit is " \
                       f"{self.gpu_jobs}"
        if self.free is None:
            return None
        if needs.memory:
            host = self.free.host()
            if host is not None and host < needs.memory:
                return (f"needs {gib(needs.memory)} of memory; {gib(host)} is free on this "
                        f"host now")
        if needs.gpu_memory:
            gpus = self.free.gpus()
            if gpus is not None and max(gpus, default=0) < needs.gpu_memory:
                return (f"needs {gib(needs.gpu_memory)} of GPU memory; the most free on one "
                        f"GPU now is {gib(max(gpus, default=0))}")
        return None

    def take(self, needs: JobNeeds) -> None:
        with self._lock:
            self.memory_in_use += needs.memory
            self.gpu_jobs_running += 1 if needs.gpus else 0

    def give_back(self, needs: JobNeeds) -> None:
        with self._lock:
            self.memory_in_use -= needs.memory
            self.gpu_jobs_running -= 1 if needs.gpus else 0


def default_gpu_jobs() -> int | None:
    """One job per GPU that NVML reports; ``None`` (no limit) when NVML cannot start."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no device: nothing to limit
        return None


def _add_cupy_pool(free: list[int]) -> None:
    """Add the unused blocks of this process's CuPy pool to its device's free memory."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return
    try:
        device = int(cupy.cuda.runtime.getDevice())
        if 0 <= device < len(free):
            free[device] += int(cupy.get_default_memory_pool().free_bytes())
    except Exception:  # no context on this thread yet: NVML's figure alone
        pass
