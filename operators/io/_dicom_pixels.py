"""Pixel data of a sorted series -> one preallocated volume, rescaled, in parallel.

:func:`read_volume` picks the output dtype before reading anything: ``int16`` when every slice's
RescaleSlope and RescaleIntercept are integers and pixels are at most 16 bits, else ``float32``.
For 16-bit pixels with an int16 output the stored bytes are read straight into their slice of the
output and rescaled in place (no other buffer); otherwise each worker reads into one scratch slice
and writes the rescaled values into the output. If a rescaled slice would not fit int16 (rare:
e.g. unsigned 16-bit data with a large intercept), the volume is converted to float32 at the end.

Native little-endian syntaxes are copied with ``readinto`` (the GIL is released during the read
and during the NumPy rescale); compressed syntaxes go through pydicom's pixel handlers, after
:func:`check_decodable` has made sure a plugin is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from clara_rt.operators.io._dicom_read import SUPPORTED_NATIVE, DicomSeriesError, SliceHeader

if TYPE_CHECKING:
    from clara_rt.operators.io.dicom_series import _Stack

__all__ = ["PLUGINS_HINT", "check_decodable", "raw_dtype", "read_slice", "read_volume"]

PLUGINS_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or clara-rt[dicom])"
_INT16 = np.iinfo(np.int16)
_CHUNK = 8  # slices per task: enough to amortise the pool, small enough to balance


def read_volume(stack: _Stack, pool: ThreadPoolExecutor, *, pinned: bool = False) -> np.ndarray:
    """Read every slice of ``stack`` into one ``(slices, rows, cols)`` array and rescale it.

    Raises:
        DicomSeriesError: Mixed pixel formats, colour images, an undecodable syntax, or a file
            that changed since its header was read.
    """
    headers = stack.headers
    raw = raw_dtype(headers[0])
    for h in headers:
        if raw_dtype(h) != raw:
            raise DicomSeriesError(f"{h.path}: stored as {raw_dtype(h)}, but {headers[0].path} "
                                   f"as {raw}; a series must use one pixel format")
    for syntax in sorted({h.transfer_syntax for h in headers}):
        check_decodable(syntax)
    slopes = [float(h.get("RescaleSlope", 1.0)) for h in headers]
    intercepts = [float(h.get("RescaleIntercept", 0.0)) for h in headers]
    integral = all(v.is_integer() for v in (*slopes, *intercepts)) and (
        raw.itemsize == 2 or (raw.itemsize == 1 and _fits(raw, slopes, intercepts)))
    shape = (len(headers), int(headers[0].get("Rows")), int(headers[0].get("Columns")))
    dtype = np.int16 if integral else np.float32
    if pinned:  # page-locked, so the single copy to the GPU is a full-speed DMA
        import cupyx

        volume = cupyx.empty_pinned(shape, dtype=dtype)
    else:
        volume = np.empty(shape, dtype=dtype)
    in_place = integral and raw.itemsize == 2
    chunks = [range(i, min(i + _CHUNK, len(headers))) for i in range(0, len(headers), _CHUNK)]

    def run(ks: range) -> list[int]:
        if in_place:
            return [k for k in ks if not _in_place(headers[k], volume[k], raw, slopes[k],
                                                   intercepts[k])]
        scratch = np.empty(shape[1:], dtype=raw)
        for k in ks:
            read_slice(headers[k], scratch)
            _rescale(scratch, volume[k], slopes[k], intercepts[k])
        return []

    overflow = [k for ks in pool.map(run, chunks) for k in ks]
    if overflow:
        volume = _to_float(volume, raw, overflow, slopes, intercepts)
    return volume


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
    if slope == 1.0:
        np.add(stored, np.int32(intercept), out=dst, casting="unsafe")
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
