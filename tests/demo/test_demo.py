"""The embedded demo: seeding is idempotent and refuses to run outside DEBUG."""

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from demo.seeding import seed_demo
from updates.models import AttributeMapping, ProfileUpdate, TargetConnection, UpdateStatus


@pytest.mark.django_db
def test_seeding_twice_creates_the_demo_data_once():
    first = seed_demo(emulator_url="http://127.0.0.1:8765")
    second = seed_demo(emulator_url="http://127.0.0.1:8765")

    assert first.created_updates == 5 and second.created_updates == 0
    assert TargetConnection.objects.count() == 1
    assert AttributeMapping.objects.count() == 4
    assert ProfileUpdate.objects.count() == 5
    assert User.objects.filter(username__in=["operator", "supervisor", "admin"]).count() == 3


@pytest.mark.django_db
def test_demo_updates_cover_several_states():
    seed_demo(emulator_url="http://127.0.0.1:8765")
    states = set(ProfileUpdate.objects.values_list("status", flat=True))
    assert states == {UpdateStatus.DRAFT, UpdateStatus.PENDING, UpdateStatus.APPROVED,
                      UpdateStatus.REJECTED}


@pytest.mark.django_db
def test_each_seed_prints_fresh_passwords_that_work():
    first = seed_demo(emulator_url="http://127.0.0.1:8765")
    second = seed_demo(emulator_url="http://127.0.0.1:8765")
    assert first.passwords["operator"] != second.passwords["operator"]
    assert User.objects.get(username="operator").check_password(second.passwords["operator"])
    assert User.objects.get(username="admin").is_superuser


@pytest.mark.django_db
def test_demo_seed_refuses_outside_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="embedded mode"):
        call_command("seed_demo")
    assert not User.objects.filter(username="operator").exists()


@pytest.mark.django_db
def test_demo_mappings_have_labels_also_when_seeded_before_labels_existed():
    # Issue 24: the staging form showed `last_call`, `loan_status` — the README advertises labels.
    seed_demo(emulator_url="http://127.0.0.1:8765")
    assert all(AttributeMapping.objects.values_list("label", flat=True))
    AttributeMapping.objects.update(label="")
    AttributeMapping.objects.filter(source_name="loan_status").update(label="Chosen by an admin")
    seed_demo(emulator_url="http://127.0.0.1:8765")
    labels = dict(AttributeMapping.objects.values_list("source_name", "label"))
    assert labels["loan_status"] == "Chosen by an admin"
    assert labels["last_call"] == "Last call-centre contact"
