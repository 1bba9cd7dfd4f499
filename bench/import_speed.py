"""Benchmark 2 — importing a CSV file through the import service versus a raw bulk_create.

    python -m bench.import_speed --rows 100000 --mode service   # importing.py, as the command
    python -m bench.import_speed --rows 100000 --mode raw       # the baseline

Both modes build the same file (identity_type, identity and three mapped columns, one of them
free text) for a connection with three mappings, in a fresh database, in a process of their own
so each peak RSS is its own:

- service: importing.import_job_create (permission, read and check every row, store the job —
  the preview) then importing.import_job_run (mappings unchanged since the preview: turn each
  row into its update, write drafts with their audit rows in transactions of 2,000, not yet
  live, then make them all live in one statement), exactly what `manage.py import_updates`
  calls;
- raw: csv.reader over the same bytes and ProfileUpdate.objects.bulk_create of the same rows in
  batches of 2,000, no checks, no audit rows — the floor for getting the rows into the table.

Target: service ≤ 2× raw (whole process, same run, same database); peak RSS ≤ 150 MB at 1M rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import time

from bench.common import csv_bytes, current_rss_mb, emit, log, peak_rss_mb, setup_django

HEADER = ("identity_type", "identity", "loan_status", "tier", "note")


def file_bytes(rows: int) -> bytes:
    statuses = ("applied", "funded", "declined")
    tiers = ("bronze", "silver", "gold")
    return csv_bytes(HEADER, (
        ("mbox3rdPartyId", f"import-{i:09d}", statuses[i % 3], tiers[i % 3],
         f"Called on day {i % 28 + 1}; wants the offer by mail, not by phone.")
        for i in range(rows)
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mode", choices=("service", "raw"), required=True)
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from bench.common import make_user
    from updates import importing
    from updates.models import AttributeMapping, ImportJob, ProfileUpdate, TargetConnection

    user = make_user("bench-importer")
    user.groups.add(Group.objects.get(name="Operators"))
    conn = TargetConnection.objects.create(label="Bench import", client_code="acme")
    for source, target_name, extra in (
        ("loan_status", "loanStatus", {"value_type": "choice", "choices": "applied\nfunded\ndeclined"}),
        ("tier", "loyaltyTier", {}),
        ("note", "callNote", {"max_length": 1000}),
    ):
        AttributeMapping.objects.create(connection=conn, source_name=source,
                                        target_name=target_name, **extra)
    data = file_bytes(args.rows)
    rss_before = current_rss_mb()
    log(f"  {args.mode}: {args.rows:,} rows, {len(data) / 1e6:.1f} MB of CSV …")

    began, cpu = time.perf_counter(), time.process_time()
    if args.mode == "service":
        job = importing.import_job_create(connection=conn, file_name="bench.csv", file_data=data,
                                          by=user, background=False)
        checked = time.perf_counter() - began
        if job.status != ImportJob.Status.QUEUED:
            raise SystemExit(f"the file was refused: {job.errors[:3]}")
        job = importing.import_job_run(job=job)
        if job.status != ImportJob.Status.DONE:
            raise SystemExit(f"the import failed: {job.status} {job.errors[:3]}")
    else:
        checked = 0.0
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        next(reader)
        now = timezone.now()
        batch: list[ProfileUpdate] = []
        for identity_type, identity, loan_status, tier, note in reader:
            batch.append(ProfileUpdate(
                connection=conn, identity_type=identity_type, identity=identity,
                attributes={"loanStatus": loan_status, "loyaltyTier": tier, "callNote": note},
                reason="import", created_by=user, created_at=now, last_edited_by=user,
                last_edited_at=now))
            if len(batch) == 2000:
                ProfileUpdate.objects.bulk_create(batch)
                batch = []
        if batch:
            ProfileUpdate.objects.bulk_create(batch)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    saved = ProfileUpdate.objects.filter(connection=conn).count()
    if saved != args.rows:
        raise SystemExit(f"{saved} of {args.rows} rows were saved")
    peak = peak_rss_mb()
    log(f"  {args.mode}: {seconds:.1f} s"
        + (f" (preview check {checked:.1f} s, confirmed import {seconds - checked:.1f} s)"
           if args.mode == "service" else "")
        + f", CPU {cpu:.1f} s, peak RSS {peak:.0f} MB (before: {rss_before:.0f} MB)")
    emit({"benchmark": "import", "mode": args.mode, "rows": args.rows, "seconds": seconds,
          "cpu_seconds": cpu, "load_average": os.getloadavg(),
          "preview_seconds": checked, "peak_rss_mb": peak, "rss_before_mb": rss_before,
          "file_mb": len(data) / 1e6})


if __name__ == "__main__":
    main()
