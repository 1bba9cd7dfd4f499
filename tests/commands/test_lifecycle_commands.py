"""The command-line faces of the data lifecycle: forget_visitor, purge_retention,
poll_privacy_requests, privacy_report — and the schedules that run the purge and the polls."""

from __future__ import annotations

import datetime as dt
import io
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from tests.conftest import FORGOTTEN_IDENTITY, make_user
from updates import tasks
from updates.models import PrivacyRequest, ProfileUpdate, UpdateStatus


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def dpo(db):
    return make_user("dpo", "Data protection officers")


def test_forget_visitor_purges_and_says_what_is_left_to_do(acme, visitor_history, dpo):
    said = run("forget_visitor", "--connection", "acme", "--identity-type", "mbox3rdPartyId",
               "--identity", FORGOTTEN_IDENTITY, "--regulation", "gdpr", "--by", "dpo")
    request = PrivacyRequest.objects.get()
    assert f"Privacy request #{request.pk}" in said and "2 profile updates" in said
    assert "must be filed by hand" in said and FORGOTTEN_IDENTITY not in said


def test_forget_visitor_reads_the_identity_from_stdin(acme, stage, dpo, monkeypatch):
    update = stage(identity=FORGOTTEN_IDENTITY)
    monkeypatch.setattr("sys.stdin", io.StringIO(FORGOTTEN_IDENTITY + "\n"))
    run("forget_visitor", "--connection", "acme", "--identity-type", "mbox3rdPartyId",
        "--identity", "-", "--regulation", "ccpa", "--by", "dpo", "--local-only")
    assert ProfileUpdate.objects.get(pk=update.pk).purged_at is not None


def test_forget_visitor_refuses_a_user_without_the_right(acme, operator):
    with pytest.raises(CommandError, match="permission to forget visitors"):
        run("forget_visitor", "--connection", "acme", "--identity-type", "mbox3rdPartyId",
            "--identity", "x", "--regulation", "gdpr", "--by", "operator")
    with pytest.raises(CommandError, match="No connection"):
        run("forget_visitor", "--connection", "nope", "--identity-type", "mbox3rdPartyId",
            "--identity", "x", "--regulation", "gdpr", "--by", "operator")


def test_purge_retention_reports_per_connection(acme, approve):
    update = approve(identity="old-1")
    past = timezone.now() - dt.timedelta(days=400)
    ProfileUpdate.objects.filter(pk=update.pk).update(status=UpdateStatus.CANCELLED,
                                                      created_at=past, last_edited_at=past,
                                                      decided_at=past)
    said = run("purge_retention", "--chunk-size", "10")
    assert said.startswith("acme: ") and "1 profile updates" in said and "1 chunks" in said
    assert "nothing due" in run("purge_retention", "--connection", "acme")
    with pytest.raises(CommandError):
        run("purge_retention", "--chunk-size", "0")


def test_privacy_report_prints_a_request_and_a_month(acme, visitor_history, dpo):
    run("forget_visitor", "--connection", "acme", "--identity-type", "mbox3rdPartyId",
        "--identity", FORGOTTEN_IDENTITY, "--regulation", "gdpr", "--by", "dpo")
    request = PrivacyRequest.objects.get()
    one = run("privacy_report", "--request", str(request.pk))
    month = run("privacy_report", "--month", timezone.now().strftime("%Y-%m"))
    for text in (one, month):
        assert FORGOTTEN_IDENTITY not in text and request.identity_hash not in text
    assert "profile updates: 2" in one and "Privacy requests: 1" in month
    with pytest.raises(CommandError):
        run("privacy_report", "--month", "2026-13")


def test_poll_privacy_requests_runs_with_nothing_due(db):
    assert run("poll_privacy_requests").strip() == "Read 0 privacy jobs."


def test_the_purge_and_the_polls_are_scheduled_hourly(db):
    for func in ("updates.tasks.purge_retention", "updates.tasks.poll_privacy_requests"):
        schedule = Schedule.objects.get(func=func)
        assert schedule.schedule_type == Schedule.HOURLY and schedule.repeats == -1
    assert tasks.purge_retention().startswith("0 rows purged")
    assert tasks.poll_privacy_requests() == "0 privacy jobs read"
