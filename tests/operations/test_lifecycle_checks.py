"""The system checks of the data lifecycle (updates/checks.py): a keyed-hash key is required
outside the embedded mode, and a connection that keeps customer data for ever is warned about
in production (`check --deploy`)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from tests.conftest import make_connection
from updates.checks import check_profileops_settings, check_retention_on

Q_CLUSTER = {"name": "test", "timeout": 90, "retry": 120, "orm": "default"}
LONG_KEY = "k" * 48


def ids(*, demo: bool, **profileops) -> list[str]:
    if not demo:  # production needs its encryption key too (E018, issue 26)
        profileops.setdefault("ENCRYPTION_KEYS", Fernet.generate_key().decode())
    with override_settings(PROFILEOPS=profileops, Q_CLUSTER=Q_CLUSTER, PROFILEOPS_DEMO=demo):
        return [error.id for error in check_profileops_settings()]


def test_production_without_a_hash_key_does_not_start():
    assert ids(demo=False) == ["profileops.E022"]
    assert ids(demo=False, HASH_KEY="too-short") == ["profileops.E022"]
    assert ids(demo=False, HASH_KEY=LONG_KEY) == []
    assert ids(demo=True) == []  # the embedded mode has a development key


@pytest.mark.parametrize(("values", "expected"), [
    ({"PRIVACY_POLLS_PER_DAY": 0}, "profileops.E023"),
    ({"RETENTION_CHUNK_SIZE": 0}, "profileops.E024"),
])
def test_impossible_lifecycle_settings_are_refused(values, expected):
    assert ids(demo=True, **values) == [expected]


@pytest.mark.django_db
def test_retention_off_is_warned_about_in_production_only():
    make_connection("keeps-all", retain_values_days=None)
    make_connection("purges")
    with override_settings(PROFILEOPS_DEMO=False):
        [warning] = check_retention_on()
    assert warning.id == "profileops.W025" and "keeps-all" in warning.msg
    assert "purges" not in warning.msg
    with override_settings(PROFILEOPS_DEMO=True):
        assert check_retention_on() == []
