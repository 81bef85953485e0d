"""A real ``clara-rt serve`` in a child process on a free loopback port, for tests.

    with ServerProcess(tmp_path / "data", token="t") as server:
        client = server.client()
        ...
        server.kill()        # SIGKILL, as a crash
        server.start()       # same data directory, same port

The child's stdout/stderr go to ``<data>/../server-<n>.log``; :meth:`log` returns the text so a
failing test can print it.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from clara_rt.bench import checkout_env
from clara_rt.client import Client, ClientError

__all__ = ["ServerProcess", "free_port", "run_job", "wait_for"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``clara-rt serve --data DATA --port PORT [extra args]`` in a child process."""

    def __init__(self, data: Path, *args: str, token: str | None = None,
                 port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.args = list(args)
        self.token = token
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.log_path = data.parent / f"server-{data.name}.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self._starts += 1
        cmd = [sys.executable, "-m", "clara_rt.cli", "serve", "--data", str(self.data),
               "--port", str(self.port), *self.args]
        env = {**checkout_env(), **self.env}
        if self.token:  # never on the command line: ps shows it to every user
            env["CLARA_RT_TOKEN"] = self.token
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self._starts}: {' '.join(cmd)}\n".encode())
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clara-rt serve exited with {self.proc.returncode}:\n"
                                   f"{self.log()[-3000:]}")
            try:
                client.health()
                return self
            except ClientError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"clara-rt serve not ready after {timeout} s:\n{self.log()[-3000:]}")

    def client(self, token: str | None = "<server>") -> Client:
        return Client(self.url, self.token if token == "<server>" else token, timeout=30.0)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        """One raw HTTP request (no token unless ``headers`` has one): status, content type,
        body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheader("content-type", ""), response.read()
        finally:
            conn.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash): nothing is flushed or shut down."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the server's clean shutdown. Returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop(timeout=30.0)
        except Exception:  # a test's own failure matters more
            self.kill()
        if exc is not None:
            sys.stderr.write(f"--- clara-rt serve log ---\n{self.log()[-5000:]}\n")


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_job(client: Client, pipeline: str, payload: dict[str, str],
            variables: dict[str, str] | None = None) -> dict[str, Any]:
    """Create and start a job of ``pipeline`` on ``payload``; return its record once stopped."""
    job = client.create_job(pipeline, [payload["id"]], variables=variables)
    return client.wait_job(str(job["id"]), 60)
