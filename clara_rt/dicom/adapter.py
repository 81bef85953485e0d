"""Clara Deploy's DICOM Adapter in clara-rt: studies in by DICOM, jobs on the server, results out.

    from clara_rt.client import Client
    from clara_rt.dicom.adapter import DicomAdapter
    from clara_rt.dicom.config import load_config

    with DicomAdapter(load_config("adapter.yaml"), Client("http://127.0.0.1:8000")) as adapter:
        ...  # receives until the block ends

Flow:
    :class:`~clara_rt.dicom.scp.StorageScp` receives instances and, after the quiet time, moves
    each complete series into ``<storage>/.staging``. The submit thread (``clara-rt-dicom-submit``)
    turns every staged group into one payload on the server and one started job per pipeline of
    the called AE title (named ``<AE>-<UID tail>``, with the AE's priority and variables), then
    deletes the group. :class:`~clara_rt.dicom.results.ResultExporter` follows those jobs and
    sends their DICOM results to the AE's destinations.

No series is lost when the server is unreachable or refuses a request: the group stays staged,
what was already done is recorded next to it (``submit.json``: payload id, job per pipeline),
and it is tried again after 1, 2, 4 ... seconds (at most ``max_backoff``). Staged groups left
by a previous run are submitted at start. The adapter talks to the server only through
:class:`clara_rt.client.Client`.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from clara_rt.client import Client, ClientError
from clara_rt.dicom.config import AdapterConfig, CalledAe
from clara_rt.dicom.export import Timeouts
from clara_rt.dicom.results import ResultExporter
from clara_rt.dicom.scp import StorageScp
from clara_rt.dicom.tracker import SeriesInfo, read_group, write_json

__all__ = ["DicomAdapter"]

logger = logging.getLogger(__name__)

_SUBMIT_FILE = "submit.json"


@dataclass
class _Backoff:
    failures: int = 0
    next_try: float = 0.0


class DicomAdapter:
    """The DICOM adapter: listener, submitter, job follower and exporter in one object.

    Args:
        config: The adapter configuration.
        client: Client of the platform server (``clara-rt serve``).
        poll: Seconds between two looks at followed jobs.
        timeouts: Network timeouts of exports.
        max_backoff: Longest wait between two submissions of a group the server refused.
        tcp_nodelay: Disable Nagle's algorithm on accepted DICOM sockets.

    ``start()`` returns once the listener is bound; ``stop()`` stops receiving first, then the
    threads. Use it as a context manager to do both.
    """

    def __init__(self, config: AdapterConfig, client: Client, *, poll: float = 0.5,
                 timeouts: Timeouts | None = None, max_backoff: float = 60.0,
                 tcp_nodelay: bool = True) -> None:
        self.config = config
        self.client = client
        self.scp = StorageScp(config, self._on_complete, tcp_nodelay=tcp_nodelay)
        self.results = ResultExporter(config, client, config.dicom.storage, poll=poll,
                                      timeouts=timeouts)
        self._max_backoff = max_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._backoff: dict[Path, _Backoff] = {}
        self._thread: threading.Thread | None = None
        self._server_down = False

    @property
    def address(self) -> tuple[str, int]:
        """The listener's bound ``(host, port)``."""
        return self.scp.address

    def start(self) -> None:
        """Listen (raises ``OSError`` when the port is taken), then submit and export.

        Staged groups and followed jobs left by a previous run are picked up at once.
        """
        self.scp.start()
        try:
            self.results.start()
            self._stop.clear()
            self._thread = threading.Thread(target=self._submit_loop,
                                            name="clara-rt-dicom-submit", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop receiving, then submitting and exporting; unfinished work is resumed later."""
        self.scp.stop()
        self._stop_threads()

    def staged(self) -> list[Path]:
        """The complete groups not yet submitted (``.staging/<AE>/<group>``)."""
        return self.scp.layout.staged()

    def __enter__(self) -> DicomAdapter:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # --- private --------------------------------------------------------------------------

    def _stop_threads(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.results.stop()

    def _on_complete(self, ae: CalledAe, folder: Path, info: SeriesInfo) -> None:
        self._wake.set()  # the submit thread picks the group up from the staging area

    def _submit_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            now = time.monotonic()
            for group in self.staged():
                if self._stop.is_set():
                    return
                backoff = self._backoff.get(group)
                if backoff is not None and backoff.next_try > now:
                    continue
                try:
                    self._submit(group)
                except ClientError as exc:
                    self._retry_later(group, exc)
                except Exception:
                    logger.exception("submitting %s failed; will try again", group)
                    self._retry_later(group, None)

    def _submit(self, group: Path) -> None:
        """Create the payload and the jobs of one staged group, then delete the group."""
        info = read_group(group)
        ae = self.config.called_ae(info.called_ae)
        if ae is None:
            self._backoff[group] = _Backoff(1, time.monotonic() + 3600)
            logger.error("%s: AE title %s is not configured any more; %s stays in %s",
                         info.describe(), info.called_ae, info.group_id, group)
            return
        done: dict[str, Any] = _read_json(group / _SUBMIT_FILE) or {"payload": None, "jobs": {}}
        name = f"{ae.name}-{_tail(info)}"
        if done["payload"] is None:
            payload = self.client.create_payload(group / "data", name=name)
            done["payload"] = payload["id"]
            write_json(group / _SUBMIT_FILE, done)
            logger.info("payload %s created from %s", payload["id"], info.describe())
        for pipeline in ae.pipelines:
            if pipeline in done["jobs"]:
                continue
            job = self.client.create_job(pipeline, [done["payload"]], name=name,
                                         priority=ae.priority, variables=dict(ae.variables),
                                         start=True)
            done["jobs"][pipeline] = job["id"]
            write_json(group / _SUBMIT_FILE, done)
            self.results.follow(job["id"], ae.name, f"{pipeline} on {info.describe()}")
            logger.info("job %s created: pipeline %s, priority %s, payload %s (%s)", job["id"],
                        pipeline, ae.priority, done["payload"], info.describe())
        self._server_is_up()
        self._backoff.pop(group, None)
        shutil.rmtree(group, ignore_errors=True)

    def _retry_later(self, group: Path, exc: ClientError | None) -> None:
        backoff = self._backoff.setdefault(group, _Backoff())
        delay = min(2.0 ** backoff.failures, self._max_backoff)
        backoff.failures += 1
        backoff.next_try = time.monotonic() + delay
        if exc is None:
            return
        if exc.status is None:
            if not self._server_down:
                logger.error("submitting %s: %s; the series stays in %s and is retried until "
                             "the server answers", group.name, exc, group)
            self._server_down = True
        else:
            logger.error("submitting %s: the server refused: %s; the series stays in %s, next "
                         "try in %.0f s", group.name, exc, group, delay)

    def _server_is_up(self) -> None:
        if self._server_down:
            logger.info("the clara-rt server answers again; submitting staged series")
            self._server_down = False


def _tail(info: SeriesInfo) -> str:
    uid = info.series_uid if len(info.series_uids) == 1 else info.study_uid
    return uid.rsplit(".", 1)[-1][-12:] or "series"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

