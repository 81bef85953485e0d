"""The platform server's HTTP API, driven through :class:`clara_rt.client.Client` and raw HTTP
against a real ``clara-rt serve`` child process on loopback."""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from clara_rt.client import Client, ClientError
from tests.data.chest_dicom import write_chest_series
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]
CT_LUNG_SEG = ROOT / "examples" / "ct-lung-seg" / "pipeline.yaml"
TOKEN = "s3cret-token"


def folder_pipeline(name: str, seconds: float = 0.0, fail: bool = False) -> str:
    """Two folder operators from tests.ops (the server imports them from the checkout)."""
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: first
  clara-rt:
    operator: "tests.ops:FolderWork"
    args: {{seconds: {seconds}, fail: {str(fail).lower()}}}
  input:
  - path: /input
  output:
  - path: /output
- name: second
  clara-rt:
    operator: "tests.ops:FolderWork"
  input:
  - from: first
    path: /input
  output:
  - path: /output
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("server") / "data"
    with ServerProcess(data, "--workers", "2", "--max-payload", "5M", "--max-timeout", "600",
                       token=TOKEN) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Client:
    return server.client()


@pytest.fixture(scope="module")
def chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chest")
    write_chest_series(folder, shape=(24, 64, 64))
    return folder


@pytest.fixture(scope="module")
def files_payload(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("files")
    (folder / "a.txt").write_text("alpha")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    return client.create_payload(folder, name="two-files")


def raw(server: ServerProcess, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def tar_bytes(members: dict[str, bytes], *, gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def leftovers(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in (server.data / "tmp").iterdir())


# --- auth -------------------------------------------------------------------------------


def test_writes_need_the_token_and_reads_do_not(server: ServerProcess) -> None:
    anonymous = server.client(token=None)
    with pytest.raises(ClientError) as err:
        anonymous.create_pipeline(folder_pipeline("anon"))
    assert err.value.status == 401
    assert "Bearer" in str(err.value)
    with pytest.raises(ClientError) as err:
        server.client(token="wrong").create_pipeline(folder_pipeline("anon"))
    assert err.value.status == 401
    assert isinstance(anonymous.list_pipelines(), list)
    assert anonymous.health()["status"] == "ok"


# --- pipelines --------------------------------------------------------------------------


def test_pipeline_create_list_describe_replace_delete(client: Client, server: ServerProcess
                                                      ) -> None:
    created = client.create_pipeline(folder_pipeline("crud"))
    assert created["name"] == "crud" and len(created["id"]) == 32
    assert [op["name"] for op in created["operators"]] == ["first", "second"]
    assert created["operators"][1]["inputs"] == ["first"]
    assert any(p["id"] == created["id"] for p in client.list_pipelines())
    assert client.get_pipeline("crud")["id"] == created["id"]  # by name or id
    with pytest.raises(ClientError) as err:
        client.create_pipeline(folder_pipeline("crud"))
    assert err.value.status == 409 and "replace" in str(err.value)
    replaced = client.create_pipeline(folder_pipeline("crud", seconds=0.01), replace=True)
    assert replaced["id"] == created["id"] and replaced["updated"] > created["updated"]
    status, text = raw(server, "GET", f"/v1/pipelines/{created['id']}/definition")
    assert status == 200 and b"seconds: 0.01" in text
    # Raw YAML body works too.
    status, body = raw(server, "POST", "/v1/pipelines?filename=raw.yaml",
                       folder_pipeline("raw-yaml").encode(),
                       {**auth(), "Content-Type": "application/yaml"})
    assert status == 201, body
    client.delete_pipeline("crud")
    client.delete_pipeline("raw-yaml")
    with pytest.raises(ClientError) as err:
        client.get_pipeline("crud")
    assert err.value.status == 404


@pytest.mark.parametrize(("text", "expected"), [
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  input: [\n", "bad.yaml:"),
    ("api-version: 9.9\nname: x\noperators: []\n", "bad.yaml:1:"),
    ("api-version: 0.4.0\nname: cyc\noperators:\n- name: a\n  clara-rt: {operator: "
     "'tests.ops:FolderWork'}\n  input: [{from: b, path: /in}]\n  output: [{path: /o}]\n"
     "- name: b\n  clara-rt: {operator: 'tests.ops:FolderWork'}\n  input: [{from: a, path: "
     "/in}]\n  output: [{path: /o}]\n", "cycle"),
    ("api-version: 0.4.0\nname: x\noperators:\n- name: a\n  clara-rt: {operator: "
     "'no.such.module:Op'}\n  input: [{path: /in}]\n", "no.such.module"),
])
def test_invalid_definitions_answer_422_with_the_location(server: ServerProcess, text: str,
                                                          expected: str) -> None:
    status, body = raw(server, "POST", "/v1/pipelines",
                       json.dumps({"definition": text, "filename": "bad.yaml"}).encode(),
                       {**auth(), "Content-Type": "application/json"})
    assert status == 422, body
    assert expected in json.loads(body)["detail"]


# --- payloads ---------------------------------------------------------------------------


def test_payload_upload_as_tar_describe_download(client: Client, server: ServerProcess,
                                                 files_payload: dict[str, Any]) -> None:
    assert files_payload["files"] == 2 and files_payload["size"] == 5 + 2560
    described = client.get_payload(files_payload["id"])
    assert [f["path"] for f in described["file_list"]] == ["a.txt", "sub/b.bin"]
    status, data = raw(server, "GET", f"/v1/payloads/{files_payload['id']}/files/sub/b.bin")
    assert status == 200 and data == bytes(range(256)) * 10
    status, data = raw(server, "GET", f"/v1/payloads/{files_payload['id']}/archive")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["a.txt", "sub/b.bin"]
    status, _ = raw(server, "GET", f"/v1/payloads/{files_payload['id']}/files/../clara-rt.db")
    assert status in (400, 404)


def test_payload_upload_as_gzip_and_multipart(server: ServerProcess, client: Client) -> None:
    status, body = raw(server, "POST", "/v1/payloads?name=gz",
                       tar_bytes({"x/y.txt": b"yy", "z.txt": b"z"}, gz=True),
                       {**auth(), "Content-Type": "application/gzip"})
    assert status == 201, body
    assert json.loads(body)["files"] == 2
    boundary = "clara-rt-boundary"
    parts = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\""
        f"\r\nContent-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for name, data in (("one.dcm", b"1" * 100), ("dir/two.dcm", b"2" * 50)))
    status, body = raw(server, "POST", "/v1/payloads?name=multi",
                       parts + f"--{boundary}--\r\n".encode(),
                       {**auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 201, body
    payload = json.loads(body)
    assert payload["files"] == 2 and payload["size"] == 150
    listed = [f["path"] for f in client.get_payload(payload["id"])["file_list"]]
    assert listed == ["dir/two.dcm", "one.dcm"]


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/passwd-copy", "a/../../b"])
def test_archive_members_outside_the_payload_are_refused(server: ServerProcess,
                                                         member: str) -> None:
    before = len(Client(server.url).list_payloads())
    status, body = raw(server, "POST", "/v1/payloads", tar_bytes({"ok.txt": b"1", member: b"2"}),
                       {**auth(), "Content-Type": "application/x-tar"})
    assert status == 400 and "inside the payload" in json.loads(body)["detail"]
    assert len(Client(server.url).list_payloads()) == before
    assert leftovers(server) == []


def test_links_and_garbage_archives_are_refused(server: ServerProcess) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    status, body = raw(server, "POST", "/v1/payloads", buffer.getvalue(),
                       {**auth(), "Content-Type": "application/x-tar"})
    assert status == 400 and "link" in json.loads(body)["detail"]
    status, body = raw(server, "POST", "/v1/payloads", b"this is not a tar archive" * 40,
                       {**auth(), "Content-Type": "application/x-tar"})
    assert status == 400 and "tar" in json.loads(body)["detail"]
    assert leftovers(server) == []


def test_oversized_uploads_answer_413_and_leave_nothing(server: ServerProcess,
                                                        client: Client,
                                                        tmp_path: Path) -> None:
    before = len(client.list_payloads())
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(b"\0" * (6 << 20))  # the server's limit is 5M
    with pytest.raises(ClientError) as err:  # streamed (chunked): stopped mid-stream
        client.create_payload(big)
    assert err.value.status == 413, err.value
    # A gzip bomb: small on the wire, over the limit unpacked.
    status, body = raw(server, "POST", "/v1/payloads",
                       tar_bytes({"bomb.bin": b"\0" * (8 << 20)}, gz=True),
                       {**auth(), "Content-Type": "application/gzip"})
    assert status == 413, body
    assert len(client.list_payloads()) == before
    wait_for(lambda: leftovers(server) == [], 5, "the upload's temporary files to go")
    assert sorted(p.name for p in (server.data / "payloads").iterdir()) == sorted(
        p["id"] for p in client.list_payloads())


def test_a_payload_in_use_cannot_be_deleted(client: Client) -> None:
    client.create_pipeline(folder_pipeline("slow-one", seconds=30), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.create_job("slow-one", [payload["id"]], start=True)
    try:
        with pytest.raises(ClientError) as err:
            client.delete_payload(payload["id"])
        assert err.value.status == 409 and job["id"] in str(err.value)
        with pytest.raises(ClientError) as err:
            client.delete_pipeline("slow-one")
        assert err.value.status == 409
    finally:
        client.cancel_job(job["id"])
    client.wait_job(job["id"], timeout=20)
    client.delete_payload(payload["id"])
    with pytest.raises(ClientError) as err:
        client.get_payload(payload["id"])
    assert err.value.status == 404


# --- jobs ---------------------------------------------------------------------------------


def test_ct_lung_seg_job_end_to_end(client: Client, chest: Path, tmp_path: Path) -> None:
    client.create_pipeline(CT_LUNG_SEG, replace=True)
    payload = client.create_payload(chest, name="chest")
    job = client.create_job("ct-lung-seg", [payload["id"]], name="lungs", priority="high",
                            start=False)
    assert (job["state"], job["status"], job["queued"]) == ("pending", "healthy", False)
    time.sleep(0.3)
    assert client.get_job(job["id"])["state"] == "pending"  # created, not started
    client.start_job(job["id"])
    with pytest.raises(ClientError) as err:
        client.start_job(job["id"])
    assert err.value.status == 409
    done = client.wait_job(job["id"], timeout=120)
    assert (done["state"], done["status"], done["error"]) == ("stopped", "healthy", None)
    assert done["priority"] == "high" and done["name"] == "lungs"
    assert (done["placement"], done["transport"]) == ("local", "in-process")
    ops = {op["name"]: op for op in done["operators"]}
    assert set(ops) == {"dicom-reader", "lung-seg", "largest", "seg-writer", "nifti-writer",
                        "render", "volumes"}
    assert all(op["state"] == "succeeded" and op["duration_ms"] > 0 for op in ops.values())
    assert [h["state"] for h in done["history"]] == ["pending", "pending", "running", "stopped"]
    files = {f["path"] for f in client.result_files(job["id"])}
    assert {"seg-writer/seg.dcm", "nifti-writer/path.nii.gz", "volumes/stats.json"} <= files
    out = client.download_results(job["id"], tmp_path / "results")
    seg = pydicom.dcmread(out / "seg-writer" / "seg.dcm")
    assert seg.Modality == "SEG"
    one = client.download_result_file(job["id"], "volumes/stats.json", tmp_path)
    assert "left lung" in one.read_text()
    log = client.logs(job["id"], "dicom-reader")
    assert "operator 'dicom-reader' started" in log and "finished in" in log
    with pytest.raises(ClientError) as err:
        client.logs(job["id"], "no-such-operator")
    assert err.value.status == 404 and "dicom-reader" in str(err.value)
    listed = client.list_jobs(pipeline="ct-lung-seg", state="stopped")
    assert job["id"] in [j["id"] for j in listed]


def test_operator_logs_capture_what_the_operator_logged(client: Client, tmp_path: Path) -> None:
    client.create_pipeline(folder_pipeline("logging"), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.wait_job(client.create_job("logging", [payload["id"]])["id"], timeout=30)
    assert job["status"] == "healthy"
    assert "first sees 1 input files" in client.logs(job["id"], "first")
    assert "second sees 1 input files" in client.logs(job["id"], "second")
    summary = json.loads(client.download_result_file(
        job["id"], "second/out/summary.json", tmp_path).read_text())
    assert summary["files"] == ["summary.json"]


def test_failing_operator_faults_the_job_with_its_error_and_traceback(client: Client) -> None:
    client.create_pipeline(folder_pipeline("failing", fail=True), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.wait_job(client.create_job("failing", [payload["id"]])["id"], timeout=30)
    assert (job["state"], job["status"]) == ("stopped", "faulted")
    assert "first failed on purpose" in job["error"]
    ops = {op["name"]: op["state"] for op in job["operators"]}
    assert ops == {"first": "failed", "second": "not_run"}
    log = client.logs(job["id"], "first")
    assert "Traceback" in log and "RuntimeError: first failed on purpose" in log


def test_timeouts_default_and_maximum(client: Client) -> None:
    client.create_pipeline(folder_pipeline("sleepy", seconds=30), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.create_job("sleepy", [payload["id"]], timeout=0.5)
    done = client.wait_job(job["id"], timeout=20)
    assert (done["state"], done["status"]) == ("stopped", "timed-out")
    with pytest.raises(ClientError) as err:
        client.create_job("sleepy", [payload["id"]], timeout=601)
    assert err.value.status == 422 and "maximum of 600" in str(err.value)


def test_cancel_pending_and_running_jobs(client: Client) -> None:
    client.create_pipeline(folder_pipeline("cancel-me", seconds=30), replace=True)
    payload = client.create_payload([Path(__file__)])
    created = client.create_job("cancel-me", [payload["id"]], start=False)
    assert client.cancel_job(created["id"])["status"] == "canceled"
    running = client.create_job("cancel-me", [payload["id"]])
    wait_for(lambda: client.get_job(running["id"])["operators"] and any(
        op["state"] == "running" for op in client.get_job(running["id"])["operators"]),
        20, "the job to run")
    client.cancel_job(running["id"])
    done = client.wait_job(running["id"], timeout=20)
    assert (done["state"], done["status"]) == ("stopped", "canceled")
    with pytest.raises(ClientError) as err:
        client.cancel_job(running["id"])
    assert err.value.status == 409
    client.delete_job(running["id"])
    with pytest.raises(ClientError) as err:
        client.get_job(running["id"])
    assert err.value.status == 404


def test_unknown_references_are_404_and_bad_requests_422(client: Client,
                                                         server: ServerProcess) -> None:
    with pytest.raises(ClientError) as err:
        client.create_job("no-such-pipeline", [])
    assert err.value.status == 404
    client.create_pipeline(folder_pipeline("refs"), replace=True)
    with pytest.raises(ClientError) as err:
        client.create_job("refs", ["0" * 32])
    assert err.value.status == 404 and "payload" in str(err.value)
    status, body = raw(server, "POST", "/v1/jobs",
                       json.dumps({"pipeline": "refs", "priority": "urgent"}).encode(),
                       {**auth(), "Content-Type": "application/json"})
    assert status == 422 and b"priority" in body


def test_exports_record_the_results_service_states(client: Client) -> None:
    client.create_pipeline(folder_pipeline("exporting"), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.wait_job(client.create_job("exporting", [payload["id"]])["id"], timeout=30)
    export = client.create_export(job["id"], "second/out/summary.json", "PACS")
    assert (export["state"], export["retries"], export["error"]) == ("pending", 0, None)
    client.update_export(export["id"], state="in-progress")
    updated = client.update_export(export["id"], state="failed", retries=3,
                                   error="cannot associate with PACS")
    assert (updated["state"], updated["retries"]) == ("failed", 3)
    assert [e["id"] for e in client.list_exports(job_id=job["id"])] == [export["id"]]
    assert export["id"] in [e["id"] for e in client.list_exports(state="failed")]
    with pytest.raises(ClientError) as err:
        client.create_export(job["id"], "no/such/file.dcm", "PACS")
    assert err.value.status == 404


def test_server_sent_events_follow_a_job_to_its_end(client: Client) -> None:
    client.create_pipeline(folder_pipeline("events", seconds=0.5), replace=True)
    payload = client.create_payload([Path(__file__)])
    job = client.create_job("events", [payload["id"]], start=False)
    seen: list[tuple[str, str]] = []
    reader = threading.Thread(target=lambda: seen.extend(
        (e["state"], e["status"]) for e in client.events(job["id"])))
    reader.start()
    time.sleep(0.3)
    client.start_job(job["id"])
    reader.join(30)
    assert not reader.is_alive(), "the event stream did not end when the job stopped"
    assert seen[0] == ("pending", "healthy")
    assert ("running", "healthy") in seen
    assert seen[-1] == ("stopped", "healthy")


def test_priorities_order_the_server_queue(tmp_path: Path) -> None:
    """One job at a time: queued high jobs start before queued low ones; immediate jobs are
    admitted at once even when the runtime is full."""
    with ServerProcess(tmp_path / "data", "--workers", "1", "--max-running", "1") as proc:
        client = proc.client()
        client.create_pipeline(folder_pipeline("busy", seconds=1.0))
        client.create_pipeline(folder_pipeline("quick", seconds=0.0))
        payload = client.create_payload([Path(__file__)])
        blocker = client.create_job("busy", [payload["id"]])
        wait_for(lambda: client.get_job(blocker["id"])["state"] == "running", 10, "blocker")
        lows = [client.create_job("quick", [payload["id"]], priority="low") for _ in range(2)]
        highs = [client.create_job("quick", [payload["id"]], priority="high") for _ in range(2)]
        urgent = client.create_job("quick", [payload["id"]], priority="immediate")
        done = {j["id"]: client.wait_job(j["id"], timeout=60)
                for j in [blocker, *lows, *highs, urgent]}
        assert all(j["status"] == "healthy" for j in done.values())
        assert done[urgent["id"]]["started"] < done[blocker["id"]]["stopped"]
        assert max(done[j["id"]]["started"] for j in highs) < min(
            done[j["id"]]["started"] for j in lows)


def test_docs_page_lists_every_operation_without_external_assets(server: ServerProcess
                                                                 ) -> None:
    status, body = raw(server, "GET", "/openapi.json")
    assert status == 200
    paths = json.loads(body)["paths"]
    status, page = raw(server, "GET", "/docs")
    assert status == 200
    text = page.decode()
    for path in paths:
        assert f"<code>{path}</code>" in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from elsewhere
    assert "Authorization: Bearer" in text
