"""Benchmark 1 — sending throughput: `send_updates` versus a bare requests loop, whole processes.

All against the emulator (a process of its own, 50 ms added latency), at the same concurrency:

- bare: `python -m bench.send_bare` — a pooled requests.Session driven by a thread pool,
  nothing but HTTP (requests prepared beforehand), timed as a whole process;
- command: `manage.py send_updates --limit N` — everything the sender does (claims with leases
  and audit rows, quota reservations, the approval-hash check, SendAttempt rows, state changes,
  daily usage), timed as a whole process, start-up included;
- bare, no environment: the bare loop with requests' trust_env off, as the sender's session
  has it — the tuned reference beside requests' defaults (the target's baseline);
- the emulator's own cost: its process's CPU per request while the four timed runs go, hence
  its ceiling (one core's worth: it is one Python process) and how busy it was at the measured
  rate; and the tuned bare loop against a second emulator with no added latency — what the
  pair can answer on this machine (client-bound when the client's CPU per request is higher);
- schedule (--schedule): one qcluster worker running the "Send approved updates" schedule;
  its rate while a run is going, and its updates per minute (a run starts every minute and
  starts nothing new after RUN_TIME_BUDGET_SECONDS), against the command's.

Bare and command alternate — bare, command, command, bare, half of the updates each time — so a
change in the machine's load during the run weighs on both alike. The load average is printed
beside each figure.

Target: command ≥ 0.9 × bare at concurrency 32, 50 ms latency.

    python -m bench.send_throughput --updates 5000 [--schedule]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ATTRIBUTES, RESULT_PREFIX, ROOT, create_approved, emit, log, make_connection, make_user,
    setup_django,
)

LATENCY = 0.05


class EmulatorProcess:
    """`python -m target_emulator` in a process of its own (its CPU must not share our GIL)."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "target_emulator", "--port", "0", "--latency", str(latency),
             "--no-keep-received"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("Target emulator listening on "):
            self.stop()
            raise SystemExit(f"the emulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1]

    def cpu_seconds(self) -> float:
        """The emulator process's CPU time so far (user + system, from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)


def timed_process(command: list[str], env: dict | None = None) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds, result line or {}) of one whole child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[1:3]} exited with status {done.returncode}")
    results = [json.loads(line[len(RESULT_PREFIX):]) for line in done.stdout.splitlines()
               if line.startswith(RESULT_PREFIX)]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, results[-1] if results else {}


def write_requests(path: Path, conn, base_url: str) -> None:
    from updates import target
    from updates.models import ProfileUpdate

    with path.open("w") as out:
        for identity_type, identity, attributes in ProfileUpdate.objects.filter(
                connection=conn).order_by("id").values_list(
                "identity_type", "identity", "attributes"):
            request = target.build_request(
                base_url=base_url, client_code=conn.client_code, identity_type=identity_type,
                identity=identity, attributes=attributes)
            out.write(json.dumps({"method": request.method, "url": request.url,
                                  "body": request.body.decode("ascii") if request.body else None})
                      + "\n")


def bare(path: Path, concurrency: int, skip: int, count: int, *,
         no_environment: bool = False) -> tuple[float, float, dict]:
    return timed_process([sys.executable, "-m", "bench.send_bare", "--requests", str(path),
                          "--concurrency", str(concurrency), "--skip", str(skip),
                          "--count", str(count)] + (["--no-environment"] if no_environment else []))


def command(conn, limit: int) -> tuple[float, float]:
    seconds, cpu, _ = timed_process([sys.executable, "manage.py", "send_updates", "--connection",
                                     conn.client_code, "--limit", str(limit)])
    return seconds, cpu


def startup_seconds(conn, rounds: int = 9) -> dict:
    """Median wall and CPU time of `send_updates --help`, of a whole `send_updates` run with
    nothing due (system checks, one SendRun), and of the floors under them, all in this run:
    `manage.py version` with the apps send_updates loads (Django's own start for any management
    command), Django's set-up with those apps plus `import requests` (the libraries sending
    cannot do without), Django's set-up with every app, and `python -c "import requests"` (the
    bare loop's start). The commands take turns, round after round, and the ratios are the
    medians of each round's ratio, so the machine's drifting speed weighs on both sides. On a
    loaded machine the wall time mostly waits for a core."""
    python = sys.executable
    commands = {
        "python": ([python, "-c", "import requests"], {}),
        "send_updates_help": ([python, "manage.py", "send_updates", "--help"], {}),
        "send_updates_nothing_due": ([python, "manage.py", "send_updates", "--connection",
                                      conn.client_code], {}),
        "manage_version": ([python, "manage.py", "version"], {"PROFILEOPS_APPS": "sending"}),
        "libraries": ([python, "-c", "import requests, django; django.setup()"],
                      {"PROFILEOPS_APPS": "sending"}),
        "django_setup": ([python, "-c", "import django; django.setup()"],
                         {"PROFILEOPS_APPS": "all"}),
    }
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (command, env) in commands.items():
            timings[name].append(timed_process(command, {**os.environ, **env})[:2])
    result = {}
    for name, runs in timings.items():
        result[f"{name}_s"] = statistics.median(wall for wall, _ in runs)
        result[f"{name}_cpu_s"] = statistics.median(cpu for _, cpu in runs)
    for floor in ("manage_version", "libraries"):
        result[f"help_over_{floor}_cpu"] = statistics.median(
            help_cpu / floor_cpu for (_, help_cpu), (_, floor_cpu)
            in zip(timings["send_updates_help"], timings[floor]))
    return result


def sending(conn, n: int, concurrency: int, workdir: Path, emulator: EmulatorProcess,
            ceiling_emulator: EmulatorProcess) -> dict:
    from updates.models import ProfileUpdate, SendRun, UpdateStatus

    path, ceiling_path = workdir / "requests.jsonl", workdir / "requests-ceiling.jsonl"
    write_requests(path, conn, emulator.url)
    write_requests(ceiling_path, conn, ceiling_emulator.url)
    half = n // 2
    log(f"  concurrency {concurrency}: bare, command, command, bare (whole processes) …")
    quarter = half // 2
    # The tuned reference brackets the timed four (a quarter before, a quarter after), so drift
    # weighs on it as on them; the emulator's CPU is read over the timed four only.
    t1 = bare(path, concurrency, 0, quarter, no_environment=True)
    emulator_cpu_before = emulator.cpu_seconds()
    b1 = bare(path, concurrency, 0, half)
    c1 = command(conn, half)
    c2 = command(conn, n - half)
    b2 = bare(path, concurrency, half, n - half)
    emulator_cpu_ms = (emulator.cpu_seconds() - emulator_cpu_before) / (2 * n) * 1000
    t2 = bare(path, concurrency, half, quarter, no_environment=True)
    sent = ProfileUpdate.objects.filter(connection=conn, status=UpdateStatus.SENT).count()
    if sent != n:
        raise SystemExit(f"command: only {sent} of {n} updates were sent")
    log(f"  concurrency {concurrency}: the emulator's ceiling (tuned client, latency 0) …")
    ceiling = bare(ceiling_path, concurrency, 0, n, no_environment=True)
    tuned = (t1[0] + t2[0], t1[1] + t2[1])
    bare_seconds, bare_cpu = b1[0] + b2[0], b1[1] + b2[1]
    command_seconds, command_cpu = c1[0] + c2[0], c1[1] + c2[1]
    # Inside the processes: the bare loop's own clock, the command's SendRun rows (start-up and
    # Django set-up left out on both sides).
    bare_loop = b1[2]["loop_seconds"] + b2[2]["loop_seconds"]
    command_runs = sum((r.finished_at - r.started_at).total_seconds()
                       for r in SendRun.objects.filter(trigger="command"))
    return {
        "bare_loop_per_s": n / bare_loop, "command_in_run_per_s": n / command_runs,
        "ratio_in_run": bare_loop / command_runs,
        "bare_seconds": bare_seconds, "bare_per_s": n / bare_seconds,
        "command_seconds": command_seconds, "command_per_s": n / command_seconds,
        "ratio": bare_seconds / command_seconds,
        "bare_cpu_ms_per_update": bare_cpu / n * 1000,
        "command_cpu_ms_per_update": command_cpu / n * 1000,
        "bare_latency_median_ms": statistics.mean([b1[2]["latency_median_ms"],
                                                   b2[2]["latency_median_ms"]]),
        "bare_latency_p95_ms": max(b1[2]["latency_p95_ms"], b2[2]["latency_p95_ms"]),
        "limit_per_s": concurrency / LATENCY,
        # The tuned client against the 0-latency emulator (named apart from the old default-client
        # "ceiling_*" figures in earlier result files).
        "latency0_tuned_per_s": n / ceiling[0],
        "latency0_tuned_loop_per_s": n / ceiling[2]["loop_seconds"],
        "latency0_tuned_latency_median_ms": ceiling[2]["latency_median_ms"],
        "tuned_bare_per_s": 2 * quarter / tuned[0],
        "tuned_ratio": tuned[0] / (2 * quarter) * n / command_seconds,
        "tuned_bare_cpu_ms_per_update": tuned[1] / (2 * quarter) * 1000,
        "emulator_cpu_ms_per_request": emulator_cpu_ms,
        "emulator_ceiling_per_s": 1000 / emulator_cpu_ms if emulator_cpu_ms else float("inf"),
        # At the rate while the loop runs (start-up left out): what the emulator had to answer.
        "emulator_busy_at_bare_rate": n / bare_loop * emulator_cpu_ms / 1000,
    }


def schedule(conn, user, n: int, command_per_s: float) -> dict:
    """One qcluster worker running the schedule until `n` new approved updates are sent.

    `command_per_s`: the command's rate inside its runs (start-up left out), like this one."""
    from django.utils import timezone
    from django_q.models import Schedule

    from updates.conf import setting
    from updates.models import ProfileUpdate, SendRun, UpdateStatus

    create_approved(connection=conn, user=user, count=n, prefix="schedule")
    Schedule.objects.filter(func="updates.tasks.send_due_updates").update(next_run=timezone.now())
    started = time.perf_counter()
    cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT,
                               env={**os.environ, "Q_WORKERS": "1", "Q_ORM_POLL": "0.2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 180:
            time.sleep(0.5)
            if not ProfileUpdate.objects.filter(connection=conn,
                                                status=UpdateStatus.APPROVED).exists():
                break
        drained = time.perf_counter() - started
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)
    runs = list(SendRun.objects.filter(trigger="schedule").exclude(finished_at=None))
    acknowledged = sum(r.acknowledged for r in runs)
    in_run = sum((r.finished_at - r.started_at).total_seconds() for r in runs)
    budget = setting("RUN_TIME_BUDGET_SECONDS")
    rate = acknowledged / in_run if in_run else 0.0
    return {
        "runs": len(runs), "acknowledged": acknowledged, "in_run_seconds": in_run,
        "drained_after_s": drained, "in_run_per_s": rate,
        "per_minute": rate * min(budget, 60.0), "command_per_minute": command_per_s * 60,
        "ratio_per_minute": rate * min(budget, 60.0) / (command_per_s * 60),
        "ratio_in_run": rate / command_per_s, "budget_s": budget,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=5_000)
    parser.add_argument("--schedule", action="store_true",
                        help="Also measure the schedule's path (one qcluster worker).")
    args = parser.parse_args()

    setup_django()
    from updates.conf import setting

    concurrency = setting("SEND_CONCURRENCY")
    batch_size = setting("SEND_BATCH_SIZE")
    n = args.updates
    emulator, ceiling_emulator = EmulatorProcess(LATENCY), EmulatorProcess(0.0)
    try:
        user = make_user("bench-sender")
        conn = make_connection(f"bench{os.getpid()}", base_url=emulator.url)
        log(f"  setting up {n:,} approved updates …")
        create_approved(connection=conn, user=user, count=n, prefix="send")
        with tempfile.TemporaryDirectory(prefix="profileops-send-") as workdir:
            result = sending(conn, n, concurrency, Path(workdir), emulator, ceiling_emulator)
        result["load_average_after_sending"] = os.getloadavg()
        result["startup"] = startup_seconds(conn)
        if args.schedule:
            log("  the schedule's path: one qcluster worker …")
            result["schedule"] = schedule(conn, user, n, result["command_in_run_per_s"])
    finally:
        emulator.stop()
        ceiling_emulator.stop()
    result.update({
        "benchmark": "sending", "updates": n, "concurrency": concurrency,
        "batch_size": batch_size, "attributes_per_update": len(ATTRIBUTES),
        "load_average": os.getloadavg(),
        "targets": {"ratio >= 0.9": result["ratio"] >= 0.9},
    })
    log(json.dumps(result, indent=1, default=str))
    emit(result)


if __name__ == "__main__":
    main()
