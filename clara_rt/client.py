"""Python client of ``clara-rt serve`` (the platform server), standard library only.

    from clara_rt.client import Client
    c = Client("http://127.0.0.1:8000", token=None)
    pipeline = c.create_pipeline("examples/ct-lung-seg/pipeline.yaml")
    payload = c.create_payload(Path("study/"))
    job = c.create_job(pipeline["name"], [payload["id"]], priority="high", start=True)
    c.wait_job(job["id"], timeout=600)
    c.download_results(job["id"], Path("out/"))

Uploads stream a tar archive built on the fly (bounded memory, no temporary archive); downloads
stream to a temporary name and are renamed when complete. Errors raise :class:`ClientError` with
the HTTP status and the server's message. :meth:`Client.from_config` reads the server address
and token from ``--host``/``--token``, ``$CLARA_RT_HOST``/``$CLARA_RT_TOKEN`` or
``~/.clara-rt/config.yaml`` (``host:``, ``token:``), in that order.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from clara_rt.errors import ClientError

__all__ = ["DEFAULT_HOST", "Client", "ClientError"]

DEFAULT_HOST = "http://127.0.0.1:8000"
_CHUNK = 1 << 20


class Client:
    """One clara-rt server. Thread-safe: each request uses its own connection."""

    def __init__(self, host: str = DEFAULT_HOST, token: str | None = None, *,
                 timeout: float = 60.0) -> None:
        if "://" not in host:
            host = f"http://{host}"
        url = urllib.parse.urlsplit(host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"server address {host!r} is not an http(s) URL")
        self.host = host.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._url = url

    @classmethod
    def from_config(cls, host: str | None = None, token: str | None = None,
                    config: Path | None = None) -> Client:
        """A client for the server named by arguments, environment or the config file."""
        settings: dict[str, Any] = {}
        path = config or Path.home() / ".clara-rt" / "config.yaml"
        if path.is_file():
            import yaml

            try:
                loaded = yaml.safe_load(path.read_text())
            except yaml.YAMLError as exc:
                raise ValueError(f"{path}: not valid YAML: {exc}") from exc
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping with 'host:' and 'token:'")
            settings = loaded or {}
        host = host or os.environ.get("CLARA_RT_HOST") or settings.get("host") or DEFAULT_HOST
        token = token or os.environ.get("CLARA_RT_TOKEN") or settings.get("token")
        return cls(str(host), None if token is None else str(token))

    # --- server ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")

    # --- pipelines ------------------------------------------------------------------------

    def create_pipeline(self, definition: Path | str, *, replace: bool = False) -> dict[str, Any]:
        """Register a pipeline from a YAML file (a :class:`Path`) or YAML text."""
        if isinstance(definition, Path):
            text, filename = definition.read_text(encoding="utf-8"), definition.name
        else:
            text, filename = definition, "pipeline.yaml"
        return self._json("POST", "/v1/pipelines", {"definition": text, "filename": filename,
                                                    "replace": replace})

    def list_pipelines(self) -> list[dict[str, Any]]:
        return self._json_list("/v1/pipelines")

    def get_pipeline(self, ref: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/pipelines/{_q(ref)}")

    def pipeline_definition(self, ref: str) -> str:
        """The pipeline's YAML text as it was registered."""
        conn, response = self._open("GET", f"/v1/pipelines/{_q(ref)}/definition")
        try:
            return response.read().decode("utf-8")
        finally:
            conn.close()

    def delete_pipeline(self, ref: str) -> None:
        self._json("DELETE", f"/v1/pipelines/{_q(ref)}")

    # --- payloads -------------------------------------------------------------------------

    def create_payload(self, paths: Path | list[Path], name: str | None = None
                       ) -> dict[str, Any]:
        """Upload a folder (its contents) or files as one payload."""
        items = [paths] if isinstance(paths, Path) else list(paths)
        members = list(_members(items))
        if not members:
            raise ClientError(None, f"nothing to upload: {', '.join(map(str, items))} holds "
                                    "no files")
        query = f"?name={_q(name)}" if name else ""
        return self._json("POST", f"/v1/payloads{query}", _tar_chunks(members),
                          content_type="application/x-tar")

    def list_payloads(self) -> list[dict[str, Any]]:
        return self._json_list("/v1/payloads")

    def get_payload(self, payload_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/payloads/{_q(payload_id)}")

    def delete_payload(self, payload_id: str) -> None:
        self._json("DELETE", f"/v1/payloads/{_q(payload_id)}")

    # --- jobs -----------------------------------------------------------------------------

    def create_job(self, pipeline: str, payloads: list[str], *, name: str | None = None,
                   priority: str = "normal", variables: dict[str, str] | None = None,
                   start: bool = True, timeout: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"pipeline": pipeline, "payloads": payloads,
                                "priority": priority, "variables": variables or {},
                                "start": start}
        if name is not None:
            body["name"] = name
        if timeout is not None:
            body["timeout"] = timeout
        return self._json("POST", "/v1/jobs", body)

    def start_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{_q(job_id)}/start")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{_q(job_id)}/cancel")

    def delete_job(self, job_id: str) -> None:
        self._json("DELETE", f"/v1/jobs/{_q(job_id)}")

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{_q(job_id)}")

    def list_jobs(self, **filters: Any) -> list[dict[str, Any]]:
        """Jobs, newest first; filters: state, status, pipeline, priority, since, until, limit."""
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        jobs: list[dict[str, Any]] = self._json("GET", f"/v1/jobs?{query}")["jobs"]
        return jobs

    def wait_job(self, job_id: str, timeout: float | None = None,
                 poll: float = 0.2) -> dict[str, Any]:
        """The job's record once it has stopped; :class:`TimeoutError` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job["state"] == "stopped":
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
            time.sleep(poll)

    def events(self, job_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Job records as the server streams them (Server-Sent Events); one job's stream ends
        when it stops."""
        path = f"/v1/jobs/{_q(job_id)}/events" if job_id else "/v1/events"
        conn, response = self._open("GET", path, timeout=None)
        try:
            data: list[str] = []
            while True:
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []
        finally:
            conn.close()

    def logs(self, job_id: str, operator: str) -> str:
        conn, response = self._open("GET", f"/v1/jobs/{_q(job_id)}/logs/{_q(operator)}")
        try:
            return response.read().decode("utf-8", errors="replace")
        finally:
            conn.close()

    # --- results --------------------------------------------------------------------------

    def result_files(self, job_id: str) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = self._json("GET", f"/v1/jobs/{_q(job_id)}/results")[
            "files"]
        return files

    def download_result_file(self, job_id: str, path: str, dest: Path) -> Path:
        """Download one result file to ``dest`` (a file path, or a folder to put it in)."""
        if dest.is_dir():
            dest = dest / Path(path).name
        conn, response = self._open(
            "GET", f"/v1/jobs/{_q(job_id)}/results/files/{urllib.parse.quote(path)}")
        try:
            _save(response, dest)
        finally:
            conn.close()
        return dest

    def download_results(self, job_id: str, dest: Path) -> Path:
        """Download the job's output folder into ``dest`` (created); return ``dest``."""
        conn, response = self._open("GET", f"/v1/jobs/{_q(job_id)}/results/archive")
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".clara-rt-download-", dir=dest))
        try:
            with tarfile.open(fileobj=response, mode="r|") as tar:
                tar.extractall(staging, filter="data")
            for entry in staging.iterdir():
                target = dest / entry.name
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                entry.rename(target)
        except tarfile.TarError as exc:
            raise ClientError(None, f"the results archive of job {job_id} is broken: {exc}"
                              ) from exc
        finally:
            conn.close()
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    # --- exports (results service) --------------------------------------------------------

    def create_export(self, job_id: str, file: str, destination: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{_q(job_id)}/exports",
                          {"file": file, "destination": destination})

    def update_export(self, export_id: str, *, state: str, retries: int | None = None,
                      error: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"state": state, "error": error}
        if retries is not None:
            body["retries"] = retries
        return self._json("PATCH", f"/v1/exports/{_q(export_id)}", body)

    def list_exports(self, job_id: str | None = None,
                     state: str | None = None) -> list[dict[str, Any]]:
        if job_id is not None and state is None:
            path = f"/v1/jobs/{_q(job_id)}/exports"
        else:
            query = urllib.parse.urlencode({k: v for k, v in (("job", job_id), ("state", state))
                                            if v is not None})
            path = f"/v1/exports?{query}"
        exports: list[dict[str, Any]] = self._json("GET", path)["exports"]
        return exports

    # --- transport ------------------------------------------------------------------------

    def _json(self, method: str, path: str, body: Any = None, *,
              content_type: str = "application/json") -> dict[str, Any]:
        conn, response = self._open(method, path, body, content_type=content_type)
        try:
            data = response.read()
        finally:
            conn.close()
        return cast(dict[str, Any], json.loads(data) if data else {})

    def _json_list(self, path: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._json("GET", path))

    def _open(self, method: str, path: str, body: Any = None, *,
              content_type: str = "application/json", timeout: float | None = -1.0
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        url = self._url
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = kind(url.hostname or "127.0.0.1", url.port,
                    timeout=self.timeout if timeout == -1.0 else timeout)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        chunked = False
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
        if body is not None:
            headers["Content-Type"] = content_type
            chunked = not isinstance(body, bytes)
        prefix = url.path.rstrip("/")
        try:
            try:
                conn.request(method, prefix + path, body=body, headers=headers,
                             encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                if conn.sock is None:  # never connected
                    raise
                # The server answered (413, 507, 401...) before the upload ended: read why.
            response = conn.getresponse()
        except (ConnectionError, OSError, http.client.HTTPException) as exc:
            conn.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ClientError(None, f"cannot reach the clara-rt server at {self.host}: "
                                    f"{reason} (is 'clara-rt serve' running there?)") from exc
        if response.status >= 400:
            data = response.read()
            conn.close()
            raise ClientError(response.status, f"{method} {path}: {response.status} "
                                               f"{response.reason}: {_detail(data)}")
        return conn, response


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _detail(data: bytes) -> str:
    try:
        detail = json.loads(data).get("detail", data.decode())
    except (ValueError, AttributeError, UnicodeDecodeError):
        return data[:500].decode("utf-8", errors="replace")
    return detail if isinstance(detail, str) else json.dumps(detail)


def _members(items: list[Path]) -> Iterator[tuple[Path, str]]:
    """(file, name in the archive): a folder's files relative to it, single files by name."""
    for item in items:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if path.is_file():
                    yield path, path.relative_to(item).as_posix()
        elif item.is_file():
            yield item, item.name
        else:
            raise ClientError(None, f"{item} does not exist")


def _tar_chunks(members: list[tuple[Path, str]]) -> Iterator[bytes]:
    """A tar archive of ``members``, produced by a thread into a pipe and read in chunks."""
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with open(write_fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w|") as tar:
                for path, name in members:
                    tar.add(path, arcname=name, recursive=False)
        except BaseException as exc:  # reported to the reader
            errors.append(exc)

    thread = threading.Thread(target=produce, name="clara-rt-upload", daemon=True)
    thread.start()
    with open(read_fd, "rb") as source:
        while chunk := source.read(_CHUNK):
            yield chunk
    thread.join()
    if errors:
        raise ClientError(None, f"reading the files to upload failed: {errors[0]}")


def _save(response: IO[bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
