"""Read the header of a DICOM file fast: the tags the series loader needs, and where its pixels are.

:func:`read_header` reads the first 16 KiB of a file and walks its data elements with
``struct`` (Explicit or Implicit VR Little Endian, which covers uncompressed and every
encapsulated syntax), keeping the ~25 tags the loader needs and the byte offset of Pixel Data.
That is several times cheaper than ``pydicom.dcmread(stop_before_pixels=True,
specific_tags=...)`` (about 85 us against 380 us per CT slice), which is what it falls back to
for the syntaxes it does not walk (Big Endian, Deflated). A header longer than the first chunk
(an Enhanced CT's functional groups) is read in doubling chunks up to its Pixel Data, never the
pixels themselves. Nested sequences are skipped, defined or undefined length.

Thread-safety: every function works on its own file; call them from worker threads.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from clara_rt import ClaraRTError

if TYPE_CHECKING:
    import logging

__all__ = ["SUPPORTED_NATIVE", "DicomSeriesError", "NoSeriesError", "SliceHeader", "list_files",
           "logger", "quiet_logger", "read_header", "reader_threads"]



class _Logger:
    """``logging.getLogger("clara_rt.dicom")``, with ``logging`` imported on first use.

    Importing ``logging`` costs about 5 ms, a twentieth of ``clara-rt convert``'s whole run on a
    CT series, and the common case logs nothing. Every attribute is the real logger's.
    """

    __slots__ = ()
    quiet = False  # see quiet_logger()

    def __getattr__(self, name: str) -> Any:
        import logging

        real = logging.getLogger("clara_rt.dicom")
        if _Logger.quiet and not real.handlers:
            real.addHandler(logging.NullHandler())
        return getattr(real, name)


logger = cast("logging.Logger", _Logger())
"""The ``clara_rt.dicom`` logger (skipped files, geometry warnings)."""


def quiet_logger() -> None:
    """Keep :data:`logger`'s records off stderr when nothing else handles them.

    For a caller that reports the warnings itself (``clara-rt convert`` prints
    ``VolumeMeta.warnings``): the logger gets a ``NullHandler`` when first used, so Python's
    last-resort handler does not print them a second time; ``logging`` is not imported now.
    """
    _Logger.quiet = True

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
SUPPORTED_NATIVE = frozenset({IMPLICIT_LE, EXPLICIT_LE})
"""Syntaxes whose pixel bytes are copied as they are (little-endian, uncompressed)."""
_NOT_IMAGES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4"})  # Segmentation: labels, not an image
_FIRST_CHUNK = 16384
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAG_U32 = struct.Struct("<HHI").unpack_from  # compiled once: the scanner calls these ~35
_TAG_VR_U16 = struct.Struct("<HH2sH").unpack_from  # times per file
_U32 = struct.Struct("<I").unpack_from
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TAGS: dict[int, tuple[str, str]] = {
    0x00080005: ("SpecificCharacterSet", "CS"), 0x00080016: ("SOPClassUID", "UI"),
    0x00080018: ("SOPInstanceUID", "UI"), 0x00080020: ("StudyDate", "DA"),
    0x00080060: ("Modality", "CS"), 0x0008103E: ("SeriesDescription", "LO"),
    0x00100010: ("PatientName", "PN"), 0x00100020: ("PatientID", "LO"),
    0x00180050: ("SliceThickness", "DS"), 0x00180088: ("SpacingBetweenSlices", "DS"),
    0x0020000D: ("StudyInstanceUID", "UI"), 0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"), 0x00200037: ("ImageOrientationPatient", "DS"),
    0x00200052: ("FrameOfReferenceUID", "UI"), 0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"), 0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"), 0x00280011: ("Columns", "US"), 0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"), 0x00280101: ("BitsStored", "US"),
    0x00280103: ("PixelRepresentation", "US"), 0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
}
_KEYWORDS = [keyword for keyword, _ in _TAGS.values()]
_CODECS = {  # SpecificCharacterSet with one term -> Python codec (pydicom's table), no pydicom
    "": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 101": "iso8859-2",
    "ISO_IR 109": "iso8859-3", "ISO_IR 110": "iso8859-4", "ISO_IR 144": "iso8859-5",
    "ISO_IR 127": "iso8859-6", "ISO_IR 126": "iso8859-7", "ISO_IR 138": "iso8859-8",
    "ISO_IR 148": "iso8859-9", "ISO_IR 203": "iso8859-15", "ISO_IR 166": "tis-620",
    "ISO_IR 192": "utf-8", "GB18030": "gb18030", "GBK": "gbk"}


class DicomSeriesError(ClaraRTError):
    """A DICOM series cannot be loaded as a volume.

    Raised by :func:`~clara_rt.operators.io.dicom_series.load_series` when the selected series
    cannot be stacked (colour, inconsistent pixel format, multi-frame files with mixed
    orientations or several stacks), when its transfer syntax
    cannot be decoded (the message names the syntax and the package to install), or when a file
    cannot be decoded (the message names it). :class:`NoSeriesError` is the case of a folder
    with nothing to load.
    """


class NoSeriesError(DicomSeriesError):
    """The folder holds no DICOM image series, or none that matches the selection rules.

    The message names the folder and lists every series found (UID, modality, description,
    file count); loosen the rules or point at another folder.
    """


class _Truncated(Exception):
    """The scanner ran past the bytes it was given."""


class SliceHeader:
    """What the loader needs from one image file (plain values; ``tags`` by keyword).

    A plain class, not a dataclass: ``dataclasses`` (and the ``inspect`` it imports) would cost
    ``clara-rt convert``'s fast path about 6 ms of its start-up.
    """

    __slots__ = ("frame", "path", "pixel_length", "pixel_offset", "tags", "transfer_syntax")

    path: str
    transfer_syntax: str
    tags: dict[str, Any]
    pixel_offset: int | None
    """Absolute file offset of the Pixel Data value (``None``: decode through pydicom)."""
    pixel_length: int
    frame: int | None
    """Index of this frame in a multi-frame file (``None``: the file's only image)."""

    def __init__(self, path: str, transfer_syntax: str, tags: dict[str, Any],
                 pixel_offset: int | None, pixel_length: int, frame: int | None = None) -> None:
        self.path, self.transfer_syntax, self.tags = path, transfer_syntax, tags
        self.pixel_offset, self.pixel_length, self.frame = pixel_offset, pixel_length, frame

    def _fields(self) -> tuple[Any, ...]:
        return (self.path, self.transfer_syntax, self.tags, self.pixel_offset,
                self.pixel_length, self.frame)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as a dataclass)

    def __repr__(self) -> str:
        return (f"SliceHeader(path={self.path!r}, transfer_syntax={self.transfer_syntax!r}, "
                f"tags={self.tags!r}, pixel_offset={self.pixel_offset!r}, "
                f"pixel_length={self.pixel_length!r}, frame={self.frame!r})")

    def get(self, keyword: str, default: Any = None) -> Any:
        """Return the value of ``keyword`` (``"Rows"``...) or ``default``."""
        value = self.tags.get(keyword)
        return default if value is None or value == "" else value


def read_header(path: str) -> tuple[SliceHeader | None, str | None]:
    """Read the tags the loader needs from one file.

    Returns:
        ``(header, None)`` for an image; ``(None, None)`` for a file to skip silently (not
        DICOM, DICOMDIR, no pixel data, a segmentation); ``(None, warning)`` for a damaged file.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            buf = f.read(_FIRST_CHUNK)
            if len(buf) < 132 or buf[128:132] != b"DICM":
                logger.debug("skipped %s: not a DICOM Part 10 file", path)
                return None, None
            size = os.fstat(f.fileno()).st_size
            while True:  # a longer header (functional groups): read twice as much, up to Pixel Data
                try:
                    header = _scan(path, buf)
                    if header.pixel_length >= 0 or len(buf) >= size:
                        break
                except (_Truncated, struct.error, ValueError):
                    if len(buf) >= size:
                        raise
                buf += f.read(len(buf))
    except _Fallback:
        try:
            header = _pydicom_header(path)
        except Exception as exc:  # pydicom raises many types on damaged input
            return None, _damaged(path, exc)
    except Exception as exc:  # whatever a damaged file makes the parser raise: skip it, warn
        return None, _damaged(path, exc)
    return _check(header, size)


def _damaged(path: str, exc: BaseException) -> str:
    return f"skipped {path}: unreadable or damaged DICOM file ({type(exc).__name__}: {exc})"


# --- private: the scanner -----------------------------------------------------------------


class _Fallback(Exception):
    """This file needs pydicom's parser (syntax the scanner does not walk)."""


def _scan(path: str, buf: bytes) -> SliceHeader:
    syntax, pos = _file_meta(buf)
    if pos == 132:
        raise ValueError("no file meta information (group 0002) after the DICM prefix")
    if syntax == IMPLICIT_LE:
        implicit = True
    elif syntax.startswith("1.2.840.10008.1.2.") and syntax not in (
            "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        implicit = False  # explicit VR little endian, and every encapsulated syntax
    else:
        raise _Fallback  # big endian, deflated, private: let pydicom parse it
    if not implicit and not buf[pos + 4:pos + 6].isalpha():
        implicit = True  # labelled explicit but written implicit (pydicom reads these too)
    raw: dict[int, bytes] = {}
    pixel_offset = pixel_length = -1
    for tag, _, value_pos, length in _elements(buf, pos, implicit):
        if tag == _PIXEL_DATA:
            pixel_offset, pixel_length = value_pos, length
        elif tag in _TAGS and length != _UNDEFINED:
            raw[tag] = buf[value_pos:value_pos + length]
    tags = _decode_tags(raw)
    if pixel_offset < 0:
        return SliceHeader(path, syntax, tags, None, -1)
    native = syntax in SUPPORTED_NATIVE and pixel_length != _UNDEFINED
    return SliceHeader(path, syntax, tags, pixel_offset if native else None, pixel_length)


def _file_meta(buf: bytes) -> tuple[str, int]:
    """Return the transfer syntax and the offset where the dataset starts (after group 0002)."""
    pos, syntax = 132, ""
    while True:
        tag, _, value_pos, length = _element_at(buf, pos, False)
        if tag >> 16 != 2:
            return syntax, pos
        if tag == 0x00020010:
            syntax = buf[value_pos:value_pos + length].decode("ascii", "replace").strip("\0 ")
        pos = value_pos + length


def _elements(buf: bytes, pos: int, implicit: bool) -> Iterator[tuple[int, bytes, int, int]]:
    """Yield ``(tag, vr, value offset, length)`` of a dataset, skipping nested sequences.

    Stops after Pixel Data or at the end of ``buf``; raises :class:`_Truncated` when an element
    runs past ``buf``.
    """
    end = len(buf)
    while pos < end:
        tag, vr, pos, length = _element_at(buf, pos, implicit)
        yield tag, vr, pos, length
        if tag == _PIXEL_DATA:
            return
        pos = _skip_sequence(buf, pos, implicit or vr == b"UN") if length == _UNDEFINED else (
            pos + length)
        if pos > end:
            raise _Truncated(f"element {tag:08X} runs past byte {end}")


def _element_at(buf: bytes, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
    """Return ``(tag, vr, value offset, length)`` of the element header at ``pos``."""
    if pos + 8 > len(buf):
        raise _Truncated(f"element header at byte {pos} cut off")
    if implicit:
        group, elem, length = _TAG_U32(buf, pos)
        return group << 16 | elem, b"", pos + 8, length
    group, elem, vr, length = _TAG_VR_U16(buf, pos)
    if group == 0xFFFE:  # item and delimiters: no VR, 32-bit length
        return group << 16 | elem, b"", pos + 8, _U32(buf, pos + 4)[0]
    if vr in _LONG_VRS:
        return group << 16 | elem, vr, pos + 12, _U32(buf, pos + 8)[0]
    return group << 16 | elem, vr, pos + 8, length


def _skip_sequence(buf: bytes, pos: int, implicit: bool) -> int:
    """Return the offset after the undefined-length sequence whose items start at ``pos``."""
    while True:
        tag, _, pos, length = _element_at(buf, pos, True)
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise ValueError(f"expected a sequence item at byte {pos - 8}, found {tag:08X}")
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an undefined-length item: walk its elements up to the item delimiter
            tag, vr, pos, length = _element_at(buf, pos, implicit)
            if tag == _ITEM_END:
                break
            pos = _skip_sequence(buf, pos, implicit or vr == b"UN") if (
                length == _UNDEFINED) else pos + length


def _decode_tags(raw: dict[int, bytes]) -> dict[str, Any]:
    charset = raw.get(0x00080005, b"").decode("ascii", "replace").strip("\0 ")
    tags: dict[str, Any] = {}
    for tag, value in raw.items():
        keyword, vr = _TAGS[tag]
        decoded = _value(value, vr, charset)
        if decoded is not None and decoded != "":
            tags[keyword] = decoded
    return tags


def _value(value: bytes, vr: str, charset: str) -> Any:
    if vr == "US":
        return struct.unpack_from("<H", value)[0] if len(value) >= 2 else None
    codec = _CODECS.get(charset)
    if vr in ("LO", "PN", "SH") and codec is None:  # ISO 2022 code extensions: pydicom's job
        from pydicom.charset import convert_encodings, decode_bytes

        text = decode_bytes(value, convert_encodings(charset.split("\\")), {0x5E, 0x3D})
    else:
        text = value.decode(codec or "latin-1", "replace")
    text = text.strip("\0 ")
    if vr == "DS":
        parts = [float(p) for p in text.split("\\") if p.strip()]
        return parts[0] if len(parts) == 1 else parts or None
    if vr == "IS":
        return int(float(text)) if text.strip() else None
    return [p.strip("\0 ") for p in text.split("\\")] if "\\" in text else text


# --- private: pydicom paths ---------------------------------------------------------------


def _pydicom_header(path: str) -> SliceHeader:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[*_KEYWORDS, "PixelData"])
    tags = {k: _plain(ds.get(k)) for k in _KEYWORDS if ds.get(k) not in (None, "")}
    syntax = str(ds.file_meta.get("TransferSyntaxUID", IMPLICIT_LE))
    has_pixels = "Rows" in ds and "Columns" in ds
    return SliceHeader(path, syntax, tags, None, 0 if has_pixels else -1)


def _plain(value: Any) -> Any:
    """Turn a pydicom value into what the scanner returns: float, int, str or a list of them."""
    if isinstance(value, float | int):  # DSfloat, IS and US are subclasses
        return float(value) if isinstance(value, float) else int(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]  # MultiValue
    return str(value)  # UID, PersonName, CS...


def _check(header: SliceHeader, size: int) -> tuple[SliceHeader | None, str | None]:
    """Sort a parsed header into image / skip / damaged (see :func:`read_header`)."""
    if header.pixel_length < 0 or header.get("SOPClassUID") in _NOT_IMAGES:
        logger.debug("skipped %s: not an image (no pixel data)", header.path)
        return None, None
    problem = _problem(header, size)
    return (None, f"skipped {header.path}: {problem}") if problem else (header, None)


def _problem(header: SliceHeader, size: int) -> str | None:
    """Return why an image header cannot be used (missing or malformed tags, truncation)."""
    missing = [k for k in ("SeriesInstanceUID", "Rows", "Columns") if header.get(k) is None]
    if missing:
        return f"image without {', '.join(missing)}"
    ipp, iop = header.get("ImagePositionPatient"), header.get("ImageOrientationPatient")
    if (ipp is not None and not _numbers(ipp, 3)) or (iop is not None and not _numbers(iop, 6)):
        return f"malformed ImagePositionPatient {ipp!r} or ImageOrientationPatient {iop!r}"
    for keyword in ("RescaleSlope", "RescaleIntercept", "BitsAllocated", "NumberOfFrames"):
        if not isinstance(header.get(keyword, 1), int | float):
            return f"malformed {keyword} {header.get(keyword)!r}"
    if header.pixel_offset is None:
        return None
    samples = header.get("SamplesPerPixel", 1)
    need = header.get("Rows") * header.get("Columns") * samples * header.get(
        "NumberOfFrames", 1) * (header.get("BitsAllocated", 16) // 8)
    end = header.pixel_offset + header.pixel_length
    if end > size or (header.pixel_length < need and samples == 1):
        held = max(min(size, end) - header.pixel_offset, 0)
        return f"truncated file (pixel data needs {need} bytes, file holds {held})"
    return None


def _numbers(value: Any, count: int) -> bool:
    """Whether ``value`` is ``count`` numbers (and, for 6, two non-parallel direction cosines)."""
    if not (isinstance(value, list) and len(value) == count
            and all(isinstance(v, int | float) for v in value)):
        return False
    if count != 6:
        return True
    a, b, c, x, y, z = value
    normal = (b * z - c * y, c * x - a * z, a * y - b * x)
    return sum(n * n for n in normal) > 0.25  # unit, perpendicular cosines give 1


def list_files(folder: Path) -> list[str]:
    """Return every regular file under ``folder`` (recursively), sorted for reproducibility."""
    found: list[str] = []
    for root, _dirs, names in os.walk(folder):
        found.extend(os.path.join(root, n) for n in names)
    found.sort()
    return found


def reader_threads() -> int:
    """Threads for reading a series' headers: the usable CPUs, at most 8 (the header walk holds
    the GIL, so more threads only contend)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(8, cpus)
