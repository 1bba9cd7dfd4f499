"""Send due approved updates now — the same service the scheduler runs every minute.

    python manage.py send_updates                      # one run, all active connections
    python manage.py send_updates --connection acme --limit 100
    python manage.py send_updates --dry-run            # print the requests; send and change nothing
    python manage.py send_updates --loop               # keep sending until Ctrl+C
    python manage.py send_updates --time-budget 45     # start nothing new after 45 s
    python manage.py send_updates --user alice         # a person starts it: their rights apply

With --loop, a lost database connection (a restart, a failover, a killed backend) does not end
the command: it closes the connection, waits with backoff (1 s doubling up to a minute) and goes
on; the updates a broken run had claimed are sent again when their lease runs out.
"""

from __future__ import annotations

import math
import time

from django.core import checks
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, connections

from updates import target
from updates.management.lookups import connection_by_code
from updates.models import SendRun, TargetConnection

PROGRESS_EVERY_SECONDS = 2.0
# With --loop, after a lost database connection: wait 1 s, then 2, 4 … up to a minute.
DB_RETRY_FIRST_SECONDS = 1.0
DB_RETRY_MAX_SECONDS = 60.0


class Command(BaseCommand):
    help = "Send due approved profile updates to Target (once, in a loop, or as a dry run)."
    # The checks a send depends on: the models, and ProfileOps' own settings (profileops.E0nn,
    # updates/checks.py). Not the URL checks — they load the URLconf and with it every admin
    # module — nor the templates'; `manage.py check` and the web server run those.
    requires_system_checks = [checks.Tags.models, "profileops"]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", metavar="CODE",
                            help="Only this connection (its client code).")
        parser.add_argument("--limit", type=int, metavar="N",
                            help="Send at most N updates (per run with --loop).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Print the exact requests and the quota they would use; "
                                 "send nothing, change nothing.")
        parser.add_argument("--loop", action="store_true",
                            help="Keep sending until interrupted (Ctrl+C).")
        parser.add_argument("--idle-sleep", type=float, default=5.0, metavar="SECONDS",
                            help="With --loop: pause this long when nothing was due (default 5).")
        parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                            help="Claim no new batch and start no new request after this many "
                                 "seconds (per run with --loop), like the schedule's budget.")
        parser.add_argument("--user", metavar="USERNAME",
                            help="Who starts the run: refused unless they have a part in the "
                                 "workflow (submit or approve permission); the run names them.")

    def handle(self, *args, connection: str | None, limit: int | None, dry_run: bool,
               loop: bool, idle_sleep: float, time_budget: float | None,
               user: str | None = None, **options) -> None:
        _check_options(limit=limit, idle_sleep=idle_sleep, time_budget=time_budget,
                       dry_run=dry_run, loop=loop)
        conn = self._connection(connection)
        self.by = _person(user)
        if dry_run:
            self._dry_run(conn, limit)
        elif loop:
            self._loop(conn, limit, idle_sleep, time_budget)
        else:
            self._summary(self._run(conn, limit, time_budget), prefix="Done")

    def _loop(self, conn: TargetConnection | None, limit: int | None, idle_sleep: float,
              time_budget: float | None) -> None:
        totals = _Totals()
        retry_in = DB_RETRY_FIRST_SECONDS
        self.stdout.write("Sending until interrupted (Ctrl+C)…")
        try:
            while True:
                try:
                    run = self._run(conn, limit, time_budget)
                except (OperationalError, InterfaceError) as error:
                    self._lost_database(error, retry_in)
                    time.sleep(retry_in)
                    retry_in = min(DB_RETRY_MAX_SECONDS, retry_in * 2)
                    continue
                retry_in = DB_RETRY_FIRST_SECONDS
                totals.add(run)
                if run.claimed or run.deferred_by_quota:
                    self._summary(run, prefix=f"Run {run.pk}")
                if not run.claimed:
                    time.sleep(idle_sleep)
        except KeyboardInterrupt:
            self.stdout.write("")
            self._summary(totals, prefix="Stopped; in total")

    def _lost_database(self, error: Exception, retry_in: float) -> None:
        # The type only: a driver's message can quote the statement and its parameters.
        self.stderr.write(f"Lost the database connection ({type(error).__name__}); "
                          f"trying again in {retry_in:g} s.")
        for db in connections.all(initialized_only=True):
            try:
                db.close()  # the next query opens a fresh connection
            except (OperationalError, InterfaceError):
                pass

    # --- helpers ---------------------------------------------------------------------------

    def _connection(self, code: str | None) -> TargetConnection | None:
        conn = connection_by_code(code)
        if conn is None:
            return None
        if not conn.active:
            raise CommandError(f"Connection {code!r} is inactive; nothing is sent for it.")
        return conn

    def _run(self, conn: TargetConnection | None, limit: int | None,
             time_budget: float | None) -> SendRun:
        last = [time.monotonic()]

        def progress(run: SendRun) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_SECONDS:
                last[0] = time.monotonic()
                self.stdout.write(
                    f"  … claimed {run.claimed}, requests {run.requests_sent}, acknowledged "
                    f"{run.acknowledged}, to retry {run.retried}, failed {run.failed}")

        from updates import sending  # here, not at the top: `--help` never loads requests

        by = self.by
        try:
            return sending.send_due(connection=conn, limit=limit, trigger=SendRun.Trigger.COMMAND,
                                    time_budget=time_budget, progress=progress, by=by,
                                    worker=None if by is None else f"send_updates:{by}")
        except ValidationError as error:  # the person may not start a run
            raise CommandError(" ".join(error.messages)) from None

    def _summary(self, run, *, prefix: str) -> None:
        self.stdout.write(
            f"{prefix}: sent {run.requests_sent} request(s) — acknowledged {run.acknowledged}, "
            f"failed {run.failed}, to retry {run.retried}, deferred by quota {run.deferred_by_quota}."
        )
        if getattr(run, "error", ""):
            self.stderr.write(f"The run stopped on an error: {run.error}")

    def _dry_run(self, conn: TargetConnection | None, limit: int | None) -> None:
        from updates import sending  # here, not at the top: `--help` never loads requests

        plan = sending.plan_due(connection=conn, limit=limit)
        for item in plan:
            update = item.update
            self.stdout.write(f"#{update.pk} {update.connection.client_code}")
            if item.request is None:
                self.stdout.write(f"  cannot be sent: {item.problem}")
                continue
            request = item.request
            self.stdout.write(f"  {request.method} {request.url}")
            # The token is a secret: say that it is sent, never what it is.
            for name, shown in target.shown_headers(request.headers).items():
                self.stdout.write(f"  {name}: {shown}")
            if request.body is not None:
                self.stdout.write(f"  body ({len(request.body)} bytes): "
                                  f"{request.body.decode('ascii')}")
        costs = [(c, cost) for c, cost in sending.plan_cost(plan) if cost.cost]
        total = sum(cost.cost for _, cost in costs)
        self.stdout.write(f"Dry run: {len(plan)} update(s) due; they would use {total} request(s) "
                          "of quota. Nothing was sent or changed.")
        for connection, cost in costs:
            note = f"; {cost.waiting} would wait for the window to free" if cost.waiting else ""
            self.stdout.write(f"  {connection.client_code}: would use {cost.cost:,} of the "
                              f"{cost.remaining:,} requests left in the rolling 24 h (limit "
                              f"{cost.limit:,}){note}.")

def _person(username: str | None):
    """The user named by --user (None without it), or a CommandError naming the problem."""
    if username is None:
        return None
    from updates import selectors  # here: only a run given --user reads it

    found = selectors.person_named(username)
    if found is None:
        raise CommandError(f"No user {username!r}.")
    return found


def _check_options(*, limit: int | None, idle_sleep: float, time_budget: float | None,
                   dry_run: bool, loop: bool) -> None:
    """Refuse nonsense at the start, not after the first run (NaN compares false to anything)."""
    if limit is not None and limit < 1:
        raise CommandError("--limit must be at least 1.")
    if not (math.isfinite(idle_sleep) and idle_sleep >= 0):
        raise CommandError(f"--idle-sleep must be a number of seconds, 0 or more (got {idle_sleep}).")
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise CommandError(
            f"--time-budget must be a number of seconds greater than 0 (got {time_budget}).")
    if dry_run and loop:
        raise CommandError("--dry-run and --loop do not go together.")


class _Totals:
    """Sums of several runs, shaped like a SendRun for the summary line."""

    def __init__(self) -> None:
        self.requests_sent = self.acknowledged = self.failed = 0
        self.retried = self.deferred_by_quota = self.claimed = 0
        self.error = ""

    def add(self, run: SendRun) -> None:
        self.requests_sent += run.requests_sent
        self.acknowledged += run.acknowledged
        self.failed += run.failed
        self.retried += run.retried
        self.deferred_by_quota += run.deferred_by_quota
        self.claimed += run.claimed
