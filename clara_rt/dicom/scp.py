"""The adapter's DICOM listener: C-ECHO and C-STORE for every storage SOP class (pynetdicom).

Associations:
    A request is checked before any presentation context is negotiated. An unknown called AE
    title is refused with A-ASSOCIATE-RJ *called-AE-title-not-recognised*; a calling AE title not
    in the called AE's ``allowed-calling-aes`` with *calling-AE-title-not-recognised*. The
    adapter's own AE title is accepted for C-ECHO (health checks) but stores nothing.

Stores:
    The data set is written exactly as it arrived (no decoding, any transfer syntax, compressed
    pixel data stays compressed) behind a Part 10 header, to ``.tmp``, fsynced, then renamed to
    ``<storage>/<calledAE>/<Study>/<Series>/<SOPInstance>.dcm`` by the
    :class:`~clara_rt.dicom.tracker.SeriesTracker`; only then is Success returned. Before that
    :func:`~clara_rt.dicom.intake.check_dataset` walks the whole data set: one that is cut off,
    has trailing garbage or a malformed element gets *cannot understand* (``0xC210``), Pixel Data
    shorter than its header declares *data set does not match SOP class* (``0xA900``). A missing
    UID, or one that is not digits and dots (1 to 64 characters: UIDs name folders), gets
    ``0xC212``; a full disk *out of resources* (``0xA700``). The partial file is removed and the
    association goes on. Instances of an AE's ``ignored-sop-classes`` get Success and are dropped.

Timeouts:
    ``acse-timeout`` bounds the wait for the A-ASSOCIATE-RQ of a new connection and for a release,
    ``dimse-timeout`` the wait for a DIMSE message, ``network-timeout`` an idle association; a
    connection closed before it asked for an association frees its slot at once (pynetdicom
    alone would hold it until ``acse-timeout``). At most ``max-associations`` run at a time. A PDU
    longer than the listener takes is refused unread, and one PDU must arrive within
    ``acse-timeout`` (before the request) or ``network-timeout`` (see ``pdu_reads.py``).

Threads:
    pynetdicom runs one thread per association; the handlers only touch the tracker (locked) and
    a small per-association counter table (locked). TCP_NODELAY is set on every accepted socket:
    C-STORE responses are small writes that Nagle's algorithm would hold back for ~40 ms each.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clara_rt.dicom.config import AdapterConfig
from clara_rt.dicom.intake import DatasetFacts, DatasetProblem, check_dataset
from clara_rt.dicom.pdu_reads import bound_reads
from clara_rt.dicom.tracker import OnComplete, SeriesTracker, StorageLayout

if TYPE_CHECKING:
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

__all__ = ["STATUS", "StorageScp", "require_pynetdicom"]

logger = logging.getLogger(__name__)

STATUS = {
    "success": 0x0000,
    "out_of_resources": 0xA700,
    "dataset_mismatch": 0xA900,   # Pixel Data does not hold what the header declares
    "cannot_understand": 0xC210,  # the data set cannot be decoded
    "missing_uid": 0xC212,        # a required UID is absent, empty or inconsistent
    "no_pipeline": 0xC213,        # sent to the adapter's own AE title, which runs nothing
    "internal_error": 0xC214,     # an unexpected failure while storing (logged with traceback)
}

_UID_NAMES = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID",
              "sop": "SOPInstanceUID", "sop_class": "SOPClassUID"}
_UID = re.compile(r"^(?=.{1,64}$)[0-9]+(\.[0-9]+)*$")  # leading zeros tolerated (seen in the wild)
_REJECT_PERMANENT, _SOURCE_USER = 0x01, 0x01
_CALLING_AE_NOT_RECOGNISED, _CALLED_AE_NOT_RECOGNISED = 0x03, 0x07


def require_pynetdicom() -> None:
    """Raise ``ImportError`` with the install command when pynetdicom is missing."""
    try:
        import pynetdicom  # noqa: F401
    except ImportError as exc:
        raise ImportError("the DICOM adapter needs pynetdicom: pip install "
                          "'clara-rt[dicom-net]'") from exc


@dataclass
class _AssocStats:
    calling: str
    called: str
    peer: str
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    ignored: int = 0
    failed: int = 0


class StorageScp:
    """Storage SCP of the adapter: receives instances and hands complete series on.

    Args:
        config: The adapter configuration.
        on_complete: Called (on the tracker thread) as ``on_complete(ae, folder, info)`` for
            every complete series, or study with ``group-by: study``.
        tcp_nodelay: Disable Nagle's algorithm on accepted sockets (keep it on; the switch
            exists to measure the difference).
        tracker_interval: Seconds between two looks for quiet series.

    ``start()`` binds ``dicom.host:dicom.port`` (127.0.0.1 by default) and returns at once;
    ``stop()`` refuses new associations, lets running ones finish (up to ``grace`` seconds),
    then aborts them. Instances not yet in a complete series stay on disk for the next start.
    """

    def __init__(self, config: AdapterConfig, on_complete: OnComplete, *,
                 tcp_nodelay: bool = True, tracker_interval: float = 0.2) -> None:
        require_pynetdicom()
        self.config = config
        self.layout = StorageLayout(config.dicom.storage)
        self.tracker = SeriesTracker(config, self.layout, on_complete,
                                     interval=tracker_interval)
        self._tcp_nodelay = tcp_nodelay
        self._server: ThreadedAssociationServer | None = None
        self._stats: dict[int, _AssocStats] = {}
        self._stats_lock = threading.Lock()
        self._known = {ae.name for ae in config.ae_titles} | {config.dicom.ae_title}

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the real port when ``port`` was 0."""
        if self._server is None:
            return self.config.dicom.host, self.config.dicom.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start the tracker and listen (non-blocking). Raises ``OSError`` if the port is taken."""
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        self.tracker.start()
        ae = AE(ae_title=self.config.dicom.ae_title)
        ae.supported_contexts = _storage_contexts()
        ae.add_supported_context(Verification)
        ae.maximum_pdu_size = self.config.dicom.max_pdu
        listener = self.config.dicom
        ae.acse_timeout, ae.dimse_timeout = listener.acse_timeout, listener.dimse_timeout
        ae.network_timeout = listener.network_timeout
        ae.maximum_associations = listener.max_associations
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open), (evt.EVT_REQUESTED, self._on_request),
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_CONN_CLOSE, self._on_close)]
        address = (self.config.dicom.host, self.config.dicom.port)
        try:
            self._server = ae.start_server(address, block=False, evt_handlers=handlers)
        except OSError as exc:
            self.tracker.stop()
            raise OSError(exc.errno, f"cannot listen on {address[0]}:{address[1]} for AE "
                                     f"{self.config.dicom.ae_title}: {exc.strerror}") from exc
        logger.info("DICOM listener %s on %s:%d, storage %s, AE titles: %s",
                    self.config.dicom.ae_title, *self.address, self.layout.root,
                    ", ".join(ae.name for ae in self.config.ae_titles))

    def stop(self, grace: float = 5.0) -> None:
        """Stop listening, wait up to ``grace`` s for running associations, stop the tracker."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            deadline = time.monotonic() + grace
            while server.active_associations and time.monotonic() < deadline:
                time.sleep(0.05)
            for assoc in server.active_associations:
                logger.warning("aborting association from %s: the adapter is stopping",
                               assoc.requestor.ae_title)
                assoc.abort()
        self.tracker.stop()

    # --- association handlers (pynetdicom threads) ----------------------------------------

    def _on_open(self, event: Event) -> None:
        listener = self.config.dicom
        bound_reads(event.assoc, max_pdu=listener.max_pdu, acse_timeout=listener.acse_timeout,
                    network_timeout=listener.network_timeout)  # no slot held by a slow PDU
        if self._tcp_nodelay:
            sock = event.assoc.dul.socket
            if sock is not None and sock.socket is not None:
                sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_request(self, event: Event) -> None:
        assoc = event.assoc
        request: Any = assoc.requestor.primitive
        called = str(request.called_ae_title).strip()
        calling = str(request.calling_ae_title).strip()
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        ae = self.config.called_ae(called)
        reason = None
        if called not in self._known:
            reason, code = (f"called AE title not recognised (known: "
                            f"{', '.join(sorted(self._known))})"), _CALLED_AE_NOT_RECOGNISED
        elif ae is not None and not ae.allows(calling):
            reason, code = (f"calling AE title not allowed (allowed-calling-aes: "
                            f"{', '.join(sorted(ae.allowed_calling_aes))})"
                            ), _CALLING_AE_NOT_RECOGNISED
        if reason is not None:
            logger.warning("rejected association %s -> %s from %s: %s", calling, called, peer,
                           reason)
            assoc.acse.send_reject(_REJECT_PERMANENT, _SOURCE_USER, code)
            assoc.kill()  # waits until the A-ASSOCIATE-RJ is on the wire
            return
        assoc.acceptor.ae_title = called  # answer as the AE title that was called
        with self._stats_lock:
            self._stats[id(assoc)] = _AssocStats(calling, called, peer)

    def _on_close(self, event: Event) -> None:
        assoc = event.assoc
        if assoc.requestor.primitive is None and not assoc.is_established:
            # Closed before any A-ASSOCIATE-RQ: wake the association thread, which would wait
            # for the request until acse-timeout, holding one of max-associations meanwhile;
            # None reads as that timeout (pynetdicom 3.0 Association.run_reactor).
            queue: Any = assoc.dul.to_user_queue
            queue.put(None)
        with self._stats_lock:
            stats = self._stats.pop(id(event.assoc), None)
        if stats is None:
            return
        how = ("released" if event.assoc.is_released else
               "aborted" if event.assoc.is_aborted else "closed")
        log = logger.warning if stats.failed else logger.info
        log("association %s -> %s from %s %s after %.2f s: %d stored, %d ignored, %d failed",
            stats.calling, stats.called, stats.peer, how, time.monotonic() - stats.started,
            stats.stored, stats.ignored, stats.failed)

    def _on_echo(self, event: Event) -> int:
        return STATUS["success"]

    def _on_store(self, event: Event) -> int:
        with self._stats_lock:
            stats = self._stats.get(id(event.assoc))
        try:
            status, outcome = self._store(event)
        except Exception:
            logger.exception("C-STORE from %s: unexpected error; failure status returned",
                             event.assoc.requestor.ae_title)
            status, outcome = STATUS["internal_error"], "failed"
        if stats is not None:
            with self._stats_lock:
                setattr(stats, outcome, getattr(stats, outcome) + 1)
        return status

    # --- storing --------------------------------------------------------------------------

    def _store(self, event: Event) -> tuple[int, str]:
        """Write one instance; return (status, 'stored' | 'ignored' | 'failed')."""
        called = event.assoc.acceptor.ae_title.strip()
        calling = event.assoc.requestor.ae_title.strip()
        request: Any = event.request
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        where = f"C-STORE {calling} -> {called} of instance {sop_instance or '(no UID)'}"
        ae = self.config.called_ae(called)
        if ae is None:
            logger.warning("%s: refused, AE title %s runs no pipeline (it answers C-ECHO "
                           "only); send to one of: %s", where, called,
                           ", ".join(a.name for a in self.config.ae_titles))
            return STATUS["no_pipeline"], "failed"
        data = event.encoded_dataset(include_meta=False)
        try:
            facts = check_dataset(data, str(event.context.transfer_syntax))
        except DatasetProblem as exc:
            logger.warning("%s: failed, malformed data set: %s", where, exc)
            return STATUS["dataset_mismatch" if exc.pixels else "cannot_understand"], "failed"
        header, problem = _read_header(facts, request)
        if problem:
            logger.warning("%s: failed: %s", where, problem)
            return STATUS["missing_uid"], "failed"
        if header["sop_class"] in ae.ignored_sop_classes:
            logger.info("%s: SOP class %s is in ignored-sop-classes of %s; accepted, not "
                        "stored", where, header["sop_class"], called)
            return STATUS["success"], "ignored"
        return self._write(event, data, header, calling, called, where)

    def _write(self, event: Event, data: bytes, header: dict[str, str], calling: str,
               called: str, where: str) -> tuple[int, str]:
        from pynetdicom.dsutils import encode_file_meta

        meta = event.file_meta
        meta.SourceApplicationEntityTitle = calling
        tmp = self.layout.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as f:
                f.write(b"\0" * 128 + b"DICM")
                f.write(encode_file_meta(meta))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.tracker.store(tmp, called, header["study"], header["series"], header["sop"],
                               modality=header["modality"], calling_ae=calling)
        except OSError as exc:  # the sender may try again later: nothing half-written stays
            tmp.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            logger.error("%s: failed, out of resources (%s) writing to %s: %s", where,
                         "disk full" if full else "storage error", self.layout.root, exc)
            return STATUS["out_of_resources"], "failed"
        return STATUS["success"], "stored"


def _read_header(facts: DatasetFacts, request: Any) -> tuple[dict[str, str], str]:
    """Return the UIDs and modality of the C-STORE data set, and what is wrong with them.

    ``why`` is empty when every UID is present, usable as a folder name (digits and dots) and
    agrees with the request.
    """
    values = {key: facts.text.get(_UID_NAMES.get(key, "Modality"), "").strip()
              for key in ("study", "series", "sop", "sop_class", "modality")}
    missing = [name for name in _UID_NAMES if not values[name]]
    if missing:
        return values, f"missing {', '.join(_UID_NAMES[m] for m in missing)}"
    unusable = [f"{_UID_NAMES[k]} {values[k]!r}" for k in _UID_NAMES if not _UID.match(values[k])]
    if unusable:
        return values, (f"{', '.join(unusable)}: not a usable UID (1 to 64 characters, digits "
                        "separated by single dots)")
    if values["sop"] != str(request.AffectedSOPInstanceUID).strip():
        return values, (f"SOPInstanceUID {values['sop']} differs from the request's Affected "
                        f"SOP Instance UID {request.AffectedSOPInstanceUID}")
    if values["sop_class"] != str(request.AffectedSOPClassUID).strip():
        return values, (f"SOPClassUID {values['sop_class']} differs from the request's "
                        f"Affected SOP Class UID {request.AffectedSOPClassUID}")
    return values, ""


def _storage_contexts() -> list[Any]:
    """Every storage SOP class, each with every transfer syntax pydicom knows (kept as sent)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AllStoragePresentationContexts, build_context

    return [build_context(str(cx.abstract_syntax), list(AllTransferSyntaxes))
            for cx in AllStoragePresentationContexts]
