"""Benchmark — the bulk route end to end (issue 28): N approved bulk-route updates through
Target's Bulk Profile Update API (the emulator's twin, in-process) and read back row by row.

Measured, each step on its own: building the job (claim, checks, files, lines), uploading the
files, the emulator's processing and the batchStatus polls, and verification reading every row
back (READS_PER_SECOND raised for the local emulator: the shared read limit, not ProfileOps,
sets the pace against Target). Then the lost rows (``--loss-rate``) are re-queued on the single
route and sent. Prints the rows per second of each step, the reconciliation and the quota used
(the single quota must show only the re-queued rows). Not a test (never run in CI).

    python -m bench.bulk_route --rows 300000 [--loss-rate 0.001] [--reads-per-second 2000]
    python -m bench.bulk_route --write-csv rows.csv --rows 300000   # a demo import file

Without DATABASE_URL it makes a scratch SQLite database in a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time

from bench.common import ROOT, create_approved, emit, log, make_connection, make_user, setup_django


def write_csv(path: str, rows: int) -> None:
    """An import file for the demo connection's mapped attributes (loan_status, loyalty_tier)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["identity_type", "identity", "loan_status", "loyalty_tier"])
        for i in range(rows):
            out.writerow(["mbox3rdPartyId", f"BULK-{i:07d}", ("applied", "funded")[i % 2],
                          ("gold", "silver", "bronze")[i % 3]])
    log(f"wrote {rows:,} rows to {path}")


def scratch_database() -> tempfile.TemporaryDirectory | None:
    if os.environ.get("DATABASE_URL"):
        return None
    directory = tempfile.TemporaryDirectory(prefix="profileops-bulk-")
    os.environ["DATABASE_URL"] = f"sqlite:///{directory.name}/bench.sqlite3"
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                   check=True)
    return directory


def timed(label: str, fn, rows: int, figures: dict):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    figures[label] = {"seconds": round(seconds, 2), "rows_per_second": round(rows / seconds)}
    log(f"{label}: {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
    return result


def run(rows: int, loss_rate: float, reads_per_second: int) -> dict:
    from django.conf import settings
    from django.utils import timezone

    from target_emulator import TargetEmulator
    from updates import bulk_polling, bulk_reconcile, bulk_sending, sending, verification
    from updates.models import BulkJob, ProfileUpdate, QuotaMinute

    settings.PROFILEOPS = {**getattr(settings, "PROFILEOPS", {}),
                           "READS_PER_SECOND": reads_per_second, "VERIFY_BATCH_SIZE": rows,
                           "VERIFY_CONCURRENCY": 16}
    emulator = TargetEmulator(faithful=True, seed=1, keep_received=False,
                              bulk={"delay": 0, "loss_rate": loss_rate}).start()
    try:
        user = make_user("bench-bulk", superuser=True)
        connection = make_connection("bulkbench", base_url=emulator.base_url)
        create_approved(connection=connection, user=user, count=rows, prefix="B")
        ProfileUpdate.objects.filter(connection=connection).update(send_route="bulk")
        figures: dict = {"rows": rows, "loss_rate": loss_rate}
        now = timezone.now()
        owner = "bench"
        timed("build the job", lambda: bulk_sending.bulk_job_start(
            connection=connection, owner=owner, now=now), rows, figures)
        timed("upload the files", lambda: bulk_sending.bulk_send_due(
            now=now, connection=connection, owner=owner), rows, figures)
        later = now + dt.timedelta(minutes=2)
        timed("process and poll", lambda: bulk_polling.bulk_poll_due(now=later), rows, figures)
        job = BulkJob.objects.get(connection=connection)
        check_at = later + dt.timedelta(hours=1)
        timed("verify every row", lambda: verification.updates_verify_due(
            now=check_at, connection=connection), rows, figures)
        report = bulk_reconcile.job_reconciliation(job)
        figures.update(job_state=job.state, files=job.files.count(), target=report.target,
                       rows_outcome=report.rows, disagreements=report.disagreements)
        admin = make_user("bench-bulk-supervisor", superuser=True)
        requeued = bulk_reconcile.bulk_requeue_not_applied(job=job, by=admin).requeued
        sending.send_due(connection=connection, now=check_at)
        figures.update(requeued_single=requeued, single_quota_used=sum(
            QuotaMinute.objects.filter(connection=connection).values_list("requests", flat=True)))
        return figures
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--loss-rate", type=float, default=0.001)
    parser.add_argument("--reads-per-second", type=int, default=2000)
    parser.add_argument("--write-csv", metavar="PATH")
    args = parser.parse_args()
    if args.write_csv:
        write_csv(args.write_csv, args.rows)
        return
    scratch = scratch_database()
    try:
        setup_django()
        figures = run(args.rows, args.loss_rate, args.reads_per_second)
        emit({"benchmark": "bulk_route", **figures})
    finally:
        if scratch is not None:
            scratch.cleanup()


if __name__ == "__main__":
    main()
