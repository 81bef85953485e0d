"""Send DICOM files to a destination with C-STORE (pynetdicom SCU), with bounded retries.

Each file goes out in its own transfer syntax: the association proposes one presentation context
per (SOP class, transfer syntax) pair found in the files' headers, at most 128 per association
(more pairs: more associations). A file the destination accepted is done; one it refused for
good (its SOP class or transfer syntax not accepted, *cannot understand*) fails at once; one that
met a transient problem (no connection, transient rejection, abort, timeout, *out of resources*,
*processing failure*) is sent again after ``retry-delay`` seconds, doubled at each retry, at
most ``retries`` more times. Every network step has a timeout, so a dead or silent destination
ends in a failure with the reason (``cannot associate with ORTHANC at 127.0.0.1:4242:
connection refused``), never in a hang.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clara_rt.dicom.config import Destination
from clara_rt.dicom.scp import require_pynetdicom

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["SendResult", "Timeouts", "send_files"]

logger = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # per association (DICOM PS3.8: presentation context IDs 1, 3, ..., 255)
_WARNINGS = (0xB000, 0xB006, 0xB007)


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each network step of an export."""

    connect: float = 10.0
    acse: float = 30.0     # association request -> answer, release
    dimse: float = 120.0   # C-STORE request -> response
    network: float = 60.0  # idle socket


@dataclass(frozen=True)
class SendResult:
    """What happened to one file.

    Attributes:
        path: The file.
        success: The destination answered Success or a Warning status.
        status: The last C-STORE response status, ``None`` when no answer came.
        attempts: How many times the file was offered (0: it could not be read).
        error: Why it failed (or the warning), ``None`` on plain success.
    """

    path: Path
    success: bool
    status: int | None
    attempts: int
    error: str | None = None


@dataclass
class _Outcome:
    status: int | None
    error: str | None
    retry: bool

    @property
    def success(self) -> bool:
        return self.status is not None and (self.status == 0 or self.status in _WARNINGS)


@dataclass(frozen=True)
class _Header:
    sop_class: str
    sop_instance: str
    transfer_syntax: str


def send_files(files: Sequence[Path], destination: Destination, *, calling_ae: str,
               timeouts: Timeouts | None = None,
               sleep: Callable[[float], None] = time.sleep) -> list[SendResult]:
    """Send ``files`` to ``destination`` and return one :class:`SendResult` per file, in order.

    Args:
        files: DICOM Part 10 files.
        destination: Where to send them (AE title, host, port, retries, retry delay).
        calling_ae: Our AE title on the association.
        timeouts: Network timeouts (defaults: :class:`Timeouts`).
        sleep: Waits between attempts (a stop event's ``wait`` makes them interruptible).

    Never raises for network or peer problems; those end up in the results.
    """
    require_pynetdicom()
    timeouts = timeouts or Timeouts()
    results: dict[Path, SendResult] = {}
    pending: dict[Path, _Header] = {}
    for path in files:
        header, problem = _read_header(path)
        if header is None:
            results[path] = SendResult(path, False, None, 0, problem)
        else:
            pending[path] = header
    attempts, delay = 0, destination.retry_delay
    last: dict[Path, _Outcome] = {}
    while pending:
        attempts += 1
        for path, outcome in _send_once(pending, destination, calling_ae, timeouts).items():
            last[path] = outcome
            if outcome.success or not outcome.retry:
                results[path] = SendResult(path, outcome.success, outcome.status, attempts,
                                           outcome.error)
                del pending[path]
        if not pending or attempts > destination.retries:
            break
        logger.warning("export to %s: %d file(s) not sent (%s); retry %d of %d in %.1f s",
                       destination.name, len(pending), last[next(iter(pending))].error,
                       attempts, destination.retries, delay)
        sleep(delay)
        delay *= 2
    for path in pending:
        outcome = last[path]
        results[path] = SendResult(path, False, outcome.status, attempts, outcome.error)
    return [results[path] for path in files]


# --- one attempt ------------------------------------------------------------------------------


def _send_once(files: dict[Path, _Header], destination: Destination, calling_ae: str,
               timeouts: Timeouts) -> dict[Path, _Outcome]:
    pairs = sorted({(h.sop_class, h.transfer_syntax) for h in files.values()})
    outcomes: dict[Path, _Outcome] = {}
    for start in range(0, len(pairs), _MAX_CONTEXTS):
        batch = set(pairs[start:start + _MAX_CONTEXTS])
        chosen = {p: h for p, h in files.items() if (h.sop_class, h.transfer_syntax) in batch}
        outcomes.update(_one_association(chosen, sorted(batch), destination, calling_ae,
                                         timeouts))
    return outcomes


def _one_association(files: dict[Path, _Header], pairs: list[tuple[str, str]],
                     destination: Destination, calling_ae: str,
                     timeouts: Timeouts) -> dict[Path, _Outcome]:
    from pynetdicom import AE, build_context, evt

    ae = AE(ae_title=calling_ae)
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in pairs]
    ae.connection_timeout, ae.acse_timeout = timeouts.connect, timeouts.acse
    ae.dimse_timeout, ae.network_timeout = timeouts.dimse, timeouts.network
    connected: list[bool] = []

    def on_open(event: Any) -> None:
        connected.append(True)
        sock = event.assoc.dul.socket
        if sock is not None and sock.socket is not None:
            sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         max_pdu=0, evt_handlers=[(evt.EVT_CONN_OPEN, on_open)])
    if not assoc.is_established:
        error, retry = _association_error(assoc, destination, bool(connected), timeouts)
        return {path: _Outcome(None, error, retry) for path in files}
    try:
        return _store_all(assoc, files, destination)
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _store_all(assoc: Association, files: dict[Path, _Header],
               destination: Destination) -> dict[Path, _Outcome]:
    import pydicom

    outcomes: dict[Path, _Outcome] = {}
    for path, header in files.items():
        if not assoc.is_established:
            outcomes[path] = _Outcome(None, f"association with {destination.ae_title} was "
                                            "lost before this file was sent", True)
            continue
        try:
            dataset = pydicom.dcmread(path)
            answer = assoc.send_c_store(dataset)
        except (ValueError, AttributeError) as exc:  # no accepted context for this file
            outcomes[path] = _Outcome(None, _context_error(exc, header, destination), False)
            continue
        except Exception as exc:  # unreadable after all, or an encoding failure
            outcomes[path] = _Outcome(None, f"cannot send {path.name}: {exc}", False)
            continue
        outcomes[path] = _status_outcome(answer, destination, path)
    return outcomes


def _status_outcome(answer: Any, destination: Destination, path: Path) -> _Outcome:
    status = getattr(answer, "Status", None)
    if status is None:
        return _Outcome(None, f"no C-STORE response from {destination.ae_title} for {path.name} "
                              "(timed out or association aborted)", True)
    status = int(status)
    if status == 0:
        return _Outcome(status, None, False)
    comment = str(getattr(answer, "ErrorComment", "") or "").strip()
    detail = f" ({comment})" if comment else ""
    if status in _WARNINGS:
        return _Outcome(status, f"stored with warning 0x{status:04X}{detail}", False)
    retry = 0xA700 <= status <= 0xA7FF or status == 0x0110
    return _Outcome(status, f"{destination.ae_title} refused {path.name}: status "
                            f"0x{status:04X}{detail}", retry)


def _association_error(assoc: Association, destination: Destination, connected: bool,
                       timeouts: Timeouts) -> tuple[str, bool]:
    """Say why no association came up, and whether trying again may help."""
    where = f"cannot associate with {destination.ae_title} at {destination.host}:" \
            f"{destination.port}"
    if not connected:
        return f"{where}: {_probe(destination, timeouts.connect)}", True
    answer = getattr(assoc.acceptor, "primitive", None)
    if assoc.is_rejected and answer is not None:
        transient = getattr(answer, "result", None) == 0x02
        return (f"{where}: association rejected ({answer.result_str.lower()}, "
                f"{answer.source_str.lower()}: {answer.reason_str.lower()})", transient)
    if answer is not None and getattr(answer, "result", None) == 0x00:
        return (f"{where}: it accepted none of the proposed SOP class / transfer syntax "
                "pairs", False)
    return (f"{where}: no answer to the association request within {timeouts.acse:.0f} s, "
            "or the peer aborted it", True)


def _probe(destination: Destination, timeout: float) -> str:
    """Name the TCP-level reason a connection fails (refused, timed out, unknown host)."""
    try:
        with socket.create_connection((destination.host, destination.port), timeout=timeout):
            return "the connection failed (the destination accepts connections now)"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {timeout:.0f} s (connection timed out)"
    except socket.gaierror as exc:
        return f"unknown host {destination.host!r} ({exc.strerror})"
    except OSError as exc:
        return exc.strerror or str(exc)


def _context_error(exc: Exception, header: _Header, destination: Destination) -> str:
    from pydicom.uid import UID

    return (f"{destination.ae_title} did not accept {UID(header.sop_class).name} in "
            f"{UID(header.transfer_syntax).name}: {exc}")


def _read_header(path: Path) -> tuple[_Header | None, str]:
    """SOP class, SOP instance and transfer syntax of a Part 10 file, or why it is not one."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
        header = _Header(str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                         str(meta.TransferSyntaxUID))
    except Exception as exc:
        return None, f"{path} is not a readable DICOM file: {exc}"
    return header, ""
