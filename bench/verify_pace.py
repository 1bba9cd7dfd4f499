"""Benchmark — verification pace: can one worker verify what the quota sends in a day?

Against the emulator in a process of its own (`--latency`, default 100 ms per answer, faithful:
updates apply after `--apply-delay` seconds, the scaled-down "typical apply delay"; it knows all
visitors but 2 %, whose updates Target drops). N approved updates are sent first (set-up, not
measured), then read back by `verification.updates_verify_due` — the "Verify sent updates"
schedule's job — with the first check at VERIFY_FIRST_CHECK_SECONDS = the apply delay:

- bare (the baseline, same run): a pooled requests.Session driven by VERIFY_CONCURRENCY threads
  reading the same profiles, nothing but HTTP — the ceiling at this latency and concurrency;
- sequential: verification with one reader (what verification did before, without the read
  limit), on a slice of the updates;
- concurrent: verification as deployed (VERIFY_CONCURRENCY readers), read limit lifted —
  a worker's capacity — and then at the default READS_PER_SECOND, the shared limit that binds;
- reads per finished update (verified or not applied) and per verified update (goal ≤ 1.3);
- the projected time to verify 1,000,000 acknowledged updates with one worker at the default
  limit (goal: < 24 h with margin).

The load average is printed beside the figures. Not a test (never run in CI).

    DATABASE_URL=... python -m bench.verify_pace --updates 2000 [--latency 0.1] [--apply-delay 5]

Without DATABASE_URL it makes a scratch SQLite database in a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import ROOT, create_approved, emit, log, make_connection, make_user, setup_django

PARKED = dt.timedelta(days=1000)  # updates of a later phase wait this far off until it comes
UNKNOWN_SHARE = 0.02  # visitors Target has no profile for: acknowledged, dropped


class EmulatorProcess:
    """`python -m target_emulator --faithful` in a process of its own, knowing `profiles`."""

    def __init__(self, latency: float, apply_delay: float, profiles_file: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "target_emulator", "--port", "0", "--latency", str(latency),
             "--faithful", "--apply-delay", str(apply_delay), "--profiles", profiles_file],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("Target emulator listening on "):
            self.stop()
            raise SystemExit(f"the emulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


def scratch_database() -> tempfile.TemporaryDirectory | None:
    """A migrated SQLite file when no DATABASE_URL is given (its directory; None otherwise)."""
    if os.environ.get("DATABASE_URL"):
        return None
    directory = tempfile.TemporaryDirectory(prefix="profileops-verify-")
    os.environ["DATABASE_URL"] = f"sqlite:///{directory.name}/bench.sqlite3"
    log("  migrating a scratch SQLite database …")
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   check=True, env={**os.environ})
    return directory


def knobs(**values) -> None:
    from django.conf import settings

    settings.PROFILEOPS = {**getattr(settings, "PROFILEOPS", {}), **values}


def bare(updates, concurrency: int) -> float:
    """Reads per second of a bare pooled loop over the same profiles (no database, no limit)."""
    from updates import reading

    session = reading.make_session(pool_size=concurrency)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda u: reading.fetch(u, session=session), updates))
    seconds = time.perf_counter() - began
    session.close()
    return len(updates) / seconds


def verify(conn, ids: list[int], *, concurrency: int, rate: float) -> dict:
    """Verify the due updates among `ids` until none is left due; wall time, reads, outcomes."""
    from django.db.models import Count, F

    from updates import reading, verification
    from updates.models import ProfileRead, ProfileUpdate, VerificationState

    knobs(VERIFY_CONCURRENCY=concurrency, READS_PER_SECOND=rate)
    reading.read_limiter.reset()
    pending = ProfileUpdate.objects.filter(pk__in=ids, verification_state=VerificationState.PENDING)
    pending.update(verification_next_at=F("verification_next_at") - PARKED)  # these fall due
    latest = max(pending.values_list("verification_next_at", flat=True))
    time.sleep(max(0.0, (latest - _now()).total_seconds()))  # their first check is due
    began = time.perf_counter()
    runs = 0
    while pending.filter(verification_next_at__lte=_now()).exists():
        verification.updates_verify_due(connection=conn, limit=len(ids))
        runs += 1
        if pending.exists() and not pending.filter(verification_next_at__lte=_now()).exists():
            break  # what is left waits for a later check (not applied yet)
    seconds = time.perf_counter() - began
    reads = ProfileRead.objects.filter(update_id__in=ids, purpose="verification").count()
    states = dict(ProfileUpdate.objects.filter(pk__in=ids).values_list("verification_state")
                  .annotate(n=Count("id")).order_by())
    verified = states.get(VerificationState.VERIFIED, 0)
    finished = verified + states.get(VerificationState.NOT_APPLIED, 0)
    return {"updates": len(ids), "seconds": round(seconds, 2), "runs": runs, "reads": reads,
            "reads_per_s": round(reads / seconds, 1), "states": states,
            "reads_per_finished": round(reads / max(1, finished), 3),
            "reads_per_verified": round(reads / max(1, verified), 3)}


def _now():
    from django.utils import timezone

    return timezone.now()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--latency", type=float, default=0.1, help="Seconds per read and send.")
    parser.add_argument("--apply-delay", type=float, default=5.0,
                        help="Seconds before Target shows an update (the typical delay, scaled).")
    parser.add_argument("--sequential", type=int, default=150,
                        help="Updates the one-reader run verifies.")
    args = parser.parse_args()

    scratch = scratch_database()
    setup_django()
    from updates import sending
    from updates.conf import KNOBS
    from updates.models import ProfileUpdate

    n = args.updates
    default_rate = KNOBS["READS_PER_SECOND"].default
    concurrency = KNOBS["VERIFY_CONCURRENCY"].default
    profiles = [{"identity": f"verify-{i:09d}", "identity_type": "mbox3rdPartyId",
                 "attributes": {"loyaltyTier": "silver"}}
                for i in range(n) if (i + 1) % round(1 / UNKNOWN_SHARE)]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(profiles, file)
    emulator = EmulatorProcess(args.latency, args.apply_delay, file.name)
    try:
        user = make_user("bench-verifier")
        conn = make_connection(f"verify{os.getpid()}", base_url=emulator.url)
        conn.verify_after_send = True
        conn.save(update_fields=["verify_after_send"])
        log(f"  sending {n:,} approved updates (set-up) …")
        knobs(VERIFY_FIRST_CHECK_SECONDS=max(1, round(args.apply_delay)), SEND_CONCURRENCY=32)
        create_approved(connection=conn, user=user, count=n, prefix="verify")
        while sending.send_due(connection=conn).claimed:
            pass
        from updates import verification

        verification.updates_verify_due(connection=conn, limit=0)  # schedules the first checks
        sent = ProfileUpdate.objects.filter(connection=conn, status="sent")
        ids = list(sent.order_by("id").values_list("id", flat=True))
        from django.db.models import F

        sent.update(verification_next_at=F("verification_next_at") + PARKED)
        log(f"  {len(ids):,} acknowledged; bare baseline …")
        sample = list(ProfileUpdate.objects.select_related("connection").filter(pk__in=ids[:n // 4]))
        bare_rate = bare(sample, concurrency)
        seq_ids, rest = ids[:args.sequential], ids[args.sequential:]
        half = len(rest) // 2
        log("  sequential (one reader) …")
        sequential = verify(conn, seq_ids, concurrency=1, rate=1e6)
        log(f"  concurrent ({concurrency} readers), limit lifted …")
        capacity = verify(conn, rest[:half], concurrency=concurrency, rate=1e6)
        log(f"  concurrent ({concurrency} readers), default limit {default_rate:g}/s …")
        limited = verify(conn, rest[half:], concurrency=concurrency, rate=default_rate)
    finally:
        emulator.stop()
        os.unlink(file.name)
    per_update = limited["reads_per_verified"]
    million_hours = 1_000_000 * per_update / limited["reads_per_s"] / 3600
    result = {
        "benchmark": "verify_pace", "updates": n, "latency_s": args.latency,
        "apply_delay_s": args.apply_delay, "concurrency": concurrency,
        "reads_per_second_setting": default_rate,
        "bare_reads_per_s": round(bare_rate, 1),
        "sequential": sequential, "capacity": capacity, "limited": limited,
        "capacity_vs_bare": round(capacity["reads_per_s"] / bare_rate, 2),
        "capacity_vs_sequential": round(capacity["reads_per_s"] / sequential["reads_per_s"], 1),
        "million_hours_one_worker": round(million_hours, 1),
        "million_hours_one_worker_sequential": round(
            1_000_000 * per_update / sequential["reads_per_s"] / 3600, 1),
        "load_average": os.getloadavg(),
        "targets": {"reads per verified <= 1.3": per_update <= 1.3,
                    "1M in < 24 h": million_hours < 24},
    }
    log(json.dumps(result, indent=1, default=str))
    emit(result)
    if scratch is not None:
        scratch.cleanup()


if __name__ == "__main__":
    main()
