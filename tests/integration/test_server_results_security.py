"""Issue 16 (1, 2, 3, 4, 10, 12, 17) against a real ``clara-rt serve`` running real commands.

Command operators are the hostile party here: they leave links to ``/etc/passwd`` and ``/`` in
their results, dump their environment into their log, get shell text as job values, write into
their input, print far more than a log keeps, and outlive a ``kill -9`` of the server.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clara_rt.client import Client, ClientError
from tests.server_process import ServerProcess, run_job, wait_for

pytest.importorskip("fastapi")

TOKEN = "issue-16-results-token"


def command_pipeline(name: str, script: str, *, op: str = "cmd",
                     variables: dict[str, str] | None = None) -> str:
    """A one-operator pipeline running ``sh -c SCRIPT`` on /input, writing /output."""
    block = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in (variables or {}).items())
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: {op}
  container:
    image: none
    command: ["/bin/sh", "-c", {json.dumps(script)}]{f'''
  variables:{block}''' if block else ""}
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("results-security") / "data"
    env = {"CLARA_RT_TOKEN_PROBE": TOKEN, "CLARA_RT_LOG_LIMIT": "64K"}
    with ServerProcess(data, "--workers", "2", token=TOKEN, env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Client:
    return server.client()


@pytest.fixture(scope="module")
def payload(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("payload")
    (folder / "a.txt").write_text("uploaded\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    return client.create_payload(folder)


def get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    """GET without a token (result and log reads are open)."""
    status, _, body = server.request("GET", path)
    return status, body


# --- 1: results never leave the output folder ------------------------------------------------


def test_issue_16_1_links_in_results_are_dropped_and_never_followed(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    client.create_pipeline(command_pipeline("links", (
        "echo kept > /output/real.txt && mkdir /output/d && echo x > /output/d/in.txt && "
        "ln -s /etc/passwd /output/passwd-link && ln -s / /output/root && "
        "ln -s /etc /output/d/etc && mkfifo /output/fifo")))
    job = run_job(client, "links", payload)
    assert job["status"] == "healthy", job
    job_id = str(job["id"])
    files = sorted(f["path"] for f in client.result_files(job_id))
    assert files == ["cmd/output/d/in.txt", "cmd/output/real.txt"]
    history = " ".join(h["note"] or "" for h in client.get_job(job_id)["history"])
    assert "dropped 4 link(s) or special file(s)" in history and "passwd-link" in history
    base = f"/v1/jobs/{job_id}/results"
    for path in ("cmd/output/passwd-link", "cmd/output/root/etc/passwd",
                 "cmd/output/d/etc/passwd", "../../../../etc/passwd", "%2Fetc%2Fpasswd",
                 "cmd/output/fifo"):
        status, body = get(server, f"{base}/files/{path}")
        assert status in (403, 404), (path, status)
        assert b"root:" not in body
    status, body = get(server, f"{base}/files/cmd/output/real.txt")
    assert (status, body) == (200, b"kept\n")
    # A link planted after collection (on the server's disk) is refused on read as well.
    output = server.data / "jobs" / job_id / "output" / "cmd" / "output"
    (output / "late").symlink_to("/etc/passwd")
    (output / "late-dir").symlink_to("/etc")
    for path in ("late", "late-dir/passwd"):
        status, body = get(server, f"{base}/files/cmd/output/{path}")
        assert status == 404 and b"root:" not in body, path
    status, body = get(server, f"{base}/archive")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == files
        assert all(m.isfile() for m in tar.getmembers())
    status, page = get(server, f"/console/jobs/{job_id}")
    assert status == 200 and b"results/files/cmd/output/real.txt" in page  # a result...
    assert b"results/files/cmd/output/passwd-link" not in page  # ...links never
    assert b"results/files/cmd/output/late" not in page


# --- 2, 3: environment and job values --------------------------------------------------------


def test_issue_16_2_commands_never_see_the_server_token(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    client.create_pipeline(command_pipeline("envdump", "env | sort; env > /output/env.txt"))
    job = run_job(client, "envdump", payload)
    assert job["status"] == "healthy", job
    log = client.logs(str(job["id"]), "cmd")
    assert "--- stdout of the command ---" in log and "NVIDIA_CLARA_JOBID=" in log
    assert TOKEN not in log
    status, env_txt = get(server, f"/v1/jobs/{job['id']}/results/files/cmd/output/env.txt")
    assert status == 200
    names = {line.split("=", 1)[0] for line in env_txt.decode().splitlines() if "=" in line}
    assert TOKEN.encode() not in env_txt and "CLARA_RT_TOKEN_PROBE" not in names
    assert {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "NVIDIA_CLARA_WORKSPACE"} <= names
    assert not {n for n in names if n.startswith("CLARA_RT")}


def test_issue_16_3_job_values_are_data_not_shell_text(
        server: ServerProcess, client: Client, payload: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    client.create_pipeline(command_pipeline(
        "sleeper", "sleep ${{SECS}} && printf '%s' \"${{SECS}}\" > /output/secs.txt && "
                   "echo '${{SECS}}' > /output/quoted.txt"))
    hostile = f"0; id > {marker}"
    job = run_job(client, "sleeper", payload, {"SECS": hostile})
    assert not marker.exists(), "a job value was run as shell text"
    assert job["status"] == "faulted"  # sleep got one argument, "0; id > ...", and refused it
    fine = run_job(client, "sleeper", payload, {"SECS": "0"})
    assert fine["status"] == "healthy", fine
    base = f"/v1/jobs/{fine['id']}/results/files/cmd/output"
    assert get(server, f"{base}/secs.txt") == (200, b"0")
    assert get(server, f"{base}/quoted.txt") == (200, b"0\n")
    for value in ("$(id)", "`id`", "a'b\"c", "*"):
        job = run_job(client, "sleeper", payload, {"SECS": value})
        assert job["status"] == "faulted"
        assert not marker.exists()


# --- 4: names --------------------------------------------------------------------------------


def test_issue_16_4_unsafe_operator_names_are_refused_at_the_line(
        server: ServerProcess, client: Client) -> None:
    for name in ("/tmp/x/absop", "../up", "a\\\\b", ".."):
        text = command_pipeline("badname", "true", op=f'"{name}"')
        with pytest.raises(ClientError) as caught:
            client.create_pipeline(text)
        assert caught.value.status in (400, 422), caught.value
        assert "line 4" in str(caught.value) or ":4:" in str(caught.value), str(caught.value)
    assert not Path("/tmp/x/absop.log").exists()


# --- 10: a job never changes a stored payload ------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_issue_16_10_a_job_writing_into_its_input_leaves_the_payload_alone(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    stored = server.data / "payloads" / payload["id"]
    before, record = _digest(stored), client.get_payload(payload["id"])
    client.create_pipeline(command_pipeline("vandal", (
        "echo changed > /input/a.txt; rm -f /input/sub/b.bin; echo new > /input/new.txt; "
        "cat /input/a.txt > /output/seen.txt")))
    for _ in range(2):
        job = run_job(client, "vandal", payload)
        assert job["status"] == "healthy", job
    assert _digest(stored) == before
    assert client.get_payload(payload["id"]) == record
    # The second job saw the upload, not what the first one wrote.
    status, seen = get(server, f"/v1/jobs/{job['id']}/results/files/cmd/output/seen.txt")
    assert (status, seen) == (200, b"changed\n")
    assert not (server.data / "jobs" / str(job["id"]) / "input").exists()  # copy removed


# --- 17: capped, streamed logs ---------------------------------------------------------------


def test_issue_16_17_logs_keep_their_tail_and_say_they_were_cut(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    client.create_pipeline(command_pipeline("chatty", (
        "i=0; while [ $i -lt 3000 ]; do printf 'line %06d %0100d\\n' $i 0; i=$((i+1)); done; "
        "echo LAST-LINE")))
    job = run_job(client, "chatty", payload)  # ~330 KB of stdout, limit 64 KiB
    assert job["status"] == "healthy", job
    status, body = get(server, f"/v1/jobs/{job['id']}/logs/cmd")
    assert status == 200
    assert 30_000 < len(body) < 2 * 65536 + 8192, len(body)
    assert b"earlier bytes of this log were cut" in body
    assert body.rstrip().endswith(b"LAST-LINE")
    assert b"line 000000 " not in body


# --- 12: no command outlives kill -9 of the server -------------------------------------------


def _processes_of(workspace_part: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if workspace_part.encode() in env and ") Z " not in stat:
            found.append(int(entry.name))
    return found


def test_issue_16_12_kill_9_then_requeue_runs_one_copy(tmp_path: Path) -> None:
    trace = tmp_path / "starts.txt"
    with ServerProcess(tmp_path / "data", "--on-restart", "requeue", token=TOKEN) as server:
        client = server.client()
        client.create_pipeline(command_pipeline(
            "long", "echo $$ >> \"$TRACE\"; sleep 30; sleep 30", variables={"TRACE": str(trace)}))
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "x.txt").write_text("x")
        payload = client.create_payload(folder)
        job_id = str(client.create_job("long", [payload["id"]])["id"])
        wait_for(lambda: trace.exists() and trace.read_text().strip(), 30, "the command starts")
        old = _processes_of(f"/jobs/{job_id}/work/")
        assert old, "the command's processes are not visible"
        server.kill()
        time.sleep(0.3)
        # PR_SET_PDEATHSIG took the shell; its `sleep` child is still there, orphaned.
        server.start()
        wait_for(lambda: len(trace.read_text().split()) == 2, 30, "the job to start again")
        alive = [pid for pid in old if pid in _processes_of(f"/jobs/{job_id}/work/")]
        assert alive == [], f"processes of the first run survived the restart: {alive}"
        shells = [pid for pid in _processes_of(f"/jobs/{job_id}/work/")
                  if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"/bin/sh")]
        assert len(shells) == 1, shells
        client.cancel_job(job_id)
        client.wait_job(job_id, 30)
        wait_for(lambda: not _processes_of(f"/jobs/{job_id}/work/"), 10, "cancel to kill it")


def test_issue_16_12_the_shell_dies_with_the_server(tmp_path: Path) -> None:
    trace = tmp_path / "pid.txt"
    server = ServerProcess(tmp_path / "data", token=TOKEN).start()
    try:
        client = server.client()
        client.create_pipeline(command_pipeline(
            "long", "echo $$ > \"$TRACE\"; sleep 30; sleep 30", variables={"TRACE": str(trace)}))
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "x.txt").write_text("x")
        payload = client.create_payload(folder)
        client.create_job("long", [payload["id"]])
        pid = int(wait_for(lambda: trace.exists() and trace.read_text().strip(), 30, "start"))
    finally:
        server.kill()
    wait_for(lambda: not Path(f"/proc/{pid}").exists()
             or ") Z " in Path(f"/proc/{pid}/stat").read_text(), 10, "the shell to die")
    for child in _processes_of(str(tmp_path / "data")):
        os.kill(child, signal.SIGKILL)  # the orphaned `sleep`: a restart would reap it


def test_issue_16_1_an_output_folder_swapped_for_a_link_is_not_collected(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    client.create_pipeline(command_pipeline("swap", "rmdir /output && ln -s / /output"))
    job = run_job(client, "swap", payload)
    assert job["status"] == "faulted", job
    assert "replaced its folder or its output folder(s) output with a link" in str(job["error"])
    assert client.result_files(str(job["id"])) == []
    # Swapping the operator's own folder (a parent of the output) is caught the same way.
    client.create_pipeline(command_pipeline(
        "swap-parent", "cd .. && mv cmd cmd.old && ln -s / cmd"))
    job = run_job(client, "swap-parent", payload)
    assert job["status"] == "faulted" and "replaced its folder" in str(job["error"]), job
    assert client.result_files(str(job["id"])) == []
    output = server.data / "jobs" / str(job["id"]) / "output"
    assert not any(p.is_symlink() for p in output.rglob("*")) if output.exists() else True
    status, body = get(server, f"/v1/jobs/{job['id']}/results/files/cmd/output/etc/passwd")
    assert status == 404 and b"root:" not in body
