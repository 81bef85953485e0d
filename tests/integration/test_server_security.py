"""Issue 16: hostile and careless requests against a real ``clara-rt serve`` on loopback.

Each test names the item of issue 16 it holds the server to: the token is checked before a
body is read, every body is capped while it streams, uploads stop at their size and file-count
limits, odd names answer 4xx, timeouts are bounded, one server per data folder, and the token
never needs to be on a command line.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clara_rt.bench import checkout_env
from clara_rt.client import Client, ClientError
from tests.integration.test_server_api import folder_pipeline
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")
psutil = pytest.importorskip("psutil")

TOKEN = "issue-16-token"
MIB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("security") / "data"
    with ServerProcess(data, "--workers", "2", "--max-payload", "1M", "--max-files", "50",
                       token=TOKEN) as proc:
        proc.client().create_pipeline(folder_pipeline("files"))
        proc.client().create_pipeline(folder_pipeline("slow", seconds=30))
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Client:
    return server.client()


def rss(server: ServerProcess) -> int:
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def flood(server: ServerProcess, head: bytes, total: int, *, chunked: bool = False
          ) -> tuple[int, bytes]:
    """Send ``head`` then ``total`` bytes of body while reading the answer at the same time
    (the server may answer and close long before the body is sent); return (status, body)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sent = [0]

    def send() -> None:
        block = b"x" * MIB
        frame = f"{len(block):x}\r\n".encode() + block + b"\r\n" if chunked else block
        try:
            sock.sendall(head)
            while sent[0] < total:
                sock.sendall(frame)
                sent[0] += len(block)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed: what we want
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
        sender.join(30)
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def raw(server: ServerProcess, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    status, _, text = server.request(method, path, body, headers)
    return status, json.loads(text) if text.startswith(b"{") else {}


def auth(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", **(extra or {})}


def tar_of(members: list[tuple[str | bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name if isinstance(name, str)
                                   else name.decode("utf-8", "surrogateescape"))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def multipart(files: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def staged(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in (server.data / "tmp").iterdir())


# --- 5, 19: the token before the body, every body capped ------------------------------------


def test_issue_16_5_no_token_is_refused_before_a_200_mb_body_is_read(server: ServerProcess
                                                                      ) -> None:
    before = rss(server)
    for path in ("/v1/jobs", "/v1/payloads"):
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {200 * MIB}\r\n\r\n").encode()
        status, body = flood(server, head, 200 * MIB)
        assert status == 401, body
        assert "Bearer" in json.loads(body)["detail"]
    chunked = (b"POST /v1/pipelines HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
    assert flood(server, chunked, 200 * MIB, chunked=True)[0] == 401
    assert rss(server) - before < 20 * MIB, (before, rss(server))


def test_issue_16_5_bodies_are_capped_while_they_stream(server: ServerProcess) -> None:
    before = rss(server)
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n")
    status, body = flood(server, head, 200 * MIB, chunked=True)
    assert status == 413, body
    assert "larger than the server's limit" in json.loads(body)["detail"]
    declared = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: "
                + str(200 * MIB).encode() + b"\r\n\r\n")
    assert flood(server, declared, 200 * MIB)[0] == 413
    assert rss(server) - before < 20 * MIB, (before, rss(server))


def test_issue_16_19_malformed_json_without_a_token_is_401_with_one_422(server: ServerProcess
                                                                        ) -> None:
    bad = b'{"pipeline": '
    status, _ = raw(server, "POST", "/v1/jobs", bad, {"Content-Type": "application/json"})
    assert status == 401
    status, body = raw(server, "POST", "/v1/jobs", bad, auth({"Content-Type":
                                                              "application/json"}))
    assert status == 422, body


# --- 6, 15: size and file count while receiving ---------------------------------------------


def test_issue_16_6_multipart_stops_at_the_size_limit_while_receiving(server: ServerProcess
                                                                      ) -> None:
    before = rss(server)
    part = (b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"p.bin\""
            b"\r\n\r\n")
    head = (b"POST /v1/payloads HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b0undary\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(part):x}\r\n".encode() + part + b"\r\n")
    status, body = flood(server, head, 500 * MIB, chunked=True)  # one endless 500 MB part
    assert status == 413, body
    assert "1048576 bytes" in json.loads(body)["detail"]
    assert rss(server) - before < 20 * MIB
    wait_for(lambda: staged(server) == [], 5, "the half-received upload to be removed")


def test_issue_16_15_file_count_limit_for_tar_and_multipart(server: ServerProcess,
                                                            client: Client) -> None:
    before = len(client.list_payloads())
    many = [(f"f{i}.txt", b"") for i in range(51)]
    status, body = raw(server, "POST", "/v1/payloads", tar_of(many),
                       auth({"Content-Type": "application/x-tar"}))
    assert status == 413 and "--max-files" in str(body["detail"]), body
    status, body = raw(server, "POST", "/v1/payloads", multipart(many),
                       auth({"Content-Type": "multipart/form-data; boundary=b0undary"}))
    assert status == 413 and "--max-files" in str(body["detail"]), body
    status, body = raw(server, "POST", "/v1/payloads", multipart(many[:50]),
                       auth({"Content-Type": "multipart/form-data; boundary=b0undary"}))
    assert status == 201 and body["files"] == 50, body
    assert len(client.list_payloads()) == before + 1
    wait_for(lambda: staged(server) == [], 5, "refused uploads to be removed")


# --- 16: odd names are 4xx, never 500 ---------------------------------------------------------


@pytest.mark.parametrize(("members", "reason"), [
    ([("a", b"1"), ("a/b", b"2")], "already holds as a file"),
    ([("a/b", b"1"), ("a", b"2")], "both a folder and a file"),
    ([("n" * 300, b"1")], "longer than 255 bytes"),
    ([("/".join(["d" * 200] * 25), b"1")], "longer than 4096 bytes"),
    ([(b"caf\xe9.txt", b"1")], "not UTF-8"),
])
def test_issue_16_16_bad_member_names_are_refused(server: ServerProcess,
                                                  members: list[tuple[str | bytes, bytes]],
                                                  reason: str) -> None:
    status, body = raw(server, "POST", "/v1/payloads", tar_of(members),
                       auth({"Content-Type": "application/x-tar"}))
    assert status == 400 and reason in str(body["detail"]), body
    if all(isinstance(name, str) for name, _ in members):
        form = multipart([(str(name), data) for name, data in members])
        status, body = raw(server, "POST", "/v1/payloads", form,
                           auth({"Content-Type": "multipart/form-data; boundary=b0undary"}))
        assert status == 400, body  # a 5 KB name is also over the part header limit
        assert reason in str(body["detail"]) or "header size" in str(body["detail"]), body
    wait_for(lambda: staged(server) == [], 5, "refused uploads to be removed")


def test_issue_16_16_yaml_nested_500_deep_is_a_clear_422(server: ServerProcess,
                                                         tmp_path: Path) -> None:
    deep = "api-version: 0.4.0\nname: deep\noperators: " + "[" * 500 + "]" * 500 + "\n"
    status, body = raw(server, "POST", "/v1/pipelines", deep.encode(),
                       auth({"Content-Type": "application/yaml"}))
    assert status == 422 and "nested" in str(body["detail"]), body
    (tmp_path / "deep.yaml").write_text(deep)
    done = subprocess.run([sys.executable, "-m", "clara_rt.cli", "validate",
                           str(tmp_path / "deep.yaml")], capture_output=True, text=True,
                          env=checkout_env(), timeout=60, check=False)
    assert done.returncode != 0
    assert "nested" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_issue_16_16_a_broken_link_in_results_is_no_500(server: ServerProcess,
                                                        client: Client) -> None:
    payload = client.create_payload([Path(__file__)])
    job = client.wait_job(client.create_job("files", [payload["id"]])["id"], 30)
    output = server.data / "jobs" / job["id"] / "output"
    (output / "dangling").symlink_to(output / "nowhere")
    (output / "to-root").symlink_to("/")
    files = [f["path"] for f in client.result_files(job["id"])]
    assert "dangling" not in files and "to-root" not in files and files
    for path in (f"/v1/jobs/{job['id']}/results/archive", f"/console/jobs/{job['id']}",
                 f"/v1/jobs/{job['id']}/results/files/dangling"):
        status, _ = raw(server, "GET", path)
        assert status in (200, 404), (path, status)
    with tarfile.open(fileobj=io.BytesIO(_get(server, f"/v1/jobs/{job['id']}/results/archive"))
                      ) as tar:
        assert sorted(tar.getnames()) == sorted(files)


def _get(server: ServerProcess, path: str) -> bytes:
    return server.request("GET", path)[2]


# --- 8, 19: bounded timeouts, payloads required, filters checked -----------------------------


def test_issue_16_8_timeouts_are_finite_and_bounded(server: ServerProcess,
                                                    client: Client) -> None:
    payload = client.create_payload([Path(__file__)])
    for timeout in ("1e12", "1e400", "Infinity", "NaN", str(7 * 86400 + 1)):
        body = f'{{"pipeline": "files", "payloads": ["{payload["id"]}"], "timeout": {timeout}}}'
        status, answer = raw(server, "POST", "/v1/jobs", body.encode(),
                             auth({"Content-Type": "application/json"}))
        assert status == 422, (timeout, answer)
    # the deadline thread is alive: a short timeout still stops a slow job
    job = client.create_job("slow", [payload["id"]], timeout=1)
    assert client.wait_job(job["id"], 30)["status"] == "timed-out"


def test_issue_16_19_no_payload_and_bad_filters_are_422(server: ServerProcess,
                                                        client: Client) -> None:
    with pytest.raises(ClientError) as err:
        client.create_job("files", [])
    assert err.value.status == 422 and "payload" in str(err.value)
    for query in ("state=foo", "status=foo", "priority=urgent"):
        status, _ = raw(server, "GET", f"/v1/jobs?{query}")
        assert status == 422, query


# --- 13, 7: one server per data folder, the token off the command line -----------------------


def test_issue_16_13_a_second_server_on_the_same_data_fails_clearly(server: ServerProcess
                                                                    ) -> None:
    second = ServerProcess(server.data, token=TOKEN)
    second.log_path = server.data.parent / "second.log"
    with pytest.raises(RuntimeError, match="exited with 1"):
        second.start(timeout=30)
    assert "in use by another clara-rt serve" in second.log()
    assert "Traceback" not in second.log()
    assert server.client().health()["status"] == "ok"  # the first one is untouched


def test_issue_16_7_token_file_and_environment_keep_the_token_out_of_ps(tmp_path: Path
                                                                        ) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    proc = ServerProcess(tmp_path / "data", "--token-file", str(secret))
    with proc:
        assert proc.proc is not None
        cmdline = " ".join(psutil.Process(proc.proc.pid).cmdline())
        assert "from-a-file" not in cmdline
        with pytest.raises(ClientError) as err:
            proc.client(token=None).create_pipeline(folder_pipeline("p"))
        assert err.value.status == 401
        assert proc.client(token="from-a-file").create_pipeline(folder_pipeline("p"))
    flagged = ServerProcess(tmp_path / "flag", "--token", "on-the-command-line")
    with flagged:
        assert flagged.client(token="on-the-command-line").health()["status"] == "ok"
    assert "visible to every user" in flagged.log()


def test_issue_16_13_lock_is_released_when_the_server_stops(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data")
    with proc:
        pass
    t0 = time.monotonic()
    with proc:  # the same folder again, at once
        assert proc.client().health()["status"] == "ok"
    assert time.monotonic() - t0 < 30


def test_issue_16_8_events_are_json_even_for_a_non_finite_number() -> None:
    from clara_rt.server.sse import _event

    frame = _event({"id": "j", "state": "running", "timeout": float("inf"),
                    "operators": [{"duration_ms": float("nan")}]}).decode()
    data = json.loads(frame.split("data: ", 1)[1], parse_constant=pytest.fail)
    assert data["timeout"] is None and data["operators"][0]["duration_ms"] is None


def test_issue_16_7_an_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "clara_rt.cli", "serve", "--data",
                           str(tmp_path / "data"), "--token-file", str(tmp_path / "missing")],
                          capture_output=True, text=True, env=checkout_env(), timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert "cannot read --token-file" in done.stderr and "Traceback" not in done.stderr


def test_issue_16_8_a_far_deadline_does_not_end_the_runtimes_deadline_thread() -> None:
    import numpy as np

    from clara_rt import Pipeline, Runtime
    from clara_rt.errors import JobTimeoutError
    from tests.ops import Sleep

    pipeline = Pipeline("sleepy")
    pipeline.add(Sleep("nap", seconds=5.0))
    payload = {"nap.in": np.zeros(3, dtype="float32")}
    with Runtime(workers=2) as rt:
        with pytest.raises(ValueError, match="finite"):
            rt.submit(pipeline, payload, timeout=float("inf"))
        far = rt.submit(pipeline, payload, timeout=1e12)  # past threading.TIMEOUT_MAX
        near = rt.submit(pipeline, payload, timeout=0.3)
        with pytest.raises(JobTimeoutError):
            near.result()
        far.cancel()
