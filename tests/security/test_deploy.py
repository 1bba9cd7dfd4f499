"""Running for real: the production settings pass Django's deployment check, the demo (with its
printed passwords) refuses to run outside the embedded mode, and the docs say how to run
for real (docs/operations/running-for-real.md).

Covered elsewhere, not repeated here:
- `check --deploy --fail-level WARNING` is clean with production settings, and fails on a weak
  key: tests/operations/test_settings.py::test_the_deployment_check_reports_nothing_with_production_values
  and ::test_the_deployment_check_fails_on_a_weak_secret_key.
- `seed_demo` refuses with DEBUG off and creates no user:
  tests/demo/test_demo.py::test_demo_seed_refuses_outside_debug.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from updates.models import TargetConnection

BASE_DIR = Path(__file__).resolve().parents[2]
RECIPE_PAGE = BASE_DIR / "docs" / "operations" / "running-for-real.md"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "profileops.settings", "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "profileops.example.com",
            "PROFILEOPS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}", **extra}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=60)


# --- the demo is for the embedded mode only ---------------------------------------------------

@pytest.mark.django_db
def test_start_demo_refuses_with_debug_off_before_creating_users_or_printing_passwords(
        settings, capsys):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="Running for real"):
        call_command("start_demo", "--port", "0", "--emulator-port", "0")
    assert not User.objects.exists()
    assert not TargetConnection.objects.exists()
    output = capsys.readouterr()
    assert "password" not in (output.out + output.err).lower()


def test_production_settings_do_not_install_the_demo_so_start_demo_does_not_exist(tmp_path):
    result = run(["manage.py", "start_demo"], production_env(tmp_path))
    assert result.returncode != 0
    assert "Unknown command: 'start_demo'" in result.stderr
    assert "ProfileOps is starting" not in result.stdout
    # It refused before migrating: not even the database file was created.
    assert not (tmp_path / "prod.sqlite3").exists()


# --- logging with production settings --------------------------------------------------------

def test_with_log_level_debug_urllib3_still_logs_at_warning_only(tmp_path):
    # urllib3 logs whole request URLs — profile values — at DEBUG; an operator who turns the
    # log level up to investigate must not start writing customer data to the logs.
    script = ("import django, json, logging; django.setup(); "
              "print(json.dumps([logging.getLogger().level, "
              "logging.getLogger('urllib3').getEffectiveLevel(), "
              "logging.getLogger('urllib3.connectionpool').getEffectiveLevel()]))")
    result = run(["-c", script], production_env(tmp_path, LOG_LEVEL="DEBUG"))
    assert result.returncode == 0, result.stderr
    root, urllib3, pool = json.loads(result.stdout)
    assert root == 10  # DEBUG: the setting took effect …
    assert urllib3 >= 30 and pool >= 30  # … and urllib3 stays at WARNING


# --- the docs say how to run for real ----------------------------------------------------------

def _section(text: str, heading: str) -> str:
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, flags=re.MULTILINE)
    assert match, f"{RECIPE_PAGE.name} has no '{heading}' heading"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_the_docs_have_a_running_for_real_page_that_says_what_to_set_and_run():
    section = _section(RECIPE_PAGE.read_text(encoding="utf-8"), "Running for real")
    for needed in ("DEBUG=0", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL",
                   "check --deploy", "migrate", "createsuperuser", "qcluster"):
        assert needed in section, needed
    assert "demo" in section.lower()  # says the demo passwords are not for production


def test_production_settings_install_neither_the_demo_nor_the_emulator(tmp_path):
    result = run(["-c", "import sys, django; django.setup(); from django.conf import settings; "
                  "print(settings.INSTALLED_APPS); "
                  "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                  "{'demo', 'target_emulator'}))"], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    apps, loaded = result.stdout.splitlines()
    assert "'updates'" in apps and "'demo'" not in apps
    assert loaded == "[]"
