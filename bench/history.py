"""Set-up for the quota and admin benchmarks: a year of history, inserted fast (never measured).

    python -m bench.history --updates 1000000

Writes, for three connections over the last 365 days:
- N ProfileUpdate rows (ids in creation order): 94 % sent, 2 % failed, 1 % rejected,
  1 % cancelled; the newest 2 % still in the workflow (draft, pending, approved);
- one SendAttempt per sent or failed update (N past requests in the history);
- 365 days of DailyUsage per connection, one SendRun per 10 minutes;
- QuotaMinute rows for the rolling window: N requests spread over the last 24 hours of the
  first connection (one row per minute, at most 1,440) — a full day's quota used when N is 1M.

PostgreSQL: COPY, then VACUUM ANALYZE (what autovacuum does after a bulk load). SQLite:
executemany in batches of 50,000; no ANALYZE, since nothing runs it on a real SQLite deployment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from bench.common import analyze, emit, fast_insert, json_text, log, make_user, reset_sequences, setup_django

CONNECTIONS = (("acme", 0.7), ("globex", 0.2), ("initech", 0.1))
OPERATORS = ("olivia", "oscar", "omar", "ophelia", "otto")
SUPERVISORS = ("sam", "sofia")
ACK = "trueRequest successfully submitted"


def seed(n: int, *, now: dt.datetime, quota_limit: int) -> dict:
    from django.contrib.auth.models import Group

    from updates.models import (
        DailyUsage, ProfileUpdate, QuotaMinute, SendAttempt, SendRun, TargetConnection,
    )

    rng = random.Random(7)
    operators = [make_user(name) for name in OPERATORS]
    supervisors = [make_user(name) for name in SUPERVISORS]
    for user in operators:
        user.groups.add(Group.objects.get(name="Operators"))
    for user in supervisors:
        user.groups.add(Group.objects.get(name="Supervisors"))
    connections = [
        TargetConnection.objects.create(label=f"Bench {code}", client_code=code,
                                        base_url="http://127.0.0.1:9", quota_limit=quota_limit)
        for code, _ in CONNECTIONS
    ]
    conn_ids = [c.pk for c in connections]
    weights = [w for _, w in CONNECTIONS]
    year = dt.timedelta(days=365)
    start = now - year
    in_workflow_from = int(n * 0.98)

    kept: list[tuple[str, int]] = []  # (status, connection id) per update, for its attempt

    def update_rows():
        for i in range(1, n + 1):
            created = start + year * (i / (n + 1))
            if i > in_workflow_from:
                status = rng.choice(("draft", "pending", "approved"))
            else:
                r = rng.random()
                status = ("sent" if r < 0.959 else "failed" if r < 0.98 else
                          "rejected" if r < 0.99 else "cancelled")
            if rng.random() < 0.8:
                identity_type, identity = "mbox3rdPartyId", f"cust-{rng.randrange(10**9):09d}"
            else:
                identity_type = "mboxPC"
                identity = f"{rng.randrange(10**12, 10**13)}-{rng.randrange(10**6):06d}.17_0"
            attributes = {"loanStatus": rng.choice(("applied", "funded", "declined"))}
            if rng.random() < 0.5:
                attributes["loyaltyTier"] = rng.choice(("bronze", "silver", "gold"))
            creator = rng.choice(operators).pk
            conn_id = rng.choices(conn_ids, weights)[0]
            kept.append((status, conn_id))
            decided = status not in ("draft", "pending")
            done = status in ("sent", "failed")
            yield (
                i, conn_id, identity_type, identity,
                json_text(attributes), "benchmark history", None, status,
                creator, created, creator, created,
                created if status != "draft" else None,
                rng.choice(supervisors).pk if decided else None,
                created + dt.timedelta(minutes=20) if decided else None,
                "", "", 1 if done else 0, 1 if done else 0, None, "", None,
                created + dt.timedelta(minutes=21) if status == "sent" else None,
                "HTTP 400" if status == "failed" else "",
                "", 0, "{}", "[]",  # never verified (a connection without verification)
                "",  # not purged (updates/retention.py)
            )

    began = time.perf_counter()
    count = fast_insert(ProfileUpdate, (
        "id", "connection_id", "identity_type", "identity", "attributes", "reason", "not_before",
        "status", "created_by_id", "created_at", "last_edited_by_id", "last_edited_at",
        "submitted_at", "decided_by_id", "decided_at", "decision_comment", "approved_hash",
        "attempt_count", "attempts_total", "next_attempt_at", "lease_owner", "lease_expires_at",
        "acknowledged_at", "last_error", "verification_state", "verification_checks",
        "prior_values", "unsent_unchanged", "purge_reason"), update_rows())
    log(f"  {count:,} updates in {time.perf_counter() - began:.0f} s")

    def attempt_rows():
        number = 0
        for i, (status, conn_id) in enumerate(kept, start=1):
            if status not in ("sent", "failed"):
                continue
            number += 1
            started = start + year * (i / (n + 1)) + dt.timedelta(minutes=21)
            yield (
                number, i, conn_id, 1, started, "GET", 180,
                200 if status == "sent" else 400, ACK if status == "sent" else "bad request",
                40 + rng.randrange(60), "acknowledged" if status == "sent" else "permanent",
                "" if status == "sent" else "HTTP 400", "history",
            )

    began = time.perf_counter()
    attempts = fast_insert(SendAttempt, (
        "id", "update_id", "connection_id", "number", "started_at", "method", "request_bytes",
        "http_status", "response_body", "latency_ms", "outcome", "error", "worker"),
        attempt_rows())
    log(f"  {attempts:,} attempts in {time.perf_counter() - began:.0f} s")

    today = now.date()
    fast_insert(DailyUsage, ("connection_id", "day", "requests", "acknowledged", "failed"), (
        (cid, today - dt.timedelta(days=d), requests, requests - requests // 50, requests // 50)
        for cid, (_, weight) in zip(conn_ids, CONNECTIONS) for d in range(365)
        for requests in [max(1, int(n / 365 * weight))]
    ))
    runs = 365 * 24 * 6
    fast_insert(SendRun, ("trigger", "worker", "started_at", "finished_at", "claimed",
                          "requests_sent", "acknowledged", "retried", "failed",
                          "deferred_by_quota", "error"), (
        ("schedule", "history", now - dt.timedelta(minutes=10 * k),
         now - dt.timedelta(minutes=10 * k) + dt.timedelta(seconds=30), 20, 20, 19, 0, 1, 0, "")
        for k in range(runs, 0, -1)
    ))
    minutes = min(n, 1440)
    this_minute = now.replace(second=0, microsecond=0)
    per_minute, extra = divmod(n, minutes)
    fast_insert(QuotaMinute, ("connection_id", "minute", "requests"), (
        (conn_ids[0], this_minute - dt.timedelta(minutes=m), per_minute + (1 if m <= extra else 0))
        for m in range(1, minutes + 1)
    ))
    reset_sequences(ProfileUpdate, SendAttempt)
    analyze()
    return {"updates": count, "attempts": attempts, "daily_usage_days": 365, "send_runs": runs,
            "quota_minutes": minutes, "connections": len(connections)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1_000_000)
    args = parser.parse_args()
    setup_django()
    from django.utils import timezone

    began = time.perf_counter()
    # The limit leaves room above a full day of history, so reservations are granted and measured.
    summary = seed(args.updates, now=timezone.now(), quota_limit=max(2 * args.updates, 1_000_000))
    log(f"  history of {args.updates:,} updates set up in {time.perf_counter() - began:.0f} s")
    emit({"benchmark": "history", **summary, "seconds": time.perf_counter() - began})


if __name__ == "__main__":
    main()
