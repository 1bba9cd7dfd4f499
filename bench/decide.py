"""Benchmark — a batch decision of 100,000 updates, set-wise, versus a raw UPDATE + bulk_create.

    .venv/bin/python bench/decide.py [--updates 100000] [--database sqlite|postgres|both]
                                     [--repeat 2]

For each database it creates a scratch database (as bench/run.py does: SQLite a temporary file,
PostgreSQL `profileops_bench_<pid>` on 127.0.0.1:5432 as user postgres), migrates it, and runs
each measurement in a fresh process (`python -m bench.decide --mode …`) that first writes N
pending updates of one connection, submitted by an operator (with their content-author rows, as
an import writes them; not measured), then times one of:

- setwise: what the batch page's Approve all does for a batch of N (more than one chunk) —
  batch_decisions.decision_job_run, i.e. chunk by chunk (setwise.CHUNK) each in its own
  transaction: lock and read the chunk, recompute every content fingerprint and compare it
  with the one kept when the page was shown, find the supervisor's own updates, one UPDATE of
  the decision's fields, one INSERT of the audit rows; progress saved after every chunk. The
  page's own cost — one values_list of the scope, the fingerprints, the kept snapshot
  (batch_decisions.decision_job_show) — is timed separately ("page").
- raw: the floor for the same change — the ids, one `UPDATE … SET status = 'approved'` of all of
  them and `AuditEvent.objects.bulk_create` of one audit row each, in one transaction; no checks.

Prints each run and the ratio setwise / raw (median of the repeats), measured in the same run on
the same machine. Target: ≤ 2×. Not a test: nothing here runs in CI. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import ATTRIBUTES, emit, log, peak_rss_mb, setup_django  # noqa: E402

TARGET_RATIO = 2.0


def seed(n: int):
    """N pending updates of one connection, submitted by an operator (not measured)."""
    from django.contrib.auth.models import Group
    from django.db import transaction
    from django.utils import timezone

    from bench.common import make_connection, make_user
    from updates.models import ProfileUpdate, UpdateStatus

    operator, supervisor = make_user("bench-operator"), make_user("bench-supervisor")
    operator.groups.add(Group.objects.get(name="Operators"))
    supervisor.groups.add(Group.objects.get(name="Supervisors"))
    conn = make_connection("acme")
    Author = ProfileUpdate.content_authors.through
    now = timezone.now()
    with transaction.atomic():
        for start in range(0, n, 5000):
            objs = ProfileUpdate.objects.bulk_create([
                ProfileUpdate(connection=conn, identity_type="mbox3rdPartyId",
                              identity=f"decide-{i:09d}",
                              attributes={**ATTRIBUTES, "loyaltyTier": f"tier-{i % 7}"},
                              status=UpdateStatus.PENDING, reason="benchmark", created_by=operator,
                              created_at=now, last_edited_by=operator, last_edited_at=now,
                              submitted_at=now)
                for i in range(start, min(n, start + 5000))])
            Author.objects.bulk_create([Author(profileupdate_id=u.pk, user_id=operator.pk)
                                        for u in objs])
    return conn, supervisor


def measure(mode: str, n: int) -> dict:
    from django.db import transaction
    from django.utils import timezone

    from updates import batch_decisions
    from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

    conn, supervisor = seed(n)
    scope = ProfileUpdate.objects.filter(status=UpdateStatus.PENDING, connection=conn)
    page = 0.0
    began, cpu = time.perf_counter(), time.process_time()
    if mode == "setwise":
        pairs = batch_decisions.snapshot_pairs(scope)
        job, _ = batch_decisions.decision_job_show(pairs=pairs, by=supervisor, connection=conn,
                                                   import_job=None)
        page = time.perf_counter() - began
        began, cpu = time.perf_counter(), time.process_time()
        job = batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest,
                                                 decision="approve", by=supervisor,
                                                 background=False)
        if job.status != job.Status.DONE or job.decided != n:
            raise SystemExit(f"the decision did not finish: {job.status} {job.report[:2]}")
    else:
        with transaction.atomic():
            ids = list(scope.values_list("id", flat=True))
            scope.update(status=UpdateStatus.APPROVED)
            now = timezone.now()
            AuditEvent.objects.bulk_create(
                [AuditEvent(at=now, actor=supervisor, action="approved", update_id=pk,
                            connection=conn, from_status="pending", to_status="approved")
                 for pk in ids], batch_size=5000)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    approved = ProfileUpdate.objects.filter(status=UpdateStatus.APPROVED).count()
    audited = AuditEvent.objects.filter(action="approved").count()
    if approved != n or audited != n:
        raise SystemExit(f"{approved} approved, {audited} audited of {n}")
    log(f"  {mode}: {n:,} approvals in {seconds:.2f} s (CPU {cpu:.2f} s)"
        + (f"; the page's snapshot {page:.2f} s" if mode == "setwise" else ""))
    return {"benchmark": "decide", "mode": mode, "updates": n, "seconds": seconds,
            "cpu_seconds": cpu, "page_seconds": page, "peak_rss_mb": peak_rss_mb(),
            "load_average": os.getloadavg()}


def drive(args: argparse.Namespace) -> None:
    from bench import run as runner

    ns = argparse.Namespace(concurrency=None, batch_size=None)
    kinds = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    lines = [f"Batch decision of {args.updates:,} approvals, set-wise vs raw UPDATE + "
             f"bulk_create (median of {args.repeat}); load average at start "
             f"{os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs"]
    for kind in kinds:
        workdir = Path(tempfile.mkdtemp(prefix="profileops-bench-decide-"))
        dbs = runner.SqliteDatabases(workdir) if kind == "sqlite" else runner.PostgresDatabases()
        try:
            template = dbs.create_template()
            runner.migrate(template, ns)
            runs: dict[str, list[dict]] = {"raw": [], "setwise": []}
            for number in range(args.repeat):
                for mode in ("raw", "setwise"):
                    url = dbs.clone(f"{mode}{number}")
                    log(f"== {kind}: {mode} #{number + 1}")
                    runs[mode].append(runner.child("decide", url, ns, "--mode", mode,
                                                   "--updates", args.updates))
                    dbs.drop(f"{mode}{number}")
            each = {mode: ", ".join(f"{r['seconds']:.2f}" for r in runs[mode]) for mode in runs}
            raw = statistics.median(r["seconds"] for r in runs["raw"])
            setwise = statistics.median(r["seconds"] for r in runs["setwise"])
            page = statistics.median(r["page_seconds"] for r in runs["setwise"])
            cpu = {mode: statistics.median(r["cpu_seconds"] for r in runs[mode]) for mode in runs}
            ratio = setwise / raw
            lines.append(
                f"{kind} {dbs.version()}: set-wise {setwise:.2f} s "
                f"({args.updates / setwise:,.0f}/s), raw {raw:.2f} s "
                f"({args.updates / raw:,.0f}/s): ×{ratio:.2f} "
                f"({'met' if ratio <= TARGET_RATIO else 'MISSED'}: ≤ ×{TARGET_RATIO:g}); "
                f"the page's snapshot {page:.2f} s; runs set-wise {each['setwise']} s, "
                f"raw {each['raw']} s; this process's CPU set-wise {cpu['setwise']:.2f} s, "
                f"raw {cpu['raw']:.2f} s (×{cpu['setwise'] / cpu['raw']:.2f}; SQLite's work "
                "included, PostgreSQL's server not)")
        finally:
            dbs.drop_all()
            shutil.rmtree(workdir, ignore_errors=True)
    lines.append(f"load average at end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--mode", choices=("setwise", "raw"),
                        help="(internal) one measurement, in this process")
    args = parser.parse_args()
    if args.mode:
        setup_django()
        emit(measure(args.mode, args.updates))
    else:
        drive(args)


if __name__ == "__main__":
    main()
