"""Fuzzing the DICOM intake with hypothesis (issue 16, hostile-input suite).

Mutated data sets (bytes cut, overwritten, inserted, appended; a length field set to anything)
built from real files in several encodings (explicit and implicit VR, big endian, deflated,
JPEG-encapsulated, with nested sequences) go to :func:`~clara_rt.dicom.intake.check_dataset`
directly and, fewer of them, over a real association to a :class:`StorageScp`. The property
is the adapter's promise: whatever is accepted reads back with pydicom, element by element, and
holds at least the pixel bytes its header declares; whatever is refused leaves no file behind;
nothing raises anything but :class:`~clara_rt.dicom.intake.DatasetProblem`. Bounded to about a
minute in all.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clara_rt.dicom.config import parse_config
from clara_rt.dicom.intake import DatasetProblem, check_dataset
from clara_rt.dicom.scp import STATUS, StorageScp
from tests.conftest import need_peer
from tests.data.dicom_series import make_series, pydicom_file
from tests.dicom_peers import free_port, meta_end

SEEDS = ("CT_small.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm",
         "rtplan.dcm", "nested_priv_SQ.dcm")
_DEFLATED = "1.2.840.10008.1.2.1.99"


@cache
def _seeds() -> list[tuple[str, bytes, str]]:
    """``(name, data set bytes, transfer syntax)`` of each seed, plus a generated CT slice."""
    out = []
    for name in SEEDS:
        data = pydicom_file(name).read_bytes()
        meta = pydicom.filereader.read_file_meta_info(pydicom_file(name))
        out.append((name, data[meta_end(data):], str(meta.TransferSyntaxUID)))
    return out


class Case:
    """A mutated data set; its repr names the seed and the mutations, not 100 kB of bytes."""

    def __init__(self, name: str, data: bytes, syntax: str, steps: tuple[str, ...]) -> None:
        self.name, self.data, self.syntax, self.steps = name, data, syntax, steps

    def __repr__(self) -> str:
        return f"Case({self.name}, {len(self.data)} bytes, {'; '.join(self.steps)})"


@st.composite
def mutated(draw: st.DrawFn) -> Case:
    name, data, syntax = draw(st.sampled_from(_seeds()))
    if syntax == _DEFLATED:  # mutate the inflated bytes, deflate again (else only zlib is hit)
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["cut", "overwrite", "insert", "append", "length"]))
        blob = draw(st.binary(min_size=1, max_size=16))
        steps.append(f"{kind} at {at}: {blob.hex()}")
        if kind == "cut":
            data = data[:at]
        elif kind == "overwrite":
            data = data[:at] + blob + data[at + len(blob):]
        elif kind == "insert":
            data = data[:at] + blob + data[at:]
        elif kind == "append":
            data = data + blob
        else:  # a 2- or 4-byte length field somewhere set to anything
            size = draw(st.sampled_from([2, 4]))
            value = draw(st.integers(0, 2 ** (8 * size) - 1))
            data = data[:at] + value.to_bytes(size, "little") + data[at + size:]
            steps[-1] = f"length at {at}: {value:#x}"
    if syntax == _DEFLATED:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
    return Case(name, data, syntax, tuple(steps))


def _assert_readable(data: bytes, syntax: str) -> None:
    """The adapter's promise for an accepted data set, checked with pydicom."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3"
    buffer = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(buffer, meta)
    raw = b"\0" * 128 + b"DICM" + buffer.getvalue() + data
    with warnings.catch_warnings():  # odd values are pydicom warnings, not unreadable files
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(raw))
        for element in ds.iterall():
            _ = element.value
        if "PixelData" in ds and ds["PixelData"].is_undefined_length is False:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
            if ds.get("PhotometricInterpretation") == "YBR_FULL_422" and samples == 3:
                samples = 2
            need = (ds.Rows * ds.Columns * samples * frames * ds.BitsAllocated + 7) // 8
            assert len(ds.PixelData) >= need


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_check_dataset_accepts_only_readable_data_sets(case: Case) -> None:
    data, syntax = case.data, case.syntax
    try:
        check_dataset(data, syntax)
    except DatasetProblem:
        event("refused")
        return
    event("accepted")
    _assert_readable(data, syntax)


def test_seeds_are_accepted_unmutated() -> None:
    for name, data, syntax in _seeds():
        if name == "nested_priv_SQ.dcm":  # Pixel Data without Rows/Columns: refused as sent
            with pytest.raises(DatasetProblem, match=r"^Pixel Data without Rows and Columns$"):
                check_dataset(data, syntax)
            continue
        check_dataset(data, syntax)
        _assert_readable(data, syntax)


# --- through a real listener ------------------------------------------------------------------


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageScp]:
    need_peer(importlib.util.find_spec("pynetdicom") is not None,
              "pynetdicom (pip install 'clara-rt[dicom-net]')")
    root = tmp_path_factory.mktemp("fuzz")
    config = parse_config(f"dicom: {{ae-title: CLARA, port: {free_port()}, storage: "
                          f"{root / 'store'}, quiet-time: 3600}}\n"
                          "ae-titles: [{name: FUZZ, pipelines: [p]}]\n")
    scp = StorageScp(config, lambda *_: None)
    scp.start()
    yield scp
    scp.stop()


@cache
def _ct_slice(folder: str) -> tuple[bytes, bytes, int, int]:
    """A CT slice: file meta bytes, data set bytes, and where its UIDs end and pixels start."""
    [path] = make_series(Path(folder), slices=1, rows=16, cols=16)
    data = path.read_bytes()
    meta, dataset = data[:meta_end(data)], data[meta_end(data):]
    series = dataset.index(b"\x20\x00\x0e\x00UI")
    after_uids = series + 8 + struct.unpack_from("<H", dataset, series + 6)[0]
    return meta, dataset, after_uids, dataset.index(b"\xe0\x7f\x10\x00")


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=600), cut=st.integers(0, 700), length=st.integers(0, 2**32 - 1))
def test_listener_stores_only_readable_data_sets(listener: StorageScp, tmp_path: Path,
                                                 tail: bytes, cut: int, length: int) -> None:
    """Mutations after the UIDs (so the C-STORE request itself stays valid)."""
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    meta, data, after_uids, pixels = _ct_slice(str(tmp_path.parent / "ct-fuzz"))
    variant = [data[:after_uids] + tail,  # random bytes after the UIDs
               data[:pixels] + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", length)
               + data[pixels + 12:pixels + 12 + cut]][length % 2]  # Pixel Data of any length
    sop = pydicom.dcmread(io.BytesIO(meta + data)).SOPInstanceUID
    path = tmp_path / "case.dcm"
    path.write_bytes(meta + variant)
    ae = AE(ae_title="FUZZER")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    old, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", listener.address[1], ae_title="FUZZ")
        assert assoc.is_established
        status = int(assoc.send_c_store(path).Status)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    stored = list(listener.layout.root.rglob(f"{sop}.dcm"))
    event(f"status {status:#06x}")
    if status == STATUS["success"]:
        [copy] = stored
        copy_bytes = copy.read_bytes()
        _assert_readable(copy_bytes[meta_end(copy_bytes):], "1.2.840.10008.1.2.1")
        copy.unlink()
    else:
        assert status in (STATUS["cannot_understand"], STATUS["dataset_mismatch"]), hex(status)
        assert stored == []
