"""The shared-model cache of the in-process backends (clara_rt/backends/_model_cache.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clara_rt.backends._model_cache import Key, ModelCache, file_key, import_library
from clara_rt.errors import BackendUnavailableError


class _Loads:
    """A loader that counts its calls, is slow enough for threads to meet, and can fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[Key] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, key: Key, owner: Any) -> object:
        with self._lock:
            self.calls.append(key)
        time.sleep(0.02)
        if self.fail:
            raise RuntimeError(f"cannot load {key} for {owner}")
        return object()


def test_concurrent_first_uses_load_once_and_the_last_release_drops_the_model() -> None:
    loads = _Loads()
    cache: ModelCache[object] = ModelCache(loads)
    entries: list[Any] = []
    threads = [threading.Thread(target=lambda: entries.append(cache.acquire(("a",), None)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads.calls == [("a",)]
    assert len({id(e.value) for e in entries}) == 1 and entries[0].users == 8
    for entry in entries:
        cache.release(entry)
    assert dict(cache.live) == {} and dict(cache.idle) == {}
    assert cache.acquire(("a",), None).value is not entries[0].value  # loaded again
    assert len(loads.calls) == 2


def test_idle_models_are_reused_and_bounded_oldest_first() -> None:
    loads = _Loads()
    cache: ModelCache[object] = ModelCache(loads, idle=2)
    first = {k: cache.acquire((k,), None) for k in "abc"}
    for entry in first.values():
        cache.release(entry)
    assert list(cache.idle) == [("b",), ("c",)]  # "a" dropped, the oldest
    again = cache.acquire(("c",), None)
    assert again.value is first["c"].value and list(cache.idle) == [("b",)]
    assert len(loads.calls) == 3


def test_a_failed_load_leaves_nothing_behind_and_is_tried_again() -> None:
    loads = _Loads(fail=True)
    cache: ModelCache[object] = ModelCache(loads, idle=2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"cannot load \('x',\) for owner"):
            cache.acquire(("x",), "owner")
        assert dict(cache.live) == {} and dict(cache.idle) == {}
    assert len(loads.calls) == 2


def test_file_key_changes_with_the_file_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"1")
    before = file_key(path, "ONNX model file", model="m", url=str(path))
    path.write_bytes(b"22")
    assert file_key(path, "ONNX model file", model="m", url=str(path)) != before
    with pytest.raises(BackendUnavailableError,
                       match=r"^ONNX model file not found: .*gone\.onnx$") as info:
        file_key(tmp_path / "gone.onnx", "ONNX model file", model="g", url="u")
    assert (info.value.model, info.value.url) == ("g", "u")


def test_a_missing_library_says_what_to_install() -> None:
    with pytest.raises(BackendUnavailableError, match=r"^nolib is not installed: pip install x$"):
        import_library("clara_rt_no_such_library", "nolib is not installed: pip install x")
    assert import_library("json", "unused").dumps([]) == "[]"
