"""What one job asks for: its pipeline's ``requests:`` added up (:class:`JobNeeds`).

Clara's per-operator ``memory`` and ``gpu`` requests, and clara-rt's ``gpu-memory``: the
operators' memory requests added up (they may all hold data at once in one process), the same
for device memory, and the largest GPU request. The server's admission and the cluster's slot
table both decide with it; operators without ``requests:`` count as zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["JobNeeds", "gib", "memory_bytes"]

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


@dataclass(frozen=True)
class JobNeeds:
    """What one job of a pipeline asks for."""

    memory: int = 0
    gpus: int = 0
    gpu_memory: int = 0

    @classmethod
    def of(cls, operators: Any) -> JobNeeds:
        """From a definition's operators (each with a ``requests`` dict)."""
        memory = sum(_request(op, "memory") for op in operators)
        gpu_memory = sum(_request(op, "gpu-memory") for op in operators)
        gpus = max((int(op.requests.get("gpu", 0)) for op in operators), default=0)
        if gpu_memory and not gpus:
            raise ValueError("'gpu-memory' is requested but no operator requests a GPU "
                             "(add 'gpu: 1' to the operator's requests)")
        return cls(memory, gpus, gpu_memory)

    def describe(self) -> str:
        text = f"{gib(self.memory)} of memory and {self.gpus} GPU(s)"
        return text + (f" with {gib(self.gpu_memory)} free" if self.gpu_memory else "")


def gib(size: int) -> str:
    """``size`` bytes in GiB, for messages."""
    return f"{size / (1 << 30):.2f} GiB"


def _request(operator: Any, key: str) -> int:
    if key not in operator.requests:
        return 0
    try:
        return memory_bytes(operator.requests[key])
    except ValueError as exc:
        raise ValueError(f"operator '{getattr(operator, 'name', '?')}': '{key}': {exc}") from None
