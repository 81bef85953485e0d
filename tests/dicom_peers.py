"""Real DICOM peers for the adapter tests: dcmtk's tools, dcmtk storescp, Orthanc.

Every helper calls dcmtk by its full path (``/usr/bin/storescu``...): pynetdicom installs
console scripts of the same names into the virtual environment, which take other options.
:func:`storescp` and :func:`orthanc` are context managers that start the peer on a free port,
wait until it answers, and kill it at the end; :func:`dicom_adapter` does the same for a
``clara-rt dicom`` process, and :func:`pynetdicom_send` / :func:`meta_end` send and take apart
Part 10 files. A missing tool skips the test locally and fails
it in CI (:func:`tests.conftest.need_peer`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import need_peer

DCMTK = Path("/usr/bin")
NODELAY = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk and Orthanc: ~90x faster C-STORE


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dcmtk(tool: str) -> str:
    """Full path of a dcmtk tool (``storescu``...); skips or fails when dcmtk is missing."""
    path = DCMTK / tool
    need_peer(path.exists(), f"dcmtk {tool} (apt-get install dcmtk)")
    return str(path)


def storescu(port: int, *files: Path, called: str = "LUNGSEG", calling: str = "SCANNER1",
             options: tuple[str, ...] = (), nodelay: bool = True,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Send files or folders (``+sd +r``) with dcmtk storescu; return the finished process."""
    return subprocess.run(
        [dcmtk("storescu"), "-aet", calling, "-aec", called, *options, "+sd", "+r",
         "127.0.0.1", str(port), *map(str, files)],
        env=NODELAY if nodelay else {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"},
        capture_output=True, text=True, timeout=timeout, check=False)


def echoscu(port: int, *, called: str, calling: str = "ECHOSCU"
            ) -> subprocess.CompletedProcess[str]:
    """C-ECHO with dcmtk echoscu; return the finished process."""
    return subprocess.run([dcmtk("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1",
                           str(port)], capture_output=True, text=True, timeout=30, check=False)


def meta_end(data: bytes) -> int:
    """Offset of the data set in a Part 10 file (after the group-length-prefixed meta)."""
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
    return 144 + int.from_bytes(data[140:144], "little")


def pynetdicom_send(port: int, files: list[Path], called: str = "LUNGSEG") -> list[int]:
    """C-STORE ``files`` with a pynetdicom SCU, one presentation context per SOP class and
    transfer syntax of their file meta (sent as they are); the statuses."""
    import pydicom
    from pynetdicom import AE, build_context

    metas = [pydicom.filereader.read_file_meta_info(p) for p in files]
    ae = AE(ae_title="PYSCU")
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in sorted(
        {(str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID)) for m in metas})]
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(path).Status) for path in files]
    finally:
        assoc.release()


@contextlib.contextmanager
def dicom_adapter(config: Path, port: int, log: Path, *extra: str,
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``clara-rt dicom --config config`` (output to ``log``) with no server behind it (a
    free port): series wait staged while the listener serves. Yields once the listener answers
    C-ECHO as CLARA on ``port`` (the config's); at the end SIGTERM, after which it must exit 0."""
    from clara_rt.bench import checkout_env

    with log.open("wb") as out:
        adapter = subprocess.Popen(
            [sys.executable, "-m", "clara_rt.cli", "dicom", "--config", str(config), "--server",
             f"http://127.0.0.1:{free_port()}", *extra], env=env or checkout_env(), stdout=out,
            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while echoscu(port, called="CLARA").returncode != 0:
            assert adapter.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield adapter
    finally:
        adapter.send_signal(signal.SIGTERM)
        assert adapter.wait(timeout=30) == 0, log.read_text()


@contextlib.contextmanager
def storescp(out: Path, aet: str = "PEERSCP") -> Iterator[int]:
    """Run dcmtk storescp (listens on all interfaces) writing ``<out>/*.dcm``; yield its port."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (out.parent / f"storescp-{port}.log").open("wb")
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", aet, "-od", str(out), "+xa", "-pm",
                             "-fe", ".dcm", str(port)], env=NODELAY, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while echoscu(port, called=aet).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                need_peer(False, f"dcmtk storescp (did not start; see {log.name})")
            time.sleep(0.05)
        yield port
    finally:
        _kill(proc)
        log.close()


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST API and DICOM port."""

    http: str
    port: int
    aet: str
    workdir: Path

    def get(self, path: str) -> Any:
        """GET ``path`` of the REST API, decoded from JSON."""
        with urllib.request.urlopen(self.http + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: bytes) -> Any:
        """POST ``body`` to ``path`` of the REST API, decoded from JSON."""
        request = urllib.request.Request(self.http + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def put(self, path: str, body: bytes) -> Any:
        """PUT ``body`` to ``path`` of the REST API, decoded from JSON (``None`` if empty)."""
        request = urllib.request.Request(self.http + path, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return json.loads(text) if text.strip() else None

    def instance(self, sop_instance_uid: str) -> str | None:
        """Orthanc's id of the instance with this SOP Instance UID, or ``None``."""
        found = self.post("/tools/lookup", sop_instance_uid.encode())
        return next((f["ID"] for f in found if f["Type"] == "Instance"), None)

    def file(self, instance_id: str) -> bytes:
        """The DICOM file Orthanc stored for ``instance_id``."""
        with urllib.request.urlopen(f"{self.http}/instances/{instance_id}/file",
                                    timeout=10) as response:
            return bytes(response.read())


@contextlib.contextmanager
def orthanc(workdir: Path, aet: str = "ORTHANC") -> Iterator[Orthanc]:
    """Run Orthanc (Debian package) as a plain process with a throw-away configuration."""
    exe = shutil.which("Orthanc")
    need_peer(exe is not None, "Orthanc (apt-get install orthanc)")
    assert exe is not None
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    (workdir / "orthanc.json").write_text(json.dumps({
        "Name": "clara-rt-test", "StorageDirectory": str(workdir / "db"),
        "IndexDirectory": str(workdir / "db"), "HttpPort": http_port, "DicomPort": dicom_port,
        "DicomAet": aet, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True,
        "UnknownSopClassAccepted": True, "StableAge": 2, "SaveJobs": False, "Plugins": [],
        "TcpNoDelay": True}))
    log = (workdir / "stdout.log").open("wb")
    proc = subprocess.Popen([exe, f"--logdir={workdir}", str(workdir / "orthanc.json")],
                            env=NODELAY, stdout=log, stderr=subprocess.STDOUT)
    peer = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port, aet, workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                peer.get("/system")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    need_peer(False, "Orthanc (did not start; see "
                                     f"{workdir / 'stdout.log'})")
                time.sleep(0.05)
        yield peer
    finally:
        _kill(proc)
        log.close()


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
