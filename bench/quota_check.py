"""Benchmark 4 — the quota check and the claim, against a small and a large history.

Run on a database set up by bench.history (1,000 or 1,000,000 past requests); run.py prints the
ratio large/small. Measured, each as the median of many calls:

- reserve: quota.reserve of 500 requests (locks the connection, sums the rolling window, adds
  to the current minute) — what every batch does before it sends;
- window: quota.window_usage (the sum the dashboard and headroom read);
- claim: claims.claim of a batch of 100 due updates (select with the due index, mark them
  sending under a lease, write their audit rows) — the sender's other per-batch step.

Target: large/small close to 1.

    python -m bench.quota_check --runs 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import os

from bench.common import create_approved, emit, log, median_ms, setup_django

CLAIM_SIZE = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--claims", type=int, default=30)
    args = parser.parse_args()
    setup_django()
    from django.utils import timezone

    from updates import claims, quota
    from updates.models import ProfileUpdate, SendAttempt, TargetConnection, UpdateStatus

    conn = TargetConnection.objects.get(client_code="acme")
    history = SendAttempt.objects.count()
    user = ProfileUpdate.objects.order_by("id").first().created_by
    # Fresh due updates to claim (the history's own approved ones are claimed first, by id).
    create_approved(connection=conn, user=user, count=CLAIM_SIZE * (args.claims + 1),
                    prefix="claim")

    reserve_ms, reserve_cpu = median_ms(lambda: quota.reserve(connection=conn, wanted=500),
                                        runs=args.runs)
    window_ms, window_cpu = median_ms(lambda: quota.window_usage(connection=conn), runs=args.runs)

    def claim() -> None:
        now = timezone.now()
        # A private step of send_due, measured on its own: the claim transaction only.
        claimed = claims.claim(conn=conn, owner="bench/claim", size=CLAIM_SIZE, now=now,
                                 lease_until=now + dt.timedelta(minutes=2))
        assert len(claimed) == CLAIM_SIZE, len(claimed)

    claim_ms, claim_cpu = median_ms(claim, runs=args.claims)
    left = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.APPROVED).count()
    log(f"  history {history:,} requests: reserve {reserve_ms:.2f} ms, window sum "
        f"{window_ms:.2f} ms, claim of {CLAIM_SIZE} {claim_ms:.1f} ms ({left:,} still due)")
    emit({"benchmark": "quota", "history_requests": history, "reserve_ms": reserve_ms,
          "window_ms": window_ms, "claim_ms": claim_ms, "claim_size": CLAIM_SIZE,
          "reserve_cpu_ms": reserve_cpu, "window_cpu_ms": window_cpu, "claim_cpu_ms": claim_cpu,
          "load_average": os.getloadavg(),
          "runs": args.runs, "claims": args.claims})


if __name__ == "__main__":
    main()
