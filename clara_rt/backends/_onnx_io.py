"""The inputs and outputs of an ONNX Runtime session (for the ONNX backend, ``onnxruntime.py``).

:func:`bind_inputs` binds NumPy inputs in place and CuPy inputs by device pointer (I/O binding),
and :func:`to_numpy` / :func:`to_cupy` return the outputs on the inputs' device without a copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from clara_rt.backends._input_check import is_cuda

__all__ = ["ONNX_DTYPES", "bind_inputs", "is_cuda", "to_cupy", "to_numpy"]

ONNX_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(bool)": "bool",
               "tensor(float16)": "float16"} | {
    f"tensor({t}{n})": f"{t}{n}" for t in ("int", "uint") for n in (8, 16, 32, 64)}
"""ONNX tensor type -> NumPy dtype name: the types clara-rt supports."""


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
