"""The server run of the ``load`` scenario (see ``_load.py``): jobs through ``clara-rt serve``.

:func:`serving` yields the URL of the server to load (the one given, or a ``clara-rt serve``
started on a temporary data directory and stopped afterwards); :func:`run_server` warms it up
with one job, creates and starts the jobs from client threads at the requested pace, and returns
the server's records of them once all have stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from clara_rt.bench._record import Progress
from clara_rt.bench._workload import checkout_env

__all__ = ["run_server", "serving"]


@contextmanager
def serving(host: str | None, workers: int, say: Progress) -> Iterator[str]:
    """``host``, or the URL of a ``clara-rt serve`` started for the run on a temp data dir."""
    if host is not None:
        yield host
        return
    from clara_rt.client import Client, ClientError

    root = Path(tempfile.mkdtemp(prefix="clara-rt-bench-load-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "clara_rt.cli", "serve", "--data", str(root / "data"),
           "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    say(f"load: starting a local server ({url}, workers {workers})")
    log_path = root / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=checkout_env(),
                                start_new_session=True)
    try:
        client = Client(url)
        deadline = time.monotonic() + 60.0
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the local clara-rt serve exited with {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                client.health()
                break
            except ClientError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the local clara-rt serve did not answer within 60 s"
                                       ) from None
                time.sleep(0.05)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def run_server(client: Any, pipeline: str, input_dir: Path, sequence: list[str], *,
                delay: float, concurrency: int, payload_per_job: bool, timeout: float,
                say: Progress) -> dict[str, Any]:
    """Warm up, submit ``sequence``, wait; the server's job records and client timings."""
    t0 = time.perf_counter()
    shared = None if payload_per_job else client.create_payload(input_dir, name="bench-load")
    upload_s = time.perf_counter() - t0
    warm = client.create_job(pipeline, [_payload(client, input_dir, shared)],
                             name="bench-load-warmup", start=True)
    warm = client.wait_job(warm["id"], timeout=timeout, poll=0.05)
    if warm["status"] != "healthy":
        say(f"load: the warm-up job ended {warm['status']}: {warm['error']}")
    ids: list[str | None] = [None] * len(sequence)
    created: list[float] = []
    errors: list[BaseException] = []
    counter = iter(range(len(sequence)))
    lock = threading.Lock()
    start = time.perf_counter()

    def submitter() -> None:
        while not errors:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            pause = start + i * delay - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            try:
                job = client.create_job(pipeline, [_payload(client, input_dir, shared)],
                                        name=f"bench-load-{i}-{sequence[i]}",
                                        priority=sequence[i], start=True)
            except BaseException as exc:
                errors.append(exc)
                return
            ids[i] = job["id"]
            created.append(float(job["created"]))

    threads = [threading.Thread(target=submitter, name=f"bench-load-{k}", daemon=True)
               for k in range(max(1, min(concurrency, len(sequence))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submit_s = time.perf_counter() - start
    mine = [i for i in ids if i is not None]
    if errors:
        for job_id in mine:
            _cancel_quietly(client, job_id)
        raise errors[0]
    say(f"load: {len(mine)} jobs submitted in {submit_s:.2f} s; waiting")
    records = _wait_all(client, mine, min(created), timeout)
    return {"records": records, "upload_s": upload_s, "submit_s": submit_s}


def _payload(client: Any, input_dir: Path, shared: dict[str, Any] | None) -> str:
    if shared is not None:
        return str(shared["id"])
    return str(client.create_payload(input_dir, name="bench-load")["id"])


def _wait_all(client: Any, ids: list[str], since: float,
              timeout: float) -> list[dict[str, Any]]:
    """The records of ``ids`` once all have stopped (one job list per 0.2 s, jobs created
    since the first of them, server clock)."""
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    done: dict[str, dict[str, Any]] = {}
    while True:
        for job in client.list_jobs(limit=10000, since=since):
            if job["id"] in wanted and job["state"] == "stopped":
                done[job["id"]] = job
        if len(done) == len(wanted):
            return [done[i] for i in ids]
        if time.monotonic() > deadline:
            for job_id in wanted - set(done):
                _cancel_quietly(client, job_id)
            raise TimeoutError(f"{len(wanted) - len(done)} of {len(wanted)} jobs still "
                               f"unfinished after {timeout} s (cancelled)")
        time.sleep(0.2)


def _cancel_quietly(client: Any, job_id: str) -> None:
    from clara_rt.client import ClientError

    with suppress(ClientError):
        client.cancel_job(job_id)
