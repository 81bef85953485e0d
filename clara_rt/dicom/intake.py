"""Check a received C-STORE data set before the adapter answers Success.

:func:`check_dataset` walks the encoded data set element by element (Explicit or Implicit VR,
little or big endian, deflated) and refuses it unless:

* every element header is whole, every explicit VR is a DICOM VR, every defined length stays
  inside its parent (data set, sequence item or the whole buffer) and every undefined-length
  sequence, item and encapsulated Pixel Data ends with its delimiter before the data ends;
* the walk ends exactly at the last byte (no trailing garbage);
* Pixel Data (also Float and Double Float Pixel Data) holds at least the bytes its header
  declares: ``Rows x Columns x SamplesPerPixel x NumberOfFrames x BitsAllocated / 8``, or, when
  encapsulated, a Basic Offset Table item followed by at least one fragment per frame.

The walk reads no value except the few pixel-describing ones; it costs a few microseconds per
element and no copy of the pixel data. Nesting deeper than :data:`MAX_DEPTH` is refused.
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "DatasetFacts", "DatasetProblem", "check_dataset"]

MAX_DEPTH = 32
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_TAGS = {0x7FE00010: 0, 0x7FE00008: 32, 0x7FE00009: 64}  # bits per sample fixed or not
_TEXT = {0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID", 0x00080060: "Modality",
         0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID",
         0x00280004: "PhotometricInterpretation"}
_DESCRIBE = {0x00280002: "SamplesPerPixel", 0x00280008: "NumberOfFrames", 0x00280010: "Rows",
             0x00280011: "Columns", 0x00280100: "BitsAllocated"}
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_VRS = _LONG_VRS | frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL",
                              b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM",
                              b"UI", b"UL", b"US"})
_CHARSET = re.compile(rb"^[\x20-\x7e]*\0*$")  # printable: a NUL inside makes pydicom raise
_SIZES = {b"US": 2, b"SS": 2, b"UL": 4, b"SL": 4, b"FL": 4, b"AT": 4, b"FD": 8, b"SV": 8,
          b"UV": 8}  # numeric VRs: pydicom refuses a value that is not a whole number of them
_IMPLICIT, _BIG_ENDIAN, _DEFLATED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
                                     "1.2.840.10008.1.2.1.99")


class DatasetProblem(ValueError):
    """The data set is malformed; the message says what and where (byte offset).

    ``pixels`` is ``True`` when the structure is sound but Pixel Data does not hold what the
    header declares (the adapter answers 0xA900 then, 0xC210 otherwise).
    """

    def __init__(self, message: str, *, pixels: bool = False) -> None:
        super().__init__(message)
        self.pixels = pixels


@dataclass
class DatasetFacts:
    """What the top level of a data set says: its UIDs, modality and pixels.

    ``text`` holds SOPClassUID, SOPInstanceUID, StudyInstanceUID, SeriesInstanceUID, Modality
    and PhotometricInterpretation as sent (Latin-1, padding stripped); ``values`` the integers
    that size Pixel Data; ``pixel_tag`` is ``None`` without pixels.
    """

    text: dict[str, str] = field(default_factory=dict)
    values: dict[str, int] = field(default_factory=dict)
    pixel_tag: int | None = None
    pixel_length: int = 0
    fragments: int = 0


def check_dataset(data: bytes, transfer_syntax: str) -> DatasetFacts:
    """Raise :class:`DatasetProblem` unless ``data`` is a whole, well-formed data set.

    Args:
        data: The encoded data set, without file meta information.
        transfer_syntax: The UID it is encoded in (the presentation context's).

    Returns:
        The UIDs, modality and pixel-describing values found at the top level.
    """
    if transfer_syntax == _DEFLATED:
        try:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflater.decompress(data) + inflater.flush()
        except zlib.error as exc:
            raise DatasetProblem(f"deflated data set does not inflate: {exc}") from None
    walker = _Walker(data, implicit=transfer_syntax == _IMPLICIT,
                     little=transfer_syntax != _BIG_ENDIAN)
    facts = DatasetFacts()
    walker.dataset(0, len(data), 0, facts)
    _check_pixels(facts)
    return facts


class _Walker:
    def __init__(self, buf: bytes, *, implicit: bool, little: bool) -> None:
        self.buf, self.implicit = buf, implicit
        self.u16, self.u32 = ("<H", "<I") if little else (">H", ">I")
        self.tag_format = "<HH" if little else ">HH"

    def implicit_twin(self) -> _Walker:
        return _Walker(self.buf, implicit=True, little=True)

    def header(self, pos: int, end: int) -> tuple[int, bytes, int, int]:
        """``(tag, vr, value offset, length)`` of the element at ``pos``."""
        if pos + 8 > end:
            raise DatasetProblem(f"element header at byte {pos} is cut off at byte {end}")
        group, elem = struct.unpack_from(self.tag_format, self.buf, pos)
        tag = group << 16 | elem
        if self.implicit or group == 0xFFFE:
            return tag, b"", pos + 8, struct.unpack_from(self.u32, self.buf, pos + 4)[0]
        vr = self.buf[pos + 4:pos + 6]
        if vr not in _VRS:
            raise DatasetProblem(f"element ({group:04X},{elem:04X}) at byte {pos} has no valid "
                                 f"VR ({vr!r})")
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise DatasetProblem(f"element header at byte {pos} is cut off at byte {end}")
            return tag, vr, pos + 12, struct.unpack_from(self.u32, self.buf, pos + 8)[0]
        return tag, vr, pos + 8, struct.unpack_from(self.u16, self.buf, pos + 6)[0]

    def dataset(self, pos: int, end: int, depth: int, facts: DatasetFacts | None,
                stop_at_item_end: bool = False) -> int:
        """Walk elements from ``pos`` to ``end`` (or an item delimiter); return where it ended."""
        if depth > MAX_DEPTH:
            raise DatasetProblem(f"sequences nested deeper than {MAX_DEPTH} levels")
        creators: dict[tuple[int, int], str] = {}  # private creators of this data set
        while pos < end:
            start = pos
            tag, vr, pos, length = self.header(pos, end)
            if tag == _ITEM_END and stop_at_item_end:
                return pos
            where = f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {start}"
            if tag >> 16 == 0xFFFE:
                raise DatasetProblem(f"{where}: item or delimiter outside a sequence")
            if length == _UNDEFINED:
                if facts is not None and tag in _PIXEL_TAGS:
                    pos = self.encapsulated(pos, end, tag, facts)
                elif vr in (b"", b"SQ", b"UN"):  # UN of undefined length: implicit VR inside
                    walker = self.implicit_twin() if vr == b"UN" else self
                    pos = walker.sequence(pos, end, depth, where)
                else:
                    raise DatasetProblem(f"{where}: undefined length on VR {vr.decode('latin-1')}")
                continue
            if pos + length > end:
                raise DatasetProblem(f"{where} declares {length} bytes, only {end - pos} follow")
            if facts is not None:
                self.note(tag, vr, pos, length, facts)
            self.value(tag, vr, pos, length, depth, where, creators)
            pos += length
        if stop_at_item_end:
            raise DatasetProblem(f"item ending at byte {end} has no item delimiter")
        return pos

    def value(self, tag: int, vr: bytes, pos: int, length: int, depth: int, where: str,
              creators: dict[tuple[int, int], str]) -> None:
        """Check a defined-length value as pydicom will read it (the VR it will use)."""
        group, elem = tag >> 16, tag & 0xFFFF
        if group % 2 and 0x10 <= elem <= 0xFF:
            creators[group, elem] = self.buf[pos:pos + length].decode("latin-1").strip("\0 ")
        if tag == 0x00080005 and not _CHARSET.match(self.buf[pos:pos + length]):
            raise DatasetProblem(f"{where}: SpecificCharacterSet "
                                 f"{self.buf[pos:pos + length]!r} is not a CS value")
        kind = _read_vr(tag, creators) if self.implicit or vr == b"UN" else vr
        size = _SIZES.get(kind)
        if size and length % size:
            raise DatasetProblem(f"{where}: {length} bytes are no whole number of "
                                 f"{kind.decode()} values")
        if kind == b"SQ":  # pydicom reads an explicit UN sequence as implicit VR
            walker = self.implicit_twin() if vr == b"UN" else self
            walker.items(pos, pos + length, depth, where)

    def note(self, tag: int, vr: bytes, pos: int, length: int, facts: DatasetFacts) -> None:
        if tag in _PIXEL_TAGS:
            facts.pixel_tag, facts.pixel_length = tag, length
        elif tag in _TEXT:
            text = self.buf[pos:pos + length].decode("latin-1").strip("\0 ")
            facts.text[_TEXT[tag]] = text
        elif tag in _DESCRIBE:
            raw = self.buf[pos:pos + length]
            if tag == 0x00280008:  # NumberOfFrames is IS (text)
                text = raw.decode("latin-1").strip("\0 ")
                value = int(text) if text.isdigit() else -1
            else:
                value = struct.unpack_from(self.u16, raw)[0] if length >= 2 else -1
            facts.values[_DESCRIBE[tag]] = value

    def sequence(self, pos: int, end: int, depth: int, where: str) -> int:
        """Walk the items of an undefined-length sequence; return the offset after it."""
        while True:
            tag, _, pos, length = self.header(pos, end)
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise DatasetProblem(f"{where}: expected an item at byte {pos - 8}")
            pos = self.item(pos, end, length, depth, where)

    def items(self, pos: int, end: int, depth: int, where: str) -> None:
        """Walk the items of a defined-length sequence filling ``pos..end`` exactly."""
        while pos < end:
            tag, _, pos, length = self.header(pos, end)
            if tag != _ITEM:
                raise DatasetProblem(f"{where}: expected an item at byte {pos - 8}")
            pos = self.item(pos, end, length, depth, where)

    def item(self, pos: int, end: int, length: int, depth: int, where: str) -> int:
        if length == _UNDEFINED:
            return self.dataset(pos, end, depth + 1, None, stop_at_item_end=True)
        if pos + length > end:
            raise DatasetProblem(f"{where}: item at byte {pos - 8} declares {length} bytes, "
                                 f"only {end - pos} follow")
        self.dataset(pos, pos + length, depth + 1, None)
        return pos + length

    def encapsulated(self, pos: int, end: int, tag: int, facts: DatasetFacts) -> int:
        """Walk encapsulated Pixel Data: offset table, fragments, delimiter."""
        facts.pixel_tag, facts.pixel_length, count = tag, _UNDEFINED, 0
        while True:
            item, _, pos, length = self.header(pos, end)
            if item == _SEQ_END:
                facts.fragments = max(count - 1, 0)  # the first item is the offset table
                return pos
            if item != _ITEM or length == _UNDEFINED or pos + length > end:
                raise DatasetProblem(f"encapsulated Pixel Data: bad fragment at byte {pos - 8} "
                                     f"({length} bytes declared, {end - pos} follow)")
            pos += length
            count += 1


def _read_vr(tag: int, creators: dict[tuple[int, int], str]) -> bytes:
    """The VR pydicom gives an implicit-VR (or explicit UN) element: its dictionary's."""
    group, elem = tag >> 16, tag & 0xFFFF
    creator = creators.get((group, elem >> 8)) if group % 2 and elem & 0xFF00 else None
    return _lookup_vr(tag, creator)


@functools.lru_cache(maxsize=4096)
def _lookup_vr(tag: int, creator: str | None) -> bytes:
    from pydicom.datadict import dictionary_VR, private_dictionary_VR

    group, elem = tag >> 16, tag & 0xFFFF
    try:
        if not group % 2:
            return dictionary_VR(tag)[:2].encode()
        if 0x10 <= elem <= 0xFF:
            return b"LO"  # a private creator
        return private_dictionary_VR(tag, creator)[:2].encode() if creator else b"UN"
    except KeyError:
        return b"UL" if elem == 0 and not group % 2 else b"UN"


def _check_pixels(facts: DatasetFacts) -> None:
    if facts.pixel_tag is None:
        return
    values = facts.values
    missing = [k for k in ("Rows", "Columns") if values.get(k, -1) <= 0]
    if missing:
        raise DatasetProblem(f"Pixel Data without {' and '.join(missing)}", pixels=True)
    frames = values.get("NumberOfFrames", 1)
    if facts.pixel_length == _UNDEFINED:  # each frame needs at least one fragment
        if frames < 1 or facts.fragments < frames:
            raise DatasetProblem(f"encapsulated Pixel Data holds {facts.fragments} fragment(s) "
                                 f"for NumberOfFrames {frames}", pixels=True)
        return
    bits = _PIXEL_TAGS[facts.pixel_tag] or values.get("BitsAllocated", -1)
    if frames < 1 or bits not in (1, 8, 16, 32, 64):
        raise DatasetProblem(f"Pixel Data with NumberOfFrames {frames} and BitsAllocated "
                             f"{bits}", pixels=True)
    samples = max(values.get("SamplesPerPixel", 1), 1)
    if facts.text.get("PhotometricInterpretation") == "YBR_FULL_422" and samples == 3:
        samples = 2  # two chroma samples shared by each pair of pixels
    count = values["Rows"] * values["Columns"] * samples * frames
    need = (count * bits + 7) // 8
    if facts.pixel_length < need:
        raise DatasetProblem(f"Pixel Data holds {facts.pixel_length} bytes; Rows, Columns, "
                             f"SamplesPerPixel, NumberOfFrames and BitsAllocated declare "
                             f"{need}", pixels=True)
