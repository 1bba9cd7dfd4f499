"""Helpers for the reliability tests: many approved updates, worker processes, counts at Target.

These tests run the sender the way production does — several `manage.py send_updates` or
`manage.py qcluster` processes sharing one database — so they commit their data
(transaction=True) and hand the subprocesses this test process's own test database (a file on
SQLite, test_<name>_<pid> on PostgreSQL; see profileops/settings.py). serialized_rollback brings
back what the data migrations created (roles, the send schedule), which the flush after a
transactional test would otherwise remove for the tests that follow.

The emulator runs in this (otherwise idle, polling) test process, so the tests read its
per-identity counts directly; every update gets its own identity, so "per identity" is "per update".
Every subprocess is started in its own session and its whole process group is killed at teardown,
whatever happened in the test.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.db import connection as db
from django.db.models import Count
from django.utils import timezone

from tests.conftest import make_connection, make_mapping
from target_emulator import TargetEmulator
from updates.models import ProfileUpdate, TargetConnection, UpdateStatus, content_hash

S = UpdateStatus
BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = str(BASE_DIR / "manage.py")
T = TypeVar("T")

# A transactional test whose data the worker processes can see (see the module docstring).
reliability = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

_identities = itertools.count(1)


def on_sqlite() -> bool:
    return db.vendor == "sqlite"


def database_url() -> str:
    """DATABASE_URL that points a subprocess at the database this test is using right now."""
    conf = db.settings_dict
    if db.vendor == "sqlite":
        return f"sqlite:///{conf['NAME']}"  # NAME is absolute: sqlite:////tmp/…
    if db.vendor == "postgresql":
        auth = quote(conf["USER"] or "", safe="")
        if conf["PASSWORD"]:
            auth += ":" + quote(conf["PASSWORD"], safe="")
        host = conf["HOST"] or "127.0.0.1"
        port = f":{conf['PORT']}" if conf["PORT"] else ""
        return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{quote(conf['NAME'], safe='')}"
    raise NotImplementedError(f"no subprocess URL for {db.vendor}")


def subprocess_env(extra: dict[str, str] | None = None, **knobs: object) -> dict[str, str]:
    """The environment of a worker: this test's database, quiet logs, PROFILEOPS_<KNOB> values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROFILEOPS_", "Q_"))}
    env.update(DATABASE_URL=database_url(), DEBUG="1", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    for name, value in knobs.items():
        env[f"PROFILEOPS_{name.upper()}"] = str(value)
    env.update(extra or {})
    return env


class Process(subprocess.Popen):
    """A subprocess with a name, used in failure messages and for its output files."""

    name: str = ""


class Processes:
    """Subprocesses of one test, each in its own session; output goes to files (never a pipe
    that could fill up and stall the child)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Process] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        out = open(self.directory / f"{name}.out", "wb")
        err = open(self.directory / f"{name}.err", "wb")
        process = Process(args, cwd=BASE_DIR, env=env, stdout=out, stderr=err,
                          stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        err.close()
        process.name = name
        self.started.append(process)
        return process

    def sender(self, name: str, *args: str, **knobs: object) -> Process:
        """`manage.py send_updates [args]` with PROFILEOPS_* knobs."""
        return self.start(name, [sys.executable, MANAGE, "send_updates", *args],
                          subprocess_env(**knobs))

    def output(self, process: Process, tail: int = 3000) -> str:
        name = process.name
        parts = []
        for stream in ("out", "err"):
            text = (self.directory / f"{name}.{stream}").read_text(errors="replace")
            parts.append(f"--- {name} std{stream} ---\n{text[-tail:]}")
        return "\n".join(parts)

    def wait(self, process: Process, timeout: float) -> int:
        """Wait for a process to exit by itself; fail the test (after killing it) if it does not."""
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            pytest.fail(f"{process.name} did not finish within {timeout} s\n"
                        f"{self.output(process)}")

    def wait_all_ok(self, processes: list[Process], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for process in processes:
            code = self.wait(process, max(0.1, deadline - time.monotonic()))
            assert code == 0, f"{process.name} exited with {code}\n{self.output(process)}"

    def stop(self, process: Process, sig: int = signal.SIGTERM,
             timeout: float = 20) -> int | None:
        """Ask the process to stop; returns its exit code, or None if it had to be killed."""
        if process.poll() is not None:
            return process.returncode
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            return None

    @staticmethod
    def kill(process: Process) -> None:
        """SIGKILL the process and everything it started (its own process group)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def kill_all(self) -> None:
        for process in self.started:
            # Even a process that exited may have left children (qcluster's workers) behind.
            self.kill(process)


# The start line of workers that must race: a worker's script includes AT_THE_GATE, which prints
# "ready" and waits (polling every millisecond) until the test opens the gate. A fixed start time
# a few seconds ahead would wait that long even on a quiet machine, and fail on one busy enough
# that a worker is not up by then; the gate waits exactly as long as the slowest start.
AT_THE_GATE = """
import os as _os, time as _time
print("ready", flush=True)
_deadline = _time.monotonic() + 300  # an orphan whose test died gives up
while not _os.path.exists(_os.environ["START_GATE"]):
    if _time.monotonic() > _deadline:
        raise SystemExit("the start gate never opened")
    _time.sleep(0.001)
"""


def start_gate(procs: Processes) -> dict[str, str]:
    """The environment entry that points a worker at its test's start gate (see AT_THE_GATE)."""
    return {"START_GATE": str(procs.directory / "start-gate")}


def open_gate_when_ready(procs: Processes, started: list[Process], timeout: float = 120) -> float:
    """Open the start gate once every worker printed "ready"; returns the time it opened."""
    def all_ready() -> bool:
        for process in started:
            if process.poll() not in (None, 0):
                pytest.fail(f"{process.name} exited with {process.returncode} before the start\n"
                            f"{procs.output(process)}")
        return all("ready\n" in (procs.directory / f"{p.name}.out").read_text() for p in started)

    wait_until(all_ready, timeout=timeout, what="every worker at the start gate", interval=0.05,
               explain=lambda: "\n".join(procs.output(p) for p in started))
    opened = time.time()
    Path(start_gate(procs)["START_GATE"]).touch()
    return opened


@pytest.fixture
def processes(tmp_path: Path):
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str,
               interval: float = 0.2, explain: Callable[[], str] | None = None) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}"
                        + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)


# --- data ------------------------------------------------------------------------------------

@pytest.fixture
def author(transactional_db) -> User:
    """Who staged and approved the bulk-created updates (no password: nobody logs in here)."""
    return User.objects.create(username="reliability-author", is_staff=True)


@pytest.fixture
def approver(transactional_db) -> User:
    return User.objects.create(username="reliability-approver", is_staff=True)


def connect(emulator: TargetEmulator, code: str = "acme", **kwargs: object) -> TargetConnection:
    """A connection pointed at `emulator`, with the mappings the bulk-created attributes use."""
    conn = make_connection(code, base_url=emulator.base_url, **kwargs)
    make_mapping(conn, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined")
    make_mapping(conn, "tier", "loyaltyTier")
    return conn


def make_approved(*, connection: TargetConnection, count: int, author: User, approver: User
                  ) -> dict[int, str]:
    """`count` approved updates, each with its own identity; returns {update id: identity}.

    Written with bulk_create, straight into the approved state: the workflow path (stage,
    submit, approve with four eyes, audit rows) is tested in tests/services/test_workflow.py;
    here it only sets up the sender's input, and 20,000 updates through the workflow would cost
    minutes. The approval fingerprint is set, so the sender's last-moment check still runs.
    """
    now = timezone.now()
    rows = []
    for _ in range(count):
        n = next(_identities)
        identity = f"reliability-{os.getpid()}-{n:07d}"
        attributes = {"loanStatus": "funded", "loyaltyTier": f"tier-{n}"}
        rows.append(ProfileUpdate(
            connection=connection, identity_type="mbox3rdPartyId", identity=identity,
            attributes=attributes, reason="reliability test", status=S.APPROVED,
            created_by=author, created_at=now, last_edited_by=author, last_edited_at=now,
            submitted_at=now, decided_by=approver, decided_at=now,
            approved_hash=content_hash("mbox3rdPartyId", identity, attributes),
        ))
    ProfileUpdate.objects.bulk_create(rows, batch_size=2000)
    by_identity = dict(ProfileUpdate.objects.filter(
        connection=connection, identity__in=[r.identity for r in rows]
    ).values_list("identity", "id"))
    assert len(by_identity) == count
    return {update_id: identity for identity, update_id in by_identity.items()}


def status_counts(**filters: object) -> Counter[str]:
    rows = ProfileUpdate.objects.filter(**filters).order_by().values_list("status")
    return Counter(dict(rows.annotate(n=Count("id"))))


def acknowledged_per_update(emulator: TargetEmulator, updates: dict[int, str]) -> Counter[int]:
    """How many requests for each update Target acknowledged (0 for those it never did)."""
    by_identity = emulator.acknowledged_count_by_identity()
    return Counter({update_id: by_identity.get(identity, 0)
                    for update_id, identity in updates.items()})


def requests_per_update(emulator: TargetEmulator, updates: dict[int, str]) -> Counter[int]:
    """How many update requests for each update reached the emulator, whatever their outcome."""
    ids = {identity: update_id for update_id, identity in updates.items()}
    counts = Counter(ids[r["identity"]] for r in emulator.received if r["identity"] in ids)
    return Counter({update_id: counts.get(update_id, 0) for update_id in updates})
