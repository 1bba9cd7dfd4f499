"""profileops.notebook closes the loop with Target as the admin does: the live diff
(reading.update_live_diff), the verification state (verification.py) and revert
(verification.update_revert), over real HTTP against the faithful emulator, with the same
permissions, refusals per update and escaped HTML.

Transactional tests: the module's ORM thread must see committed rows.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from django.core.exceptions import ValidationError

from profileops import notebook
from tests.conftest import make_connection, make_mapping, make_user
from updates import quota, reading, verification
from updates.models import AuditEvent, ProfileUpdate

pytestmark = pytest.mark.django_db(transaction=True)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "VERIFY_SCHEDULE_MINUTES": [5, 15, 60],
                           "VERIFY_FIRST_CHECK_SECONDS": 0}
    reading.read_limiter.reset()


@pytest.fixture
def people(db):
    return {"operator": make_user("operator", "Operators"),
            "supervisor": make_user("supervisor", "Supervisors"),
            "nobody": make_user("nobody")}


@pytest.fixture
def live(faithful_emulator):
    connection = make_connection("live", base_url=faithful_emulator.base_url)
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded")
    make_mapping(connection, "tier", "loyaltyTier")
    return connection


def staged(people, rows: list[dict], *, approve: bool = True) -> list[int]:
    data = [{"identity_type": "mbox3rdPartyId", **row} for row in rows]
    result = notebook.as_user("operator").stage(data, connection="live", submit=True)
    assert result.ok, result.errors_table
    if approve:
        assert notebook.as_user("supervisor").approve(ids=result.ids).counts["done"] == len(rows)
    return result.ids


def test_live_diff_per_attribute_with_a_note_for_a_visitor_target_does_not_know(
        people, live, faithful_emulator):
    faithful_emulator.seed_profile(identity="known", attributes={"loyaltyTier": "gold",
                                                                 "loanStatus": "applied"})
    known, unknown = staged(people, [{"identity": "known", "loan_status": "funded",
                                      "tier": "gold"},
                                     {"identity": "unknown", "loan_status": "funded"}],
                            approve=False)

    diff = notebook.as_user("supervisor").live_diff(ids=[known, unknown])

    rows = diff.table.set_index(["update_id", "attribute"])
    assert rows.loc[(known, "loanStatus"), ["at_target", "to_send", "changes"]].tolist() == [
        "applied", "funded", True]
    assert rows.loc[(known, "loyaltyTier"), ["at_target", "to_send", "changes"]].tolist() == [
        "gold", "gold", False]
    assert pd.isna(rows.loc[(unknown, "loanStatus"), "at_target"])  # nothing held
    assert bool(rows.loc[(unknown, "loanStatus"), "changes"])
    assert str(diff.table["read_at"].dt.tz) == "UTC" and diff.table["read_at"].notna().all()
    notes = diff.notes.set_index("update_id")
    assert notes.loc[known, "state"] == "found" and notes.loc[known, "message"] == ""
    assert notes.loc[unknown, "state"] == "not_found"
    assert "Target has no profile for this visitor" in notes.loc[unknown, "message"]
    assert rows.loc[(unknown, "loanStatus"), "note"] == notes.loc[unknown, "message"]
    assert (diff.counts["without_profile"], diff.counts["unchanged"]) == (1, 1)
    assert not diff.table["left_out"].any()  # the connection keeps every attribute
    # Reads are not updates: no quota used, nothing sent.
    assert quota.window_usage(connection=live.pk) == 0 and faithful_emulator.received == []


def test_live_diff_says_which_attributes_the_connection_would_leave_out(
        people, live, faithful_emulator):
    live.drop_unchanged_attributes = True
    live.save(update_fields=["drop_unchanged_attributes"])
    faithful_emulator.seed_profile(identity="k", attributes={"loyaltyTier": "gold"})
    [update_id] = staged(people, [{"identity": "k", "loan_status": "funded", "tier": "gold"}],
                         approve=False)

    diff = notebook.as_user("supervisor").live_diff(ids=[update_id])

    assert diff.table.set_index("attribute")["left_out"].to_dict() == {
        "loanStatus": False, "loyaltyTier": True}


def test_live_diff_and_verification_need_the_view_permission(people, live):
    [update_id] = staged(people, [{"identity": "v", "loan_status": "funded"}], approve=False)
    nobody = notebook.as_user("nobody")
    for call in (lambda: nobody.live_diff(ids=[update_id]),
                 lambda: nobody.verification(ids=[update_id])):
        with pytest.raises(ValidationError) as refused:
            call()
        assert refused.value.code == "permission_denied"
    with pytest.raises(ValueError, match="Say which updates"):
        notebook.as_user("supervisor").live_diff()


def test_verification_state_after_sending_and_after_the_checks(people, live, faithful_emulator):
    faithful_emulator.seed_profile(identity="known", attributes={"loanStatus": "applied"})
    known, unknown = staged(people, [{"identity": "known", "loan_status": "funded"},
                                     {"identity": "unknown", "loan_status": "funded"}])
    supervisor = notebook.as_user("supervisor")
    supervisor.live_diff(ids=[known, unknown])  # what the supervisor saw: the prior values' read
    assert supervisor.send(connection="live").counts["acknowledged"] == 2

    run = supervisor.verify(connection="live")  # schedules the first checks; none due yet
    assert run.counts["scheduled"] == 2 and run.counts["checked"] == 0
    state = supervisor.verification(ids=[known, unknown]).set_index("update_id")
    assert set(state["verification_state"]) == {"pending"}
    acked = state.loc[known, "acknowledged_at"]
    assert state.loc[known, "next_check_at"] == acked + pd.Timedelta(minutes=5)
    assert (state.loc[known, "checks_made"], state.loc[known, "checks_planned"]) == (0, 3)
    # What Target held before the send, kept for a revert (None: the attribute did not exist).
    assert state.loc[known, "prior_values"]["loanStatus"]["value"] == "applied"

    faithful_emulator.advance(61)  # the emulator applies updates after 60 s
    verification.updates_verify_due(now=acked.to_pydatetime() + 6 * MINUTE)  # the clock shifted

    state = supervisor.verification(connection="live").set_index("update_id")  # sent ones
    assert state.loc[known, "verification_state"] == "verified"
    assert state.loc[known, "verified_at"] == acked + pd.Timedelta(minutes=6)
    assert state.loc[unknown, "verification_state"] == "not_applied"
    assert pd.isna(state.loc[unknown, "verified_at"])
    assert str(state["verified_at"].dt.tz) == "UTC"
    assert isinstance(state["verification_state"].dtype, pd.CategoricalDtype)


def test_updates_say_what_happened_at_target_next_to_the_status(people, live, faithful_emulator):
    faithful_emulator.seed_profile(identity="known", attributes={"loanStatus": "applied"})
    known, unknown = staged(people, [{"identity": "known", "loan_status": "funded"},
                                     {"identity": "unknown", "loan_status": "funded"}])
    [draft] = staged(people, [{"identity": "later", "loan_status": "funded"}], approve=False)
    supervisor = notebook.as_user("supervisor")
    assert supervisor.send(connection="live").counts["acknowledged"] == 2
    frame = supervisor.updates(ids=[known, unknown, draft]).set_index("id")
    assert list(frame.columns).index("at_target") == list(frame.columns).index("status") + 1
    assert frame.loc[known, "at_target"] == frame.loc[unknown, "at_target"] == "checking"
    assert frame.loc[draft, "at_target"] == ""

    supervisor.verify(connection="live")
    acked = ProfileUpdate.objects.get(pk=known).acknowledged_at
    faithful_emulator.advance(61)
    verification.updates_verify_due(now=acked + 6 * MINUTE)

    frame = supervisor.updates(ids=[known, unknown, draft]).set_index("id")
    assert frame.loc[known, "at_target"] == "verified"
    assert frame.loc[unknown, "at_target"] == "not_applied"
    assert isinstance(frame["at_target"].dtype, pd.CategoricalDtype)
    assert "verification_state" not in frame.columns


def test_revert_stages_the_prior_values_with_refusals_per_update(people, live, faithful_emulator):
    faithful_emulator.seed_profile(identity="known", attributes={"loanStatus": "applied"})
    [sent] = staged(people, [{"identity": "known", "loan_status": "funded", "tier": "gold"}])
    [pending] = staged(people, [{"identity": "p", "loan_status": "funded"}], approve=False)
    notebook.as_user("supervisor").live_diff(ids=[sent])  # the read before the send
    notebook.as_user("supervisor").send(connection="live")

    # A supervisor may not stage: refused per update, not raised for the first.
    denied = notebook.as_user("supervisor").revert(ids=[sent, pending])
    assert denied.counts == {"done": 0, "refused": 2}
    assert "permission to stage" in denied.table.loc[0, "message"]

    reverts = notebook.as_user("operator").revert(ids=[pending, sent, 999_999],
                                                  comment="wrong list")

    table = reverts.table.set_index("update_id")
    assert reverts.counts == {"done": 1, "refused": 2}
    assert "was not sent" in table.loc[pending, "message"]
    assert "does not exist" in table.loc[999_999, "message"]
    assert table.loc[sent, "reverted"] == {"loanStatus": "applied"}
    assert "did not exist before" in table.loc[sent, "not_revertible"]["loyaltyTier"]
    revert = ProfileUpdate.objects.get(pk=reverts.ids[0])
    assert revert.attributes == {"loanStatus": "applied"} and revert.status == "draft"
    assert revert.created_by.username == "operator"
    assert AuditEvent.objects.filter(update_id=sent, action="revert_staged").count() == 1
    # Four eyes apply to the revert like any other update.
    operator = notebook.as_user("operator")
    operator.submit(ids=reverts)
    own = operator.approve(ids=reverts)
    assert own.counts["refused"] == 1
    assert notebook.as_user("supervisor").approve(ids=reverts).counts["done"] == 1


def test_html_is_escaped_and_repr_shows_counts_only(people, live, faithful_emulator):
    faithful_emulator.seed_profile(identity="x", attributes={"loyaltyTier": "<b>held</b>"})
    [update_id] = staged(people, [{"identity": "x", "loan_status": "funded",
                                   "tier": "<script>alert(1)</script>"}], approve=False)

    diff = notebook.as_user("supervisor").live_diff(ids=[update_id])

    shown = diff._repr_html_()
    assert "<b>held</b>" not in shown and "&lt;b&gt;held&lt;/b&gt;" in shown
    assert "<script>" not in shown
    assert "held" not in repr(diff) and "script" not in repr(diff)
    reverts = notebook.as_user("operator").revert(ids=[update_id])
    assert "<script>" not in reverts._repr_html_() and "script" not in repr(reverts)
