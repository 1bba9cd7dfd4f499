"""Reading profiles back (updates/reading.py) over real HTTP against the faithful emulator."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import make_user
from updates import quota, reading
from updates.errors import Refused
from updates.models import ProfileRead

Outcome = ProfileRead.Outcome
Purpose = ProfileRead.Purpose


@pytest.fixture(autouse=True)
def _fresh_read_limiter():
    reading.read_limiter.reset()
    yield
    reading.read_limiter.reset()


def test_a_known_visitor_reads_as_found_with_values_and_modified_at(acme, stage, faithful_emulator):
    faithful_emulator.seed_profile(identity="c 1?&#%", attributes={"loyaltyTier": "silver"},
                                   modified_at="2026-01-01T00:00:00.000Z")
    update = stage(identity="c 1?&#%", attributes={"loyaltyTier": "gold"})

    read = reading.profile_read(update=update, purpose=Purpose.DIFF)

    assert read.outcome == Outcome.FOUND and read.http_status == 200
    assert read.attributes == {"loyaltyTier": {"value": "silver",
                                               "modifiedAt": "2026-01-01T00:00:00.000Z"}}
    [row] = reading.attribute_diff(update, read)
    assert (row.current_value, row.new_value, row.changes) == ("silver", "gold", True)


def test_an_unknown_visitor_reads_as_not_found(acme, stage):
    update = stage(identity="nobody")
    read = reading.profile_read(update=update, purpose=Purpose.DIFF)
    assert read.outcome == Outcome.NOT_FOUND and read.attributes == {}
    assert all(row.current_value is None and row.changes
               for row in reading.attribute_diff(update, read))


def test_by_mbox_pc(acme, stage, faithful_emulator):
    faithful_emulator.seed_profile(identity="1368007744041-575948.01_00", identity_type="mboxPC",
                                   attributes={"loanStatus": "funded"})
    update = stage(identity_type="mboxPC", identity="1368007744041-575948.01_00",
                   attributes={"loanStatus": "funded"})
    read = reading.profile_read(update=update, purpose=Purpose.DIFF)
    assert reading.changes_nothing(update, read)


def test_reads_take_no_proxy_from_the_environment_but_the_configured_one(
        acme, stage, settings, proxy_in_the_environment):
    update = stage(identity="nobody")
    assert reading.profile_read(update=update, purpose=Purpose.DIFF).outcome == Outcome.NOT_FOUND

    reading.read_limiter.reset()
    settings.PROFILEOPS = {**settings.PROFILEOPS, "TARGET_PROXY": proxy_in_the_environment}
    assert reading.profile_read(update=update, purpose=Purpose.DIFF).outcome == Outcome.ERROR


def test_the_bearer_token_is_sent_and_never_logged(acme, stage, emulator_factory, caplog):
    emulator = emulator_factory(faithful=True, token="tok-123",
                                profiles=[{"identity": "c-1", "attributes": {"callNote": "x"}}])
    acme.base_url = emulator.base_url
    acme.bearer_token = "tok-123"
    acme.save(update_fields=["base_url", "bearer_token"])
    update = stage(identity="c-1", attributes={"callNote": "y"})

    with caplog.at_level(logging.DEBUG):
        read = reading.profile_read(update=update, purpose=Purpose.DIFF)
    acme.bearer_token = "wrong"
    acme.save(update_fields=["bearer_token"])
    refused = reading.profile_read(update=update, purpose=Purpose.DIFF)

    assert read.outcome == Outcome.FOUND
    assert refused.outcome == Outcome.ERROR and refused.http_status == 401
    assert "tok-123" not in caplog.text and "c-1" not in caplog.text


def test_a_failing_read_api_is_stored_as_an_error(acme, stage, faithful_emulator):
    update = stage()
    faithful_emulator.stop()
    read = reading.profile_read(update=update, purpose=Purpose.DIFF)
    assert read.outcome == Outcome.ERROR and read.http_status is None
    assert read.error.startswith("transient: ConnectionError")


def test_reads_never_count_against_the_update_quota(acme, stage, faithful_emulator):
    update = stage()
    for _ in range(3):
        reading.profile_read(update=update, purpose=Purpose.DIFF)
    assert quota.window_usage(connection=acme.pk) == 0
    assert faithful_emulator.stats()["requests"] == 0  # no update request reached Target


def test_the_read_rate_limit_refuses_past_the_setting(acme, stage, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 2}
    update = stage()
    reading.profile_read(update=update, purpose=Purpose.DIFF)
    reading.profile_read(update=update, purpose=Purpose.DIFF)
    with pytest.raises(reading.ReadThrottled):
        reading.profile_read(update=update, purpose=Purpose.DIFF)
    assert ProfileRead.objects.filter(update=update).count() == 2


def test_a_person_must_be_allowed_to_see_the_update(acme, stage, db):
    outsider = make_user("outsider")
    with pytest.raises(Refused) as refused:
        reading.profile_read(update=stage(), purpose=Purpose.DIFF, by=outsider)
    assert refused.value.code == "permission_denied"


def test_an_inactive_connection_is_not_read_even_through_a_copy_loaded_before_it_was_deactivated(
        acme, stage, faithful_emulator, supervisor):
    update = stage()  # its connection loaded while active, as a page or a batch holds it
    type(acme).objects.filter(pk=acme.pk).update(active=False)
    before = faithful_emulator.stats()["connections_accepted"]

    with pytest.raises(reading.ConnectionInactive, match="inactive"):
        reading.profile_read(update=update, purpose=Purpose.DIFF)
    diff = reading.update_live_diff(update=update, by=supervisor)

    assert (diff.state, diff.rows) == ("error", []) and "inactive" in diff.message
    assert faithful_emulator.stats()["connections_accepted"] == before  # its token never left
    assert not ProfileRead.objects.exists()
