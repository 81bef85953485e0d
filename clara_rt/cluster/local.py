"""A Ray cluster of ``ray start`` processes on this machine, for tests and benchmarks.

Each node is a ``ray start --block`` process in a session of its own (Ray's processes of that
node, raylet and workers included, keep its session id), so a node can be killed as a machine
dies (:meth:`LocalCluster.kill_node`: SIGKILL to every process of its session) and stopping the
cluster never touches Ray processes that this object did not start (``ray stop`` would). The
cluster uses token authentication with a fresh token (:attr:`LocalCluster.env` holds what a
client needs) and a short temporary folder of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["LocalCluster", "LocalNode", "ray_executable"]

_OBJECT_STORE = 100 << 20


def ray_executable() -> str | None:
    """The ``ray`` command next to this Python, or on ``PATH``."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


@dataclass(frozen=True)
class LocalNode:
    """One ``ray start --block`` process (its pid is its session id)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class LocalCluster:
    """Start a head and more nodes on this machine; kill nodes; stop all of them.

    Args:
        env: Base environment of the Ray processes (e.g. a ``PYTHONPATH`` that lets the node
            actors import clara-rt and the pipelines' operators); default ``os.environ``.
        root: Folder for Ray's files and the node logs (default: a new short temporary folder,
            removed by :meth:`stop`; Ray's socket paths must stay short).
        token: The cluster's authentication token (default: a new random one); give an old
            cluster's token and ports to bring it back where its clients look for it.
    """

    def __init__(self, env: Mapping[str, str] | None = None, root: Path | None = None,
                 token: str | None = None) -> None:
        command = ray_executable()
        if command is None:
            raise FileNotFoundError("the 'ray' command is not installed: "
                                    "pip install 'clara-rt[cluster]'")
        self._ray = command
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="crt-ray-")) if root is None else root
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        """What a process connecting to this cluster needs in its environment."""
        self._base = dict(os.environ if env is None else env)
        self.nodes: list[LocalNode] = []
        self.address: str | None = None
        self.client_address: str | None = None

    def start_head(self, *, num_cpus: int = 1, resources: Mapping[str, float] | None = None,
                   object_store_memory: int = _OBJECT_STORE, timeout: float = 60.0,
                   port: int | None = None, client_port: int | None = None) -> str:
        """Start the head node; return the cluster's ``HOST:PORT`` address.

        Args:
            num_cpus: CPUs the node offers (each node runtime takes its share).
            resources: Custom resources of the node.
            object_store_memory: Bytes of the node's shared-memory object store (Ray's
                default, 30 % of the machine's memory per node, is far too much for tests).
            timeout: Seconds to wait for ``ray start``.
            port: The GCS port (default: a free one).
            client_port: The Ray Client server's port (default: a free one).
        """
        port = port or _free_port()
        client_port = client_port or _free_port()
        self._start("head", ["--head", "--port", str(port), "--temp-dir", str(self.root / "r"),
                             "--include-dashboard", "false",
                             "--dashboard-port", str(_free_port()),
                             "--ray-client-server-port", str(client_port)],
                    num_cpus, resources, object_store_memory, timeout)
        self.address = f"127.0.0.1:{port}"
        self.client_address = f"ray://127.0.0.1:{client_port}"
        return self.address

    def add_node(self, *, num_cpus: int = 1, resources: Mapping[str, float] | None = None,
                 object_store_memory: int = _OBJECT_STORE, timeout: float = 60.0) -> LocalNode:
        """Start one more node joined to the head (arguments as for :meth:`start_head`)."""
        if self.address is None:
            raise RuntimeError("start_head() first")
        return self._start(f"node{len(self.nodes)}", ["--address", self.address], num_cpus,
                           resources, object_store_memory, timeout)

    def kill_node(self, node: LocalNode) -> None:
        """SIGKILL every process of the node (raylet, workers, ...), as when a machine dies."""
        _kill_session(node.proc.pid)
        node.proc.wait(10.0)

    def stop(self) -> None:
        """Kill every node this object started and remove its folder."""
        for node in reversed(self.nodes):
            _kill_session(node.proc.pid)
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(10.0)
        self.nodes.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _start(self, name: str, args: list[str], num_cpus: int,
               resources: Mapping[str, float] | None, object_store_memory: int,
               timeout: float) -> LocalNode:
        log = self.root / f"{name}.log"
        cmd = [self._ray, "start", "--block", *args, "--num-cpus", str(num_cpus),
               "--object-store-memory", str(object_store_memory),
               "--resources", json.dumps(dict(resources or {})),
               "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
               "--dashboard-agent-listen-port", str(_free_port()),
               "--metrics-export-port", str(_free_port())]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**self._base, **self.env},
                                    start_new_session=True)
        node = LocalNode(name, proc, log)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-3000:]
                _kill_session(proc.pid)
                raise RuntimeError(f"ray start ({name}) did not come up: {text}")
            time.sleep(0.1)
        return node


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kill_session(sid: int) -> None:
    """SIGKILL every process whose session id is ``sid`` (Linux /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)
