"""Issue 16.17: log files keep their tail, say what was cut, and never follow a swapped link."""

from __future__ import annotations

from pathlib import Path

import pytest

from clara_rt.definition.logtail import (
    DEFAULT_LOG_LIMIT,
    TailLog,
    append_capped,
    log_limit,
    open_snapshot,
    parse_log_limit,
)


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(b"line %06d\n" % i for i in range(start, start + n))


def test_tail_log_keeps_exactly_the_last_bytes_and_marks_the_cut(tmp_path: Path) -> None:
    log = TailLog(tmp_path / "out.log", limit=4096)
    for chunk in range(100):  # 100 x 50 lines x 12 bytes = 60,000 bytes
        log.write(lines(50, chunk * 50))
    log.close()
    data = (tmp_path / "out.log").read_bytes()
    head, _, tail = data.partition(b"\n")
    assert head == (b"[clara-rt: 55904 earlier bytes of this log were cut; it keeps its last "
                    b"4096 bytes (CLARA_RT_LOG_LIMIT)]")
    assert tail == lines(5000)[-4096:]


def test_tail_log_under_the_limit_is_untouched(tmp_path: Path) -> None:
    log = TailLog(tmp_path / "out.log", limit=4096)
    log.write(lines(10))
    log.close()
    assert (tmp_path / "out.log").read_bytes() == lines(10)


def test_tail_log_replaces_a_link_swapped_in_by_the_command(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not copy")
    log = TailLog(tmp_path / "out.log", limit=1024)
    log.write(lines(500))
    (tmp_path / "out.log").unlink()
    (tmp_path / "out.log").symlink_to(secret)
    log.close()
    assert not (tmp_path / "out.log").is_symlink()
    assert secret.read_bytes() == b"do not copy"
    assert (tmp_path / "out.log").read_bytes().endswith(lines(500)[-1024:])


def test_append_capped_stays_bounded(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "op.log"
    for i in range(200):
        append_capped(target, lines(100, i * 100), limit=8192)
    data = target.read_bytes()
    assert len(data) < 8192 + 4096 + 200
    assert data.endswith(lines(20000)[-8192:]) and b"earlier bytes" in data


@pytest.mark.parametrize(("text", "value"), [("", DEFAULT_LOG_LIMIT), ("65536", 65536),
                                             ("512K", 512 << 10), ("8M", 8 << 20),
                                             ("1g", 1 << 30), ("64MiB", 64 << 20)])
def test_log_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch, text: str,
                                        value: int) -> None:
    monkeypatch.setenv("CLARA_RT_LOG_LIMIT", text)
    assert log_limit() == value


@pytest.mark.parametrize("text", ["lots", "-1", "10", "8X"])
def test_log_limit_refuses_nonsense(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    with pytest.raises(ValueError, match=r"CLARA_RT_LOG_LIMIT=.* is not a size of at least 1K"):
        parse_log_limit(text)
    monkeypatch.setenv("CLARA_RT_LOG_LIMIT", text)
    assert log_limit() == DEFAULT_LOG_LIMIT  # logging never stops an operator: warned, default


def test_open_snapshot_serves_the_length_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "op.log"
    path.write_bytes(lines(20000))  # 240,000 bytes: several chunks
    size, chunks = open_snapshot(path)
    with open(path, "ab") as more:  # a running job keeps logging meanwhile
        more.write(b"later\n" * 1000)
    assert size == 240_000 and b"".join(chunks) == lines(20000)
    (tmp_path / "link.log").symlink_to(path)
    with pytest.raises(OSError):
        open_snapshot(tmp_path / "link.log")
