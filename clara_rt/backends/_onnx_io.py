"""The inputs and outputs of an ONNX Runtime session (for the ONNX backend, ``onnxruntime.py``).

:class:`Expected` checks an input against the model's declared tensor cheaply on every call;
:func:`bind_inputs` binds NumPy inputs in place and CuPy inputs by device pointer (I/O binding),
and :func:`to_numpy` / :func:`to_cupy` return the outputs on the inputs' device without a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from clara_rt.backends.base import TensorSpec

__all__ = ["ONNX_DTYPES", "Expected", "bind_inputs", "is_cuda", "to_cupy", "to_numpy"]

ONNX_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(bool)": "bool",
               "tensor(float16)": "float16"} | {
    f"tensor({t}{n})": f"{t}{n}" for t in ("int", "uint") for n in (8, 16, 32, 64)}
"""ONNX tensor type -> NumPy dtype name: the types clara-rt supports."""


class Expected:
    """What one input must look like, precomputed for a cheap per-call check."""

    def __init__(self, tensor: TensorSpec) -> None:
        self.tensor, self.dtype, self.rank = tensor, np.dtype(tensor.dtype), len(tensor.shape)
        self.fixed = tuple((axis, size) for axis, size in enumerate(tensor.shape) if size >= 0)

    def problem(self, value: Any) -> str | None:
        shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
        if shape is None or dtype is None:
            return f"a {type(value).__name__} (not an array)"
        if dtype == self.dtype and len(shape) == self.rank and all(
                shape[axis] == size for axis, size in self.fixed):
            return None  # the per-call path: no strings built
        got = f"{dtype}{list(shape)}"
        if dtype != self.dtype:
            return f"{got} (dtype {dtype}, not {self.dtype})"
        if len(shape) != self.rank:
            return f"{got} (rank {len(shape)}, not {self.rank})"
        axis, size = next((a, n) for a, n in self.fixed if shape[a] != n)
        return f"{got} (axis {axis} is {shape[axis]}, not {size})"

    def describe(self) -> str:
        return f"{self.tensor.dtype}{list(self.tensor.shape)}"


def bind_inputs(binding: Any, inputs: Mapping[str, Any],
                 on_gpu: bool) -> tuple[tuple[str, int], list[Any]]:
    """Bind every input; return the ``(device type, id)`` to bind the outputs on, and the arrays
    bound by pointer (the caller keeps them alive until the run is over).

    A non-contiguous CuPy input is first copied to a contiguous one, on the current stream; the
    stream is synchronised after those copies, since onnxruntime reads on its own stream.
    """
    device = ("cpu", 0)
    bound: list[Any] = []
    for name, value in inputs.items():
        if type(value) is np.ndarray or not is_cuda(value):
            bound.append(np.ascontiguousarray(value))
            binding.bind_cpu_input(name, bound[-1])
            continue
        import cupy

        value = cupy.ascontiguousarray(value)
        bound.append(value)
        device = ("cuda", int(value.device.id))
        binding.bind_input(name, "cuda", device[1], value.dtype, tuple(value.shape),
                           value.data.ptr)
    if on_gpu:
        import cupy

        cupy.cuda.get_current_stream().synchronize()  # the producers' and the copies' kernels
    return device, bound


def to_numpy(value: Any) -> Any:
    """An OrtValue on the host as NumPy (sharing its buffer on onnxruntime 1.32; older: a copy)."""
    return value.numpy()


def to_cupy(value: Any) -> Any:
    """An OrtValue on a CUDA device as a CuPy array over its buffer (keeps the OrtValue alive)."""
    import cupy

    if hasattr(value, "__dlpack__"):
        return cupy.from_dlpack(value)
    dtype = np.dtype(ONNX_DTYPES[value.data_type()])
    shape = tuple(value.shape())
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    memory = cupy.cuda.UnownedMemory(value.data_ptr(), nbytes, value)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0))


def is_cuda(value: Any) -> bool:
    return hasattr(value, "__cuda_array_interface__")
