"""Probes (updates/health.py): /healthz, /readyz and the send schedule's heartbeat.

The database-down and production (DEBUG off, SSL redirect on) cases run in a fresh interpreter,
because settings are read once per process.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from target_emulator.adobe_admin import AdobeCounts
from tests.conftest import approve_via_workflow, use_adobe_credentials
from updates import health, tasks
from updates.models import ProfileUpdate, SchedulerHeartbeat, UpdateStatus

BASE_DIR = Path(__file__).resolve().parents[2]
# An address nothing listens on: connections are refused at once.
NOTHING_LISTENS = "127.0.0.1:9"


@pytest.fixture(autouse=True)
def _fresh_broker():
    health._broker = None
    health._last_failed = None
    yield
    health._broker = None
    health._last_failed = None


@pytest.fixture
def redis_broker(monkeypatch):
    """redis_broker(url): django-q2 configured for its Redis broker at `url`, as Q_REDIS_URL
    does (django-q2 reads Q_CLUSTER once, into django_q.conf.Conf)."""
    from django_q.conf import Conf

    def configure(url: str) -> None:
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)

    return configure


def test_healthz_answers_ok_without_touching_the_database(client):
    # No django_db mark: pytest-django would fail any database access.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_ready_when_database_broker_and_a_recent_heartbeat_are_there(client):
    SchedulerHeartbeat.beat(now=timezone.now() - dt.timedelta(seconds=30))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {
        "database": "ok", "broker": "ok", "scheduler": "ok"}}


@pytest.mark.django_db
def test_readyz_never_asks_adobe_even_when_its_credentials_fail(client, connection,
                                                                adobe_emulator):
    """Adobe is not ProfileOps' readiness: a failing token renewal is an alert (token renewal),
    not a reason for the load balancer to take the web out."""
    use_adobe_credentials(connection, adobe_emulator, secret="refused")
    SchedulerHeartbeat.beat(now=timezone.now() - dt.timedelta(seconds=30))
    adobe_emulator.stop()
    assert client.get("/readyz").status_code == 200
    assert adobe_emulator.adobe.counts == AdobeCounts()  # nothing reached IMS or the Admin API


@pytest.mark.django_db
def test_readyz_names_the_scheduler_when_the_send_schedule_never_ran(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["scheduler"], "checks": {
        "database": "ok", "broker": "ok", "scheduler": "never"}}


@pytest.mark.django_db
def test_unready_probes_log_the_change_once_not_once_per_probe(client, caplog):
    # 437 ERROR lines in 3 s from one outsider before: Django logged every 503 it answered.
    caplog.set_level("INFO")
    for _ in range(50):
        assert client.get("/readyz").status_code == 503
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "scheduler never" in errors[0].getMessage()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

    caplog.clear()
    SchedulerHeartbeat.beat()
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "updates.health"] == [
        "readiness: ready again"]

    caplog.clear()
    SchedulerHeartbeat.objects.all().delete()
    for _ in range(5):
        client.get("/readyz")
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1  # unready again: once


@pytest.mark.django_db
def test_readyz_calls_a_heartbeat_older_than_the_setting_stale(client, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "HEARTBEAT_STALE_SECONDS": 180}
    SchedulerHeartbeat.beat(now=timezone.now() - dt.timedelta(seconds=170))
    assert client.get("/readyz").status_code == 200
    SchedulerHeartbeat.beat(now=timezone.now() - dt.timedelta(seconds=190))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["scheduler"]
    assert response.json()["checks"]["scheduler"] == "stale"


@pytest.mark.django_db
def test_readyz_pings_the_redis_broker_and_names_it_when_redis_is_down(client, redis_broker):
    SchedulerHeartbeat.beat()
    redis_broker(f"redis://{NOTHING_LISTENS}/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.content.decode()
    assert json.loads(body)["failed"] == ["broker"]
    assert json.loads(body)["checks"]["broker"] == "down"
    assert "127.0.0.1" not in body and "Error" not in body  # no address, no exception text


@pytest.mark.django_db
def test_readyz_pings_a_redis_broker_that_answers(client, redis_broker):
    import redis

    url = "redis://127.0.0.1:6379/11"
    try:
        redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    SchedulerHeartbeat.beat()
    redis_broker(url)
    assert client.get("/readyz").json()["checks"]["broker"] == "ok"


def test_probes_answer_whatever_host_the_load_balancer_sends(client, settings):
    settings.ALLOWED_HOSTS = ["profileops.example.com"]
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    # Every other page still refuses a host that is not allowed.
    assert client.get("/admin/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_probes_refuse_methods_other_than_get_and_head(client):
    assert client.head("/healthz").status_code == 200
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


# --- the heartbeat -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_send_task_writes_the_heartbeat_after_each_completed_run(
        emulator, connection, stage, operator, supervisor):
    connection.base_url = emulator.base_url
    connection.save(update_fields=["base_url"])
    update = approve_via_workflow(stage, operator, supervisor)
    before = timezone.now()
    tasks.send_due_updates()
    assert ProfileUpdate.objects.get(pk=update.pk).status == UpdateStatus.SENT
    first = SchedulerHeartbeat.last_beat_at()
    assert first is not None and first >= before
    tasks.send_due_updates()  # nothing due: the schedule still ran
    assert SchedulerHeartbeat.last_beat_at() > first
    assert SchedulerHeartbeat.objects.count() == 1


@pytest.mark.django_db
def test_a_send_run_that_fails_writes_no_heartbeat(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the database went away mid-run")

    monkeypatch.setattr(tasks.sending, "send_due", broken)
    with pytest.raises(RuntimeError):
        tasks.send_due_updates()
    assert SchedulerHeartbeat.last_beat_at() is None


# --- in a process of its own ---------------------------------------------------------------------

def _in_fresh_process(script: str, **env: str) -> dict:
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(BASE_DIR), "PYTHONPATH": str(BASE_DIR),
             "DJANGO_SETTINGS_MODULE": "profileops.settings", **env}
    prelude = ("import django, json; django.setup(); from django.test import Client; "
               "from django.test.utils import setup_test_environment; setup_test_environment(); "
               "c = Client(); ")
    result = subprocess.run([sys.executable, "-c", prelude + script], cwd=BASE_DIR, env=clean,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_readyz_names_the_database_when_it_is_down_and_leaks_nothing_about_it():
    answer = _in_fresh_process(
        "r = c.get('/readyz'); print(json.dumps([r.status_code, r.content.decode()]))",
        DATABASE_URL=f"postgres://profileops:secret@{NOTHING_LISTENS}/profileops",
        DATABASE_CONN_MAX_AGE="0")
    status, body = answer
    assert status == 503
    assert json.loads(body) == {"status": "unavailable", "failed": ["database", "broker",
                                                                     "scheduler"],
                                "checks": {"database": "down", "broker": "down",
                                           "scheduler": "unknown"}}
    for leak in ("127.0.0.1", "profileops", "secret", "refused", "Error"):
        assert leak not in body


def test_with_ssl_redirect_on_the_probes_answer_over_plain_http(tmp_path):
    answer = _in_fresh_process(
        "print(json.dumps([c.get(p, HTTP_HOST='10.1.2.3').status_code "
        "for p in ('/healthz', '/readyz', '/metrics', '/admin/')]"
        " + [c.get('/admin/', HTTP_HOST='profileops.example.com').status_code]))",
        DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="profileops.example.com",
        PROFILEOPS_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    healthz, readyz, metrics, admin_bad_host, admin = answer
    assert healthz == 200
    assert readyz == 503  # not migrated: the database answers, its tables are missing
    assert metrics == 404  # no token configured
    assert admin_bad_host == 400  # the admin is not exempt from the host check …
    assert admin == 301  # … nor from the redirect to HTTPS
