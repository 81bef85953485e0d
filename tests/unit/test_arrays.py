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
    synchronize,
    wait_event,
    worker_stream,
)
from clara_rt.ports import PortSpec


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


@pytest.mark.gpu
def test_events_come_from_a_ring_and_order_kernels_across_streams() -> None:
    import cupy

    from clara_rt import arrays

    x = cupy.arange(4)
    with cupy.cuda.Stream(non_blocking=True) as producer:
        assert record_event([x]).ptr == producer.ptr and record_event([np.ones(2)]) is None
        events = [arrays._next_event(producer) for _ in range(arrays.EVENT_RING + 1)]
        assert events[0] is events[arrays.EVENT_RING]  # reused, not a new Event per hop
        assert len({id(e) for e in events}) == arrays.EVENT_RING
    expected = np.ones(1, np.float32)
    for _ in range(20):
        expected = np.sin(expected)
    with cupy.cuda.Stream(non_blocking=True) as consumer:
        with producer:
            slow = cupy.ones(1 << 24, dtype=cupy.float32)
            for _ in range(20):
                slow = cupy.sin(slow)
            mark = record_event([slow])
        wait_event(mark)  # another stream: the consumer's kernels run after the producer's
        last = (slow[-8:] + 0).get()  # a kernel and a copy on the consumer's stream
        assert consumer.ptr != producer.ptr
        np.testing.assert_allclose(last, np.repeat(expected, 8), rtol=1e-6)
    with producer:
        for _ in range(20):
            slow = cupy.sin(slow)
        mark = record_event([slow])
    synchronize([mark, None])  # the host waits for the producer's stream
    assert producer.done


class _Event:
    def __init__(self, stream: _Stream) -> None:
        self.stream, self.synchronized = stream, False

    def record(self, stream: _Stream) -> None:
        assert stream is self.stream

    def synchronize(self) -> None:
        self.synchronized = True


class _Stream:
    def __init__(self, ptr: int) -> None:
        self.ptr, self.waited = ptr, []

    def wait_event(self, event: Any) -> None:
        self.waited.append(event)


def test_marks_record_events_only_across_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    from clara_rt import arrays

    current, recorded = _Stream(7), []

    def next_event(stream: _Stream) -> _Event:
        recorded.append(_Event(stream))
        return recorded[-1]

    monkeypatch.setattr(arrays, "_current_stream", lambda: current)
    monkeypatch.setattr(arrays, "_next_event", next_event)
    wait_event(_Stream(7))  # the producer ran on this stream: stream order serialises them
    wait_event(None)
    assert current.waited == [] and recorded == []
    other = _Stream(8)
    wait_event(other)  # another stream: one event, recorded on the producer's stream
    assert [e.stream for e in recorded] == [other] and current.waited == recorded
    synchronize([other, _Stream(8), None, current])  # one event per distinct stream
    assert [e.stream.ptr for e in recorded[1:]] == [8, 7]
    assert all(e.synchronized for e in recorded[1:])


def test_port_fast_check_takes_numpy_and_reports_mismatches() -> None:
    spec = PortSpec("v", dtype="float32", shape=(-1, 4), device="any")
    assert spec.value_problem(np.zeros((3, 4), np.float32)) is None
    assert spec.value_problem(np.zeros((3, 5), np.float32)) == (
        "expected shape (*, 4), got (3, 5) (axis 1 is 5, not 4)")
    assert spec.value_problem(np.zeros((3, 4), np.int16)) == "expected dtype float32, got int16"
    on_gpu = PortSpec("g", dtype="float32", device="cuda")
    assert on_gpu.value_problem(np.zeros(2, np.float32)) == (
        "expected an array on cuda, got one on cpu")


@pytest.mark.gpu
def test_port_fast_check_takes_cupy_arrays_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import cupy

    from clara_rt import ports

    spec = PortSpec("g", dtype="float32", shape=(-1, 4), device="cuda")
    x = cupy.zeros((2, 4), cupy.float32)
    assert spec.value_problem(x) is None  # the first CuPy value teaches the fast path its type

    def no_full_check(value: Any) -> str:
        raise AssertionError("a matching CuPy array took the full check")

    monkeypatch.setattr(ports, "device_of", no_full_check)  # only the full check calls it
    assert PortSpec("h", dtype="float32", shape=(-1, 4), device="cuda").value_problem(x) is None
    monkeypatch.undo()
    assert spec.value_problem(cupy.zeros((2, 5), cupy.float32)) == (
        "expected shape (*, 4), got (2, 5) (axis 1 is 5, not 4)")
    assert PortSpec("c", device="cpu").value_problem(x) == (
        "expected an array on cpu, got one on cuda")
