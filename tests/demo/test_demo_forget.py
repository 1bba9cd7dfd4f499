"""Forgetting a visitor in the demo, as docs/user-guide/forgetting-a-visitor.md walks through it:
the emulator plays Target and Adobe (IMS and the Privacy Service, `start_demo` passes --adobe),
the demo connection has the emulator's Adobe credentials, and the admin forgets CUST-1001 —
local purge counts, the job complete at the emulator, Target's profile gone, nothing in a dump."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from demo.seeding import DEMO_APPLY_DELAY_SECONDS, demo_profiles_json, seed_demo
from target_emulator.__main__ import build_parser, emulator_from_options
from updates.models import PrivacyRequest

IDENTITY = "CUST-1001"


@pytest.mark.django_db
def test_an_administrator_forgets_a_visitor_in_the_demo(client, settings):
    options = vars(build_parser().parse_args([
        "--port", "0", "--faithful", "--apply-delay", str(DEMO_APPLY_DELAY_SECONDS), "--adobe"]))
    emulator = emulator_from_options(options).start()
    try:
        for spec in json.loads(demo_profiles_json()):
            emulator.seed_profile(**spec)
        settings.PROFILEOPS = {**settings.PROFILEOPS, "PRIVACY_SERVICE_URL":
                               f"{emulator.base_url}/data/core/privacy"}
        connection = seed_demo(emulator_url=emulator.base_url, adobe=True).connection
        client.force_login(User.objects.get(username="admin"))

        page = client.post(reverse("admin:updates_privacyrequest_forget"), {
            "connection": connection.pk, "identity_type": "mbox3rdPartyId",
            "identity": IDENTITY, "regulation": "gdpr", "confirm": "on"}, follow=True)

        request = PrivacyRequest.objects.get()
        assert request.state == PrivacyRequest.State.FILED
        assert "Cancelled 1 open updates" in page.content.decode()
        said = StringIO()
        call_command("poll_privacy_requests", "--all", stdout=said)  # not due for an hour
        assert said.getvalue().strip() == "Read 1 privacy jobs."
        request.refresh_from_db()
        assert request.state == PrivacyRequest.State.COMPLETE
        assert ("mbox3rdPartyId", IDENTITY) not in emulator.profiles
        dump = StringIO()
        call_command("dumpdata", stdout=dump)
        assert IDENTITY not in dump.getvalue()
    finally:
        emulator.stop()
