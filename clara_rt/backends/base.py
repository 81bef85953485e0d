"""What every inference backend offers: :class:`InferenceBackend` and :class:`ModelSpec`.

A backend serves one model. It tells which tensors the model takes and returns
(:meth:`InferenceBackend.spec`, fetched once) and runs it (:meth:`InferenceBackend.infer`).
Backends are shared by every job that uses the model and must be safe to call from several
worker threads at once. Arrays go in and come back as NumPy or CuPy arrays; a backend that can
keep them on their device (CUDA shared memory, ONNX Runtime I/O binding) does so.

Errors: a backend raises :class:`~clara_rt.errors.BackendUnavailableError` when the server is
unreachable or the model is not ready, and :class:`~clara_rt.errors.BackendError` for anything
else (unknown input, wrong shape or dtype); both carry ``model`` and ``url``. Third-party
exceptions are converted at this edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from clara_rt.ports import PortSpec

__all__ = ["InferenceBackend", "ModelSpec", "TensorSpec"]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One model input or output.

    Attributes:
        name: Tensor name as the model knows it.
        dtype: NumPy dtype name (``"float32"``; Triton's ``FP32`` is converted).
        shape: Dimensions, ``-1`` for variable ones, *including* the batch dimension when the
            model batches (see :attr:`ModelSpec.max_batch_size`).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]

    def port(self, *, device: str = "any") -> PortSpec:
        """Return the :class:`~clara_rt.PortSpec` of this tensor (port named like the tensor)."""
        return PortSpec(_port_name(self.name), dtype=self.dtype, shape=self.shape,
                        device=device)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's interface.

    Attributes:
        name: Model name.
        version: Model version ('' for the server's default).
        inputs: Input tensors, in the model's order.
        outputs: Output tensors, in the model's order.
        max_batch_size: 0 when the model does not batch; else the largest batch it takes (the
            first dimension of every tensor is then the batch).
        platform: e.g. ``"onnxruntime"``, ``"python"``, ``"mlserver"``.
    """

    name: str
    version: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 0
    platform: str = ""


@runtime_checkable
class InferenceBackend(Protocol):
    """A model behind a server (Triton, KServe v2) or in this process (ONNX Runtime)."""

    url: str
    """Where the model lives: ``http://host:port``, ``grpc://host:port`` or a file path."""

    def spec(self) -> ModelSpec:
        """Return the model's interface (fetched once, then cached)."""
        ...

    def infer(self, inputs: Mapping[str, Any],
              outputs: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Run the model on ``inputs`` (tensor name -> array); return the requested outputs.

        Thread-safe. Raises BackendError / BackendUnavailableError.
        """
        ...

    def close(self) -> None:
        """Release connections, sessions and shared-memory regions. Idempotent."""
        ...


def _port_name(tensor: str) -> str:
    """A valid port name for a tensor name (``INPUT__0`` stays, ``input.1`` -> ``input_1``)."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in tensor)
    return name if name and (name[0].isalpha() or name[0] == "_") else f"t_{name}"
