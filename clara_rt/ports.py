"""Typed ports: what an operator declares it receives and emits.

A :class:`PortSpec` is frozen. Two checks use it:

* at build time, :func:`connection_problem` tells whether an output may feed an input (kind,
  dtype, rank and fixed dimensions, device, format);
* at run time, :meth:`PortSpec.value_problem` tells whether a value matches its port. The runtime
  calls it on every emitted value, so it is written for speed: a NumPy array with the right dtype
  and rank costs a few attribute reads.

Shapes are tuples whose entries are ints (fixed size), ``-1`` or ``"*"`` (any size), or names such
as ``"H"`` (symbolic: within one operator every port dimension named ``"H"`` must have the same
size in one task; across a connection a name matches anything).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from clara_rt.arrays import device_of

PortKind = Literal["array", "stream", "path", "object"]
Device = Literal["cpu", "cuda", "any"]
Dim = int | str
PORT_KINDS: tuple[str, ...] = ("array", "stream", "path", "object")
DEVICES: tuple[str, ...] = ("cpu", "cuda", "any")
_ANY_DIMS = (-1, "*")
_CUDA_ARRAY_TYPES: set[type] = set()  # cupy.ndarray once seen; read by the fast port checks


@dataclass(frozen=True, slots=True)
class PortSpec:
    """Declaration of one input or output port.

    Args:
        name: Port name, unique among the operator's inputs (or outputs).
        kind: ``"array"`` (an ndarray, NumPy or CuPy, passed by reference), ``"stream"`` (an
            iterable of items, e.g. DICOM datasets, or a folder path holding them), ``"path"`` (a
            file or folder path: Clara's folder ports) or ``"object"`` (any Python object).
        dtype: Element type such as ``"float32"`` (anything ``numpy.dtype`` accepts), or ``None``
            for any. Only for arrays.
        shape: Tuple of dims (int, ``-1``/``"*"`` wildcard, or a symbolic name), or ``None`` for
            any rank. Only for arrays.
        device: ``"cpu"`` (host memory), ``"cuda"`` (GPU memory) or ``"any"``.
        format: Free-form content format such as ``"dicom"`` or ``"nifti"``; connected ports with
            formats must agree.
        optional: For inputs: the port may be left unconnected and out of the payload; the
            operator then receives ``None``.
        description: Shown by ``clara-rt graph`` and in errors.
    """

    name: str
    kind: PortKind = "array"
    dtype: str | None = None
    shape: tuple[Dim, ...] | None = None
    device: Device = "any"
    format: str | None = None
    optional: bool = False
    description: str = ""
    _np_dtype: np.dtype[Any] | None = field(default=None, init=False, repr=False, compare=False)
    _fixed: tuple[tuple[int, int], ...] = field(default=(), init=False, repr=False, compare=False)
    _symbols: tuple[tuple[int, str], ...] = field(default=(), init=False, repr=False, compare=False)
    _check: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"port name must be an identifier, got {self.name!r}")
        if self.kind not in PORT_KINDS:
            raise ValueError(f"port '{self.name}': kind must be one of {', '.join(PORT_KINDS)}, "
                             f"got {self.kind!r}")
        if self.device not in DEVICES:
            raise ValueError(f"port '{self.name}': device must be one of {', '.join(DEVICES)}, "
                             f"got {self.device!r}")
        if self.dtype is not None:
            try:
                np_dtype, name = _dtype(self.dtype)
            except TypeError as exc:
                raise ValueError(f"port '{self.name}': unknown dtype {self.dtype!r}") from exc
            object.__setattr__(self, "dtype", name)
            object.__setattr__(self, "_np_dtype", np_dtype)
        if self.shape is not None:
            self._init_shape(tuple(self.shape))
        object.__setattr__(self, "_check", self._make_check())

    def _init_shape(self, shape: tuple[Dim, ...]) -> None:
        fixed: list[tuple[int, int]] = []
        symbols: list[tuple[int, str]] = []
        for axis, dim in enumerate(shape):
            if isinstance(dim, bool) or not isinstance(dim, int | str):
                raise ValueError(f"port '{self.name}': shape entries must be int or str, "
                                 f"got {dim!r} in {shape}")
            if dim in _ANY_DIMS:
                continue
            if isinstance(dim, int):
                if dim < 0:
                    raise ValueError(f"port '{self.name}': dimension {dim} in {shape}; use -1 "
                                     "for any size")
                fixed.append((axis, dim))
            else:
                symbols.append((axis, dim))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_fixed", tuple(fixed))
        object.__setattr__(self, "_symbols", tuple(symbols))

    @property
    def symbols(self) -> tuple[tuple[int, str], ...]:
        """``(axis, name)`` for every symbolic dimension."""
        return self._symbols

    def describe(self) -> str:
        """Return a short human-readable type, e.g. ``array float32[*,*,*] cuda``."""
        parts: list[str] = [self.kind]
        if self.kind == "array":
            dims = "" if self.shape is None else "[" + ",".join(
                "*" if d in _ANY_DIMS else str(d) for d in self.shape) + "]"
            parts.append(f"{self.dtype or 'any'}{dims}")
            parts.append(self.device)
        if self.format:
            parts.append(f"format={self.format}")
        return " ".join(parts)

    def value_problem(self, value: Any) -> str | None:
        """Return why ``value`` does not fit this port, or ``None`` if it does.

        Symbolic dimensions are not checked here (they need the other ports of the operator; see
        :func:`bind_symbols`). Thread-safe; never copies or touches array data.
        """
        return self._check(value)  # type: ignore[no-any-return]

    def _make_check(self) -> Any:
        """Build the checker: a fast path for NumPy and CuPy arrays, else the full check.

        The fast path costs a few attribute reads for an array of the declared device, dtype,
        rank and fixed sizes; anything else (other array types, a mismatch to report) takes
        :meth:`_full_problem`. CuPy's ndarray type is learnt from the first CuPy value checked
        (so this module never imports CuPy).
        """
        full = self._full_problem
        if self.kind != "array":
            return full
        host_type = np.ndarray if self.device != "cuda" else None  # None: no type is it
        cuda_types = _CUDA_ARRAY_TYPES if self.device != "cpu" else frozenset()
        np_dtype, fixed = self._np_dtype, self._fixed
        ndim = None if self.shape is None else len(self.shape)

        def check(value: Any) -> str | None:
            t = type(value)
            if ((t is host_type or t in cuda_types)
                    and (np_dtype is None or value.dtype is np_dtype)
                    and (ndim is None or value.ndim == ndim)):
                return None
            return full(value)

        def check_fixed(value: Any) -> str | None:
            t = type(value)
            if ((t is host_type or t in cuda_types)
                    and (np_dtype is None or value.dtype is np_dtype)
                    and value.ndim == ndim):
                shape = value.shape
                for axis, size in fixed:
                    if shape[axis] != size:
                        return full(value)
                return None
            return full(value)

        return check_fixed if fixed else check

    def _full_problem(self, value: Any) -> str | None:
        kind = self.kind
        if kind == "array":
            return self._array_problem(value)
        if kind == "object":
            return None
        if kind == "path":
            if isinstance(value, str | bytes) or hasattr(value, "__fspath__"):
                return None
            return f"expected a file or folder path, got {type(value).__name__}"
        # stream: any iterable (list of datasets, generator...) or a folder path
        if isinstance(value, Iterable) or hasattr(value, "__fspath__"):
            return None
        return f"expected an iterable stream or a folder path, got {type(value).__name__}"

    def _array_problem(self, value: Any) -> str | None:
        if type(value) is np.ndarray:
            device = "cpu"
        else:
            found = device_of(value)
            if found is None:
                return f"expected an array, got {type(value).__name__}"
            device = found
            if type(value).__module__.startswith("cupy") and type(value).__name__ == "ndarray":
                _CUDA_ARRAY_TYPES.add(type(value))  # later values take the fast check
        if self.device != "any" and device != self.device:
            return f"expected an array on {self.device}, got one on {device}"
        np_dtype = self._np_dtype
        if np_dtype is not None:
            got = value.dtype
            if got is not np_dtype and got != np_dtype:
                return f"expected dtype {self.dtype}, got {got}"
        shape = self.shape
        if shape is not None:
            got_shape = value.shape
            if len(got_shape) != len(shape):
                return (f"expected {len(shape)}-d shape {_fmt_shape(shape)}, got "
                        f"{len(got_shape)}-d shape {tuple(got_shape)}")
            for axis, size in self._fixed:
                if got_shape[axis] != size:
                    return (f"expected shape {_fmt_shape(shape)}, got {tuple(got_shape)} "
                            f"(axis {axis} is {got_shape[axis]}, not {size})")
        return None


def connection_problem(src: PortSpec, dst: PortSpec) -> str | None:
    """Return why output ``src`` cannot feed input ``dst``, or ``None`` if it can.

    Rules: kinds equal (a ``stream`` may feed a ``path`` and the reverse, both being folders in
    Clara pipelines; ``object`` accepts anything); dtypes equal unless one is ``None``; ranks equal
    and fixed sizes equal unless either side is ``None``, a wildcard or a symbol; devices equal
    unless either is ``"any"``; formats equal unless either is ``None``.
    """
    folder_like = {"stream", "path"}
    if src.kind != dst.kind and dst.kind != "object" and not {src.kind, dst.kind} <= folder_like:
        return f"kind {src.kind} cannot feed kind {dst.kind}"
    if src.dtype and dst.dtype and src.dtype != dst.dtype:
        return f"dtype {src.dtype} cannot feed dtype {dst.dtype}"
    if src.shape is not None and dst.shape is not None:
        if len(src.shape) != len(dst.shape):
            return (f"shape {_fmt_shape(src.shape)} ({len(src.shape)}-d) cannot feed shape "
                    f"{_fmt_shape(dst.shape)} ({len(dst.shape)}-d)")
        for axis, (a, b) in enumerate(zip(src.shape, dst.shape, strict=True)):
            if isinstance(a, int) and isinstance(b, int) and -1 not in (a, b) and a != b:
                return (f"shape {_fmt_shape(src.shape)} cannot feed shape "
                        f"{_fmt_shape(dst.shape)} (axis {axis}: {a} vs {b})")
    if "any" not in (src.device, dst.device) and src.device != dst.device:
        return f"device {src.device} cannot feed device {dst.device}"
    if src.format and dst.format and src.format != dst.format:
        return f"format {src.format} cannot feed format {dst.format}"
    return None


def bind_symbols(ports: Iterable[tuple[PortSpec, Any]]) -> str | None:
    """Check that symbolic dimensions with the same name agree across an operator's values.

    Args:
        ports: ``(spec, value)`` pairs for the ports of one task that carry symbols.

    Returns:
        ``None`` if they agree, else a message naming the symbol, ports and sizes.
    """
    seen: dict[str, tuple[int, str]] = {}
    for spec, value in ports:
        if value is None or spec.kind != "array":
            continue
        for axis, name in spec.symbols:
            size = int(value.shape[axis])
            first = seen.setdefault(name, (size, spec.name))
            if first[0] != size:
                return (f"dimension '{name}' is {first[0]} on port '{first[1]}' but {size} on "
                        f"port '{spec.name}'")
    return None


@functools.lru_cache(maxsize=256)
def _dtype(spelling: Any) -> tuple[np.dtype[Any], str]:
    """Return the NumPy dtype and its canonical name (``dtype.name`` is slow, hence cached)."""
    np_dtype = np.dtype(spelling)
    return np_dtype, np_dtype.name


def _fmt_shape(shape: tuple[Dim, ...]) -> str:
    return "(" + ", ".join("*" if d in _ANY_DIMS else str(d) for d in shape) + ")"
