"""Pixel data of a sorted series -> one preallocated volume, rescaled, in parallel.

:func:`read_volume` picks the output dtype before reading anything: ``int16`` when every slice's
RescaleSlope and RescaleIntercept are integers and pixels are at most 16 bits, else ``float32``.
For 16-bit pixels with an int16 output the stored bytes are read straight into their slice of the
output and rescaled in place (no other buffer); otherwise each worker reads into one scratch slice
and writes the rescaled values into the output. If a rescaled slice would not fit int16 (rare:
e.g. unsigned 16-bit data with a large intercept), the volume is converted to float32 at the end.

:func:`write_volume` does the same into a file (a NIfTI's data block) through one small buffer,
never holding the volume: what ``clara-rt convert`` uses.

Native little-endian syntaxes are copied with ``readinto`` (the GIL is released during the read
and during the NumPy rescale); compressed syntaxes go through pydicom's pixel handlers, after
:func:`check_decodable` has made sure a plugin is installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from clara_rt.operators.io._dicom_read import SUPPORTED_NATIVE, DicomSeriesError, SliceHeader

if TYPE_CHECKING:
    from clara_rt.operators.io.dicom_series import _Stack

__all__ = ["PLUGINS_HINT", "check_decodable", "raw_dtype", "read_slice", "read_volume",
           "write_volume"]

PLUGINS_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or clara-rt[dicom])"
_INT16 = np.iinfo(np.int16)
_CHUNK = 8  # slices per task: enough to amortise the pool, small enough to balance


def read_volume(stack: _Stack, pool: ThreadPoolExecutor, *, pinned: bool = False) -> np.ndarray:
    """Read every slice of ``stack`` into one ``(slices, rows, cols)`` array and rescale it.

    Raises:
        DicomSeriesError: Mixed pixel formats, colour images, an undecodable syntax, or a file
            that changed since its header was read.
    """
    plan = _Plan(stack)
    if pinned:  # page-locked, so the single copy to the GPU is a full-speed DMA
        import cupyx

        volume = cupyx.empty_pinned(plan.shape, dtype=plan.dtype)
    else:
        volume = np.empty(plan.shape, dtype=plan.dtype)

    def run(ks: range) -> list[int]:
        scratch = None if plan.in_place else np.empty(plan.shape[1:], dtype=plan.raw)
        return [k for k in ks if not plan.fill(k, volume[k], scratch)]

    overflow = [k for ks in pool.map(run, plan.chunks()) for k in ks]
    if overflow:
        volume = _to_float(volume, plan.raw, overflow, plan.slopes, plan.intercepts)
    return volume


def write_volume(stack: _Stack, fd: int, offset: int) -> str | None:
    """Write what :func:`read_volume` returns, little-endian, into file ``fd`` at ``offset``.

    Slices are read a few at a time into one small buffer, rescaled there and written in order:
    the volume is never held in memory, so converting a series costs no volume-sized
    allocation (and its page faults) and no second pass over it. One thread: writers of one file
    contend on its inode lock (two threads measured three times the CPU time of one).

    Returns:
        The dtype written (``"int16"`` or ``"float32"``), or ``None`` when a slice does not fit
        int16 after all (then :func:`read_volume` must be used: it converts to float32).

    Raises:
        DicomSeriesError: As :func:`read_volume`; OSError: the write failed.
    """
    plan = _Plan(stack)
    buffer = np.empty((_CHUNK, *plan.shape[1:]), dtype=plan.dtype)
    scratch = None if plan.in_place else np.empty(plan.shape[1:], dtype=plan.raw)
    os.lseek(fd, offset, os.SEEK_SET)
    for ks in plan.chunks():
        out = buffer[:len(ks)]
        if not all(plan.fill(k, out[i], scratch) for i, k in enumerate(ks)):
            return None
        if sys.byteorder != "little":
            out = out.astype(out.dtype.newbyteorder("<"))
        _write_all(fd, memoryview(out).cast("B"))
    return str(plan.dtype)


def check_decodable(transfer_syntax: str) -> None:
    """Raise :class:`DicomSeriesError` unless pydicom can decode ``transfer_syntax`` here.

    The message names the syntax (name and UID), the missing plugins and :data:`PLUGINS_HINT`.
    """
    if transfer_syntax in SUPPORTED_NATIVE:
        return
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    uid = UID(transfer_syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise DicomSeriesError(f"transfer syntax '{uid.name}' ({uid}) is not supported: pydicom "
                               "has no pixel decoder for it") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise DicomSeriesError(f"cannot decode transfer syntax '{uid.name}' ({uid}): no pixel "
                               f"data plugin for it is installed ({missing}); {PLUGINS_HINT}")


def raw_dtype(header: SliceHeader) -> np.dtype[Any]:
    """Return the stored-pixel dtype (``<u2``, ``<i2``...) from BitsAllocated/PixelRepresentation.

    Raises:
        DicomSeriesError: Colour, 1-bit or 64-bit pixels (not a grey-scale volume).
    """
    bits, signed = header.get("BitsAllocated", 16), header.get("PixelRepresentation", 0) == 1
    samples = header.get("SamplesPerPixel", 1)
    if samples != 1 or bits not in (8, 16, 32):
        raise DicomSeriesError(f"{header.path}: {samples} sample(s) per pixel of {bits} bits "
                               "allocated; only grey-scale 8, 16 or 32-bit images can be stacked")
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def read_slice(header: SliceHeader, out: np.ndarray) -> None:
    """Fill ``out`` (one ``rows x cols`` slice, C-contiguous, dtype :func:`raw_dtype`).

    Native syntaxes read the bytes into ``out`` directly; others decode with pydicom. Signed
    values stored in fewer bits than allocated are sign-extended.

    Raises:
        DicomSeriesError: The file changed since its header was read, or its pixels do not
            decode (the message names the file).
    """
    if header.pixel_offset is not None:
        with open(header.path, "rb", buffering=0) as f:
            f.seek(header.pixel_offset)
            got = f.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]
        if got != out.nbytes:
            raise DicomSeriesError(f"{header.path}: pixel data ends after {got} of "
                                   f"{out.nbytes} bytes (file truncated while loading?)")
    else:
        out[...] = _decode(header, out.shape)
    bits, stored = header.get("BitsAllocated", 16), header.get("BitsStored", 16)
    if out.dtype.kind == "i" and stored < bits:
        shift = bits - stored
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)


# --- private ------------------------------------------------------------------------------


class _Plan:
    """How the slices of one stack are read: stored and output dtypes, rescale per slice."""

    def __init__(self, stack: _Stack) -> None:
        headers = self.headers = stack.headers
        raw = self.raw = raw_dtype(headers[0])
        for h in headers:
            if raw_dtype(h) != raw:
                raise DicomSeriesError(f"{h.path}: stored as {raw_dtype(h)}, but "
                                       f"{headers[0].path} as {raw}; a series must use one "
                                       "pixel format")
        for syntax in sorted({h.transfer_syntax for h in headers}):
            check_decodable(syntax)
        self.slopes = [float(h.get("RescaleSlope", 1.0)) for h in headers]
        self.intercepts = [float(h.get("RescaleIntercept", 0.0)) for h in headers]
        integral = all(v.is_integer() for v in (*self.slopes, *self.intercepts)) and (
            raw.itemsize == 2 or (raw.itemsize == 1 and _fits(raw, self.slopes,
                                                              self.intercepts)))
        self.shape = (len(headers), int(headers[0].get("Rows")),
                      int(headers[0].get("Columns")))
        self.dtype: np.dtype[Any] = np.dtype(np.int16 if integral else np.float32)
        self.in_place = integral and raw.itemsize == 2

    def chunks(self) -> list[range]:
        n = self.shape[0]
        return [range(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]

    def fill(self, k: int, dst: np.ndarray, scratch: np.ndarray | None) -> bool:
        """Read slice ``k`` into ``dst``, rescaled; False (stored values left) if not int16."""
        if self.in_place:
            return _in_place(self.headers[k], dst, self.raw, self.slopes[k], self.intercepts[k])
        assert scratch is not None
        read_slice(self.headers[k], scratch)
        _rescale(scratch, dst, self.slopes[k], self.intercepts[k])
        return True


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _in_place(header: SliceHeader, dst: np.ndarray, raw: np.dtype[Any], slope: float,
              intercept: float) -> bool:
    """Read one 16-bit slice into ``dst`` (int16) and rescale it there; False if it can't fit."""
    stored = dst.view(raw)
    read_slice(header, stored)
    if raw.kind == "i" and slope == 1.0 and intercept == 0.0:
        return True
    ends = (float(stored.min()) * slope + intercept, float(stored.max()) * slope + intercept)
    if min(ends) < _INT16.min or max(ends) > _INT16.max:
        return False  # left as stored values; converted to float32 by the caller
    if slope == 1.0:  # 16-bit wrap-around is exact here: the result fits int16 (checked above)
        shift = (int(intercept) + 32768) % 65536 - 32768
        if shift:
            np.add(dst, np.int16(shift), out=dst)
    else:
        wide = stored.astype(np.int32)
        wide *= np.int32(slope)
        wide += np.int32(intercept)
        dst[...] = wide
    return True


def _rescale(stored: np.ndarray, dst: np.ndarray, slope: float, intercept: float) -> None:
    if dst.dtype == np.float32:
        np.multiply(stored, np.float32(slope), out=dst, casting="unsafe")
        dst += np.float32(intercept)
        return
    wide = stored.astype(np.int32)  # 8-bit stored values; _fits checked the range
    wide *= np.int32(slope)
    wide += np.int32(intercept)
    dst[...] = wide


def _fits(raw: np.dtype[Any], slopes: list[float], intercepts: list[float]) -> bool:
    """Whether every 8-bit stored value, rescaled, fits int16."""
    info = np.iinfo(raw)
    ends = [v * s + b for s, b in zip(slopes, intercepts, strict=True) for v in (info.min,
                                                                                   info.max)]
    return _INT16.min <= min(ends) and max(ends) <= _INT16.max


def _to_float(volume: np.ndarray, raw: np.dtype[Any], overflow: Sequence[int],
              slopes: list[float], intercepts: list[float]) -> np.ndarray:
    """Convert an int16 volume to float32; slices in ``overflow`` still hold stored values."""
    out = volume.astype(np.float32)
    for k in overflow:
        _rescale(volume[k].view(raw), out[k], slopes[k], intercepts[k])
    return out


def _decode(header: SliceHeader, shape: tuple[int, ...]) -> np.ndarray:
    import pydicom
    from pydicom.pixels import pixel_array

    try:
        if header.frame is None:
            pixels = np.asarray(pydicom.dcmread(header.path).pixel_array)
        else:  # one frame of a multi-frame file, decoded alone
            pixels = np.asarray(pixel_array(header.path, index=header.frame))
    except Exception as exc:  # pydicom and its plugins raise many types on bad data
        raise DicomSeriesError(f"{header.path}: cannot decode its pixel data "
                               f"({type(exc).__name__}: {exc})") from exc
    if pixels.shape != shape:
        raise DicomSeriesError(f"{header.path}: decoded pixels have shape {pixels.shape}, "
                               f"expected {shape}")
    return pixels
