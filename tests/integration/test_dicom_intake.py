"""Hostile C-STORE input against a real :class:`~clara_rt.dicom.scp.StorageScp` (issue 16).

Unusable UIDs (16.11), malformed data sets that used to get Success (16.14) and idle TCP
connections that locked the listener out (16.18) are sent by pynetdicom, dcmtk storescu and raw
sockets to a listener on 127.0.0.1, and the main cases once more to a ``clara-rt dicom``
process. The fuzz tests (hypothesis) are in
``test_dicom_intake_fuzz.py``.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import socket
import struct
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from clara_rt.dicom.config import parse_config
from clara_rt.dicom.scp import STATUS, StorageScp
from clara_rt.dicom.tracker import safe_part
from tests.conftest import need_peer
from tests.data.dicom_series import make_series
from tests.dicom_peers import dicom_adapter, free_port, meta_end, pynetdicom_send, storescu

QUIET = 0.5


@pytest.fixture(autouse=True)
def _need_pynetdicom() -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None,
              "pynetdicom (pip install 'clara-rt[dicom-net]')")


@pytest.fixture
def listen(tmp_path: Path) -> Iterator[Callable[..., tuple[StorageScp, list[Any]]]]:
    """``listen(**dicom_keys)`` starts a StorageScp; returns it and its completed groups."""
    started: list[StorageScp] = []

    def start(**keys: Any) -> tuple[StorageScp, list[Any]]:
        keys = {"quiet-time": QUIET, **keys}
        extra = "".join(f", {k}: {v}" for k, v in keys.items())
        config = parse_config(
            f"dicom: {{ae-title: CLARA, port: {free_port()}, storage: {tmp_path / 'store'}"
            f"{extra}}}\nae-titles: [{{name: LUNGSEG, pipelines: [p]}}]\n")
        completed: list[Any] = []
        scp = StorageScp(config, lambda *args: completed.append(args), tracker_interval=0.05)
        scp.start()
        started.append(scp)
        return scp, completed

    yield start
    for scp in started:
        scp.stop()


# --- 16.11: UIDs that cannot name a folder ----------------------------------------------------


def test_unusable_uids_are_refused_and_patients_never_merged(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    scp, completed = listen()
    [template] = make_series(tmp_path / "t", slices=1, rows=16, cols=16)
    bad = [("A", "...", "1.2.3"), ("B", "....", "1.2.3"), ("C", "1.2.3", "."),
           ("D", "1.2.3", "1..2"), ("E", "1.2.3", "1.2.x"), ("F", "1." + "2" * 70, "1.2.3"),
           ("G", "1.2.3", " ")]
    datasets = []
    with warnings.catch_warnings():  # pydicom warns about the very UIDs this test sends
        warnings.simplefilter("ignore")
        for patient, study, series in bad:
            ds = pydicom.dcmread(template)
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            datasets.append(ds)
        assert _send(scp.address[1], datasets) == [STATUS["missing_uid"]] * len(bad)
    assert "StudyInstanceUID '...': not a usable UID" in caplog.text
    assert "SeriesInstanceUID '1..2': not a usable UID" in caplog.text
    good = make_series(tmp_path / "good", slices=3, rows=16, cols=16)
    assert storescu(scp.address[1], tmp_path / "good").returncode == 0
    time.sleep(4 * QUIET)  # a loop would log again every quiet time
    [(_, _, info)] = completed
    assert info.instances == 3 and info.series_uid == pydicom.dcmread(good[0]).SeriesInstanceUID
    stored = [p for p in scp.layout.root.rglob("*") if p.is_file()]
    assert {pydicom.dcmread(p).PatientID for p in stored if p.suffix == ".dcm"} == {
        pydicom.dcmread(good[0]).PatientID}
    assert "cannot move" not in caplog.text and "disappeared" not in caplog.text
    with pytest.raises(ValueError, match=r"^UID '\.\.\.' cannot name a folder$"):
        safe_part("...")


def test_a_vanished_arrival_folder_is_dropped_not_retried_forever(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    scp, completed = listen(**{"quiet-time": 1.5})
    [path] = make_series(tmp_path / "ct", slices=1, rows=16, cols=16)
    assert storescu(scp.address[1], path).returncode == 0
    [arrived] = list(scp.layout.root.glob("LUNGSEG/*/*"))
    shutil.rmtree(arrived)  # removed by hand before the series was complete
    time.sleep(4.0)  # the old code logged "cannot move" again after every quiet time
    assert caplog.text.count("disappeared before it was complete") == 1
    assert "cannot move" not in caplog.text and completed == []
    assert scp.tracker.open_groups() == 0


# --- 16.14: malformed data sets ---------------------------------------------------------------


def test_malformed_data_sets_get_a_failure_status(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from pynetdicom import _config

    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    scp, _ = listen()
    port = scp.address[1]
    files = make_series(tmp_path / "ct", slices=7, rows=32, cols=32)
    rng = np.random.default_rng(16)
    data = _dataset_bytes(files[0])
    pixels = data.index(b"\xe0\x7f\x10\x00")  # explicit VR LE Pixel Data element
    after_uids = _end_of(data, b"\x20\x00\x0e\x00UI")  # after SeriesInstanceUID
    variants = {
        "random bytes after the UIDs": data[:after_uids] + rng.bytes(3000),
        "Pixel Data declaring 0xFFFFFFF0 bytes, 100 sent":
            data[:pixels] + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", 0xFFFFFFF0)
            + rng.bytes(100),
        "Pixel Data shorter than Rows x Columns":
            data[:pixels] + b"\xe0\x7f\x10\x00OW\0\0" + struct.pack("<I", 100) + rng.bytes(100),
        "trailing garbage": data + rng.bytes(11),
        "cut in the middle of the pixels": data[:-500],
    }
    sent = []
    for index, (name, dataset) in enumerate(variants.items(), start=1):
        path = tmp_path / f"bad{index}.dcm"
        path.write_bytes(_meta_bytes(files[index]) + dataset)
        sent.append((name, path))
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # bytes sent as they are
    statuses = pynetdicom_send(port, [p for _, p in sent] + [files[6]])
    expected = [STATUS["cannot_understand"], STATUS["cannot_understand"],
                STATUS["dataset_mismatch"], STATUS["cannot_understand"],
                STATUS["cannot_understand"], STATUS["success"]]
    assert dict(zip([n for n, _ in sent] + ["good"], statuses, strict=True)) == dict(
        zip([n for n, _ in sent] + ["good"], expected, strict=True))
    monkeypatch.undo()
    assert "failed, malformed data set: element" in caplog.text
    assert ("Pixel Data holds 100 bytes; Rows, Columns, SamplesPerPixel, NumberOfFrames and "
            "BitsAllocated declare 2048") in caplog.text
    stored = list(scp.layout.root.rglob("*.dcm"))
    assert [p.stem for p in stored] == [pydicom.dcmread(files[6]).SOPInstanceUID]
    assert storescu(port, files[0]).returncode == 0  # and the listener goes on


def test_encapsulated_pixel_data_needs_a_fragment_per_frame(tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_frames

    from clara_rt.dicom.intake import DatasetProblem, check_dataset

    source = get_testdata_file("emri_small_RLE.dcm")  # pydicom-data
    need_peer(source is not None, "pydicom-data (pip install pydicom-data)")
    ds = pydicom.dcmread(str(source))
    frames = list(generate_frames(ds.PixelData, number_of_frames=10))
    missing = r"^encapsulated Pixel Data holds 9 fragment\(s\) for NumberOfFrames 10$"
    for kept, problem in ((10, None), (9, missing)):
        ds.PixelData = encapsulate(frames[:kept])
        ds.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
        data = _dataset_bytes(tmp_path / "mf.dcm")
        if problem is None:
            check_dataset(data, str(ds.file_meta.TransferSyntaxUID))
            continue
        with pytest.raises(DatasetProblem, match=problem) as info:
            check_dataset(data, str(ds.file_meta.TransferSyntaxUID))
        assert info.value.pixels  # answered 0xA900


def test_values_pydicom_cannot_convert_are_refused() -> None:
    """Found by the fuzz tests: pydicom raises on these when the element is read."""
    from clara_rt.dicom.intake import DatasetProblem, check_dataset

    implicit, explicit = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
    ul_of_6 = b"\x08\x00\x00\x00\x06\x00\x00\x00TARGET"  # (0008,0000) UL, implicit VR
    with pytest.raises(DatasetProblem, match=r"6 bytes are no whole number of UL values$"):
        check_dataset(ul_of_6, implicit)
    with pytest.raises(DatasetProblem, match=r"5 bytes are no whole number of US values$"):
        check_dataset(b"\x28\x00\x10\x00US\x05\x00abcde", explicit)  # Rows
    nul_charset = b"\x08\x00\x05\x00CS\x0a\x00\0SO_IR 100"
    with pytest.raises(DatasetProblem, match=r"SpecificCharacterSet b'\\x00SO_IR 100' is not"):
        check_dataset(nul_charset, explicit)
    check_dataset(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", explicit)
    sequence = b"\x08\x00\x40\x11\x08\x00\x00\x00garbage!"  # implicit (0008,1140) SQ
    with pytest.raises(DatasetProblem, match=r"expected an item"):
        check_dataset(sequence, implicit)


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    from clara_rt.dicom.intake import MAX_DEPTH, DatasetProblem, check_dataset

    def nested(levels: int) -> bytes:  # (0009,1001) SQ, undefined lengths all the way down
        inner = b""
        for _ in range(levels):
            inner = (b"\x09\x00\x01\x10SQ\0\0\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
                     + inner + b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0")
        return inner

    check_dataset(nested(MAX_DEPTH), "1.2.840.10008.1.2.1")
    for levels in (MAX_DEPTH + 2, 5000):
        with pytest.raises(DatasetProblem, match=rf"^sequences nested deeper than {MAX_DEPTH} "):
            check_dataset(nested(levels), "1.2.840.10008.1.2.1")


# --- 16.18: idle connections ------------------------------------------------------------------


def test_idle_connections_free_their_slots_as_soon_as_they_close(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path) -> None:
    scp, _ = listen(**{"max-associations": 8})
    make_series(tmp_path / "ct", slices=3, rows=16, cols=16)
    idle = [socket.create_connection(scp.address) for _ in range(40)]
    try:
        time.sleep(0.3)
        locked = storescu(scp.address[1], tmp_path / "ct")
        assert locked.returncode != 0
        assert "Local Limit Exceeded" in locked.stdout + locked.stderr
    finally:
        for sock in idle:
            sock.close()
    start = time.monotonic()
    sent = storescu(scp.address[1], tmp_path / "ct", timeout=20)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert time.monotonic() - start < 3.0


def test_idle_connections_are_dropped_after_the_acse_timeout(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path) -> None:
    scp, _ = listen(**{"max-associations": 8, "acse-timeout": 1})
    make_series(tmp_path / "ct", slices=2, rows=16, cols=16)
    idle = [socket.create_connection(scp.address) for _ in range(20)]
    try:
        time.sleep(2.0)  # never closed by the peer: the listener drops them
        sent = storescu(scp.address[1], tmp_path / "ct", timeout=20)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        idle[0].settimeout(5)
        assert idle[0].recv(16) == b""  # closed by the listener
    finally:
        for sock in idle:
            sock.close()


def test_idle_established_association_is_aborted_after_the_network_timeout(
        listen: Callable[..., tuple[StorageScp, list[Any]]], tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    scp, _ = listen(**{"network-timeout": 1})
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", scp.address[1], ae_title="LUNGSEG")
    assert assoc.is_established
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:  # sends nothing
        time.sleep(0.1)
    assert assoc.is_aborted and time.monotonic() < deadline
    [path] = make_series(tmp_path / "ct", slices=1, rows=16, cols=16)
    assert storescu(scp.address[1], path).returncode == 0  # a new one is served


# --- the same against a `clara-rt dicom` process ----------------------------------------------


def test_clara_rt_dicom_process_survives_idle_sockets_and_bad_data(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "adapter.yaml"
    config.write_text(f"dicom: {{ae-title: CLARA, port: {port}, storage: {tmp_path / 'store'}, "
                      "quiet-time: 60}\nae-titles: [{name: LUNGSEG, pipelines: [p]}]\n")
    files = make_series(tmp_path / "ct", slices=3, rows=16, cols=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dots = pydicom.dcmread(files[0])
        dots.StudyInstanceUID, dots.SOPInstanceUID = "...", pydicom.uid.generate_uid()
    log = tmp_path / "adapter.log"
    with dicom_adapter(config, port, log):  # no server behind it: series wait staged
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.3)
        assert storescu(port, files[0]).returncode != 0  # every slot taken
        for sock in idle:
            sock.close()
        start = time.monotonic()
        sent = storescu(port, files[1], timeout=20)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert time.monotonic() - start < 3.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert _send(port, [dots]) == [STATUS["missing_uid"]]
    text = log.read_text()
    assert "StudyInstanceUID '...': not a usable UID" in text
    stored = list((tmp_path / "store" / "LUNGSEG").rglob("*.dcm"))
    assert [p.stem for p in stored] == [pydicom.dcmread(files[1]).SOPInstanceUID]


# --- helpers ----------------------------------------------------------------------------------


def _send(port: int, datasets: list[Dataset]) -> list[int]:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUNGSEG")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def _meta_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[:meta_end(data)]


def _dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[meta_end(data):]


def _end_of(data: bytes, header: bytes) -> int:
    """Offset after the short-VR explicit element starting with ``header``."""
    at = data.index(header)
    return at + 8 + int.from_bytes(data[at + 6:at + 8], "little")
