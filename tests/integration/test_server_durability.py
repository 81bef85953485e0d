"""Nothing accepted is lost: ``kill -9`` and restart, SIGTERM, a full disk, retention.

Every test runs a real ``clara-rt serve`` child process on its own data directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clara_rt.client import ClientError
from clara_rt.server.config import ServerConfig
from clara_rt.server.retention import Retention
from clara_rt.server.store import Store
from tests.conftest import need_peer
from tests.integration.test_server_api import folder_pipeline
from tests.server_process import ServerProcess, wait_for

pytest.importorskip("fastapi")


def running(client: object, job_id: str) -> bool:
    job = client.get_job(job_id)  # type: ignore[attr-defined]
    return any(op["state"] == "running" for op in job["operators"])


def test_kill_9_keeps_every_accepted_job_and_payload(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--workers", "1", "--max-running", "1")
    with proc:
        client = proc.client()
        client.create_pipeline(folder_pipeline("quick"))
        client.create_pipeline(folder_pipeline("slow", seconds=60))
        payload = client.create_payload([Path(__file__)], name="kept")
        finished = client.wait_job(client.create_job("quick", [payload["id"]])["id"], 30)
        assert finished["status"] == "healthy"
        victim = client.create_job("slow", [payload["id"]])
        wait_for(lambda: running(client, victim["id"]), 20, "the slow job to run")
        queued = [client.create_job("quick", [payload["id"]], priority=p)
                  for p in ("low", "normal", "high")]
        unstarted = client.create_job("quick", [payload["id"]], start=False)
        proc.kill()

        proc.start()  # same data directory
        client = proc.client()
        interrupted = client.get_job(victim["id"])
        assert (interrupted["state"], interrupted["status"]) == ("stopped", "faulted")
        assert "interrupted" in interrupted["error"]
        for job in queued:
            assert client.wait_job(job["id"], 30)["status"] == "healthy"
        assert client.get_job(unstarted["id"])["state"] == "pending"  # still waits for start
        assert client.get_job(finished["id"])["status"] == "healthy"
        files = [f["path"] for f in client.result_files(finished["id"])]
        assert "second/out/summary.json" in files
        assert client.get_payload(payload["id"])["name"] == "kept"
        assert client.get_pipeline("slow")["name"] == "slow"


def test_requeue_policy_runs_an_interrupted_job_again(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--workers", "1", "--on-restart", "requeue")
    with proc:
        client = proc.client()
        client.create_pipeline(folder_pipeline("two-seconds", seconds=2))
        payload = client.create_payload([Path(__file__)])
        job = client.create_job("two-seconds", [payload["id"]])
        wait_for(lambda: running(client, job["id"]), 20, "the job to run")
        proc.kill()
        proc.start()
        client = proc.client()
        done = client.wait_job(job["id"], 30)
        assert (done["status"], done["attempts"]) == ("healthy", 2)
        notes = [h["note"] for h in done["history"]]
        assert "re-queued after a server restart" in notes


def test_sigterm_stops_cleanly_and_requeued_jobs_resume(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--workers", "1", "--on-restart", "requeue",
                         "--shutdown-grace", "0.5")
    with proc:
        client = proc.client()
        client.create_pipeline(folder_pipeline("long", seconds=3))
        payload = client.create_payload([Path(__file__)])
        job = client.create_job("long", [payload["id"]])
        wait_for(lambda: running(client, job["id"]), 20, "the job to run")
        t0 = time.monotonic()
        assert proc.stop(timeout=30) == 0
        assert time.monotonic() - t0 < 15
        proc.start()
        done = proc.client().wait_job(job["id"], 30)
        assert done["status"] == "healthy"
        assert "re-queued: the server stopped while it ran" in [
            h["note"] for h in done["history"]]


def test_kill_9_during_an_upload_leaves_no_half_payload(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data")
    with proc:
        client = proc.client()
        kept = client.create_payload([Path(__file__)])
        sock = socket.create_connection(("127.0.0.1", proc.port))
        sock.sendall(b"POST /v1/payloads HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/x-tar\r\nContent-Length: 50000000\r\n\r\n")
        sock.sendall(b"\0" * (4 << 20))  # a tenth of it
        wait_for(lambda: any((proc.data / "tmp").iterdir()), 10, "the upload to be staged")
        proc.kill()
        sock.close()
        proc.start()
        client = proc.client()
        assert [p["id"] for p in client.list_payloads()] == [kept["id"]]
        assert list((proc.data / "tmp").iterdir()) == []
        assert [p.name for p in (proc.data / "payloads").iterdir()] == [kept["id"]]


def test_concurrent_uploads_and_jobs_lose_nothing(tmp_path: Path) -> None:
    """8 clients each upload 4 payloads and run a job on each, at once; every one is there."""
    proc = ServerProcess(tmp_path / "data", "--workers", "2")
    with proc:
        proc.client().create_pipeline(folder_pipeline("load"))
        errors: list[BaseException] = []
        created: list[tuple[str, str, int]] = []
        lock = threading.Lock()

        def one_client(n: int) -> None:
            client = proc.client()
            try:
                for i in range(4):
                    folder = tmp_path / f"in-{n}-{i}"
                    folder.mkdir()
                    for k in range(n % 3 + 1):
                        (folder / f"f{k}.bin").write_bytes(os.urandom(1000 + k))
                    payload = client.create_payload(folder)
                    job = client.create_job("load", [payload["id"]],
                                            priority=("high", "normal", "low")[i % 3])
                    with lock:
                        created.append((payload["id"], job["id"], n % 3 + 1))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=one_client, args=(n,)) for n in range(8)]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        client = proc.client()
        for payload_id, job_id, nfiles in created:
            assert client.get_payload(payload_id)["files"] == nfiles
            done = client.wait_job(job_id, 60)
            assert done["status"] == "healthy", done
            assert f"first sees {nfiles} input files" in client.logs(job_id, "first")
            assert [f["path"] for f in client.result_files(job_id)] == [
                "second/out/summary.json"]
        assert len(created) == 32
        assert len(client.list_jobs(pipeline="load", limit=100)) == 32
        assert time.monotonic() - t0 < 90


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def test_full_disk_answers_507_and_leaves_nothing(tmp_path: Path) -> None:
    disk = tmp_path / "small-disk"
    need_peer(_tmpfs(disk, "24m"), "a 24 MiB tmpfs mount (needs root)")
    try:
        proc = ServerProcess(disk / "data", "--min-free", "0", "--max-payload", "1G")
        proc.log_path = tmp_path / "server.log"
        with proc:
            client = proc.client()
            kept = client.create_payload([Path(__file__)])
            big = tmp_path / "big"
            big.mkdir()
            for i in range(3):
                (big / f"part{i}.bin").write_bytes(os.urandom(10 << 20))
            with pytest.raises(ClientError) as err:
                client.create_payload(big)
            assert err.value.status == 507, err.value
            assert "full" in str(err.value)
            assert [p["id"] for p in client.list_payloads()] == [kept["id"]]
            wait_for(lambda: list((proc.data / "tmp").iterdir()) == [], 5, "tmp to be emptied")
            again = client.create_payload([Path(__file__)])  # the server keeps working
            assert again["files"] == 1
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_min_free_reserve_refuses_uploads_with_507(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data", "--min-free", "1000000T") as proc:
        with pytest.raises(ClientError) as err:
            proc.client().create_payload([Path(__file__)])
        assert err.value.status == 507 and "--min-free" in str(err.value)


def test_retention_deletes_old_results_and_unused_payloads_only(tmp_path: Path) -> None:
    config = ServerConfig(data=tmp_path, retention_days=1.0, disk_threshold=1.0)
    store = Store(config.db_path)
    now = time.time()
    for job_id, state, stopped in (("old", "stopped", now - 3 * 86400),
                                   ("new", "stopped", now - 3600),
                                   ("busy", "running", None)):
        store.add_job({"id": job_id, "name": job_id, "pipeline_id": "p", "pipeline": "p",
                       "payloads": [f"pay-{job_id}"], "priority": "normal", "variables": {},
                       "timeout": None, "state": state, "status": "healthy", "queued": 0,
                       "error": None, "created": now - 4 * 86400}, "test")
        if stopped:
            store.update_job(job_id, stopped=stopped)
        (config.jobs_dir / job_id / "output").mkdir(parents=True)
        (config.jobs_dir / job_id / "output" / "r.bin").write_bytes(b"r" * 100)
        store.add_payload({"id": f"pay-{job_id}", "name": job_id, "files": 1, "size": 1,
                           "created": now - 4 * 86400})
        (config.payloads_dir / f"pay-{job_id}").mkdir(parents=True)
    report = Retention(config, store).run_once()
    assert (report.results, report.payloads) == (1, 2)  # old job; payloads of old and new
    assert not (config.jobs_dir / "old" / "output").exists()
    assert (config.jobs_dir / "new" / "output" / "r.bin").exists()
    assert (config.payloads_dir / "pay-busy").exists()  # a running job reads it
    assert store.job("old")["results_deleted"] is not None  # type: ignore[index]
    assert store.job("old")["status"] == "healthy"  # type: ignore[index]
    store.close()


def test_disk_threshold_deletes_oldest_results_first_and_keeps_what_jobs_need(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A threshold below the disk's real use: retention deletes everything it may, oldest
    # first, then says nothing more can go.
    config = ServerConfig(data=tmp_path, disk_threshold=1e-9)
    store = Store(config.db_path)
    now = time.time()
    for job_id, state, stopped in (("b", "stopped", now - 10), ("a", "stopped", now - 20),
                                   ("busy", "running", None)):
        store.add_job({"id": job_id, "name": job_id, "pipeline_id": "p", "pipeline": "p",
                       "payloads": ["shared"], "priority": "normal", "variables": {},
                       "timeout": None, "state": state, "status": "healthy", "queued": 0,
                       "error": None, "created": now - 30}, "test")
        if stopped:
            store.update_job(job_id, stopped=stopped)
        (config.jobs_dir / job_id / "output").mkdir(parents=True)
    store.add_payload({"id": "shared", "name": "s", "files": 1, "size": 1, "created": now})
    (config.payloads_dir / "shared").mkdir(parents=True)
    with caplog.at_level("WARNING", logger="clara_rt.server"):
        report = Retention(config, store).run_once()

    def deleted_at(job_id: str) -> float:
        return next(h["time"] for h in store.history(job_id)
                    if h["note"] == "results deleted by retention")

    assert deleted_at("a") <= deleted_at("b")  # oldest first
    assert not (config.jobs_dir / "a" / "output").exists()
    assert (report.results, report.payloads) == (2, 0)  # the running job's payload stays
    assert (config.payloads_dir / "shared").exists()
    assert (config.jobs_dir / "busy" / "output").exists()
    assert "nothing is left that retention may delete" in caplog.text
    store.close()


def _fill(path: Path) -> None:
    """Write ``path`` until the disk under it has not one byte left."""
    with open(path, "wb", buffering=0) as out:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * block)
            except OSError:
                continue


def test_issue_16_9_full_disk_at_a_jobs_end_keeps_every_thread_serving(tmp_path: Path) -> None:
    disk = tmp_path / "small-disk"
    need_peer(_tmpfs(disk, "32m"), "a 32 MiB tmpfs mount (needs root)")
    try:
        proc = ServerProcess(disk / "data", "--min-free", "0", "--workers", "1",
                             "--shutdown-grace", "1")
        proc.log_path = tmp_path / "server.log"
        with proc:
            client = proc.client()
            client.create_pipeline(folder_pipeline("short", seconds=2))
            client.create_pipeline(folder_pipeline("slow", seconds=60))
            payload = client.create_payload([Path(__file__)])
            job = client.create_job("short", [payload["id"]])
            wait_for(lambda: running(client, job["id"]), 20, "the job to run")
            _fill(disk / "filler")
            ended = client.wait_job(job["id"], 30)  # known even while the database is full
            assert (ended["state"], ended["status"]) == ("stopped", "faulted"), ended
            listed = {j["id"]: j["state"] for j in client.list_jobs(pipeline="short")}
            assert listed[job["id"]] == "stopped"
            for create in (lambda: client.create_pipeline(folder_pipeline("later")),
                           lambda: client.create_job("short", [payload["id"]])):
                with pytest.raises(ClientError) as err:
                    create()
                assert err.value.status == 507 and "full" in str(err.value), err.value
            assert [p.name for p in (proc.data / "pipelines").iterdir()
                    if p.name.endswith(".partial")] == []
            (disk / "filler").unlink()
            again = client.wait_job(client.create_job("short", [payload["id"]])["id"], 30)
            assert again["status"] == "healthy"  # the dispatch and finish threads live on
            slow = client.create_job("slow", [payload["id"]])
            wait_for(lambda: running(client, slow["id"]), 20, "the slow job to run")
            client.cancel_job(slow["id"])
            assert client.wait_job(slow["id"], 20)["status"] == "canceled"
            time.sleep(3)  # the end refused while the disk was full is saved by now
            proc.kill()
            proc.start()
            saved = proc.client().get_job(job["id"])
            assert (saved["state"], saved["status"]) == ("stopped", "faulted"), saved
            assert "interrupted" not in (saved["error"] or ""), saved
            t0 = time.monotonic()
            assert proc.stop(timeout=30) == 0
            assert time.monotonic() - t0 < 15
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
