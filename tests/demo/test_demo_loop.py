"""The demo's first walk-through, end to end against the faithful emulator the way start_demo
runs it: an update that changes nothing is skipped, a changed one verified, one for a visitor
Target does not know ends not applied."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth.models import User

from demo.seeding import DEMO_APPLY_DELAY_SECONDS, demo_profiles_json, seed_demo
from target_emulator.adobe_admin import AdobeAdmin
from updates import quota, reading, sending, verification, workflow
from updates.models import ProfileUpdate, UpdateStatus, VerificationState

S, V = UpdateStatus, VerificationState


@pytest.mark.django_db
def test_the_demo_shows_unchanged_verified_and_not_applied(emulator_factory, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_SCHEDULE_MINUTES": [1, 2, 5, 15],
                           "VERIFY_FIRST_CHECK_SECONDS": 0}
    reading.read_limiter.reset()
    emulator = emulator_factory(faithful=True, apply_delay=DEMO_APPLY_DELAY_SECONDS,
                                profiles=json.loads(demo_profiles_json()),
                                adobe=AdobeAdmin())  # start_demo's --adobe
    seed = seed_demo(emulator_url=emulator.base_url, adobe=True)
    supervisor = User.objects.get(username="supervisor")
    for update in ProfileUpdate.objects.filter(status=S.PENDING):
        workflow.update_approve(update=update, by=supervisor)

    sending.send_due()
    emulator.advance(DEMO_APPLY_DELAY_SECONDS + 1)
    verification.updates_verify_due(now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=2))

    by_identity = {u.identity: u for u in ProfileUpdate.objects.all()}
    assert by_identity["CUST-1003"].status == S.UNCHANGED  # Target already held it
    assert by_identity["CUST-1002"].verification_state == V.VERIFIED
    assert by_identity["1368007744041-575948.01_00"].verification_state == V.NOT_APPLIED
    assert quota.window_usage(connection=seed.connection) == 2  # the unchanged one cost nothing
