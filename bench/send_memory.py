"""Benchmark 5 — peak memory of a process that sends N updates (run.py compares 10k and 100k).

    python -m bench.send_memory --phase seed --updates 100000 --emulator URL
    python -m bench.send_memory --phase send --emulator URL

Set-up and sending are separate processes, so the peak RSS (getrusage ru_maxrss) of the sending
process is the sender's own: one sending.send_due over every approved update, with the settings'
batch size and concurrency, against the emulator (50 ms latency). Target: ≤ 300 MB, flat in N.
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    create_approved, current_rss_mb, emit, log, make_connection, make_user, peak_rss_mb,
    setup_django,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("seed", "send"), required=True)
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--emulator", required=True)
    args = parser.parse_args()
    setup_django()
    from updates.conf import setting

    from updates import sending
    from updates.models import ProfileUpdate, TargetConnection, UpdateStatus

    if args.phase == "seed":
        conn = make_connection("memory", base_url=args.emulator)
        create_approved(connection=conn, user=make_user("bench-memory"), count=args.updates,
                        prefix="mem")
        emit({"benchmark": "memory-seed", "updates": args.updates})
        return

    conn = TargetConnection.objects.get(client_code="memory")
    n = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.APPROVED).count()
    rss_before = current_rss_mb()
    began = time.perf_counter()
    run = sending.send_due(connection=conn, worker="bench-memory")
    seconds = time.perf_counter() - began
    if run.acknowledged != n:
        raise SystemExit(f"only {run.acknowledged} of {n} updates were acknowledged")
    peak = peak_rss_mb()
    log(f"  sent {n:,} in {seconds:.0f} s ({n / seconds:,.0f}/s): peak RSS {peak:.0f} MB "
        f"(after start-up {rss_before:.0f} MB)")
    emit({"benchmark": "memory", "updates": n, "seconds": seconds, "peak_rss_mb": peak,
          "rss_after_setup_mb": rss_before,
          "concurrency": setting("SEND_CONCURRENCY"),
          "batch_size": setting("SEND_BATCH_SIZE")})


if __name__ == "__main__":
    main()
