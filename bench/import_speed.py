"""Benchmark 2 — importing a CSV file through the import service versus a raw bulk_create.

    python -m bench.import_speed --rows 100000 --mode service   # importing.py, as the command
    python -m bench.import_speed --rows 100000 --mode raw       # the baseline

Both modes write the same CSV file to disk (identity_type, identity and three mapped columns,
one of them free text; before the clock starts) for a connection with three mappings, in a fresh
database, in a process of their own so each peak RSS is its own:

- service: exactly what `manage.py import_updates FILE` calls — importing.import_job_create
  (file_path: permission, stream and check every row, keep the job — the preview) then
  importing.import_job_run (file_path: mappings and file unchanged since the preview, turn each
  row into its update, write drafts and their content authors in transactions of 2,000, not yet
  live, then make them all live in one statement with the job's one audit row);
- raw: csv.reader streaming the same file and ProfileUpdate.objects.bulk_create of the same
  rows in batches of 2,000, no checks, no audit — the floor for getting the rows into the table.

Target: service ≤ 1.5× raw (whole process, same run, same database; issue 25 item 5); peak RSS
≤ 150 MB at 1M rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from bench.common import current_rss_mb, emit, log, peak_rss_mb, setup_django

HEADER = ("identity_type", "identity", "loan_status", "tier", "note")


def write_file(path: Path, rows: int) -> None:
    """The file, written a row at a time (a million rows are ~105 MB: never built in memory)."""
    statuses = ("applied", "funded", "declined")
    tiers = ("bronze", "silver", "gold")
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(
            ("mbox3rdPartyId", f"import-{i:09d}", statuses[i % 3], tiers[i % 3],
             f"Called on day {i % 28 + 1}; wants the offer by mail, not by phone.")
            for i in range(rows))


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
    folder = tempfile.TemporaryDirectory(prefix="profileops-import-")
    path = Path(folder.name) / "bench.csv"
    write_file(path, args.rows)
    file_mb = path.stat().st_size / 1e6
    rss_before = current_rss_mb()
    log(f"  {args.mode}: {args.rows:,} rows, {file_mb:.1f} MB of CSV …")

    # Where the server's time goes: the statement that makes the rows live, and the content
    # authors' inserts (what the service writes beyond the raw baseline), timed as they run.
    spent = {"make_live": 0.0, "content_authors": 0.0}

    def timed(execute, sql, params, many, context):
        kind = ("make_live" if sql.startswith("UPDATE") and "import_pending_id\" = NULL" in sql
                else "content_authors" if sql.startswith('INSERT INTO "updates_profileupdate_'
                                                         'content_authors"') else None)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if kind:
                spent[kind] += time.perf_counter() - started

    from django.db import connection as db

    wrapper = db.execute_wrapper(timed)
    wrapper.__enter__()
    began, cpu = time.perf_counter(), time.process_time()
    if args.mode == "service":
        job = importing.import_job_create(connection=conn, file_name="bench.csv", file_path=path,
                                          by=user, background=False)
        checked = time.perf_counter() - began
        if job.status != ImportJob.Status.QUEUED:
            raise SystemExit(f"the file was refused: {job.errors[:3]}")
        job = importing.import_job_run(job=job, file_path=path)
        if job.status != ImportJob.Status.DONE:
            raise SystemExit(f"the import failed: {job.status} {job.errors[:3]}")
    else:
        checked = 0.0
        opened = path.open(encoding="utf-8", newline="")
        reader = csv.reader(opened)
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
        opened.close()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    wrapper.__exit__(None, None, None)
    saved = ProfileUpdate.objects.filter(connection=conn).count()
    if saved != args.rows:
        raise SystemExit(f"{saved} of {args.rows} rows were saved")
    peak = peak_rss_mb()
    log(f"  {args.mode}: {seconds:.1f} s"
        + (f" (preview check {checked:.1f} s, confirmed import {seconds - checked:.1f} s)"
           if args.mode == "service" else "")
        + (f" (of it: making the rows live {spent['make_live']:.1f} s, content authors "
           f"{spent['content_authors']:.1f} s)" if args.mode == "service" else "")
        + f", CPU {cpu:.1f} s, peak RSS {peak:.0f} MB (before: {rss_before:.0f} MB)")
    emit({"benchmark": "import", "mode": args.mode, "rows": args.rows, "seconds": seconds,
          "cpu_seconds": cpu, "load_average": os.getloadavg(),
          "preview_seconds": checked, "make_live_seconds": spent["make_live"],
          "content_authors_seconds": spent["content_authors"], "peak_rss_mb": peak, "rss_before_mb": rss_before,
          "file_mb": file_mb})
    folder.cleanup()


if __name__ == "__main__":
    main()
