"""Issue 16, second pass: variations of the 20 reproductions that still got through.

Everything runs against a real ``clara-rt serve`` on 127.0.0.1 with real commands: job values
reaching a shell behind a wrapper (``env sh -c``) or a nested shell, the server token read from
``/proc/<server pid>/environ`` by a command, and a hard link to a file outside the output folder
served as a result.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clara_rt.client import Client
from tests.conftest import need_peer
from tests.server_process import ServerProcess, run_job

pytest.importorskip("fastapi")

TOKEN = "issue-16-attacks-token-5f1e"


def pipeline(name: str, command: list[str]) -> str:
    """A one-operator pipeline running ``command`` on /input, writing /output."""
    return f"""\
api-version: 0.4.0
name: {name}
operators:
- name: cmd
  container:
    image: none
    command: {json.dumps(command)}
  input:
  - path: /input
  output:
  - path: /output
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("attacks") / "data"
    with ServerProcess(data, "--workers", "2", token=TOKEN) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Client:
    return server.client()


@pytest.fixture(scope="module")
def payload(client: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("payload")
    (folder / "a.txt").write_text("uploaded\n")
    return client.create_payload(folder)


def _need_pynetdicom() -> None:
    need_peer(importlib.util.find_spec("pynetdicom") is not None,
              "pynetdicom (pip install 'clara-rt[dicom-net]')")


def get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    """GET without a token (result reads are open)."""
    status, _, body = server.request("GET", path)
    return status, body


# --- 3: a shell behind a wrapper, or nested in the script ----------------------------------


@pytest.mark.parametrize("command", [
    ["/usr/bin/env", "sh", "-c", "sleep ${{SECS}}"],
    ["env", "LC_ALL=C", "nice", "-n", "1", "/bin/bash", "-c", "sleep ${{SECS}}"],
    ["timeout", "20", "sh", "-ec", "sleep ${{SECS}}"],
], ids=["env-sh", "env-nice-bash", "timeout-sh"])
def test_issue_16_3_a_wrapped_shell_gets_job_values_as_data(
        client: Client, payload: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    marker = tmp_path / "pwned"
    name = f"wrapped-{abs(hash(tuple(command))) % 10**8}"
    client.create_pipeline(pipeline(name, command), replace=True)
    job = run_job(client, name, payload, {"SECS": f"0; touch {marker}"})
    assert not marker.exists(), f"{command}: a job value was run as shell text"
    assert job["status"] == "faulted"  # sleep got the one argument "0; touch ..." and refused it
    assert run_job(client, name, payload, {"SECS": "0"})["status"] == "healthy"


@pytest.mark.parametrize("command", [
    ["/usr/bin/env", "python3", "-c", "print('${{X}}')"],
    ["sh", "-c", "bash -c 'echo ${{X}}'"],
    ["sh", "-c", "sh -c \"echo ${{X}}\" && true"],
    ["sh", "-c", "eval echo ${{X}}"],
], ids=["env-python", "nested-bash-single", "nested-sh-double", "eval"])
def test_issue_16_3_a_job_value_in_code_run_by_a_nested_shell_is_refused(
        client: Client, payload: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    marker = tmp_path / "pwned"
    name = f"nested-{abs(hash(tuple(command))) % 10**8}"
    client.create_pipeline(pipeline(name, command), replace=True)
    hostile = f"a'); import os; os.system('touch {marker}'); print('" if "python3" in command \
        else f"a; touch {marker}"
    job = run_job(client, name, payload, {"X": hostile})
    assert job["status"] == "faulted" and not job["operators"], job  # refused, never started
    assert "would be pasted into" in str(job["error"]) and "CLARA_VAR_X" in str(job["error"])
    assert not marker.exists()


# --- 2: the token is not in the server's /proc environ -------------------------------------


def test_issue_16_2_no_process_environment_holds_the_token(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    script = ("for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done "
              "> /output/all.txt; tr '\\0' '\\n' < /proc/$PPID/environ > /output/parent.txt")
    client.create_pipeline(pipeline("procenv", ["/bin/sh", "-c", script]))
    job = run_job(client, "procenv", payload)
    assert job["status"] == "healthy", job
    base = f"/v1/jobs/{job['id']}/results/files/cmd/output"
    status, parent = get(server, f"{base}/parent.txt")
    assert status == 200 and b"PATH=" in parent  # the server's environment was read...
    status, every = get(server, f"{base}/all.txt")
    assert status == 200 and len(every) > 100
    assert TOKEN.encode() not in parent and TOKEN.encode() not in every  # ...without the token
    assert client.create_pipeline(pipeline("procenv", ["true"]), replace=True)  # token still works


# --- 1: a hard link to a file outside the output folder -------------------------------------


def test_issue_16_1_hard_links_never_serve_a_file_outside_the_output(
        server: ServerProcess, client: Client, payload: dict[str, str], tmp_path: Path) -> None:
    outside = server.data.parent / "outside-secret.txt"
    outside.write_text("secret v1\n")
    client.create_pipeline(pipeline("hardlink", [
        "/bin/sh", "-c", f"ln {outside} /output/linked && echo mine > /output/own.txt"]))
    job = run_job(client, "hardlink", payload)
    assert job["status"] == "healthy", job
    job_id = str(job["id"])
    output = server.data / "jobs" / job_id / "output" / "cmd" / "output"
    assert (output / "linked").stat().st_nlink == 1  # the link was broken when collected
    assert outside.stat().st_nlink == 1
    with open(outside, "r+") as f:  # the outside file changes in place after the job
        f.write("secret v2\n")
    base = f"/v1/jobs/{job_id}/results/files/cmd/output"
    assert get(server, f"{base}/linked") == (200, b"secret v1\n")  # what the job made, no more
    assert get(server, f"{base}/own.txt") == (200, b"mine\n")
    os.link(outside, output / "late")  # planted after collection: refused on every read
    status, body = get(server, f"{base}/late")
    assert status == 404 and b"secret" not in body
    assert "cmd/output/late" not in {f["path"] for f in client.result_files(job_id)}
    status, archive = get(server, f"/v1/jobs/{job_id}/results/archive")
    assert status == 200 and b"secret v2" not in archive


# --- 16, 19: job values and names a command could never be given -------------------------


@pytest.mark.parametrize(("body", "says"), [
    ({"variables": {"A": "x\x00y"}}, "NUL"),
    ({"variables": {"A": "x" * 200_000}}, "65536"),
    ({"variables": {"../x": "1"}}, "'../x'"),
    ({"variables": {"A B": "1"}}, "'A B'"),
    ({"name": "job\x00name"}, "control"),
    ({"name": "two\nlines"}, "control"),
    ({"timeout": True}, "timeout"),
    ({"timeout": "60"}, "timeout"),
], ids=["nul-value", "huge-value", "path-name", "space-name", "nul-job-name", "newline-name",
        "timeout-true", "timeout-text"])
def test_issue_16_19_job_values_a_command_cannot_take_are_refused_at_creation(
        server: ServerProcess, client: Client, payload: dict[str, str],
        body: dict[str, object], says: str) -> None:
    client.create_pipeline(pipeline("echoer", ["/bin/sh", "-c", "echo ${{A}} > /output/a"]),
                           replace=True)
    request = {"pipeline": "echoer", "payloads": [payload["id"]], "variables": {"A": "1"},
               "start": True, **body}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/v1/jobs", json.dumps(request),
                     {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        answer = conn.getresponse()
        status, detail = answer.status, answer.read().decode()
    finally:
        conn.close()
    assert status == 422 and says in detail, (status, detail)
    assert run_job(client, "echoer", payload, {"A": "fine"})["status"] == "healthy"


# --- 18: associations that hold a slot by sending a PDU slowly, or never finishing it --------


def _echo(address: tuple[str, int]) -> bool:
    from pynetdicom import AE

    ae = AE(ae_title="PROBE")
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 3
    assoc = ae.associate(*address, ae_title="LUNGSEG")
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


def _trickle(sock: socket.socket, stop: threading.Event) -> None:
    """An A-ASSOCIATE-RQ that announces 1000 bytes and sends one every 0.2 s (slowloris)."""
    for byte in struct.pack(">BBI", 1, 0, 1000) + bytes(1000):
        if stop.wait(0.2):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_issue_16_18_half_sent_and_trickled_pdus_free_their_slot(tmp_path: Path) -> None:
    _need_pynetdicom()
    from clara_rt.dicom.config import parse_config
    from clara_rt.dicom.scp import StorageScp
    from tests.dicom_peers import free_port

    config = parse_config(
        f"dicom: {{ae-title: CLARA, port: {free_port()}, storage: {tmp_path / 'store'}, "
        "acse-timeout: 1, network-timeout: 2, max-associations: 4}\n"
        "ae-titles: [{name: LUNGSEG, pipelines: [p]}]\n")
    scp = StorageScp(config, lambda *args: None, tracker_interval=0.05)
    scp.start()
    stop = threading.Event()
    half = [socket.create_connection(scp.address) for _ in range(3)]
    slow = [socket.create_connection(scp.address) for _ in range(3)]
    huge = socket.create_connection(scp.address)
    try:
        for sock in half:  # a header announcing 1000 bytes, 10 of them, then silence
            sock.sendall(struct.pack(">BBI", 1, 0, 1000) + bytes(10))
        threads = [threading.Thread(target=_trickle, args=(s, stop), daemon=True) for s in slow]
        for thread in threads:
            thread.start()
        huge.sendall(struct.pack(">BBI", 1, 0, 0xFFFFFFF0))  # 4 GiB announced, never buffered
        huge.settimeout(5)
        sent = 0
        with contextlib.suppress(OSError):  # reset, broken pipe or a full window: refused
            while sent < 64 << 20:
                sent += huge.send(bytes(1 << 16))
        assert sent < 64 << 20, "the listener buffers a PDU of any announced length"
        time.sleep(2.5)  # past acse-timeout: every slot held above must be free again
        start = time.monotonic()
        assert _echo(scp.address), "a half-sent or trickled PDU still holds the listener"
        assert time.monotonic() - start < 3
        for sock in [*half, *slow]:
            sock.settimeout(3)
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(16) == b""  # closed by the listener
    finally:
        stop.set()
        for sock in [*half, *slow, huge]:
            sock.close()
        scp.stop()


# --- 4: a payload's name is a label of one line ----------------------------------------------


@pytest.mark.parametrize("name", ["two%0Alines", "nul%00", "x" * 300],
                         ids=["newline", "nul", "long"])
def test_issue_16_4_payload_names_are_one_short_line(server: ServerProcess, name: str,
                                                     tmp_path: Path) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        member = tarfile.TarInfo("f.txt")
        member.size = 2
        tar.addfile(member, io.BytesIO(b"hi"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", f"/v1/payloads?name={name}", raw.getvalue(),
                     {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-tar"})
        answer = conn.getresponse()
        status, detail = answer.status, answer.read().decode()
    finally:
        conn.close()
    assert status == 422 and "name" in detail, (status, detail)
    assert not list((server.data / "tmp").glob("payload-*"))  # nothing left half-received


# --- 12: a command that leaves its session (setsid) does not outlive it ---------------------


def _sleepers(arg: str) -> list[int]:
    """Processes running ``sleep ARG``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == \
                    b"sleep\x00" + arg.encode() + b"\x00":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_issue_16_12_processes_that_left_the_command_session_die_with_it(
        tmp_path: Path) -> None:
    tag = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10**6}"
    escape = (f"setsid sleep 4{tag} </dev/null >/dev/null 2>&1 & "
              f"(setsid sleep 5{tag} </dev/null >/dev/null 2>&1 &); ")
    with ServerProcess(tmp_path / "data", token=TOKEN) as server:
        client = server.client()
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "a.txt").write_text("x\n")
        payload = client.create_payload(folder)
        client.create_pipeline(pipeline("escape", ["/bin/sh", "-c", escape + "echo done"]))
        client.create_pipeline(pipeline("hang", ["/bin/sh", "-c", escape.replace(
            "sleep 4", "sleep 6").replace("sleep 5", "sleep 7") + "sleep 60"]))
        try:
            job = run_job(client, "escape", payload)
            assert job["status"] == "healthy", job
            time.sleep(0.3)
            assert _sleepers(f"4{tag}") == [] and _sleepers(f"5{tag}") == []
            hung = client.create_job("hang", [payload["id"]])
            deadline = time.monotonic() + 20
            while len(_sleepers(f"6{tag}") + _sleepers(f"7{tag}")) < 2:
                assert time.monotonic() < deadline, "the escaping command never started"
                time.sleep(0.1)
            server.kill()  # kill -9: the escaped sleepers are reaped at the next start
            server.start()
            assert client.get_job(str(hung["id"]))["state"] == "stopped"
            assert _sleepers(f"6{tag}") == [] and _sleepers(f"7{tag}") == []
        finally:
            for pid in [p for d in "4567" for p in _sleepers(f"{d}{tag}")]:  # ours only
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)


# --- 15: a compressed archive's headers count against the limit, not only its files ---------


def _pax_bomb(size: int, rounds: int = 1) -> bytes:
    """A gzip tar of ``rounds`` x (4 pax headers of ``size`` bytes, one empty file)."""
    import tarfile
    import zlib

    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, size
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    for i in range(rounds):
        for _ in range(4 if rounds > 1 else 1):
            out.append(comp.compress(header.tobuf(format=tarfile.USTAR_FORMAT)))
            out += [comp.compress(b"x" * min(1 << 20, size - at)) for at in range(0, size, 1 << 20)]
            out.append(comp.compress(bytes(-size % 512)))
        out.append(comp.compress(tarfile.TarInfo(f"f{i}").tobuf(format=tarfile.USTAR_FORMAT)))
    return b"".join([*out, comp.compress(bytes(1024)), comp.flush()])


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize(("limits", "expected"), [
    (("--max-payload", "1M", "--max-files", "100"), (413, "limit")),
    ((), (400, "header record")),  # the defaults (20 GiB): one header still costs <= 1 MiB
], ids=["1M", "defaults"])
def test_issue_16_15_a_compressed_header_bomb_stops_at_the_payload_limit(
        tmp_path: Path, limits: tuple[str, ...], expected: tuple[int, str]) -> None:
    # 1M: 50 x 4 headers of 900 KB each (none too large alone); defaults: one of 200 MB
    body = _pax_bomb(900 << 10, rounds=50) if limits else _pax_bomb(200 << 20)
    assert len(body) < 1 << 20  # under --max-payload as sent
    with ServerProcess(tmp_path / "data", *limits, token=TOKEN) as server:
        assert server.proc is not None
        before = _peak_rss_kib(server.proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        start = time.monotonic()
        try:
            conn.request("POST", "/v1/payloads", body, {"Authorization": f"Bearer {TOKEN}",
                                                        "Content-Type": "application/gzip"})
            answer = conn.getresponse()
            status, detail = answer.status, answer.read().decode()
        finally:
            conn.close()
        grown = _peak_rss_kib(server.proc.pid) - before
        assert status == expected[0] and expected[1] in detail, (status, detail)
        assert grown < 64 << 10, f"peak RSS grew by {grown} KiB for a {len(body)}-byte upload"
        assert time.monotonic() - start < 5


# --- 1: a file swapped for a link while it is being served -----------------------------------


def test_issue_16_1_a_link_swapped_in_during_downloads_is_never_followed(
        server: ServerProcess, client: Client, payload: dict[str, str]) -> None:
    client.create_pipeline(pipeline("swapped", ["/bin/sh", "-c", "echo mine > /output/f"]))
    job = run_job(client, "swapped", payload)
    assert job["status"] == "healthy", job
    output = server.data / "jobs" / str(job["id"]) / "output" / "cmd" / "output"
    stop = threading.Event()

    def swap() -> None:  # a process left behind, racing the server's check and its open
        while not stop.is_set():
            with contextlib.suppress(FileExistsError):
                os.symlink("/etc/passwd", output / ".link")
            os.replace(output / ".link", output / "f")
            (output / ".file").write_text("mine\n")
            os.replace(output / ".file", output / "f")

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    served = 0
    try:
        for _ in range(300):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", f"/v1/jobs/{job['id']}/results/files/cmd/output/f")
                answer = conn.getresponse()
                body = answer.read()
            finally:
                conn.close()
            assert b"root:" not in body, "a link swapped in after the check was followed"
            assert answer.status in (200, 404), answer.status
            if answer.status == 200:
                assert body == b"mine\n"
                served += 1
    finally:
        stop.set()
        swapper.join(5)
    assert served > 0


# --- 2, 7: the adapter's token is neither on its command line nor in its /proc environ, and a
# token file others may read is warned about ---------------------------------------------------


@pytest.mark.parametrize("how", ["env", "file", "argv"])
def test_issue_16_7_the_dicom_adapter_token_is_not_left_in_proc(tmp_path: Path, how: str) -> None:
    _need_pynetdicom()
    from clara_rt.bench import checkout_env
    from tests.dicom_peers import dicom_adapter, free_port

    port, token = free_port(), f"adapter-token-{how}-7c1d"
    config = tmp_path / "adapter.yaml"
    config.write_text(f"dicom: {{ae-title: CLARA, port: {port}, storage: {tmp_path / 'store'}}}"
                      "\nae-titles: [{name: LUNGSEG, pipelines: [p]}]\n")
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "token").chmod(0o644)  # others may read it: warned
    extra = {"env": [], "file": ["--token-file", str(tmp_path / "token")],
             "argv": ["--token", token]}[how]
    env = {**checkout_env(), **({"CLARA_RT_TOKEN": token} if how == "env" else {})}
    log = tmp_path / "adapter.log"
    with dicom_adapter(config, port, log, *extra, env=env) as adapter:
        proc = Path(f"/proc/{adapter.pid}")
        assert token.encode() not in (proc / "environ").read_bytes()
        assert token.encode() not in (proc / "cmdline").read_bytes()
        assert ("--token is visible" in log.read_text()) == (how == "argv")
        assert ("may be read by other users (mode 644)" in log.read_text()) == (how == "file")


# --- 17: a small NIfTI that declares a huge volume costs the viewer nothing -------------------


def _nifti_bomb(path: Path, n: int) -> None:
    """A gzip NIfTI-1 of n x n x n uint8 zeros (n=700: 343 MB unpacked, 1.5 MB on disk)."""
    import gzip

    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, n, n, n, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 2, 8)  # uint8, 8 bits
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<ff", header, 108, 352.0, 1.0)
    header[344:348] = b"n+1\0"
    zeros = bytes(1 << 24)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes(header) + bytes(4))
        left = n ** 3
        while left:
            f.write(zeros[:min(left, len(zeros))])
            left -= min(left, len(zeros))


def test_issue_16_17_a_nifti_declaring_a_huge_volume_is_not_loaded_by_the_viewer(
        server: ServerProcess, client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "bomb"
    folder.mkdir()
    _nifti_bomb(folder / "bomb.nii.gz", 700)
    assert (folder / "bomb.nii.gz").stat().st_size < 2 << 20
    bomb = client.create_payload(folder)
    client.create_pipeline(pipeline("viewed", ["/bin/sh", "-c", "echo hi > /output/x"]),
                           replace=True)
    job = run_job(client, "viewed", bomb)
    assert job["status"] == "healthy", job
    assert server.proc is not None
    before = _peak_rss_kib(server.proc.pid)
    for path in ("viewer", "view.png"):
        status, body = get(server, f"/console/jobs/{job['id']}/{path}")
        assert status in (200, 404), (status, body[:300])
    grown = _peak_rss_kib(server.proc.pid) - before
    assert grown < 128 << 10, f"the viewer grew the server by {grown} KiB for a 1.5 MB file"
    status, page = get(server, f"/console/jobs/{job['id']}/viewer")
    assert b"more than the viewer loads" in page  # the page says why nothing is shown


def test_issue_16_17_a_deflated_dicom_series_declaring_a_huge_volume_is_not_loaded(
        server: ServerProcess, client: Client, tmp_path: Path) -> None:
    import warnings

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.data.dicom_series import make_series

    folder = tmp_path / "deflated"
    [template] = make_series(tmp_path / "one", slices=1, rows=16, cols=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(template)
        ds.Rows = ds.Columns = 4096  # 32 MiB of zeros per slice, ~40 KB deflated
        ds.PixelData = bytes(4096 * 4096 * 2)
        folder.mkdir()
        for k in range(20):  # 20 slices: 336 M voxels declared, under 1 MB on disk
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [0.0, 0.0, float(k)]
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 4 << 20
    bomb = client.create_payload(folder)
    client.create_pipeline(pipeline("viewed", ["/bin/sh", "-c", "echo hi > /output/x"]),
                           replace=True)
    job = run_job(client, "viewed", bomb)
    assert server.proc is not None
    before = _peak_rss_kib(server.proc.pid)
    status, page = get(server, f"/console/jobs/{job['id']}/viewer")
    grown = _peak_rss_kib(server.proc.pid) - before
    assert status in (200, 404) and b"more than the viewer loads" in page, (status, page[:300])
    assert grown < 256 << 10, f"the viewer grew the server by {grown} KiB"


def test_issue_16_2_forgetting_a_short_token_leaves_other_variables_alone() -> None:
    import subprocess
    import sys

    from clara_rt.bench import checkout_env

    probe = ("import os; from clara_rt.server.environ import forget_secret; "
             "n = forget_secret('0'); env = open('/proc/self/environ', 'rb').read(); "
             "print(n, b'CLARA_RT_TOKEN=*' in env, b'CUDA_VISIBLE_DEVICES=0' in env, "
             "b'X=a0b' in env, os.environ.get('CUDA_VISIBLE_DEVICES'), "
             "'CLARA_RT_TOKEN' in os.environ)")
    env = {**checkout_env(), "CLARA_RT_TOKEN": "0", "CUDA_VISIBLE_DEVICES": "0", "X": "a0b"}
    done = subprocess.run([sys.executable, "-c", probe, "0"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["2", "True", "True", "True", "0", "False"], done.stderr
