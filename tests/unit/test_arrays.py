"""Array-module helper: module choice, device detection, zero-copy views."""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from clara_rt.arrays import (
    as_array,
    cuda_available,
    data_pointer,
    default_xp,
    device_of,
    get_array_module,
    record_event,
    same_buffer,
    worker_stream,
)


class _HostBuffer:
    """A foreign host array exposing only ``__array_interface__`` (like many C libraries)."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.__array_interface__ = base.__array_interface__


class _DLPackOnly:
    """A foreign array exposing only DLPack (like a PyTorch CPU tensor)."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.base.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.base.__dlpack_device__()


def test_get_array_module(xp: ModuleType) -> None:
    assert get_array_module(xp.zeros(3)) is xp
    assert get_array_module(np.zeros(2), xp.zeros(2)) is xp
    assert get_array_module(1.0, "x") is np


def test_device_of_and_pointers(xp: ModuleType) -> None:
    a = xp.arange(10, dtype=xp.float32)
    assert device_of(a) == ("cpu" if xp is np else "cuda")
    assert device_of([1, 2]) is None and device_of(3) is None
    assert same_buffer(a, a) and not same_buffer(a, a.copy())
    assert data_pointer(a[2:]) == data_pointer(a) + 8


def test_as_array_is_zero_copy_for_foreign_host_arrays() -> None:
    base = np.arange(6, dtype=np.int16)
    view = as_array(_HostBuffer(base))
    assert isinstance(view, np.ndarray) and data_pointer(view) == data_pointer(base)
    assert as_array(base) is base
    dl = as_array(_DLPackOnly(base))
    assert isinstance(dl, np.ndarray) and data_pointer(dl) == data_pointer(base)


def test_as_array_rejects_non_arrays() -> None:
    with pytest.raises(TypeError, match=r"expected an array .* got dict"):
        as_array({})


def test_without_gpu_everything_is_numpy() -> None:
    if cuda_available():
        pytest.skip("a GPU is present: covered by the gpu tests")
    assert default_xp() is np
    assert worker_stream() is None
    assert record_event([np.zeros(2)]) is None


@pytest.mark.gpu
def test_worker_streams_are_per_thread_and_non_blocking() -> None:
    import cupy

    streams: list[Any] = []
    threads = [threading.Thread(target=lambda: streams.append(worker_stream())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.ptr for s in streams}) == 2
    assert all(s.ptr != cupy.cuda.Stream.null.ptr for s in streams)
