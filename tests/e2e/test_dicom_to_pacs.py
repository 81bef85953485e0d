"""DICOM in, AI job, DICOM SEG out to PACS: the adapter as a hospital drives it.

* ``clara-rt dicom`` (a child process, as a user runs it) receives a chest CT from dcmtk
  storescu, creates a ``ct-lung-seg`` job on a real ``clara-rt serve``, and sends the job's DICOM
  SEG to a real Orthanc, where it is found through Orthanc's REST API; SIGTERM stops it cleanly.
* With the server down when the series completes, the series waits in the staging folder and
  becomes a job once the server is up; its SEG goes to dcmtk storescp. An export left pending is
  sent by the next adapter that starts.
* Orthanc as the hospital's PACS on both ends: a study uploaded to Orthanc is pushed by Orthanc
  itself (``/modalities/.../store``, its own C-STORE SCU) to the adapter, and the SEG comes back
  into the same Orthanc.
* ``clara-rt dicom --check`` checks a configuration.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from clara_rt.bench import checkout_env
from clara_rt.client import ClientError
from tests.conftest import need_peer
from tests.data.chest_dicom import write_chest_series
from tests.dicom_peers import Orthanc, echoscu, orthanc, storescp, storescu
from tests.dicom_peers import free_port as free_dicom_port
from tests.server_process import ServerProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
TOKEN = "dicom-adapter-token"
SHAPE = (32, 128, 128)  # slices, rows, columns of the chest phantom
FAILING = """\
api-version: 0.4.0
name: always-fails
operators:
- name: boom
  description: fails at once (a faulted job must not be exported)
  container:
    image: busybox
    tag: latest
    command: ["sh", "-c", "echo no lungs here >&2; exit 3"]
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.fixture(autouse=True)
def _need_pynetdicom() -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None,
              "pynetdicom (pip install 'clara-rt[dicom-net]')")


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chest") / "series"
    write_chest_series(folder, shape=SHAPE)
    return folder


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[Orthanc]:
    with orthanc(tmp_path / "orthanc") as peer:
        yield peer


def test_storescu_to_adapter_to_job_to_orthanc(tmp_path: Path, chest: Path,
                                               pacs: Orthanc) -> None:
    port = free_dicom_port()
    config = _write_config(tmp_path, port, destination=(pacs.aet, pacs.port))
    with ServerProcess(tmp_path / "data", "--workers", "2", token=TOKEN) as server:
        client = server.client()
        client.create_pipeline(CT_LUNG_SEG)
        log = tmp_path / "adapter.log"
        with _adapter(config, server.url, port, log) as status:
            sent = storescu(port, chest)
            assert sent.returncode == 0, sent.stderr
            seg_id = wait_for(lambda: _find_seg(pacs), 90,
                              f"a SEG in Orthanc; adapter log:\n{_tail(log)}")
            seg = pydicom.dcmread(_download(pacs, seg_id, tmp_path / "seg.dcm"))
            ct = pydicom.dcmread(next(chest.glob("*.dcm")))
            assert seg.Modality == "SEG" and seg.StudyInstanceUID == ct.StudyInstanceUID
            assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
            [export] = wait_for(lambda: client.list_exports(state="succeeded"), 10,
                                "the export record to be marked succeeded")  # after the send
            assert (export["destination"], export["retries"], export["error"]) == (
                "PACS", 0, None)
            assert export["file"].endswith(".dcm")
            [job] = client.list_jobs()
            assert job["name"] == f"LUNGSEG-{ct.SeriesInstanceUID.rsplit('.', 1)[-1][-12:]}"
            assert (job["state"], job["status"]) == ("stopped", "healthy")
    text = log.read_text()
    assert status == [0], text
    for line in ("association SCANNER1 -> LUNGSEG from 127.0.0.1:",
                 "released after", f"{SHAPE[0]} stored, 0 ignored, 0 failed",
                 f"complete: LUNGSEG: series {ct.SeriesInstanceUID}, CT, {SHAPE[0]} instances "
                 "from SCANNER1", f"job {job['id']} created: pipeline ct-lung-seg",
                 "finished healthy: 1 DICOM result(s) -> PACS",
                 f"to PACS (ORTHANC at 127.0.0.1:{pacs.port}): succeeded (1 attempt(s))",
                 "SIGTERM received: stopping", "DICOM adapter stopped"):
        assert line in text, f"{line!r} not in the adapter log:\n{text}"
    storage = tmp_path / "dicom"
    assert not list((storage / ".staging").rglob("*.dcm"))  # submitted, then removed
    assert not list((storage / ".jobs").iterdir())


def test_series_waits_for_the_server_and_exports_resume(
        tmp_path: Path, chest: Path, caplog: pytest.LogCaptureFixture) -> None:
    from clara_rt.client import Client
    from clara_rt.dicom.adapter import DicomAdapter
    from clara_rt.dicom.config import load_config

    caplog.set_level(logging.INFO, logger="clara_rt.dicom")
    server = ServerProcess(tmp_path / "data", "--workers", "2")  # not started yet
    port = free_dicom_port()
    with storescp(tmp_path / "peer") as peer_port:
        config = load_config(_write_config(tmp_path, port, destination=("PEERSCP", peer_port),
                                           pipelines="[ct-lung-seg, always-fails]"))
        client = Client(server.url, timeout=10)
        adapter = DicomAdapter(config, client, poll=0.2, max_backoff=1.0)
        adapter.start()
        try:
            assert storescu(port, chest).returncode == 0
            [staged] = wait_for(adapter.staged, 20, "the series to complete")
            wait_for(lambda: "retried until the server answers" in caplog.text, 10,
                     "the adapter to report the server down")
            assert len(list((staged / "data").glob("*.dcm"))) == SHAPE[0]  # kept, not lost
            with server:
                client.create_pipeline(CT_LUNG_SEG)
                client.create_pipeline(FAILING)
                wait_for(lambda: not adapter.staged(), 30, "the staged series to be submitted")
                jobs = wait_for(lambda: len(client.list_jobs()) == 2 and client.list_jobs(), 10,
                                "a job per pipeline of the AE title")
                job, failing = sorted(jobs, key=lambda j: j["pipeline"] != "ct-lung-seg")
                assert client.wait_job(job["id"], timeout=60)["status"] == "healthy"
                assert client.wait_job(failing["id"], timeout=60)["status"] == "faulted"
                [export] = wait_for(lambda: client.list_exports(state="succeeded"), 20,
                                    "the SEG export")
                wait_for(lambda: f"job {failing['id']}" in caplog.text and "stopped faulted"
                         in caplog.text, 10, "the faulted job to be reported")
                assert client.list_exports(job_id=failing["id"]) == []
                adapter.stop()
                assert [pydicom.dcmread(p).Modality for p in (tmp_path / "peer").iterdir()
                        ] == ["SEG"]
                # An export requested while no adapter runs is sent by the next one.
                again = client.create_export(job["id"], export["file"], "PACS")
                adapter = DicomAdapter(config, client, poll=0.2, max_backoff=1.0)
                adapter.start()
                wait_for(lambda: client.list_exports(state="succeeded") and len(
                    client.list_exports(state="succeeded")) == 2, 20, "the resumed export")
                assert {e["id"] for e in client.list_exports(state="succeeded")} == {
                    export["id"], again["id"]}
        finally:
            adapter.stop()
    log = caplog.text
    assert "the clara-rt server answers again" in log
    assert f"job {job['id']} created: pipeline ct-lung-seg, priority high" in log
    assert f"resuming 1 unfinished export(s) of job {job['id']}" in log
    assert (f"job {failing['id']} (always-fails on LUNGSEG: series" in log
            and "stopped faulted" in log and "nothing exported" in log)


def test_orthanc_pushes_a_study_and_gets_the_seg_back(tmp_path: Path, chest: Path,
                                                      pacs: Orthanc) -> None:
    port = free_dicom_port()
    config = _write_config(tmp_path, port, destination=(pacs.aet, pacs.port),
                           calling=pacs.aet)
    for path in sorted(chest.glob("*.dcm")):  # the scanner stored the study in the PACS
        pacs.post("/instances", path.read_bytes())
    [series] = pacs.get("/series")
    pacs.put("/modalities/clara", json.dumps(
        {"AET": "LUNGSEG", "Host": "127.0.0.1", "Port": port}).encode())
    with ServerProcess(tmp_path / "data", "--workers", "2", token=TOKEN) as server:
        client = server.client()
        client.create_pipeline(CT_LUNG_SEG)
        log = tmp_path / "adapter.log"
        with _adapter(config, server.url, port, log) as status:
            echo = pacs.post("/modalities/clara/echo", b"{}")
            assert echo == {}, echo
            sent = pacs.post("/modalities/clara/store", json.dumps(
                {"Resources": [series], "Synchronous": True}).encode())
            assert sent["InstancesCount"] == SHAPE[0] and sent["FailedInstancesCount"] == 0, sent
            seg_id = wait_for(lambda: _find_seg(pacs), 90,
                              f"a SEG back in Orthanc; adapter log:\n{_tail(log)}")
        [job] = client.list_jobs()
        assert (job["state"], job["status"], job["priority"]) == ("stopped", "healthy", "high")
    assert status == [0], log.read_text()
    assert f"association {pacs.aet} -> LUNGSEG from 127.0.0.1:" in log.read_text()
    seg = pydicom.dcmread(_download(pacs, seg_id, tmp_path / "seg.dcm"))
    ct = pydicom.dcmread(next(chest.glob("*.dcm")))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    study = pacs.get(f"/series/{series}")["ParentStudy"]
    assert len(pacs.get(f"/studies/{study}/series")) == 2  # the CT and its SEG, one study


def test_check_only_checks_the_configuration(tmp_path: Path) -> None:
    good = _write_config(tmp_path, 11112, destination=("ORTHANC", 4242))
    ok = _clara("dicom", "--check", "--config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (f"OK: {good}: AE CLARA on 127.0.0.1:11112; called AE titles: LUNGSEG; "
                         "destinations: PACS (ORTHANC at 127.0.0.1:4242)\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("priority: high", "priority: urgent"))
    failed = _clara("dicom", "--check", "--config", str(bad))
    assert failed.returncode == 2
    assert failed.stderr == (f"clara-rt: error: {bad}:9:15: priority of AE title 'LUNGSEG' must "
                             "be one of immediate, high, normal, low, got 'urgent'\n")
    worse = tmp_path / "worse.yaml"  # issue 17.10: every mistake, not only the first
    worse.write_text(bad.read_text().replace("port: 4242", "port: 70000"))
    failed = _clara("dicom", "--check", "--config", str(worse))
    assert failed.returncode == 2
    lines = failed.stderr.splitlines()
    assert lines[0] == (f"clara-rt: error: {worse}:9:15: priority of AE title 'LUNGSEG' must "
                        "be one of immediate, high, normal, low, got 'urgent'")
    assert re.fullmatch(rf"clara-rt: error: {re.escape(str(worse))}:\d+:\d+: 'port' in "
                        r"destination 'PACS' must be an integer from 1 to 65535, got the number "
                        r"70000",
                        lines[1]), failed.stderr
    assert lines[2:] == [f"clara-rt: 2 errors in {worse}"]
    no_server = _clara("dicom", "--config", str(good), env={"CLARA_RT_HOST": ""})
    assert no_server.returncode == 2
    assert "dicom needs --server URL" in no_server.stderr


@contextlib.contextmanager
def _adapter(config: Path, server_url: str, port: int, log: Path) -> Iterator[list[int]]:
    """``clara-rt dicom`` as a child process, yielded once it answers C-ECHO; SIGTERM at the end.
    The yielded list receives its exit status."""
    status: list[int] = []
    with log.open("wb") as out:
        adapter = subprocess.Popen(
            [sys.executable, "-m", "clara_rt.cli", "dicom", "--config", str(config),
             "--server", server_url], env={**checkout_env(), "CLARA_RT_TOKEN": TOKEN},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: echoscu(port, called="CLARA").returncode == 0, 30,
                 f"the adapter to listen; log:\n{_tail(log)}")
        yield status
    finally:
        if adapter.poll() is None:
            adapter.send_signal(signal.SIGTERM)
        status.append(adapter.wait(timeout=30))


def _clara(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clara_rt.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**checkout_env(), **(env or {})},
                          check=False)


def _write_config(tmp_path: Path, port: int, destination: tuple[str, int] | None = None,
                  pipelines: str = "[ct-lung-seg]", calling: str = "SCANNER1") -> Path:
    lines = [
        "dicom:",
        "  ae-title: CLARA",
        f"  port: {port}",
        f"  storage: {tmp_path / 'dicom'}",
        "  quiet-time: 1",
        "ae-titles:",
        "  - name: LUNGSEG",
        f"    pipelines: {pipelines}",
        "    priority: high",
        f"    allowed-calling-aes: [{calling}]",
    ]
    if destination is not None:
        lines += ["    destinations: [PACS]", "destinations:",
                  f"  - {{name: PACS, ae-title: {destination[0]}, host: 127.0.0.1, "
                  f"port: {destination[1]}, retries: 2, retry-delay: 0.5}}"]
    path = tmp_path / "adapter.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _find_seg(pacs: Orthanc) -> str | None:
    try:
        found = pacs.post("/tools/find", json.dumps(
            {"Level": "Instance", "Query": {"Modality": "SEG"}}).encode())
    except (OSError, ClientError):
        return None
    return str(found[0]) if found else None


def _download(pacs: Orthanc, instance: str, dest: Path) -> Path:
    with urllib.request.urlopen(f"{pacs.http}/instances/{instance}/file", timeout=10) as r:
        dest.write_bytes(r.read())
    return dest


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
