"""The start-up check of ProfileOps' settings (updates/checks.py) and their accessor
(updates/conf.py): impossible values are refused with an Error naming them, never patched."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from updates.checks import check_profileops_settings
from updates.conf import KNOBS, setting

BASE_DIR = Path(__file__).resolve().parents[2]
Q_CLUSTER = {"name": "test", "timeout": 90, "retry": 120, "orm": "default"}


def ids(**profileops) -> list[str]:
    with override_settings(PROFILEOPS=profileops, Q_CLUSTER=Q_CLUSTER):
        return [error.id for error in check_profileops_settings()]


def test_the_defaults_pass():
    assert ids() == []


def test_the_check_is_registered_with_django():
    assert check_profileops_settings in checks.registry.registry.get_checks()


@pytest.mark.parametrize(("values", "expected"), [
    ({"SEND_BATCH_SIZE": "many"}, "profileops.E001"),
    ({"READ_TIMEOUT": "nan"}, "profileops.E001"),
    ({"LEASE_SECONDS": 2.5}, "profileops.E001"),
    ({"SEND_BATCH_SIZE": 0}, "profileops.E002"),
    ({"SEND_BATCH_SIZE": -5}, "profileops.E002"),
    ({"SEND_CONCURRENCY": 0}, "profileops.E003"),
    ({"CONNECT_TIMEOUT": 0}, "profileops.E004"),
    ({"READ_TIMEOUT": -1}, "profileops.E005"),
    ({"LEASE_SECONDS": 20, "CONNECT_TIMEOUT": 5, "READ_TIMEOUT": 20}, "profileops.E006"),
    ({"LEASE_SECONDS": 25, "CONNECT_TIMEOUT": 5, "READ_TIMEOUT": 20}, "profileops.E006"),
    ({"MAX_ATTEMPTS": 0}, "profileops.E007"),
    ({"MAX_UNEXPECTED_ANSWERS": 0}, "profileops.E008"),
    ({"BACKOFF_BASE_SECONDS": 0}, "profileops.E009"),
    ({"BACKOFF_BASE_SECONDS": 600, "BACKOFF_MAX_SECONDS": 60}, "profileops.E010"),
    ({"RUN_TIME_BUDGET_SECONDS": 0}, "profileops.E011"),
    ({"RUN_TIME_BUDGET_SECONDS": 90}, "profileops.E012"),
    ({"IMPORT_BACKGROUND_ROWS": 0}, "profileops.E013"),
    ({"VERIFY_CONCURRENCY": 0}, "profileops.E016"),
    ({"TARGET_PROXY": "proxy.example:3128"}, "profileops.E015"),
    ({"TARGET_PROXY": "socks5://proxy.example:1080"}, "profileops.E015"),
    ({"TARGET_PROXY": "http://proxy.example:3128/path"}, "profileops.E015"),
    ({"SITE_URL": "profileops.example.com"}, "profileops.E017"),
    ({"SITE_URL": "https://profileops.example.com/?next=/"}, "profileops.E017"),
    ({"SITE_URL": "javascript:alert(1)"}, "profileops.E017"),
], ids=lambda v: str(v))
def test_each_impossible_value_or_combination_is_one_error(values, expected):
    assert ids(**values) == [expected]


def test_the_combinations_just_inside_the_limits_pass():
    assert ids(LEASE_SECONDS=26, CONNECT_TIMEOUT=5, READ_TIMEOUT=20, BACKOFF_BASE_SECONDS=60,
               BACKOFF_MAX_SECONDS=60, RUN_TIME_BUDGET_SECONDS=89, SEND_BATCH_SIZE=1,
               SEND_CONCURRENCY=1, MAX_ATTEMPTS=1, MAX_UNEXPECTED_ANSWERS=1,
               IMPORT_BACKGROUND_ROWS=1, TARGET_PROXY="http://user:pw@proxy.example:3128",
               SITE_URL="https://profileops.example.com/ops/") == []


def test_a_task_timeout_that_is_not_below_the_retry_delay_is_refused():
    with override_settings(PROFILEOPS={}, Q_CLUSTER={**Q_CLUSTER, "timeout": 120}):
        found = [error.id for error in check_profileops_settings()]
    # The run budget (45 s) is inside it; only the broker's redelivery is at risk.
    assert found == ["profileops.E014"]


def test_an_error_names_the_setting_and_says_what_would_work():
    with override_settings(PROFILEOPS={"LEASE_SECONDS": 10}, Q_CLUSTER=Q_CLUSTER):
        (error,) = check_profileops_settings()
    assert isinstance(error, checks.Error)
    assert "PROFILEOPS_LEASE_SECONDS (10)" in error.msg and "25" in error.msg
    assert "raise the lease" in error.hint


def test_several_problems_are_all_reported():
    assert ids(SEND_BATCH_SIZE=0, MAX_ATTEMPTS=0) == ["profileops.E002", "profileops.E007"]


# --- the accessor ----------------------------------------------------------------------------

def test_unset_settings_take_their_defaults():
    with override_settings(PROFILEOPS={}):
        assert {name: setting(name) for name in KNOBS} == {
            name: knob.default for name, knob in KNOBS.items()}


def test_values_from_the_environment_arrive_as_text_and_are_read_as_numbers():
    with override_settings(PROFILEOPS={"SEND_BATCH_SIZE": "250", "READ_TIMEOUT": " 7.5 "}):
        assert setting("SEND_BATCH_SIZE") == 250 and isinstance(setting("SEND_BATCH_SIZE"), int)
        assert setting("READ_TIMEOUT") == 7.5


def test_a_value_that_is_no_number_is_refused_when_read():
    with override_settings(PROFILEOPS={"MAX_ATTEMPTS": "eight"}):
        with pytest.raises(ImproperlyConfigured, match="PROFILEOPS_MAX_ATTEMPTS must be a whole"):
            setting("MAX_ATTEMPTS")


def test_an_unknown_name_is_a_programming_error():
    with pytest.raises(KeyError):
        setting("SEND_BATCH")


def test_manage_py_check_refuses_to_start_with_an_impossible_environment():
    env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(),
           "DJANGO_SETTINGS_MODULE": "profileops.settings", "PROFILEOPS_LEASE_SECONDS": "10",
           "PROFILEOPS_SEND_BATCH_SIZE": "0"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "profileops.E002" in result.stderr and "profileops.E006" in result.stderr


def test_production_without_an_encryption_key_is_refused(settings):
    settings.PROFILEOPS_DEMO = False  # production: no key derived from SECRET_KEY
    assert ids() == ["profileops.E018"]
    assert ids(ENCRYPTION_KEYS="not-a-key") == ["profileops.E018"]
    from cryptography.fernet import Fernet

    assert ids(ENCRYPTION_KEYS=f"{Fernet.generate_key().decode()}, "
                               f"{Fernet.generate_key().decode()}") == []


def test_the_embedded_mode_works_without_a_key_but_not_with_a_broken_one(settings):
    settings.PROFILEOPS_DEMO = True
    assert ids() == []
    assert ids(ENCRYPTION_KEYS="short") == ["profileops.E018"]
