"""Array-module helper: the same operator code runs on NumPy (host) and CuPy (GPU).

Write operators once against ``xp``::

    xp = get_array_module(volume)      # cupy for a CuPy array, numpy otherwise
    out = xp.clip(volume, 0, 1)

CuPy is optional and imported lazily: ``import clara_rt`` never imports it, and everything here
works (and is tested) on a machine without a GPU. :func:`default_xp` picks CuPy only when a CUDA
device is really usable.

CUDA streams: each worker thread gets its own non-blocking stream (CuPy's current stream is
thread-local). When an operator emits GPU arrays, the runtime marks the producer's stream; a
consumer on the same stream needs nothing more, one running on another worker records a pooled
event on the producer's stream and waits on it (``stream.wait_event``), so it waits for its
producer only, never for the whole device. On NumPy these helpers are no-ops.

Host <-> device copies go through :func:`to_host` and :func:`to_device`, which count the bytes
they move (:func:`transfer_counters`, shown by the server's monitoring). Counting is a locked
add of two integers: no allocation beyond the integers themselves, nothing on the NumPy path.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import cupy  # type: ignore[import-not-found, unused-ignore]

    Array = np.ndarray[Any, Any] | cupy.ndarray
else:
    Array = Any

__all__ = [
    "Array",
    "TransferCounters",
    "as_array",
    "count_transfer",
    "cuda_available",
    "data_pointer",
    "default_xp",
    "device_name",
    "device_of",
    "get_array_module",
    "no_cuda_reason",
    "record_event",
    "resolve_device",
    "same_buffer",
    "synchronize",
    "to_device",
    "to_host",
    "transfer_counters",
    "wait_event",
    "worker_stream",
]

_local = threading.local()
_transfer_lock = threading.Lock()
# host->device bytes, host->device copies, device->host bytes, device->host copies
_transfers = [0, 0, 0, 0]


def get_array_module(*arrays: Any) -> ModuleType:
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Example:
        >>> xp = get_array_module(np.zeros(3))
        >>> xp.__name__
        'numpy'
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cast(ModuleType, cupy)
    return np


@functools.cache
def cuda_available() -> bool:
    """Return whether CuPy is installed and sees at least one CUDA device (cached)."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # CUDARuntimeError without a driver; any other failure means "no GPU"
        return False


def default_xp() -> ModuleType:
    """Return ``cupy`` when a CUDA device is usable, else ``numpy``."""
    if cuda_available():
        import cupy

        return cast(ModuleType, cupy)
    return np


DEVICE_CHOICES = ("cpu", "cuda", "auto")
"""What a pipeline (``clara-rt: {device: ...}``), ``clara-rt run --device`` or a job may ask."""


def resolve_device(requested: str | None) -> str:
    """Turn a requested device into the one that will run: ``"cpu"`` or ``"cuda"``.

    ``None`` and ``"cpu"`` give ``"cpu"``; ``"auto"`` gives ``"cuda"`` when CuPy finds a CUDA
    device, else ``"cpu"``; ``"cuda"`` gives ``"cuda"`` or raises.

    Raises:
        DeviceUnavailableError: ``"cuda"`` was asked for and no CUDA device is usable.
        ValueError: ``requested`` is none of :data:`DEVICE_CHOICES`.
    """
    if requested is None or requested == "cpu":
        return "cpu"
    if requested not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {requested!r}")
    if cuda_available():
        return "cuda"
    if requested == "auto":
        return "cpu"
    from clara_rt.errors import DeviceUnavailableError

    raise DeviceUnavailableError(f"device 'cuda' was asked for, but {no_cuda_reason()}; ask "
                                 "for 'cpu', or 'auto' to use a GPU only where there is one")


def device_name(device: str) -> str:
    """Describe ``device`` for reports: ``"cpu"`` or e.g. ``"cuda (NVIDIA H200, CuPy 14.2.0)"``."""
    if device != "cuda" or not cuda_available():
        return "cpu"
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"cuda ({name}, CuPy {cupy.__version__})"


def no_cuda_reason() -> str:
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install cupy-cuda12x or cupy-cuda13x)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver
        return f"CuPy cannot reach a CUDA driver ({type(exc).__name__}: {exc})"
    return f"CuPy sees {count} CUDA devices"


def device_of(value: Any) -> str | None:
    """Return ``"cpu"`` or ``"cuda"`` for an array-like, or ``None`` if ``value`` is no array.

    Recognises NumPy arrays, anything with ``__cuda_array_interface__`` (CuPy, Numba, PyTorch
    CUDA tensors), ``__array_interface__`` and DLPack (``__dlpack_device__``). Never copies.
    """
    if isinstance(value, np.ndarray):
        return "cpu"
    if hasattr(value, "__cuda_array_interface__"):
        return "cuda"
    if hasattr(value, "__array_interface__"):
        return "cpu"
    dlpack_device = getattr(value, "__dlpack_device__", None)
    if dlpack_device is not None:
        device_type = int(dlpack_device()[0])
        return "cpu" if device_type in (1, 3) else "cuda"  # kDLCPU, kDLCUDAHost; else device
    return None


def as_array(value: Any) -> Any:
    """Return ``value`` as a NumPy or CuPy array without copying.

    NumPy and CuPy arrays come back as they are; other host arrays (``__array_interface__``,
    DLPack on the CPU) become NumPy views, GPU ones (``__cuda_array_interface__``, DLPack on a
    device) CuPy views of the same memory.

    Raises:
        TypeError: ``value`` exposes no array protocol.
    """
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
        return value
    device = device_of(value)
    if device == "cpu":
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
        return np.asarray(value)
    if device == "cuda":
        import cupy

        if hasattr(value, "__dlpack__"):
            return cupy.from_dlpack(value)
        return cupy.asarray(value)
    raise TypeError(f"expected an array (NumPy, CuPy, DLPack or array interface), got "
                    f"{type(value).__name__}")


@dataclass(frozen=True, slots=True)
class TransferCounters:
    """Bytes and copies moved between host and device by this process since it started."""

    host_to_device_bytes: int
    host_to_device: int
    device_to_host_bytes: int
    device_to_host: int


def to_host(value: Any) -> Any:
    """Return ``value`` as a NumPy array, copying it from the GPU when it lives there.

    A host array comes back as it is (no copy, nothing counted); a GPU array (CuPy, or anything
    with ``__cuda_array_interface__`` or device DLPack) is copied, and the copy counted in
    :func:`transfer_counters`. The copy is synchronous on the current stream.
    """
    if isinstance(value, np.ndarray):
        return value
    if not type(value).__module__.startswith("cupy"):
        if device_of(value) != "cuda":
            return np.asarray(value)
        value = as_array(value)  # a foreign GPU array: a CuPy view of it
    host = value.get()
    _count(2, int(value.nbytes))
    return host


def to_device(value: Any) -> Any:
    """Return ``value`` as a CuPy array, copying it to the current device when it is on the host.

    A CuPy array comes back as it is, another GPU array as a CuPy view of it; a host copy is
    counted in :func:`transfer_counters`. Needs CuPy and a GPU.
    """
    import cupy

    if isinstance(value, cupy.ndarray):
        return value
    if device_of(value) == "cuda":
        return as_array(value)
    device = cupy.asarray(value)
    _count(0, int(device.nbytes))
    return device


def transfer_counters() -> TransferCounters:
    """Return what :func:`to_host` and :func:`to_device` have moved so far (thread-safe)."""
    with _transfer_lock:
        return TransferCounters(*_transfers)


def count_transfer(direction: str, nbytes: int) -> None:
    """Count a host <-> device copy made without :func:`to_host`/:func:`to_device`.

    Args:
        direction: ``"host_to_device"`` or ``"device_to_host"``.
        nbytes: Bytes copied.
    """
    if direction not in ("host_to_device", "device_to_host"):
        raise ValueError(f"direction must be 'host_to_device' or 'device_to_host', not "
                         f"{direction!r}")
    _count(0 if direction == "host_to_device" else 2, nbytes)


def _count(slot: int, nbytes: int) -> None:
    with _transfer_lock:
        _transfers[slot] += nbytes
        _transfers[slot + 1] += 1


def data_pointer(value: Any) -> int:
    """Return the address of an array's first element (host or device pointer).

    Used to show that the runtime hands arrays over without copying.
    """
    cai = getattr(value, "__cuda_array_interface__", None)
    if cai is not None:
        return int(cai["data"][0])
    return int(value.__array_interface__["data"][0])


def same_buffer(a: Any, b: Any) -> bool:
    """Return whether two arrays are views of the same memory start (same device and pointer)."""
    return device_of(a) == device_of(b) and data_pointer(a) == data_pointer(b)


def worker_stream() -> Any:
    """Give this worker thread its own non-blocking CUDA stream and make it current.

    Called once by each runtime worker thread when it starts; returns the stream, or ``None``
    when no GPU is usable. Not called on a user's thread (``Runtime(workers=0)`` runs operators
    on the caller's current stream).
    """
    if not cuda_available():
        return None
    stream = getattr(_local, "stream", None)
    if stream is None:
        import cupy

        stream = cupy.cuda.Stream(non_blocking=True)
        stream.use()
        _local.stream = stream
    return stream


def record_event(values: Any) -> Any:
    """Mark where a producer's GPU work ends, if any of ``values`` is a CuPy array.

    Producers call it after ``compute`` (on a worker, the current stream is the worker's own);
    ``submit`` calls it for the payload on the caller's stream. Returns a mark for
    :func:`wait_event` and :func:`synchronize` (the producer's stream), or ``None`` when nothing
    is on the GPU.

    No CUDA event is recorded here: a consumer on the same stream needs none (stream order),
    and one on another stream records it when it gets there (:func:`wait_event`). Recorded then,
    on the producer's stream, the event lies after everything the producer enqueued (its
    ``compute`` had returned before the mark was made), so the consumer never starts too early;
    at worst it also waits for work enqueued on that stream since.
    """
    for v in values:
        if type(v).__module__.startswith("cupy"):
            return _current_stream()
    return None


def wait_event(event: Any) -> None:
    """Make the current stream wait for a producer's mark; no-op for ``None``.

    Only this stream waits, on the device: the host thread and other streams go on. When the
    producer ran on this very stream, stream order already serialises them and nothing is done;
    otherwise one pooled event is recorded on the producer's stream and waited on.
    """
    if event is None:
        return
    current = _current_stream()
    if current.ptr != event.ptr:
        current.wait_event(_record_on(event))


def synchronize(events: Any) -> None:
    """Block the calling thread until the work behind every (non-``None``) mark has completed.

    One event is recorded and waited for per distinct stream among the marks.
    """
    streams = {mark.ptr: mark for mark in events if mark is not None}
    for stream in streams.values():
        _record_on(stream).synchronize()


EVENT_RING = 64
"""Events per thread and stream that :func:`wait_event` and :func:`synchronize` cycle through.

They are created once (timing disabled) instead of a ``cupy.cuda.Event`` per hop. An event is
re-recorded only after ``EVENT_RING`` later records on the same stream by the same thread; a
stream that waits on it after that waits for a later point of the same stream, which includes
what it was recorded for: never too early, at worst a little late."""
_MAX_RINGS = 16  # streams remembered per thread; a thread switching among more starts anew


def _current_stream() -> Any:
    """``cupy.cuda.get_current_stream()``, without re-running ``import cupy`` on every hop."""
    get = _get_current_stream
    if get is None:
        import cupy

        get = globals()["_get_current_stream"] = cupy.cuda.get_current_stream
    return get()


_get_current_stream: Any = None


def _record_on(stream: Any) -> Any:
    """Record this thread's next pooled event for ``stream`` on it and return the event."""
    event = _next_event(stream)
    event.record(stream)
    return event


def _next_event(stream: Any) -> Any:
    """Return the next event of this thread's ring for ``stream`` (created on first use)."""
    rings: dict[int, list[Any]] | None = getattr(_local, "rings", None)
    if rings is None:
        rings = _local.rings = {}
    ring = rings.get(stream.ptr)
    if ring is None:
        if len(rings) >= _MAX_RINGS:
            rings.clear()
        ring = rings[stream.ptr] = [0, stream]  # [next index, the stream (kept alive), *events]
    at = ring[0]
    ring[0] = (at + 1) % EVENT_RING
    if at + 2 < len(ring):
        return ring[at + 2]
    import cupy

    event = cupy.cuda.Event(block=False, disable_timing=True)
    ring.append(event)
    return event
