"""The shared-model cache of the in-process backends (ONNX Runtime sessions, TorchScript modules).

One loaded model serves every backend, job and pipeline that uses the same file with the same
settings: a :class:`ModelCache` keyed by ``(realpath, mtime, size, *settings)`` (see
:func:`file_key`) holds it, counting its users. Concurrent first uses load it once (one lock per
entry, so other keys load in parallel). When the last user releases it the model is dropped, or,
with ``idle=N``, moved to a small LRU of idle models so that a pipeline built again does not load
it again; older idle ones are dropped.

:class:`CachedModelBackend` is a backend's hold on one entry: opened on first use under the
backend's lock, released by :meth:`~CachedModelBackend.close` (idempotent); the next use opens it
again.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from clara_rt.backends.base import ModelSpec
from clara_rt.errors import BackendError, BackendUnavailableError

__all__ = ["CachedModelBackend", "Entry", "Key", "ModelCache", "file_key", "import_library"]

T = TypeVar("T")
Key = tuple[Any, ...]


@dataclass(eq=False)
class Entry(Generic[T]):
    """One cached model; ``lock`` makes concurrent first uses load it once."""

    key: Key
    lock: threading.Lock = field(default_factory=threading.Lock)
    value: T | None = None
    users: int = 0


class ModelCache(Generic[T]):
    """Loaded models by key, counting their users; thread-safe.

    Args:
        load: ``load(key, owner)`` loads the model for ``key`` (``owner``: the backend asking,
            for its name in messages); called once per entry, with no cache-wide lock held.
        idle: Models kept after their last user released them, most recently used first.
    """

    def __init__(self, load: Callable[[Key, Any], T], *, idle: int = 0) -> None:
        self._load, self._idle_max = load, idle
        self._live: dict[Key, Entry[T]] = {}
        self._idle: OrderedDict[Key, Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def live(self) -> Mapping[Key, Entry[T]]:
        """The entries in use, by key (a read-only view)."""
        return MappingProxyType(self._live)

    @property
    def idle(self) -> Mapping[Key, Entry[T]]:
        """The idle entries kept for reuse, oldest first (a read-only view)."""
        return MappingProxyType(self._idle)

    def acquire(self, key: Key, owner: Any) -> Entry[T]:
        """Return the entry for ``key`` with its model loaded (once), counting one more user."""
        with self._lock:
            entry = self._live.get(key)
            if entry is None:
                entry = self._idle.pop(key, None) or Entry(key)
                self._live[key] = entry
            entry.users += 1
        try:
            with entry.lock:  # other keys load in parallel
                if entry.value is None:
                    entry.value = self._load(key, owner)
        except BaseException:
            self.release(entry)
            raise
        return entry

    def release(self, entry: Entry[T]) -> None:
        """Count one user less; the last one drops the model (or keeps it idle)."""
        with self._lock:
            entry.users -= 1
            if entry.users > 0 or self._live.get(entry.key) is not entry:
                return
            del self._live[entry.key]
            if entry.value is not None and self._idle_max > 0:
                self._idle[entry.key] = entry
                while len(self._idle) > self._idle_max:
                    self._idle.popitem(last=False)


def file_key(path: Path, what: str, *, model: str, url: str) -> Key:
    """``(realpath, mtime_ns, size)`` of a model file, so that a changed file is loaded again.

    Raises:
        BackendUnavailableError: ``"{what} not found: {path}"`` (or "cannot be read").
    """
    try:
        stat = path.stat()
    except OSError as exc:
        why = ("not found" if isinstance(exc, FileNotFoundError)
               else f"cannot be read ({exc})")
        raise BackendUnavailableError(f"{what} {why}: {path}", model=model, url=url) from exc
    return (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def import_library(module: str, missing: str) -> Any:
    """Import the library that loads the models (``torch``, ``onnxruntime``).

    Raises:
        BackendUnavailableError: ``missing`` (what to install), when the import fails.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(missing) from exc


class CachedModelBackend(Generic[T]):
    """Base of the in-process backends: one hold on a :class:`ModelCache` entry, and the spec.

    A subclass passes its cache, sets ``url`` and ``model``, and implements ``_key()`` and
    ``_load_spec(model)`` (which sets ``_spec``). Thread-safe.
    """

    url: str
    model: str

    def __init__(self, models: ModelCache[T]) -> None:
        self._models = models
        self._lock = threading.Lock()
        self._entry: Entry[T] | None = None
        self._spec: ModelSpec | None = None

    def close(self) -> None:
        """Release this backend's hold on the shared model. Idempotent."""
        with self._lock:
            entry, self._entry = self._entry, None
        if entry is not None:
            self._models.release(entry)

    def warmup(self) -> None:
        """Load the model now instead of at the first job."""
        self._open()

    def _open(self) -> T:
        """The shared model, acquired on first use (and after :meth:`close`)."""
        entry = self._entry
        if entry is None:
            with self._lock:
                if self._entry is None:
                    self._entry = self._acquire()
                entry = self._entry
        assert entry.value is not None
        return entry.value

    def _acquire(self) -> Entry[T]:
        entry = self._models.acquire(self._key(), self)
        try:
            assert entry.value is not None
            self._load_spec(entry.value)
        except BaseException:
            self._models.release(entry)
            raise
        return entry

    def _opened_spec(self) -> ModelSpec:
        self._open()
        assert self._spec is not None
        return self._spec

    def _key(self) -> Key:
        raise NotImplementedError

    def _load_spec(self, model: T) -> None:
        raise NotImplementedError

    def _output_names(self, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
        """The outputs to return (default all); unknown names are an error."""
        assert self._spec is not None
        known = tuple(t.name for t in self._spec.outputs)
        if outputs is None:
            return known
        unknown = [o for o in outputs if o not in known]
        if unknown:
            raise self._error(f"unknown output(s) {', '.join(unknown)}; outputs are: "
                              f"{', '.join(known)}")
        return tuple(outputs)

    def _error(self, message: str) -> BackendError:
        return BackendError(f"model '{self.model}' ({self.url}): {message}", model=self.model,
                            url=self.url)
