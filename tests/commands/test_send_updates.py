"""`manage.py send_updates` over real HTTP to the emulator."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.conftest import make_connection, make_mapping
from updates.management.commands import send_updates as command_module
from updates.models import AuditEvent, ProfileUpdate, QuotaMinute, SendRun, UpdateStatus

S = UpdateStatus
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READ_TIMEOUT": 1.0, "SEND_CONCURRENCY": 4}


@pytest.fixture
def acme(connection, emulator):
    connection.base_url = emulator.base_url
    connection.bearer_token = "tok-very-secret"
    connection.save(update_fields=["base_url", "bearer_token"])
    return connection


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("send_updates", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_sends_what_is_due_and_ends_with_a_summary(approve, emulator):
    updates = [approve() for _ in range(3)]
    out, _ = run()
    assert out.strip().splitlines()[-1] == (
        "Done: sent 3 request(s) — acknowledged 3, failed 0, to retry 0, deferred by quota 0.")
    assert {ProfileUpdate.objects.get(pk=u.pk).status for u in updates} == {S.SENT}
    assert len(emulator.received) == 3
    assert SendRun.objects.get().trigger == "command"


def test_limit_and_connection_narrow_what_is_sent(approve, emulator):
    other = make_connection("other", base_url=emulator.base_url)
    make_mapping(other, "status", "loanStatus")
    elsewhere = approve(connection=other)
    for _ in range(3):
        approve()
    out, _ = run("--connection", "acme", "--limit", "2")
    assert "sent 2 request(s)" in out
    assert [r["client_code"] for r in emulator.received] == ["acme", "acme"]
    assert ProfileUpdate.objects.get(pk=elsewhere.pk).status == S.APPROVED


def test_the_summary_counts_deferred_by_quota(acme, approve, emulator):
    acme.quota_limit = 1
    acme.save(update_fields=["quota_limit"])
    approve(), approve()
    out, _ = run()
    assert "acknowledged 1, failed 0, to retry 0, deferred by quota 1." in out


def test_an_unknown_connection_is_an_error_naming_the_client_codes_there_are(connection):
    with pytest.raises(CommandError,
                       match=r"No connection with client code 'nope' \(client codes: acme\)\."):
        run("--connection", "nope")


def test_an_unknown_connection_exits_non_zero(db):
    from django.core.management import execute_from_command_line

    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "send_updates", "--connection", "nope"])
    assert exit_info.value.code != 0


def test_dry_run_prints_the_exact_requests_and_their_quota_but_sends_and_changes_nothing(
        acme, approve, emulator):
    updates = [approve(attributes={"callNote": "a&b c"}) for _ in range(2)]
    audit_before = AuditEvent.objects.count()

    out, _ = run("--dry-run")

    for update in updates:
        assert (f"GET {emulator.base_url}/m2/acme/profile/update?mbox3rdPartyId={update.identity}"
                f"&profile.callNote=a%26b%20c") in out
    assert "Authorization: Bearer [redacted]" in out
    assert "tok-very-secret" not in out
    assert "would use 2 request(s) of quota" in out
    assert emulator.received == []
    assert {ProfileUpdate.objects.get(pk=u.pk).status for u in updates} == {S.APPROVED}
    assert AuditEvent.objects.count() == audit_before
    assert not SendRun.objects.exists() and not QuotaMinute.objects.exists()


def test_dry_run_shows_a_post_body(acme, approve, emulator):
    make_mapping(acme, "long", "longNote", max_length=10_000)
    approve(attributes={"longNote": "z" * 9000})
    out, _ = run("--dry-run")
    assert f"POST {emulator.base_url}/m2/acme/profile/update\n" in out
    assert "Content-Type: application/x-www-form-urlencoded" in out
    assert "&profile.longNote=zzz" in out


def test_dry_run_says_when_the_window_cannot_take_everything(acme, approve):
    acme.quota_limit = 1
    acme.save(update_fields=["quota_limit"])
    approve(), approve()
    out, _ = run("--dry-run")
    assert "acme: would use 2 of the 1 requests left in the rolling 24 h (limit 1); 1 would wait" in out


def test_loop_keeps_sending_until_interrupted(approve, emulator, monkeypatch):
    approve()
    sleeps = []

    def interrupt_on_second_idle(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt
        approve()  # something new arrives while the loop waits

    monkeypatch.setattr(command_module.time, "sleep", interrupt_on_second_idle)
    out, _ = run("--loop", "--idle-sleep", "0.1")

    assert sleeps == [0.1, 0.1]
    assert out.strip().splitlines()[-1] == (
        "Stopped; in total: sent 2 request(s) — acknowledged 2, failed 0, to retry 0, "
        "deferred by quota 0.")
    assert len(emulator.received) == 2


def test_progress_lines_appear_on_long_runs(approve, emulator, settings, monkeypatch):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_BATCH_SIZE": 1}
    for _ in range(3):
        approve()
    monkeypatch.setattr(command_module, "PROGRESS_EVERY_SECONDS", 0)
    out, _ = run()
    assert "  … claimed 1, requests 1, acknowledged 1" in out
    assert "  … claimed 3, requests 3, acknowledged 3" in out


# --- options checked at the start ----------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "--limit must be at least 1."),
    (["--loop", "--idle-sleep", "-1"], "--idle-sleep must be a number of seconds, 0 or more"),
    (["--loop", "--idle-sleep", "nan"], "--idle-sleep must be a number of seconds, 0 or more"),
    (["--loop", "--idle-sleep", "inf"], "--idle-sleep must be a number of seconds, 0 or more"),
    (["--time-budget", "0"], "--time-budget must be a number of seconds greater than 0"),
    (["--time-budget", "-5"], "--time-budget must be a number of seconds greater than 0"),
    (["--time-budget", "nan"], "--time-budget must be a number of seconds greater than 0"),
    (["--dry-run", "--loop"], "--dry-run and --loop do not go together."),
])
def test_nonsense_options_are_refused_before_anything_runs(approve, emulator, args, message):
    approve()
    with pytest.raises(CommandError, match=message.replace(".", r"\.").replace("-", r"\-")):
        run(*args)
    assert not SendRun.objects.exists() and emulator.received == []


def test_a_time_budget_stops_starting_requests_once_spent(approve, emulator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 1, "READ_TIMEOUT": 5.0}
    emulator.configure(latency=0.6)
    updates = [approve() for _ in range(4)]

    out, _ = run("--time-budget", "0.3")

    assert "Done: sent 1 request(s) — acknowledged 1" in out
    assert [ProfileUpdate.objects.get(pk=u.pk).status for u in updates] == \
        [S.SENT, S.APPROVED, S.APPROVED, S.APPROVED]


# --- the loop survives a lost database connection ------------------------------------------------

@pytest.mark.skipif("postgresql" not in settings.DATABASES["default"]["ENGINE"],
                    reason="killing a backend needs PostgreSQL (SQLite has no server to lose)")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_loop_survives_its_database_connection_being_killed(approve, emulator, monkeypatch):
    from django.db import connection as db, connections

    approve()
    sleeps = []

    def kill_backend_then_interrupt(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 1:  # idle after the first run: kill our backend from elsewhere
            approve()  # arrives while the loop waits
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                [pid] = cursor.fetchone()
            other = connections.create_connection("default")
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            other.close()
        elif len(sleeps) >= 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(command_module.time, "sleep", kill_backend_then_interrupt)
    out, err = run("--loop", "--idle-sleep", "5")

    assert "Lost the database connection (OperationalError); trying again in 1 s." in err
    assert sleeps[:3] == [5, 1.0, 5]  # idle, backoff after the lost connection, idle
    assert len(emulator.received) == 2
    assert ProfileUpdate.objects.filter(status=S.SENT).count() == 2


# --- a lean start ----------------------------------------------------------------------------------

# Loaded by the admin, the import, the export or the scheduler, never by sending: a fresh
# send_updates process that has one of them pays for it at every start.
NOT_FOR_SENDING = ("openpyxl", "tablib", "import_export", "re2", "updates.admin",
                   "updates.importing", "profileops.urls", "django_q", "prometheus_client",
                   "django.contrib.admin", "django.contrib.sessions", "django.contrib.messages")

# manage.py as a shell runs it, then what the process loaded.
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['manage.py', 'send_updates', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path('manage.py', run_name='__main__')\n"
    "except SystemExit as stop:\n"
    "    print('exit', stop.code)\n"
    "from django.apps import apps\n"
    "print([app.name for app in apps.get_app_configs()])\n"
    f"print(sorted(m for m in {NOT_FOR_SENDING!r} if m in sys.modules))\n"
)


def start_fresh(*args: str, **knobs: object):
    """`manage.py send_updates ARGS` as a process of its own, against this test's database."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.reliability.conftest import subprocess_env

    env = {**subprocess_env(**knobs), "DJANGO_SETTINGS_MODULE": "profileops.settings"}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=60)


# Committed, not in a test transaction: the process writes its SendRun to this database.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("args", (["--help"], []), ids=("help", "a run with nothing due"))
def test_the_command_starts_with_only_what_sending_needs(args):
    result = start_fresh(*args)
    assert result.returncode == 0, result.stderr
    *_, installed, unneeded = result.stdout.strip().splitlines()
    assert installed == repr(settings.SENDING_APPS)
    assert unneeded == "[]"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_lean_process_sends_and_records_like_any_other(approve, emulator):
    updates = [approve() for _ in range(2)]
    result = start_fresh("--connection", "acme")
    assert result.returncode == 0, result.stderr
    assert "Done: sent 2 request(s) — acknowledged 2" in result.stdout
    assert {ProfileUpdate.objects.get(pk=u.pk).status for u in updates} == {S.SENT}
    assert len(emulator.received) == 2
    run_row = SendRun.objects.get()
    assert (run_row.trigger, run_row.requests_sent, run_row.acknowledged) == ("command", 2, 2)
    assert AuditEvent.objects.filter(update__in=updates, to_status=S.SENT).count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_command_still_refuses_settings_that_cannot_work():
    # It runs only the checks sending depends on; ProfileOps' own settings checks are among them.
    result = start_fresh(SEND_BATCH_SIZE=0)
    assert "profileops.E002" in result.stderr
    assert "exit 1" in result.stdout
    assert "Done:" not in result.stdout
