"""Staging rows from a DataFrame (profileops.notebook) versus importing the same rows from a CSV.

    .venv/bin/python -m bench.notebook_stage [--rows 100000] [--repeat 3]

Both paths save the same rows — identity_type, identity and three mapped columns, one of them
free text — as drafts with their audit rows, for the same user, in one fresh SQLite database
(a temporary file, migrated here; DATABASE_URL overrides it):

- csv: importing.import_job_create (read and check every row: the preview) then
  importing.import_job_run (check again, save), exactly what `manage.py import_updates` does;
- notebook: Session.stage(frame) — the DataFrame's cells handed to the same RowChecker once,
  then workflow.updates_stage_many, on the module's ORM thread.

Building the CSV bytes and the DataFrame is not timed (each is what its user starts from). Runs
alternate (csv, notebook, notebook, csv, …) on a fresh connection each, so the table's growth
weighs on both alike. Prints each run's wall and CPU time, the medians, the ratios notebook / csv
(target ≤ 1) and the load average. Not a test: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import csv_bytes, log  # noqa: E402

HEADER = ("identity_type", "identity", "loan_status", "tier", "note")
STATUSES = ("applied", "funded", "declined")
TIERS = ("bronze", "silver", "gold")


def table_rows(rows: int, prefix: str) -> list[tuple[str, ...]]:
    return [("mbox3rdPartyId", f"{prefix}-{i:09d}", STATUSES[i % 3], TIERS[i % 3],
             f"Called on day {i % 28 + 1}; wants the offer by mail, not by phone.")
            for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="profileops-bench-")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path(scratch.name) / 'bench.sqlite3'}")
    # Production-like, as bench/run.py: DEBUG off (no query log), quiet logs.
    for name, value in (("DEBUG", "0"), ("SECRET_KEY", "profileops-benchmark-only"),
                        ("PROFILEOPS_HASH_KEY", "profileops-benchmark-only-hash-key-0123456789"),
                        ("SECURE_SSL_REDIRECT", "0"), ("LOG_LEVEL", "WARNING")):
        os.environ.setdefault(name, value)

    import pandas as pd

    from profileops import notebook

    notebook.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection as db

    from bench.common import make_user
    from updates import importing
    from updates.models import AttributeMapping, ImportJob, ProfileUpdate, TargetConnection

    call_command("migrate", verbosity=0)
    user = make_user("bench-notebook")
    user.groups.add(Group.objects.get(name="Operators"))
    db.close()  # from here on the database is the notebook thread's and the import's

    def fresh_connection(code: str) -> TargetConnection:
        conn = TargetConnection.objects.create(label=f"Bench {code}", client_code=code)
        for source, target_name, extra in (
            ("loan_status", "loanStatus",
             {"value_type": "choice", "choices": "applied\nfunded\ndeclined"}),
            ("tier", "loyaltyTier", {}),
            ("note", "callNote", {"max_length": 1000}),
        ):
            AttributeMapping.objects.create(connection=conn, source_name=source,
                                            target_name=target_name, **extra)
        return conn

    def run_csv(conn: TargetConnection, prefix: str) -> tuple[float, float]:
        data = csv_bytes(HEADER, table_rows(args.rows, prefix))
        began, cpu = time.perf_counter(), time.process_time()
        # In this process, as `manage.py import_updates` does (an upload this large would be
        # checked in the background).
        job = importing.import_job_create(connection=conn, file_name="bench.csv",
                                          file_data=data, by=user, background=False)
        job = importing.import_job_run(job=job)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        if job.status != ImportJob.Status.DONE:
            raise SystemExit(f"the import failed: {job.status} {job.errors[:3]}")
        return seconds, cpu

    session = notebook.as_user(user.username)

    def run_notebook(conn: TargetConnection, prefix: str) -> tuple[float, float]:
        frame = pd.DataFrame(table_rows(args.rows, prefix), columns=list(HEADER))
        began, cpu = time.perf_counter(), time.process_time()  # process-wide: the ORM thread too
        result = session.stage(frame, connection=conn.client_code)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        if not result.ok or result.counts["saved"] != args.rows:
            raise SystemExit(f"staging failed: {result}")
        return seconds, cpu

    times: dict[str, list[float]] = {"csv": [], "notebook": []}
    cpus: dict[str, list[float]] = {"csv": [], "notebook": []}
    order = []
    for i in range(args.repeat):
        order += ["csv", "notebook"] if i % 2 == 0 else ["notebook", "csv"]
    log(f"{args.rows:,} rows per run, {args.repeat} run(s) of each path, "
        f"load average {os.getloadavg()[0]:.2f}")
    for number, path in enumerate(order):
        code = f"b{number}"
        conn = notebook.run(fresh_connection, code)
        runner = run_csv if path == "csv" else run_notebook
        seconds, cpu = notebook.run(runner, conn, code) if path == "csv" else runner(conn, code)
        times[path].append(seconds)
        cpus[path].append(cpu)
        log(f"  {path:<8} run {number + 1}: {seconds:6.2f} s wall, {cpu:6.2f} s CPU "
            f"({args.rows / seconds:,.0f} rows/s)")
    saved = notebook.run(ProfileUpdate.objects.count)
    if saved != args.rows * len(order):
        raise SystemExit(f"{saved} rows saved, expected {args.rows * len(order)}")
    wall = {path: statistics.median(values) for path, values in times.items()}
    cpu = {path: statistics.median(values) for path, values in cpus.items()}
    # On a shared machine CPU time is the steadier figure: both paths are CPU-bound in this one
    # process (SQLite is in-process), and waiting for a core does not count in it.
    print(f"rows: {args.rows:,}  csv import: median {wall['csv']:.2f} s wall / "
          f"{cpu['csv']:.2f} s CPU  notebook stage: median {wall['notebook']:.2f} s wall / "
          f"{cpu['notebook']:.2f} s CPU  ratio notebook/csv: {wall['notebook'] / wall['csv']:.2f}"
          f" wall, {cpu['notebook'] / cpu['csv']:.2f} CPU  (load average "
          f"{os.getloadavg()[0]:.2f})")
    notebook.close()
    scratch.cleanup()


if __name__ == "__main__":
    main()
