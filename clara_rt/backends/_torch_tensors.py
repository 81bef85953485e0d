"""Arrays to tensors and back without copies, for :mod:`clara_rt.backends.torch`.

NumPy arrays become tensors through ``torch.from_numpy`` (read-only ones through DLPack, since
``from_numpy`` warns on them), CuPy arrays through DLPack: the same memory either way. Output
tensors come back as NumPy (``Tensor.numpy()`` shares the buffer) or CuPy (``cupy.from_dlpack``).
Copies happen only between host and device, and are counted. :func:`external_stream` wraps the
calling thread's current CuPy stream for ``torch.cuda.stream``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from clara_rt.arrays import count_transfer, to_host
from clara_rt.backends._input_check import is_cuda

__all__ = ["external_stream", "from_tensor", "is_cuda", "tensor_for"]


def tensor_for(torch: Any, value: Any, device: Any) -> Any:
    """The array as a tensor on ``device``: the same memory when it is already there."""
    if device.type == "cpu" and type(value) is not np.ndarray and is_cuda(value):
        value = to_host(value)  # a CPU model given CuPy arrays: through the host (counted)
    tensor = _as_tensor(torch, value)
    if tensor.device == device:
        return tensor
    count_transfer("host_to_device", tensor.numel() * tensor.element_size())
    return tensor.to(device)


def _as_tensor(torch: Any, value: Any) -> Any:
    """The array as a tensor over the same memory (NumPy or CuPy; never a copy)."""
    if type(value) is np.ndarray:
        if value.flags.writeable:
            return torch.from_numpy(value)
        return torch.from_dlpack(value)  # from_numpy warns on read-only arrays; DLPack does not
    return torch.from_dlpack(value)


def from_tensor(torch: Any, tensor: Any, dtype: str, on_gpu: bool, amp: bool) -> Any:
    """An output tensor as NumPy (host inputs) or CuPy (GPU inputs), sharing its memory."""
    if amp and str(tensor.dtype).removeprefix("torch.") != dtype:
        tensor = tensor.to(getattr(torch, dtype))
    if on_gpu:
        import cupy

        if tensor.device.type != "cuda":
            count_transfer("host_to_device", tensor.numel() * tensor.element_size())
            return cupy.asarray(tensor.numpy())
        return cupy.from_dlpack(tensor)
    if tensor.device.type != "cpu":
        count_transfer("device_to_host", tensor.numel() * tensor.element_size())
        tensor = tensor.cpu()
    return tensor.numpy()


_streams = threading.local()


def external_stream(torch: Any, device: Any) -> Any:
    """This thread's current CuPy stream as a torch stream (cached per thread and pointer)."""
    import cupy

    ptr = int(cupy.cuda.get_current_stream().ptr)
    cached = getattr(_streams, "map", None)
    if cached is None:
        cached = _streams.map = {}
    stream = cached.get((ptr, device.index))
    if stream is None:
        stream = (torch.cuda.default_stream(device) if ptr == 0
                  else torch.cuda.ExternalStream(ptr, device=device))
        cached[(ptr, device.index)] = stream
    return stream
