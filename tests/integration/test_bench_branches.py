"""The ``branches`` benchmark scenario (clara_rt/bench/_branches.py) against the real Triton."""

from __future__ import annotations

from clara_rt.bench._branches import CONCURRENT, SEQUENTIAL, branches
from tests.peers import PeerServer


def test_branches_times_both_runtimes_against_triton(triton: PeerServer) -> None:
    record = branches(triton.http_url, shape=(16, 32, 32), repeat=2)
    assert set(record.figures) == {CONCURRENT, SEQUENTIAL}
    assert all(f["job_ms"] > 0 for f in record.figures.values())
    (ratio,) = record.ratios.values()
    assert ratio > 0


def test_branches_without_a_server_says_why() -> None:
    record = branches("http://127.0.0.1:9", repeat=1)
    assert record.figures == {} and "not measured" in record.notes
    assert "threshold_mask" in record.notes
