"""Long soak of ``clara-rt serve`` (issue 18.2): thousands of small jobs of several pipelines
against a real server; prints the server's RSS, threads and open files as it goes and fails
(exit 1) when RSS grows more than ``--margin-mib`` after the warm-up or threads/files grow.

The short version runs in the suite (tests/integration/test_server_soak.py).

Usage: ``.venv/bin/python benchmarks/soak_server.py [--jobs 3000] [--workers 2]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from tests.server_process import ServerProcess  # noqa: E402
from tests.soak import pipeline_yaml, run_jobs, sample  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pipelines", type=int, default=6)
    parser.add_argument("--margin-mib", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            ServerProcess(Path(tmp) / "data", "--workers", str(args.workers)) as server:
        assert server.proc is not None
        client = server.client()
        names = [f"soak{k}" for k in range(args.pipelines)]
        for k, name in enumerate(names):
            client.create_pipeline(pipeline_yaml(name, command=k % 3 == 2))
        (Path(tmp) / "x.txt").write_text("x")
        payload = client.create_payload([Path(tmp) / "x.txt"])["id"]
        t0 = time.monotonic()
        run_jobs(client, names, payload, args.warmup)
        warm = sample(server.proc.pid, args.warmup, t0)
        print(f"warm-up  {warm}")
        done, step = args.warmup, max(args.jobs // 10, 1)
        last = warm
        while done < args.warmup + args.jobs:
            n = min(step, args.warmup + args.jobs - done)
            run_jobs(client, names, payload, n, start=done)
            done += n
            last = sample(server.proc.pid, done, t0)
            print(f"         {last}  rss {last.rss_kib - warm.rss_kib:+d} KiB", flush=True)
    growth = (last.rss_kib - warm.rss_kib) / 1024
    rate = (last.jobs - warm.jobs) / (last.seconds - warm.seconds)
    print(f"{last.jobs - warm.jobs} jobs after warm-up at {rate:.1f} jobs/s: RSS {growth:+.2f} MiB "
          f"(margin {args.margin_mib} MiB), threads {warm.threads} -> {last.threads}, open files "
          f"{warm.fds} -> {last.fds}")
    ok = growth < args.margin_mib and last.threads == warm.threads and last.fds <= warm.fds + 2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
