"""Settings come from the environment (profileops/settings.py).

Each case starts a fresh interpreter with a clean environment, because settings are read once
per process and the test process's own environment (e.g. DATABASE_URL) must not leak in.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'db': s.DATABASES['default']['NAME'], "
    "'engine': s.DATABASES['default']['ENGINE'], 'tz': s.TIME_ZONE, 'use_tz': s.USE_TZ, "
    "'key': s.SECRET_KEY, 'hosts': s.ALLOWED_HOSTS}))"
)


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(),
             "DJANGO_SETTINGS_MODULE": "profileops.settings", **env}
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=clean, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    return {"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "example.com",
            "PROFILEOPS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}


@pytest.mark.parametrize("secret_key", [None, ""])
def test_with_debug_off_settings_refuse_to_load_without_a_secret_key(secret_key):
    env = {"DEBUG": "0"} if secret_key is None else {"DEBUG": "0", "SECRET_KEY": secret_key}
    result = run("-c", PRINT_SETTINGS, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_the_embedded_defaults_are_debug_a_development_key_sqlite_beside_manage_py_and_utc():
    result = run("-c", PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is True
    assert loaded["key"].startswith("django-insecure-")
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert Path(loaded["db"]) == BASE_DIR / "db.sqlite3"
    assert (loaded["tz"], loaded["use_tz"]) == ("UTC", True)
    assert "localhost" in loaded["hosts"]


def test_production_values_come_from_the_environment(production_env):
    result = run("-c", PRINT_SETTINGS, **production_env)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["debug"] is False
    assert loaded["key"] == production_env["SECRET_KEY"]
    assert loaded["hosts"] == ["example.com"]
    assert loaded["db"] == production_env["DATABASE_URL"].removeprefix("sqlite:///")


def test_a_debug_value_that_is_not_a_boolean_is_refused():
    result = run("-c", PRINT_SETTINGS, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_the_deployment_check_reports_nothing_with_production_values(production_env):
    result = run("manage.py", "check", "--deploy", "--fail-level", "WARNING", **production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deployment_check_fails_on_a_weak_secret_key(production_env):
    # Shows the check above can fail: the same environment with a short key does not pass.
    result = run("manage.py", "check", "--deploy", "--fail-level", "WARNING",
                 **{**production_env, "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_profileops_values_come_from_the_environment_and_defaults_from_updates_conf():
    show = ("import django, json; django.setup(); from django.conf import settings as s; "
            "from updates.conf import setting; "
            "print(json.dumps({'raw': s.PROFILEOPS, 'batch': setting('SEND_BATCH_SIZE'), "
            "'lease': setting('LEASE_SECONDS')}))")
    result = run("-c", show, PROFILEOPS_SEND_BATCH_SIZE="7", PROFILEOPS_DEMO="0")
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["raw"] == {"SEND_BATCH_SIZE": "7"}  # as text; PROFILEOPS_DEMO is no knob
    assert (loaded["batch"], loaded["lease"]) == (7, 120)


SHOW_APPS = ("import django, json; django.setup(); from django.conf import settings as s; "
             "print(json.dumps({'apps': s.INSTALLED_APPS, 'raw': s.PROFILEOPS}))")


def test_every_app_loads_unless_the_process_only_sends():
    everything = json.loads(run("-c", SHOW_APPS, PROFILEOPS_DEMO="0").stdout)["apps"]
    assert {"django_q", "django.contrib.sessions", "updates"} <= set(everything)
    sending = json.loads(run("-c", SHOW_APPS, PROFILEOPS_APPS="sending").stdout)
    # manage.py sets PROFILEOPS_APPS=sending for send_updates; it is no knob either.
    assert sending == {"apps": ["django.contrib.auth", "django.contrib.contenttypes", "updates"],
                       "raw": {}}


def test_an_unknown_app_set_is_refused():
    result = run("-c", SHOW_APPS, PROFILEOPS_APPS="web")
    assert result.returncode != 0
    assert "PROFILEOPS_APPS must be 'all' or 'sending', not 'web'" in result.stderr


SHOW_LOGINS = ("import django, json; django.setup(); from django.conf import settings as s; "
               "print(json.dumps({'age': s.SESSION_COOKIE_AGE, 'renew': s.SESSION_SAVE_EVERY_REQUEST, "
               "'limit': s.AXES_FAILURE_LIMIT, 'params': s.AXES_LOCKOUT_PARAMETERS, "
               "'cooloff': str(getattr(s, 'AXES_COOLOFF_TIME', None)), "
               "'proxies': s.TRUSTED_PROXY_COUNT}))")


def test_idle_sessions_and_login_lockouts_come_from_the_environment():
    defaults = json.loads(run("-c", SHOW_LOGINS, PROFILEOPS_DEMO="0").stdout)
    assert defaults == {"age": 8 * 3600, "renew": True, "limit": 10,
                        "params": ["username", "ip_address"], "cooloff": "1:00:00", "proxies": 0}
    custom = json.loads(run("-c", SHOW_LOGINS, PROFILEOPS_SESSION_IDLE_MINUTES="30",
                            PROFILEOPS_LOGIN_FAILURE_LIMIT="5", TRUSTED_PROXY_COUNT="1",
                            PROFILEOPS_LOGIN_LOCKOUT_MINUTES="0").stdout)
    assert (custom["age"], custom["limit"], custom["cooloff"], custom["proxies"]) == (
        1800, 5, "None", 1)  # 0 minutes: locked until an administrator unlocks
    refused = run("-c", SHOW_LOGINS, PROFILEOPS_SESSION_IDLE_MINUTES="forever")
    assert refused.returncode != 0
    assert "PROFILEOPS_SESSION_IDLE_MINUTES must be a whole number" in refused.stderr
