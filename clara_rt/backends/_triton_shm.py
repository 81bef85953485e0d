"""Shared-memory regions for :class:`~clara_rt.backends.triton.TritonBackend` (private).

Triton's shared-memory extensions let a client on the same host hand tensors over without
serialising them: the client creates a region, registers it with the server under a name, writes
inputs into it and names the region (and offset) in the request; outputs come back the same way.

* :class:`SystemRegion` -- POSIX shared memory (``/dev/shm``) through
  ``tritonclient.utils.shared_memory``. One input and one output region per worker thread, grown
  (re-created and re-registered under a new name) when a larger request arrives.
* :class:`CudaRegion` -- device memory exported with CUDA IPC through
  ``tritonclient.utils.cuda_shared_memory``. One region per tensor name and thread. Written to
  Triton's documented protocol; **unverified** (no GPU was available when it was written).

Regions know nothing about the server: the backend passes ``register`` / ``unregister``
callables, so every server call goes through its retry and error-conversion edge. Not
thread-safe: each region belongs to one thread (the backend's ``close()`` runs after use).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["ALIGN", "CudaRegion", "SystemRegion", "estimate_output_bytes", "pack"]

ALIGN = 64
"""Byte alignment of each tensor inside a region."""

_GRANULE = 1 << 20  # regions grow in whole MiB, so slowly growing requests do not re-register

Register = Callable[[str, str, int], None]
"""``register(name, key, byte_size)`` for system regions."""
Unregister = Callable[[str], None]


def pack(sizes: Mapping[str, int]) -> tuple[dict[str, int], int]:
    """Lay tensors out back to back, each at an :data:`ALIGN`-ed offset.

    Returns:
        ``({name: offset}, total_bytes)``.
    """
    offsets: dict[str, int] = {}
    end = 0
    for name, size in sizes.items():
        offsets[name] = end
        end += -(-max(size, 1) // ALIGN) * ALIGN
    return offsets, end


def estimate_output_bytes(shape: Sequence[int], itemsize: int,
                          input_shapes: Sequence[Sequence[int]]) -> int:
    """Guess the byte size of an output from the model's declared shape and this request's inputs.

    Fixed dimensions are taken as declared. Variable ones (``-1``) are copied from the first
    input of the same rank (segmentation models keep the spatial size); with no such input the
    output is assumed as large as the largest input, in elements.
    """
    for dims in input_shapes:
        if len(dims) == len(shape):
            return itemsize * math.prod(g if w < 0 else w for w, g in zip(shape, dims,
                                                                           strict=True))
    if all(d >= 0 for d in shape):
        return itemsize * math.prod(shape)
    return itemsize * max((math.prod(d) for d in input_shapes), default=1)


class SystemRegion:
    """A POSIX shared-memory region registered with the server, grown on demand.

    Args:
        prefix: Unique name prefix (server-wide: region names are global to a server).
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name = ""
        self.size = 0
        self._generation = 0
        self._handle: Any = None

    def ensure(self, nbytes: int, register: Register, unregister: Unregister) -> None:
        """Make the region hold at least ``nbytes``; re-create and re-register it if smaller."""
        if nbytes <= self.size:
            return
        self.release(unregister)
        from tritonclient.utils import shared_memory

        self._generation += 1
        name = f"{self.prefix}_{self._generation}"
        size = -(-nbytes // _GRANULE) * _GRANULE
        handle = shared_memory.create_shared_memory_region(name, "/" + name, size,
                                                           create_only=True)
        try:
            register(name, "/" + name, size)
        except BaseException:
            shared_memory.destroy_shared_memory_region(handle)
            raise
        self.name, self.size, self._handle = name, size, handle

    def write(self, arrays: Mapping[str, np.ndarray[Any, Any]], offsets: Mapping[str, int]) -> None:
        """Copy each array into the region at its offset."""
        from tritonclient.utils import shared_memory

        for name, array in arrays.items():
            shared_memory.set_shared_memory_region(self._handle, [array], offset=offsets[name])

    def read(self, dtype: str, shape: Sequence[int], offset: int) -> np.ndarray[Any, Any]:
        """Return a *copy* of the tensor at ``offset`` (the region is reused by the next call)."""
        from tritonclient.utils import shared_memory

        view = shared_memory.get_contents_as_numpy(self._handle, np.dtype(dtype),
                                                   list(shape), offset=offset)
        out: np.ndarray[Any, Any] = np.array(view, copy=True)
        del view  # no view may outlive the call: closing the mapping needs zero exports
        return out

    def release(self, unregister: Unregister | None) -> None:
        """Unregister (when ``unregister`` is given) and destroy the region. Idempotent."""
        if self._handle is None:
            return
        from tritonclient.utils import shared_memory

        handle, name = self._handle, self.name
        self._handle, self.name, self.size = None, "", 0
        try:
            if unregister is not None:
                unregister(name)
        finally:
            shared_memory.destroy_shared_memory_region(handle)


class CudaRegion:
    """A CUDA IPC region on one device, registered with the server (unverified, see module doc).

    Args:
        prefix: Unique name prefix.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name = ""
        self.size = 0
        self.device = -1
        self._generation = 0
        self._handle: Any = None

    def ensure(self, nbytes: int, device: int,
               register: Callable[[str, Any, int, int], None], unregister: Unregister) -> None:
        """Make the region hold ``nbytes`` on ``device``; re-create it if smaller or elsewhere.

        ``register(name, raw_handle, device_id, byte_size)`` registers it with the server.
        """
        if nbytes <= self.size and device == self.device:
            return
        self.release(unregister)
        from tritonclient.utils import cuda_shared_memory as cudashm

        self._generation += 1
        name = f"{self.prefix}_{self._generation}"
        size = -(-nbytes // _GRANULE) * _GRANULE
        handle = cudashm.create_shared_memory_region(name, size, device)
        try:
            register(name, cudashm.get_raw_handle(handle), device, size)
        except BaseException:
            cudashm.destroy_shared_memory_region(handle)
            raise
        self.name, self.size, self.device, self._handle = name, size, device, handle

    def write(self, array: Any) -> None:
        """Copy a contiguous CuPy array into the region (DLPack; synchronous)."""
        from tritonclient.utils import cuda_shared_memory as cudashm

        cudashm.set_shared_memory_region_from_dlpack(self._handle, [array])

    def read(self, datatype: str, shape: Sequence[int]) -> Any:
        """Return a CuPy *copy* of the tensor at the start of the region."""
        import cupy
        from tritonclient.utils import cuda_shared_memory as cudashm

        tensor = cudashm.as_shared_memory_tensor(self._handle, datatype, list(shape))
        return cupy.from_dlpack(tensor).copy()

    def release(self, unregister: Unregister | None) -> None:
        """Unregister (when ``unregister`` is given) and free the region. Idempotent."""
        if self._handle is None:
            return
        from tritonclient.utils import cuda_shared_memory as cudashm

        handle, name = self._handle, self.name
        self._handle, self.name, self.size, self.device = None, "", 0, -1
        try:
            if unregister is not None:
                unregister(name)
        finally:
            cudashm.destroy_shared_memory_region(handle)
