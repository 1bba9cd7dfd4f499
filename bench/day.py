"""Benchmark — a quota day end to end on PostgreSQL: import, decide, send, verify N updates.

One process drives the day against the deployment's own parts, each started here and stopped
in `finally` (every wait has a timeout):

- a scratch PostgreSQL database (`--database`, default profileops_bench_day on
  127.0.0.1:5432, trust auth), created, migrated and dropped again; django-q2's schedules are
  removed from it, so nothing runs that the day does not ask for;
- the Redis broker (Q_REDIS_URL, default redis://127.0.0.1:6379/0, a cluster name of its own)
  and one `manage.py qcluster` with two workers (Q_WORKERS=2);
- the Target emulator (`python -m target_emulator --faithful`): `--latency` per answer (default
  0.1 s), updates apply after `--apply-delay` seconds (default 2), and it knows 98 % of the
  visitors (seed profiles; Target drops the updates of the other 2 %).

The steps, each timed as a whole and against a baseline measured in the same run:

1. import — `manage.py import_updates FILE --submit` of a CSV of N rows (a process of its own);
   baseline: the same CSV parsed and written with bulk_create in batches of 2,000 (bench/
   import_speed.py's raw mode), in a transaction rolled back before the import.
2. decide — a supervisor looks at a sample (the first page of 100), then approves the whole
   batch as the batch page does: batch_decisions.decision_job_show + decision_job_start, run by
   the cluster (the Redis broker) chunk by chunk, all-or-nothing per chunk; baseline: a raw
   `UPDATE … SET status` of the same rows plus `AuditEvent.objects.bulk_create` (bench/
   decide.py's raw mode), in a transaction rolled back before the decision.
3. send — `manage.py send_updates --connection CODE` (whole processes, until nothing is due)
   with the connection's quota set to N; baseline: a bare pooled requests loop (bench/
   send_bare.py, SEND_CONCURRENCY threads) over min(N, 5,000) requests for visitors the
   emulator does not know (acknowledged, not applied: the profiles stay as they were).
4. verify — `manage.py verify_updates --connection CODE` (whole processes) until no update's
   check is due (the wait for the first checks to fall due is left out of the time), with VERIFY_FIRST_CHECK_SECONDS (`--first-check`, default 3 s) after the apply
   delay and READS_PER_SECOND `--reads-per-second` (default 1000: the concurrency binds, not
   the limit); baseline: a bare pooled read loop (bench/verify_pace.py's, VERIFY_CONCURRENCY
   threads) over min(N, 2,000) of the same profiles.

Printed per step: wall seconds, rows per second, the baseline's rows per second and the ratio
(step time ÷ baseline time for the same number of rows; 1.0 = as fast as the baseline), peak RSS
(MB, the sum over the processes involved — this driver, the step's command, the cluster and its
workers, the emulator — sampled every 0.1 s) and the database size after the step
(pg_database_size). The load average is printed beside them. Not a test (never run in CI).

    python -m bench.day [--updates 20000] [--latency 0.1] [--apply-delay 2] [--keep-database]

The run time of the whole day grows linearly with N; see docs/benchmarks.md for the figures
and for what `--updates 1000000` takes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from bench.common import PRODUCTION_SECRETS, RESULT_PREFIX, ROOT, emit, log, make_user, setup_django

UNKNOWN_SHARE = 0.02  # visitors Target has no profile for: acknowledged, dropped
HEADER = ("identity_type", "identity", "loan_status", "tier", "note")
CODE = "benchday"
STEP_TIMEOUT = 6 * 3600  # no step of even a million rows should take this long


# --- the processes -----------------------------------------------------------------------------

class RssSampler:
    """Peak of the summed RSS of a set of process trees, sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.roots: list[psutil.Process] = [psutil.Process()]
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        try:
            self.roots.append(psutil.Process(pid))
        except psutil.Error:
            pass

    def reset(self) -> float:
        peak, self.peak = self.peak, self._sample()
        return max(peak, self.peak)

    def _sample(self) -> float:
        total = 0
        for root in list(self.roots):
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
        return total / (1024 * 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self._sample())

    def stop(self) -> None:
        self._stop.set()


def stop_process(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run_command(args: list[str], env: dict, sampler: RssSampler) -> str:
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, text=True)
    sampler.watch(process.pid)
    try:
        out, _ = process.communicate(timeout=STEP_TIMEOUT)
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} exited with status {process.returncode}")
    return out


# --- the database ------------------------------------------------------------------------------

def admin_sql(base: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(sql)


def database_mb() -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0] / 1e6


# --- the steps ---------------------------------------------------------------------------------

def write_csv(path: Path, n: int) -> None:
    statuses, tiers = ("applied", "funded", "declined"), ("bronze", "silver", "gold")
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(
            ("mbox3rdPartyId", f"day-{i:09d}", statuses[i % 3], tiers[i % 3],
             f"Called on day {i % 28 + 1}; wants the offer by mail, not by phone.")
            for i in range(n))


def import_baseline(path: Path, conn, user) -> float:
    """Seconds to parse the CSV and bulk_create its rows (rolled back)."""
    from django.db import transaction
    from django.utils import timezone

    from updates.models import ProfileUpdate

    began = time.perf_counter()
    with transaction.atomic():
        with path.open(encoding="utf-8", newline="") as opened:
            reader = csv.reader(opened)
            next(reader)
            now, batch = timezone.now(), []
            for identity_type, identity, loan_status, tier, note in reader:
                batch.append(ProfileUpdate(
                    connection=conn, identity_type=identity_type, identity=identity,
                    attributes={"loanStatus": loan_status, "loyaltyTier": tier,
                                "callNote": note},
                    reason="import", created_by=user, created_at=now, last_edited_by=user,
                    last_edited_at=now))
                if len(batch) == 2000:
                    ProfileUpdate.objects.bulk_create(batch)
                    batch = []
            ProfileUpdate.objects.bulk_create(batch)
        seconds = time.perf_counter() - began
        transaction.set_rollback(True)
    return seconds


def decide_baseline(conn, supervisor) -> float:
    """Seconds for a raw UPDATE of the pending rows' status + bulk_create of their audit rows
    (rolled back)."""
    from django.db import transaction
    from django.utils import timezone

    from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

    scope = ProfileUpdate.objects.filter(status=UpdateStatus.PENDING, connection=conn)
    began = time.perf_counter()
    with transaction.atomic():
        ids = list(scope.values_list("id", flat=True))
        scope.update(status=UpdateStatus.APPROVED)
        now = timezone.now()
        AuditEvent.objects.bulk_create(
            [AuditEvent(at=now, actor=supervisor, action="approved", update_id=pk,
                        connection=conn, from_status="pending", to_status="approved")
             for pk in ids], batch_size=5000)
        seconds = time.perf_counter() - began
        transaction.set_rollback(True)
    return seconds


def decide(conn, supervisor, n: int) -> dict:
    """Look at a sample, then approve the whole batch through the cluster; wait for it."""
    from updates import batch_decisions, selectors
    from updates.models import DecisionJob, ProfileUpdate, UpdateStatus

    scope = ProfileUpdate.objects.filter(status=UpdateStatus.PENDING, connection=conn)
    list(selectors.pending_updates(connection_id=conn.pk).order_by("id")[:100])  # the sample
    pairs = batch_decisions.snapshot_pairs(scope)
    job, _ = batch_decisions.decision_job_show(pairs=pairs, by=supervisor, connection=conn,
                                               import_job=None)
    job = batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest,
                                             decision="approve", by=supervisor)
    deadline = time.monotonic() + STEP_TIMEOUT
    while job.status not in (DecisionJob.Status.DONE, DecisionJob.Status.FAILED):
        if time.monotonic() > deadline:
            raise SystemExit("the batch decision did not finish in time")
        time.sleep(0.2)
        job.refresh_from_db()
    if job.decided != n:
        raise SystemExit(f"the decision: {job.status}, {job.decided} of {n}: {job.report[:2]}")
    return {"chunks": job.chunks}


def send_baseline(conn, emulator_url: str, count: int, concurrency: int, workdir: Path,
                  env: dict, sampler: RssSampler) -> float:
    """Seconds of a bare pooled loop (bench/send_bare.py) for `count` requests to unknown
    visitors (the emulator acknowledges and drops them)."""
    from updates import target

    path = workdir / "bare-requests.jsonl"
    attributes = {"loanStatus": "funded", "loyaltyTier": "gold", "callNote": "bare loop"}
    with path.open("w") as out:
        for i in range(count):
            request = target.build_request(
                base_url=emulator_url, client_code=conn.client_code,
                identity_type="mbox3rdPartyId", identity=f"bare-{i:09d}", attributes=attributes)
            out.write(json.dumps({"method": request.method, "url": request.url,
                                  "body": request.body.decode("ascii") if request.body else None})
                      + "\n")
    out_text = run_command(["-m", "bench.send_bare", "--requests", str(path), "--concurrency",
                            str(concurrency), "--no-environment"], env, sampler)
    result = [json.loads(line[len(RESULT_PREFIX):]) for line in out_text.splitlines()
              if line.startswith(RESULT_PREFIX)][-1]
    return result["loop_seconds"]


def read_baseline(conn, count: int, concurrency: int) -> float:
    """Seconds of a bare pooled read loop (reading.fetch, no database) over `count` profiles."""
    from updates import reading
    from updates.models import ProfileUpdate

    updates = list(ProfileUpdate.objects.select_related("connection").filter(
        connection=conn).order_by("id")[:count])
    session = reading.make_session(pool_size=concurrency)
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda u: reading.fetch(u, session=session), updates))
    seconds = time.perf_counter() - began
    session.close()
    return seconds


# --- the day -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1, help="Seconds per answer.")
    parser.add_argument("--apply-delay", type=float, default=2.0)
    parser.add_argument("--first-check", type=int, default=3,
                        help="VERIFY_FIRST_CHECK_SECONDS (after the apply delay).")
    parser.add_argument("--reads-per-second", type=float, default=1000.0)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="profileops_bench_day")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    n = args.updates
    began_day = time.perf_counter()

    env = {**os.environ, "DATABASE_URL": f"{args.server}/{args.database}", "DEBUG": "0",
           **PRODUCTION_SECRETS, "ALLOWED_HOSTS": "localhost",
           "Q_REDIS_URL": args.redis, "Q_CLUSTER_NAME": f"profileops-bench-day-{os.getpid()}",
           "Q_WORKERS": "2", "PROFILEOPS_DEMO": "0",
           "PROFILEOPS_VERIFY_FIRST_CHECK_SECONDS": str(args.first_check),
           "PROFILEOPS_READS_PER_SECOND": str(args.reads_per_second)}
    os.environ.update(env)
    admin_sql(args.server, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    admin_sql(args.server, f'CREATE DATABASE "{args.database}"')
    workdir = tempfile.TemporaryDirectory(prefix="profileops-day-")
    sampler = RssSampler()
    cluster = emulator = None
    steps: dict[str, dict] = {}
    try:
        log(f"  migrating {args.database} …")
        subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT,
                       env=env, check=True, timeout=600)
        setup_django()
        from django.contrib.auth.models import Group
        from django.db import connection as db
        from django_q.models import Schedule

        from updates.conf import setting
        from updates.models import AttributeMapping, ProfileUpdate, TargetConnection, UpdateStatus
        from updates.models import VerificationState

        Schedule.objects.all().delete()  # the day's steps are driven here, not by the clock
        operator, supervisor = make_user("bench-operator"), make_user("bench-supervisor")
        operator.groups.add(Group.objects.get(name="Operators"))
        supervisor.groups.add(Group.objects.get(name="Supervisors"))

        profiles_path = Path(workdir.name) / "profiles.json"
        every = round(1 / UNKNOWN_SHARE)
        with profiles_path.open("w") as out:  # written a profile at a time (1M: ~90 MB)
            out.write("[")
            out.write(",\n".join(
                json.dumps({"identity": f"day-{i:09d}", "identity_type": "mbox3rdPartyId",
                            "attributes": {"loyaltyTier": "silver"}})
                for i in range(n) if (i + 1) % every))
            out.write("]")
        emulator = subprocess.Popen(
            [sys.executable, "-m", "target_emulator", "--port", "0", "--latency",
             str(args.latency), "--faithful", "--apply-delay", str(args.apply_delay),
             "--profiles", str(profiles_path)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        line = emulator.stdout.readline().strip()
        if not line.startswith("Target emulator listening on "):
            raise SystemExit(f"the emulator did not start: {line!r}")
        url = line.rsplit(" ", 1)[1]
        sampler.watch(emulator.pid)
        conn = TargetConnection.objects.create(label="Bench day", client_code=CODE,
                                               base_url=url, quota_limit=n,
                                               verify_after_send=True)
        for source, target_name, extra in (
            ("loan_status", "loanStatus",
             {"value_type": "choice", "choices": "applied\nfunded\ndeclined"}),
            ("tier", "loyaltyTier", {}),
            ("note", "callNote", {"max_length": 1000}),
        ):
            AttributeMapping.objects.create(connection=conn, source_name=source,
                                            target_name=target_name, **extra)
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sampler.watch(cluster.pid)
        csv_path = Path(workdir.name) / "day.csv"
        write_csv(csv_path, n)
        db.close()
        log(f"  {n:,} updates; emulator at {url} (latency {args.latency} s, apply delay "
            f"{args.apply_delay} s); qcluster pid {cluster.pid}, 2 workers, Redis broker")

        def step(name: str, seconds: float, baseline_rows: int, baseline_seconds: float,
                 **extra) -> None:
            rate = n / seconds
            base_rate = baseline_rows / baseline_seconds
            steps[name] = {"seconds": round(seconds, 2), "rows_per_s": round(rate, 1),
                           "baseline_rows": baseline_rows,
                           "baseline_rows_per_s": round(base_rate, 1),
                           "ratio": round(base_rate / rate, 2),
                           "peak_rss_mb": round(sampler.reset(), 1),
                           "database_mb": round(database_mb(), 1),
                           "load_average": [round(x, 2) for x in os.getloadavg()], **extra}
            log(f"  {name}: {json.dumps(steps[name])}")

        # 1. import
        sampler.reset()
        base = import_baseline(csv_path, conn, operator)
        began = time.perf_counter()
        run_command(["manage.py", "import_updates", str(csv_path), "--connection", CODE,
                     "--user", operator.username, "--submit"], env, sampler)
        seconds = time.perf_counter() - began
        pending = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.PENDING)
        if pending.count() != n:
            raise SystemExit(f"the import left {pending.count()} of {n} pending")
        step("import", seconds, n, base)

        # 2. decide
        base = decide_baseline(conn, supervisor)
        began = time.perf_counter()
        extra = decide(conn, supervisor, n)
        step("decide", time.perf_counter() - began, n, base, **extra)

        # 3. send
        concurrency = setting("SEND_CONCURRENCY")
        bare_count = min(n, 5000)
        base = send_baseline(conn, url, bare_count, concurrency, Path(workdir.name), env,
                             sampler)
        approved = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.APPROVED)
        began, runs = time.perf_counter(), 0
        while approved.exists() and runs < 1000:
            run_command(["manage.py", "send_updates", "--connection", CODE], env, sampler)
            runs += 1
        seconds = time.perf_counter() - began
        sent = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.SENT).count()
        if sent != n:
            raise SystemExit(f"{sent} of {n} sent after {runs} runs")
        step("send", seconds, bare_count, base, runs=runs, concurrency=concurrency)

        # 4. verify
        read_concurrency = setting("VERIFY_CONCURRENCY")
        read_count = min(n, 2000)
        base = read_baseline(conn, read_count, read_concurrency)
        began = time.perf_counter()
        run_command(["manage.py", "verify_updates", "--connection", CODE],
                    env, sampler)  # starts verifying: schedules the first checks
        started = time.perf_counter() - began
        from django.db.models import Count, Max
        from django.utils import timezone

        pending = ProfileUpdate.objects.filter(connection=conn,
                                               verification_state=VerificationState.PENDING)
        latest = pending.aggregate(Max("verification_next_at"))["verification_next_at__max"]
        waited = 0.0
        if latest is not None:  # the checks fall due first-check seconds after the send
            waited = max(0.0, min(60.0, (latest - timezone.now()).total_seconds()))
            time.sleep(waited)
        began, runs = time.perf_counter() - started, 1
        unscheduled = ProfileUpdate.objects.filter(connection=conn, status="sent",
                                                   verification_state="")
        while (pending.filter(verification_next_at__lte=timezone.now()).exists()
               or unscheduled.exists()) and runs < 1000:
            run_command(["manage.py", "verify_updates", "--connection", CODE], env, sampler)
            runs += 1
        seconds = time.perf_counter() - began
        from updates.models import ProfileRead

        reads = ProfileRead.objects.filter(update__connection=conn,
                                           purpose="verification").count()
        states = dict(ProfileUpdate.objects.filter(connection=conn).values_list(
            "verification_state").annotate(c=Count("id")).order_by())
        verified = states.get(VerificationState.VERIFIED, 0)
        step("verify", seconds, read_count, base, runs=runs, reads=reads, states=states,
             waited_for_first_check_s=round(waited, 1),
             reads_per_verified=round(reads / max(1, verified), 3),
             concurrency=read_concurrency)
    finally:
        stop_process(cluster)
        stop_process(emulator)
        sampler.stop()
        workdir.cleanup()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up yet
            pass
        if not args.keep_database:
            admin_sql(args.server, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')

    total = time.perf_counter() - began_day
    lines = [f"A quota day of {n:,} updates on PostgreSQL ({total:.0f} s in all; load average "
             f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores):",
             f"  {'step':<7} {'wall s':>8} {'rows/s':>9} {'baseline/s':>11} {'ratio':>6} "
             f"{'peak RSS MB':>12} {'DB MB':>7}"]
    for name, s in steps.items():
        lines.append(f"  {name:<7} {s['seconds']:>8.2f} {s['rows_per_s']:>9,.0f} "
                     f"{s['baseline_rows_per_s']:>11,.0f} {s['ratio']:>6.2f} "
                     f"{s['peak_rss_mb']:>12.0f} {s['database_mb']:>7.0f}")
    print("\n".join(lines), flush=True)
    emit({"benchmark": "day", "updates": n, "latency_s": args.latency,
          "apply_delay_s": args.apply_delay, "first_check_s": args.first_check,
          "reads_per_second_setting": args.reads_per_second, "total_seconds": round(total, 1),
          "steps": steps, "load_average": os.getloadavg()})


if __name__ == "__main__":
    main()
