"""LOG_FORMAT=json (profileops/logging.py): one JSON object per line, never customer data."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
from pathlib import Path

import pytest

from profileops.logging import JsonFormatter
from tests.conftest import approve_via_workflow
from updates import sending

BASE_DIR = Path(__file__).resolve().parents[2]


def _record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("updates.sending", logging.INFO, __file__, 1, message, args,
                               exc_info)
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_json_object_with_time_level_logger_message_and_context():
    line = JsonFormatter().format(_record("send run %s: %d claimed", 7, 3, connection="acme",
                                          update_id=42, run_id=7, profile={"tier": "gold"}))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("Z")
    assert entry == {"level": "INFO", "logger": "updates.sending",
                     "message": "send run 7: 3 claimed", "connection": "acme", "update_id": 42,
                     "run_id": 7}  # other extras (profile) are never copied


def test_an_exception_is_logged_by_type_and_stack_without_its_message():
    try:
        raise ValueError("http://acme/m2/acme/profile/update?profile.tier=gold")
    except ValueError:
        line = JsonFormatter().format(_record("send failed", exc_info=sys.exc_info()))
    entry = json.loads(line)
    assert entry["exception"] == "ValueError"
    assert "test_logging.py" in entry["stack"]
    assert "gold" not in line


def test_log_format_json_configures_the_root_logger_with_the_formatter(tmp_path):
    script = ("import django, logging; django.setup(); "
              "logging.getLogger('updates.sending').warning('hello', extra={'run_id': 5})")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOG_FORMAT": "json",
           "DJANGO_SETTINGS_MODULE": "profileops.settings",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    result = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert (entry["level"], entry["message"], entry["run_id"]) == ("WARNING", "hello", 5)


def test_an_unknown_log_format_is_refused_at_start_up(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LOG_FORMAT": "xml",
           "DJANGO_SETTINGS_MODULE": "profileops.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json'" in result.stderr


@pytest.fixture
def json_debug_log(settings):
    """The settings' LOGGING with LOG_FORMAT=json and LOG_LEVEL=DEBUG, into a buffer."""
    buffer = io.StringIO()
    config = {**settings.LOGGING,
              "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                                       "stream": buffer}},
              "root": {"handlers": ["console"], "level": "DEBUG"}}
    logging.config.dictConfig(config)
    try:
        yield buffer
    finally:
        logging.config.dictConfig(settings.LOGGING)


@pytest.mark.django_db
def test_sending_at_debug_logs_neither_the_token_nor_identities_nor_values(
        json_debug_log, emulator_factory, connection, stage, operator, supervisor):
    target = emulator_factory(error_rate=0.5, seed=3)
    token = "tok-SECRET-6f1c2d"
    connection.base_url = target.base_url
    connection.bearer_token = token
    connection.save(update_fields=["base_url", "bearer_token"])
    updates = [approve_via_workflow(stage, operator, supervisor,
                                    attributes={"loanStatus": "funded", "loyaltyTier": f"v{i}x"})
               for i in range(6)]
    sending.send_due()
    sending.send_due()  # the retries are not due yet: a quiet run logs at DEBUG

    lines = json_debug_log.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(e["logger"] == "updates.sending" for e in entries)
    assert any(e["level"] == "DEBUG" for e in entries)  # DEBUG really was on
    text = json_debug_log.getvalue()
    assert token not in text
    for update in updates:
        assert update.identity not in text
        assert update.attributes["loyaltyTier"] not in text
    assert "funded" not in text and "loanStatus" not in text


@pytest.mark.django_db
def test_a_send_runs_summary_line_carries_its_run_id_and_connection(
        json_debug_log, emulator, connection, stage, operator, supervisor):
    from updates.models import SendRun

    connection.base_url = emulator.base_url
    connection.save(update_fields=["base_url"])
    approve_via_workflow(stage, operator, supervisor)
    sending.send_due(connection=connection)

    [summary] = [json.loads(line) for line in json_debug_log.getvalue().splitlines()
                 if json.loads(line)["message"].startswith("send run ")]
    run = SendRun.objects.get()
    assert (summary["run_id"], summary["connection"]) == (run.pk, connection.client_code)
    assert "claimed 1, requests 1, acknowledged 1" in summary["message"]

    # A run over every connection names no single one; its id is still there.
    sending.send_due()
    last = json.loads(json_debug_log.getvalue().splitlines()[-1])
    assert last["run_id"] == SendRun.objects.latest("started_at", "id").pk
    assert "connection" not in last


@pytest.mark.django_db
def test_an_import_jobs_log_lines_carry_its_job_id_and_connection(json_debug_log, connection,
                                                                  operator):
    from updates import importing

    data = b"identity_type,identity,loanStatus\nmbox3rdPartyId,customer-1,funded\n"
    job = importing.import_job_create(connection=connection, by=operator, file_data=data,
                                      file_name="rows.csv", background=False)
    entries = [json.loads(line) for line in json_debug_log.getvalue().splitlines()]
    [checked] = [e for e in entries if e["message"].startswith(f"import job {job.pk} checked")]
    assert (checked["import_job_id"], checked["connection"]) == (job.pk, connection.client_code)
    assert "customer-1" not in json_debug_log.getvalue()
