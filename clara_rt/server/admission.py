"""Resource admission: a job starts only when the memory and GPUs it asks for are free.

A pipeline's ``requests:`` (Clara's per-operator ``memory`` and ``gpu``) say what one job needs:
its operators' memory requests added up (they may all hold data at once in one process) and the
largest GPU request. The server admits a queued job into the runtime only while the sum over
running jobs stays within the budget (``--memory-budget``, default 80 % of physical memory;
``--gpu-jobs``, default one job per GPU NVML reports, no GPU limit without NVML). A job that
does not fit waits in the queue, in priority order, instead of running the host out of memory;
a job that could never fit is refused when it is created. Operators without ``requests:`` count
as zero.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["Admission", "JobNeeds", "memory_bytes", "physical_memory"]

_UNITS = {"": 1 << 20, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def memory_bytes(value: int | str) -> int:
    """A Clara memory request in bytes: a bare number is MB (as Clara counts), strings take
    Kubernetes units (``"512Mi"``, ``"8Gi"``, ``"2G"``)."""
    if isinstance(value, int):
        return value << 20
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"memory request {value!r} is not a size such as 8192 (MB), '512Mi' "
                         "or '8Gi'")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _UNITS[unit])


def physical_memory() -> int:
    """Bytes of physical memory of this host."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class JobNeeds:
    """What one job of a pipeline asks for."""

    memory: int = 0
    gpus: int = 0

    @classmethod
    def of(cls, operators: Any) -> JobNeeds:
        """From a definition's operators (each with a ``requests`` dict)."""
        memory = sum(memory_bytes(op.requests["memory"]) for op in operators
                     if "memory" in op.requests)
        gpus = max((int(op.requests.get("gpu", 0)) for op in operators), default=0)
        return cls(memory, gpus)

    def describe(self) -> str:
        return f"{self.memory / (1 << 30):.2f} GiB of memory and {self.gpus} GPU(s)"


class Admission:
    """Counts what running jobs hold against the budgets. Thread-safe."""

    def __init__(self, memory_budget: int | None, gpu_jobs: int | None) -> None:
        self.memory_budget = memory_budget
        self.gpu_jobs = gpu_jobs
        self._lock = threading.Lock()
        self.memory_in_use = 0
        self.gpu_jobs_running = 0

    def never_fits(self, needs: JobNeeds) -> str | None:
        """Why a job with ``needs`` could never start here, or ``None``."""
        if self.memory_budget is not None and needs.memory > self.memory_budget:
            return (f"the pipeline's requests add up to {needs.memory / (1 << 30):.2f} GiB of "
                    f"memory, more than the server's budget of "
                    f"{self.memory_budget / (1 << 30):.2f} GiB (--memory-budget)")
        if needs.gpus and self.gpu_jobs == 0:
            return "the pipeline requests a GPU and this server runs no GPU jobs (--gpu-jobs 0)"
        return None

    def fits(self, needs: JobNeeds) -> bool:
        """Whether a job with ``needs`` can start now."""
        with self._lock:
            if (self.memory_budget is not None
                    and self.memory_in_use + needs.memory > self.memory_budget):
                return False
            return not (needs.gpus and self.gpu_jobs is not None
                        and self.gpu_jobs_running >= self.gpu_jobs)

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
