"""The DICOM adapter's listener and exporter against real peers: dcmtk, pynetdicom, Orthanc.

Receiving: dcmtk echoscu/storescu (and a pynetdicom SCU for what storescu cannot send) talk to
:class:`~clara_rt.dicom.scp.StorageScp`; every stored file is compared with what was sent.
Exporting: :func:`~clara_rt.dicom.export.send_files` sends to dcmtk storescp and to Orthanc,
and to a port where nothing listens.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from clara_rt.bench import checkout_env
from clara_rt.dicom.config import AdapterConfig, CalledAe, Destination, parse_config
from clara_rt.dicom.export import Timeouts, send_files
from clara_rt.dicom.results import is_dicom_file
from clara_rt.dicom.scp import STATUS, StorageScp
from clara_rt.dicom.tracker import SeriesInfo
from tests.conftest import need_peer
from tests.data.dicom_series import make_series, pydicom_file
from tests.dicom_peers import (
    echoscu,
    free_port,
    meta_end,
    orthanc,
    pynetdicom_send,
    storescp,
    storescu,
)

RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
QUIET = 1.0  # seconds; long enough that a busy CI machine does not split a series

# pydicom's bundled files in other transfer syntaxes / SOP classes, and the storescu option that
# proposes their transfer syntax (storescu offers uncompressed syntaxes only by default).
ODD_FILES = {
    "SC_rgb_jpeg_dcmtk.dcm": "-xy",        # JPEG Baseline, Secondary Capture
    "JPEG2000.dcm": "-xw",                 # JPEG 2000
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS lossless
    "MR_small_RLE.dcm": "-xr",             # RLE lossless
    "image_dfl.dcm": "-xd",                # Deflated explicit VR little endian
    "MR_small_bigendian.dcm": "-xb",       # Explicit VR big endian
    "rtplan.dcm": "-xi",                   # RT Plan, implicit VR little endian
}


@pytest.fixture(autouse=True)
def _need_pynetdicom() -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None,
              "pynetdicom (pip install 'clara-rt[dicom-net]')")


class Receiver:
    """A running StorageScp that records its completed groups."""

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self.completed: list[tuple[CalledAe, Path, SeriesInfo]] = []
        self._cond = threading.Condition()
        self.scp = StorageScp(config, self._on_complete, tracker_interval=0.05)

    @property
    def port(self) -> int:
        return self.scp.address[1]

    @property
    def storage(self) -> Path:
        return self.config.dicom.storage

    def wait(self, count: int, timeout: float = 15) -> list[tuple[CalledAe, Path, SeriesInfo]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.completed) >= count, timeout), (
                f"{len(self.completed)} of {count} groups completed after {timeout} s")
            return list(self.completed)

    def _on_complete(self, ae: CalledAe, folder: Path, info: SeriesInfo) -> None:
        with self._cond:
            self.completed.append((ae, folder, info))
            self._cond.notify_all()


@pytest.fixture
def receive(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    """Start a listener: ``receive(group_by="series", storage=None)``; stopped at the end."""
    started: list[Receiver] = []

    def start(group_by: str = "series", storage: Path | None = None) -> Receiver:
        text = f"""
dicom: {{ae-title: CLARA, port: {free_port()}, storage: {storage or tmp_path / 'store'},
        quiet-time: {QUIET}, group-by: {group_by}}}
ae-titles:
  - name: LUNGSEG
    pipelines: [ct-lung-seg]
    allowed-calling-aes: [SCANNER1, PYSCU]
    ignored-sop-classes: ["{RT_DOSE}"]
  - {{name: OPEN, pipelines: [any]}}
"""
        receiver = Receiver(parse_config(text, "test.yaml"))
        receiver.scp.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.scp.stop()


# --- associations -----------------------------------------------------------------------------


def test_echo_and_association_checks(receive: Callable[..., Receiver],
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    port = receive().port
    assert echoscu(port, called="LUNGSEG", calling="SCANNER1").returncode == 0
    assert echoscu(port, called="CLARA").returncode == 0  # own AE title: verification only
    assert echoscu(port, called="OPEN", calling="ANYONE").returncode == 0
    unknown = echoscu(port, called="NOBODY")
    assert unknown.returncode != 0
    assert "Called AE Title Not Recognized" in unknown.stdout + unknown.stderr
    intruder = echoscu(port, called="LUNGSEG", calling="INTRUDER")
    assert intruder.returncode != 0
    assert "Calling AE Title Not Recognized" in intruder.stdout + intruder.stderr
    assert echoscu(port, called="LUNGSEG", calling="SCANNER1").returncode == 0  # still serving
    log = caplog.text
    assert "rejected association ECHOSCU -> NOBODY from 127.0.0.1:" in log
    assert "called AE title not recognised (known: CLARA, LUNGSEG, OPEN)" in log
    assert ("rejected association INTRUDER -> LUNGSEG from 127.0.0.1:" in log
            and "calling AE title not allowed (allowed-calling-aes: PYSCU, SCANNER1)" in log)


# --- receiving series -------------------------------------------------------------------------


def test_series_is_stored_as_sent_and_completed_once(receive: Callable[..., Receiver],
                                                     tmp_path: Path) -> None:
    files = make_series(tmp_path / "ct", slices=24, rows=64, cols=64)
    rx = receive()
    sent = storescu(rx.port, tmp_path / "ct")
    assert sent.returncode == 0, sent.stderr
    [(ae, folder, info)] = rx.wait(1)
    first = pydicom.dcmread(files[0])
    assert ae.name == "LUNGSEG"
    assert (info.called_ae, info.calling_ae, info.modality, info.instances) == (
        "LUNGSEG", "SCANNER1", "CT", 24)
    assert (info.study_uid, info.series_uids) == (first.StudyInstanceUID,
                                                 (first.SeriesInstanceUID,))
    assert folder.name == "data" and folder.parent.parent.name == "LUNGSEG"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{pydicom.dcmread(f).SOPInstanceUID}.dcm" for f in files)
    for path in files:
        original = pydicom.dcmread(path)
        stored_path = folder / f"{original.SOPInstanceUID}.dcm"
        assert _dataset_bytes(stored_path) == _dataset_bytes(path)  # byte for byte
        stored = pydicom.dcmread(stored_path)
        assert stored == original
        np.testing.assert_array_equal(stored.pixel_array, original.pixel_array)
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert stored.file_meta.SourceApplicationEntityTitle == "SCANNER1"
    time.sleep(2 * QUIET)
    assert len(rx.completed) == 1  # exactly once
    assert not list((rx.storage / "LUNGSEG").rglob("*.dcm"))  # all handed off
    assert not list((rx.storage / ".tmp").iterdir())


@pytest.mark.parametrize("group_by", ["series", "study"])
def test_interleaved_series(receive: Callable[..., Receiver], tmp_path: Path,
                            group_by: str) -> None:
    study = generate_uid()
    a = make_series(tmp_path / "a", slices=12, rows=32, cols=32, study_uid=study, seed=1)
    b = make_series(tmp_path / "b", slices=10, rows=32, cols=32, study_uid=study, seed=2)
    rx = receive(group_by=group_by)
    procs = [subprocess.Popen([*_storescu_args(rx.port), str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for folder in (tmp_path / "a", tmp_path / "b")]  # two associations at once
    for proc in procs:
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output
    uid_a, uid_b = (pydicom.dcmread(x[0]).SeriesInstanceUID for x in (a, b))
    if group_by == "series":
        done = rx.wait(2)
        counts = {info.series_uid: info.instances for _, _, info in done}
        assert counts == {uid_a: 12, uid_b: 10}
        assert len({folder for _, folder, _ in done}) == 2
    else:
        [(_, folder, info)] = rx.wait(1)
        assert set(info.series_uids) == {uid_a, uid_b} and info.instances == 22
        assert {p.name for p in folder.iterdir()} == {uid_a, uid_b}  # data/<series>/<sop>.dcm
    time.sleep(2 * QUIET)
    assert len(rx.completed) == (2 if group_by == "series" else 1)


def test_late_instance_starts_a_new_group(receive: Callable[..., Receiver],
                                          tmp_path: Path) -> None:
    files = make_series(tmp_path / "first", slices=5, rows=32, cols=32)
    head = pydicom.dcmread(files[0])
    rx = receive()
    assert storescu(rx.port, tmp_path / "first").returncode == 0
    [(_, first, _)] = rx.wait(1)
    make_series(tmp_path / "late", slices=1, rows=32, cols=32, study_uid=head.StudyInstanceUID,
                series_uid=head.SeriesInstanceUID, seed=9)
    assert storescu(rx.port, tmp_path / "late").returncode == 0
    (_, _, info_1), (_, second, info_2) = rx.wait(2)
    assert info_2.series_uid == info_1.series_uid and info_2.group_id != info_1.group_id
    assert (info_1.instances, info_2.instances) == (5, 1)
    assert len(list(first.iterdir())) == 5 and len(list(second.iterdir())) == 1


def test_duplicate_instance_replaces_the_first(receive: Callable[..., Receiver],
                                               tmp_path: Path) -> None:
    [path] = make_series(tmp_path / "one", slices=1, rows=32, cols=32)
    rx = receive()
    assert storescu(rx.port, path).returncode == 0
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "second version"
    ds.save_as(path, enforce_file_format=True)
    assert storescu(rx.port, path).returncode == 0
    [(_, folder, info)] = rx.wait(1)
    assert info.instances == 1
    assert pydicom.dcmread(folder / f"{ds.SOPInstanceUID}.dcm").SeriesDescription == (
        "second version")


def test_transfer_syntaxes_kept_and_ignored_class_dropped(
        receive: Callable[..., Receiver], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    odd = {name: _fresh_copy(pydicom_file(name), tmp_path / "odd") for name in ODD_FILES}
    seg = _fresh_copy(pydicom_file("liver_1frame.dcm"), tmp_path / "odd")
    dose = _fresh_copy(pydicom_file("rtdose.dcm"), tmp_path / "odd")
    rx = receive()
    for name, option in ODD_FILES.items():
        result = storescu(rx.port, odd[name], options=(option,))
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    assert storescu(rx.port, dose, options=("-xi",)).returncode == 0  # Success, not stored
    assert pynetdicom_send(rx.port, [seg]) == [STATUS["success"]]  # storescu lacks the SEG context
    sent = [*odd.values(), seg]
    groups = {(pydicom.dcmread(p).StudyInstanceUID, pydicom.dcmread(p).SeriesInstanceUID)
              for p in sent}
    done = rx.wait(len(groups))
    stored = {p.stem: p for _, folder, _ in done for p in folder.rglob("*.dcm")}
    assert len(stored) == len(sent)
    for path in sent:
        original = pydicom.dcmread(path)
        copy = pydicom.dcmread(stored[original.SOPInstanceUID])
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, path
        _assert_same(copy, original)
    assert pydicom.dcmread(dose).SOPInstanceUID not in stored
    assert "in ignored-sop-classes of LUNGSEG; accepted, not stored" in caplog.text


def test_bad_instances_fail_and_the_listener_goes_on(
        receive: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from pynetdicom import _config

    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    good, no_study, mismatch, spare = make_series(tmp_path / "ct", slices=4, rows=32, cols=32)
    ds = pydicom.dcmread(no_study)
    del ds.StudyInstanceUID
    ds.save_as(no_study, enforce_file_format=True)
    uid = pydicom.dcmread(mismatch).SOPInstanceUID
    other = uid[:-1] + str((int(uid[-1]) + 1) % 10)  # same length: only the data set changes
    _replace_dataset(mismatch, _dataset_bytes(mismatch).replace(uid.encode(), other.encode()))
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(good.read_bytes())
    _replace_dataset(garbage, np.random.default_rng(3).bytes(3000))
    rx = receive()
    # Send the files' bytes as they are (no pydicom decoding on the sending side).
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    statuses = pynetdicom_send(rx.port, [no_study, garbage, mismatch, good])
    assert statuses[0] == STATUS["missing_uid"]
    assert statuses[1] in (STATUS["cannot_understand"], STATUS["missing_uid"])
    assert statuses[2] == STATUS["missing_uid"]
    assert statuses[3] == STATUS["success"]  # the same association carries on
    monkeypatch.undo()
    assert storescu(rx.port, spare).returncode == 0  # and new associations are served
    [(_, folder, info)] = rx.wait(1)
    assert info.instances == 2
    assert {p.stem for p in folder.iterdir()} == {pydicom.dcmread(p).SOPInstanceUID
                                                 for p in (good, spare)}
    assert not list((rx.storage / ".tmp").iterdir())
    assert "failed: missing StudyInstanceUID" in caplog.text
    assert "differs from the request's Affected SOP Instance UID" in caplog.text
    assert "1 stored, 0 ignored, 3 failed" in caplog.text


def test_full_disk_answers_out_of_resources(receive: Callable[..., Receiver],
                                            tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(small)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mount.stderr.strip()}")
    try:
        files = make_series(tmp_path / "ct", slices=30, rows=64, cols=64)  # ~9 KB each
        rx = receive(storage=small / "store")
        statuses = pynetdicom_send(rx.port, files)
        full = statuses.index(STATUS["out_of_resources"])
        assert full > 3 and set(statuses[:full]) == {STATUS["success"]}
        assert not list((rx.storage / ".tmp").iterdir())  # partial files removed
        stored = list(rx.storage.rglob("*.dcm"))  # arrival area or already handed off
        assert len(stored) == statuses.count(STATUS["success"])
        for path in stored:  # every file that got Success is whole
            assert pydicom.dcmread(path).pixel_array.shape == (64, 64)
        rx.scp.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_instances_left_by_a_crash_are_completed_after_restart(
        receive: Callable[..., Receiver], tmp_path: Path) -> None:
    files = make_series(tmp_path / "ct", slices=6, rows=32, cols=32)
    head = pydicom.dcmread(files[0])
    storage = tmp_path / "store"
    arrived = storage / "LUNGSEG" / head.StudyInstanceUID / head.SeriesInstanceUID
    arrived.mkdir(parents=True)
    for path in files:  # as a previous run left them: stored, not yet complete
        (arrived / f"{pydicom.dcmread(path).SOPInstanceUID}.dcm").write_bytes(path.read_bytes())
    (storage / ".tmp").mkdir()
    (storage / ".tmp" / "half-written.part").write_bytes(b"\0" * 100)
    rx = receive(storage=storage)
    [(_, folder, info)] = rx.wait(1)
    assert (info.instances, info.series_uid, info.modality) == (6, head.SeriesInstanceUID, "CT")
    assert len(list(folder.iterdir())) == 6
    assert not list((storage / ".tmp").iterdir())


def test_pynetdicom_missing_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = parse_config(f"dicom: {{ae-title: CLARA, port: 104, storage: {tmp_path}}}\n"
                          "ae-titles: [{name: A, pipelines: [p]}]\n")
    monkeypatch.setitem(sys.modules, "pynetdicom", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"^the DICOM adapter needs pynetdicom: pip install "
                                          r"'clara-rt\[dicom-net\]'$"):
        StorageScp(config, lambda *_: None)


def test_importing_the_cli_and_adapter_does_not_import_pynetdicom() -> None:
    code = ("import sys, clara_rt.cli, clara_rt.dicom.adapter, clara_rt.dicom.config; "
            "assert 'pynetdicom' not in sys.modules, 'pynetdicom imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env=checkout_env())


# --- exporting --------------------------------------------------------------------------------


def test_export_to_dcmtk_storescp(tmp_path: Path) -> None:
    files = _export_set(tmp_path)
    with storescp(tmp_path / "rx") as port:
        peer = Destination("PEER", "PEERSCP", "127.0.0.1", port, retries=1, retry_delay=0.1)
        results = send_files(files, peer, calling_ae="CLARA")
    assert [(r.success, r.status, r.attempts, r.error) for r in results] == [
        (True, 0, 1, None)] * len(files)
    received = {pydicom.dcmread(p).SOPInstanceUID: p for p in (tmp_path / "rx").glob("*.dcm")}
    assert len(received) == len(files)
    for path in files:
        original = pydicom.dcmread(path)
        copy = pydicom.dcmread(received[original.SOPInstanceUID])
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        _assert_same(copy, original)


def test_export_to_orthanc(tmp_path: Path) -> None:
    files = _export_set(tmp_path)
    with orthanc(tmp_path / "orthanc") as pacs:
        results = send_files(files, Destination("PACS", pacs.aet, "127.0.0.1", pacs.port),
                             calling_ae="CLARA")
        assert all(r.success and r.attempts == 1 for r in results), results
        for path in files:
            original = pydicom.dcmread(path)
            instance = pacs.instance(original.SOPInstanceUID)
            assert instance is not None, path
            tags = pacs.get(f"/instances/{instance}/simplified-tags")
            assert tags["Modality"] == original.Modality
            copy = pydicom.dcmread(_bytes_file(tmp_path / "got.dcm", pacs.file(instance)))
            assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
            _assert_same(copy, original)


# pynetdicom 3.0.4 drops the socket of a refused connection without closing it
# (AssociationSocket._shutdown_socket: shutdown() raises ENOTCONN before close()); CPython closes
# it at once when the reference goes, with a ResourceWarning that is not ours to fix.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning")
def test_export_to_a_dead_destination_fails_after_retries(tmp_path: Path) -> None:
    [ct] = make_series(tmp_path / "ct", slices=1, rows=16, cols=16)
    port = free_port()  # nothing listens here
    waits: list[float] = []
    start = time.monotonic()
    [result] = send_files([ct], Destination("DEAD", "ORTHANC", "127.0.0.1", port, retries=3,
                                            retry_delay=0.05),
                          calling_ae="CLARA", sleep=lambda s: (waits.append(s), time.sleep(s)))
    assert time.monotonic() - start < 10
    assert (result.success, result.status, result.attempts) == (False, None, 4)
    assert result.error == f"cannot associate with ORTHANC at 127.0.0.1:{port}: connection refused"
    assert waits == [0.05, 0.1, 0.2]  # doubled each retry


def test_export_to_a_silent_destination_times_out(tmp_path: Path) -> None:
    [ct] = make_series(tmp_path / "ct", slices=1, rows=16, cols=16)
    with socket.socket() as silent:  # accepts TCP connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        start = time.monotonic()
        [result] = send_files([ct], Destination("MUTE", "MUTE", "127.0.0.1", port, retries=1,
                                                retry_delay=0.05),
                              calling_ae="CLARA", timeouts=Timeouts(connect=1, acse=1))
    assert time.monotonic() - start < 10
    assert (result.success, result.attempts) == (False, 2)
    assert result.error == (f"cannot associate with MUTE at 127.0.0.1:{port}: no answer to the "
                            "association request within 1 s, or the peer aborted it")


def test_export_rejected_for_good_is_not_retried(receive: Callable[..., Receiver],
                                                 tmp_path: Path) -> None:
    [ct] = make_series(tmp_path / "ct", slices=1, rows=16, cols=16)
    rx = receive()
    [result] = send_files([ct], Destination("LUNG", "LUNGSEG", "127.0.0.1", rx.port,
                                            retries=3, retry_delay=5),
                          calling_ae="INTRUDER")  # not in allowed-calling-aes
    assert (result.success, result.attempts) == (False, 1)
    assert result.error == (f"cannot associate with LUNGSEG at 127.0.0.1:{rx.port}: association "
                            "rejected (rejected permanent, service user: calling ae title not "
                            "recognised)")


def test_export_reports_unreadable_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("not DICOM")
    [result] = send_files([text], Destination("X", "X", "127.0.0.1", free_port()),
                          calling_ae="CLARA")
    assert (result.success, result.attempts) == (False, 0)
    assert result.error is not None and "is not a readable DICOM file" in result.error


def test_dicom_files_are_recognised_by_content(tmp_path: Path) -> None:
    seg = tmp_path / "result.bin"
    seg.write_bytes(pydicom_file("liver_1frame.dcm").read_bytes())
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"DICM" + b"\0" * 300)  # magic at the start, not after the preamble
    tiny = tmp_path / "tiny.dcm"
    tiny.write_bytes(b"\0" * 10)
    assert is_dicom_file(seg)
    assert not is_dicom_file(fake) and not is_dicom_file(tiny)
    assert not is_dicom_file(tmp_path / "missing.dcm")


# --- helpers ----------------------------------------------------------------------------------


def _storescu_args(port: int) -> list[str]:
    return ["/usr/bin/storescu", "-aet", "SCANNER1", "-aec", "LUNGSEG", "+sd", "+r",
            "127.0.0.1", str(port)]


def _dataset_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return data[meta_end(data):]


def _replace_dataset(path: Path, dataset: bytes) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:meta_end(data)] + dataset)


def _assert_same(copy: pydicom.Dataset, original: pydicom.Dataset) -> None:
    """Same elements and values; Pixel Data compared as bytes (dcmtk fixes an OW/OB VR)."""
    assert [e.tag for e in copy] == [e.tag for e in original]
    for element in original:
        if element.tag == 0x7FE00010:
            assert copy.PixelData == original.PixelData  # compressed frames untouched
        else:
            assert copy[element.tag] == element, element


def _fresh_copy(source: Path, folder: Path) -> Path:
    """Copy a pydicom test file with new SOP Instance UID (they share UIDs between them).

    Data Set Trailing Padding is left out: dcmtk storescu drops it when sending.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(source)
    if 0xFFFCFFFC in ds:
        del ds[0xFFFCFFFC]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / source.name
    ds.save_as(path, enforce_file_format=True)
    return path


def _export_set(tmp_path: Path) -> list[Path]:
    """A DICOM SEG, two CT slices, a JPEG-compressed and an implicit-VR file."""
    cts = make_series(tmp_path / "ct", slices=2, rows=32, cols=32)
    extra = [_fresh_copy(pydicom_file(name), tmp_path / "extra")
             for name in ("liver_1frame.dcm", "SC_rgb_jpeg_dcmtk.dcm", "rtplan.dcm")]
    assert pydicom.dcmread(cts[0]).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    return [*extra, *cts]


def _bytes_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_staged_group_without_its_description_is_named_by_its_files(tmp_path: Path) -> None:
    """A group whose group.json was never written is rebuilt from the DICOM headers: its series
    is the files' SeriesInstanceUID, not the name of the folder they lie in (was 'data')."""
    from clara_rt.dicom.tracker import read_group
    from tests.data.dicom_series import make_series

    staged = tmp_path / ".staging" / "LUNGSEG" / "20261204T000000-abc-0123abcd"
    files = make_series(staged / "data", slices=3, rows=8, cols=8)
    series = pydicom.dcmread(files[0]).SeriesInstanceUID
    info = read_group(staged)
    assert info.series_uids == (series,)
    assert (info.called_ae, info.instances) == ("LUNGSEG", 3)
