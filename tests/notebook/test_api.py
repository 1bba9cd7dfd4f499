"""profileops.notebook: the same services, permissions, four eyes, checks and audit as the admin.

The `connection` fixture (client code "acme") has three mappings: loan_status (choice of
applied/funded/declined) → loanStatus, tier (text) → loyaltyTier, note (text, at most 1,000)
→ callNote. Every test here is transactional: the module's ORM thread must see committed rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import SynchronousOnlyOperation, ValidationError

from profileops import notebook
from tests.conftest import make_connection, make_mapping, make_user, use_adobe_credentials
from updates import selectors, workflow
from updates.models import AuditEvent, ProfileUpdate

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def rows(n: int, *, prefix: str = "cust", **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"identity_type": "mbox3rdPartyId",
                          "identity": [f"{prefix}-{i}" for i in range(n)],
                          "loan_status": ["funded"] * n})
    for name, values in columns.items():
        frame[name] = values
    return frame


def stage_pending(connection, by, n: int = 1, prefix: str = "pend") -> list[int]:
    ids = []
    for i in range(n):
        update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                       identity=f"{prefix}-{i}", attributes={"loanStatus": "funded"},
                                       by=by)
        workflow.update_submit(update=update, by=by)
        ids.append(update.pk)
    return ids


# --- the permission matrix: the same rules as the admin -------------------------------------------

ROLES = ("operator", "supervisor", "admin", "nobody")
OK, DENIED, DONE, REFUSED = "ok", "denied", "done", "refused"

#  action                          operator  supervisor  admin   nobody (active, no group)
MATRIX = {
    "stage":                       (OK,      DENIED,     OK,     DENIED),
    "stage and submit":            (OK,      DENIED,     OK,     DENIED),
    "submit a draft":              (DONE,    REFUSED,    DONE,   REFUSED),
    "approve another's pending":   (REFUSED, DONE,       DONE,   REFUSED),
    "reject another's pending":    (REFUSED, DONE,       DONE,   REFUSED),
    "approve one's own pending":   (REFUSED, None,       REFUSED, None),  # four eyes; None:
                                   # supervisors and the group-less user cannot stage one
    "list updates":                (OK,      OK,         OK,     DENIED),
    "start a send run":            (OK,      OK,         OK,     DENIED),
}


@pytest.fixture
def people(db):
    return {"operator": make_user("operator", "Operators"),
            "supervisor": make_user("supervisor", "Supervisors"),
            "admin": make_user("admin", superuser=True),
            "nobody": make_user("nobody"),
            "stager": make_user("stager", "Operators")}


def _attempt(action: str, role: str, people, connection) -> str:
    session = notebook.as_user(role)
    try:
        if action == "stage":
            result = session.stage(rows(2, prefix=role), connection="acme")
            return OK if result.counts["saved"] == 2 else "saved nothing"
        if action == "stage and submit":
            result = session.stage(rows(2, prefix=role), connection="acme", submit=True)
            return OK if result.table["status"].eq("pending").all() else "not pending"
        if action == "list updates":
            session.updates()
            return OK
        if action == "start a send run":
            session.send(connection="acme", limit=0)
            return OK
        if action == "submit a draft":
            draft = workflow.update_stage(connection=connection, identity_type="mboxPC",
                                          identity="1-1.01", attributes={"loanStatus": "funded"},
                                          by=people["stager"])
            decisions = session.submit(ids=[draft.pk])
        elif action == "approve one's own pending":
            decisions = session.approve(ids=stage_pending(connection, people[role]))
        else:
            ids = stage_pending(connection, people["stager"])
            if action.startswith("approve"):
                decisions = session.approve(ids=ids)
            else:
                decisions = session.reject(ids=ids, comment="not this one")
        return decisions.table.loc[0, "outcome"]
    except ValidationError as error:
        if getattr(error, "code", None) == "permission_denied":
            return DENIED
        raise


@pytest.mark.parametrize(("action", "role", "expected"), [
    (action, role, expected) for action, cells in MATRIX.items()
    for role, expected in zip(ROLES, cells) if expected is not None])
def test_permission_matrix(action, role, expected, people, connection):
    assert _attempt(action, role, people, connection) == expected


def test_four_eyes_counts_the_last_editor_too_and_names_the_rule(people, connection):
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="c-1", attributes={"loanStatus": "funded"},
                                   by=people["operator"])
    workflow.update_edit(update=update, by=people["admin"], attributes={"loanStatus": "applied"})
    workflow.update_submit(update=update, by=people["operator"])

    decisions = notebook.as_user("admin").approve(ids=[update.pk])

    assert decisions.table.loc[0, "outcome"] == "refused"
    assert "four-eyes" in decisions.table.loc[0, "message"]
    assert ProfileUpdate.objects.get(pk=update.pk).status == "pending"


@pytest.mark.parametrize("value", [b"gold\xff", b"gold", ["gold"], {"tier": "gold"}],
                         ids=["invalid utf-8 bytes", "bytes", "list", "dict"])
def test_a_value_that_is_not_text_a_number_or_a_date_is_refused_not_stored_as_its_repr(
        people, connection, value):
    result = notebook.as_user("operator").stage(
        [{"identity_type": "mbox3rdPartyId", "identity": "c-1", "tier": value}], connection="acme")

    assert result.counts["invalid"] == 1
    assert f"a {type(value).__name__} value is not text" in result.table.loc[0, "errors"]
    assert not ProfileUpdate.objects.exists()


def test_a_dual_role_user_cannot_approve_what_they_staged_through_the_notebook(people, connection):
    make_user("lead", "Operators", "Supervisors")  # may stage and approve
    lead = notebook.as_user("lead")
    staged = lead.stage(rows(2, prefix="lead"), connection="acme", submit=True)

    decisions = lead.approve(ids=staged.ids)

    assert decisions.table["outcome"].eq("refused").all()
    assert decisions.table["message"].str.contains("four-eyes").all()
    assert set(ProfileUpdate.objects.filter(pk__in=staged.ids).values_list("status", flat=True)) \
        == {"pending"}
    assert notebook.as_user("supervisor").approve(ids=staged.ids).table["outcome"].eq("done").all()


def test_a_dual_role_content_editor_stays_barred_after_a_colleague_edits_only_the_reason(
        people, connection):
    lead = make_user("lead", "Operators", "Supervisors")
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="c-2", attributes={"loanStatus": "applied"},
                                   by=people["operator"])
    workflow.update_edit(update=update, by=lead, attributes={"loanStatus": "funded"})
    workflow.update_edit(update=update, by=people["stager"], reason="clarified")
    workflow.update_submit(update=update, by=people["operator"])

    for decide in ("approve", "reject"):
        decisions = getattr(notebook.as_user("lead"), decide)(ids=[update.pk], comment="mine")
        assert decisions.table.loc[0, "outcome"] == "refused"
    assert ProfileUpdate.objects.get(pk=update.pk).status == "pending"


@pytest.mark.parametrize("comment", ["bad \udcff", "nul \x00", 12345, "x" * 2001],
                         ids=["surrogate", "nul", "not text", "too long"])
def test_a_comment_no_database_can_hold_is_refused_per_update_not_raised(
        people, connection, comment):
    ids = stage_pending(connection, people["stager"])

    decisions = notebook.as_user("supervisor").reject(ids=ids, comment=comment)

    assert decisions.table.loc[0, "outcome"] == "refused"
    assert "comment" in decisions.table.loc[0, "message"].lower()
    assert ProfileUpdate.objects.get(pk=ids[0]).status == "pending"


def test_refusals_are_returned_per_update_never_raised_for_the_first(people, connection):
    own = stage_pending(connection, people["admin"], prefix="own")
    others = stage_pending(connection, people["operator"], n=2, prefix="other")
    draft = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                  identity="draft", attributes={"loanStatus": "funded"},
                                  by=people["operator"])

    decisions = notebook.as_user("admin").approve(ids=[*own, *others, draft.pk, 999_999])

    outcome = decisions.table.set_index("update_id")["outcome"].astype(str).to_dict()
    assert outcome == {own[0]: "refused", others[0]: "done", others[1]: "done",
                       draft.pk: "refused", 999_999: "refused"}
    assert decisions.counts == {"done": 2, "refused": 3}
    assert "does not exist" in decisions.refused.set_index("update_id").loc[999_999, "message"]
    assert decisions.ids == others


def test_a_rejection_needs_a_comment_for_every_update(people, connection):
    ids = stage_pending(connection, people["operator"], n=2)
    decisions = notebook.as_user("supervisor").reject(ids=ids, comment="  ")
    assert decisions.counts == {"done": 0, "refused": 2}
    assert set(ProfileUpdate.objects.values_list("status", flat=True)) == {"pending"}


def test_a_filter_selects_pending_updates_only_and_a_selection_must_be_named(people, connection):
    ids = stage_pending(connection, people["operator"], n=3)
    workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId", identity="d",
                          attributes={"loanStatus": "funded"}, by=people["operator"])
    supervisor = notebook.as_user("supervisor")

    with pytest.raises(ValueError, match="Say which updates"):
        supervisor.approve()
    decisions = supervisor.approve(connection="acme", created_by="operator")

    assert sorted(decisions.ids) == ids and decisions.counts["refused"] == 0
    assert ProfileUpdate.objects.get(identity="d").status == "draft"


def test_every_decision_is_audited_as_the_named_person(people, connection):
    result = notebook.as_user("operator").stage(rows(2), connection="acme", submit=True)
    notebook.as_user("supervisor").approve(ids=result.ids, comment="ok")

    # Staging a table is one import: one "imported" event for the lot, then one per decision.
    events = AuditEvent.objects.filter(update_id__in=result.ids).order_by("id")
    assert [(e.actor.username, e.action) for e in events] == [
        ("supervisor", "approved"), ("supervisor", "approved")]
    [imported] = AuditEvent.objects.filter(update=None, action="imported")
    assert (imported.actor.username, imported.changes["updates"]) == ("operator", 2)
    for update in ProfileUpdate.objects.filter(pk__in=result.ids):
        first = selectors.update_timeline(update=update)[0].event
        assert (first.action, first.actor.username) == ("imported", "operator")
    audit = notebook.as_user("operator").audit(ids=result.ids)
    assert sorted(audit["action"].astype(str)) == ["approved", "approved", "imported"]
    assert set(audit["actor"]) == {"operator", "supervisor"}


def test_a_permission_withdrawn_counts_at_the_next_call(people, connection):
    session = notebook.as_user("operator")
    assert session.stage(rows(1, prefix="a"), connection="acme").counts["saved"] == 1
    people["operator"].groups.clear()
    with pytest.raises(ValidationError, match="permission to import") as refused:
        session.stage(rows(1, prefix="b"), connection="acme")
    assert refused.value.code == "permission_denied"


def test_an_unknown_or_inactive_user_is_refused_at_once(people):
    with pytest.raises(LookupError, match="No user named 'ghost'"):
        notebook.as_user("ghost")
    User.objects.filter(username="nobody").update(is_active=False)
    with pytest.raises(ValidationError, match="inactive"):
        notebook.as_user("nobody")


# --- staging from a DataFrame: the import's checks, located by row label ------------------------

@pytest.fixture
def typed_connection(db):
    connection = make_connection("typed")
    make_mapping(connection, "text", "aText")
    make_mapping(connection, "count", "aCount", value_type="integer")
    make_mapping(connection, "amount", "anAmount", value_type="decimal")
    make_mapping(connection, "flag", "aFlag", value_type="boolean")
    make_mapping(connection, "day", "aDay", value_type="date")
    make_mapping(connection, "moment", "aMoment", value_type="datetime")
    make_mapping(connection, "colour", "aColour", value_type="choice", choices="red\ngreen")
    return connection


def test_every_value_type_round_trips_from_pandas_and_python_values(people, typed_connection):
    frame = pd.DataFrame({
        "identity_type": pd.Categorical(["mbox3rdPartyId", "mbox3rdPartyId", "mboxPC"]),
        "identity": ["t-1", "t-2", "1368007744041-575948.01_00"],
        "text": ["Zürich & <co>", "a;b,c", None],
        "count": pd.array([42, -7, None], dtype="Int64"),
        "amount": [Decimal("1.50E3"), Decimal("2.50"), Decimal("-0.000")],
        "flag": [True, False, np.True_],
        "day": pd.to_datetime(["2026-11-27", "2026-01-02", None]),
        "moment": pd.to_datetime(["2026-11-27T10:00:00+01:00", "2026-01-02T00:00:00Z", None],
                                 utc=True, format="ISO8601"),
        "colour": pd.Categorical(["red", "green", "red"]),
    })
    result = notebook.as_user("operator").stage(frame, connection="typed")

    assert result.ok, result.errors_table.to_dict("records")
    listed = notebook.as_user("operator").updates(ids=result.ids).set_index("identity")
    assert listed.loc["t-1", "attributes"] == {
        "aText": "Zürich & <co>", "aCount": "42", "anAmount": "1500", "aFlag": "true",
        "aDay": "2026-11-27", "aMoment": "2026-11-27T09:00:00Z", "aColour": "red"}
    assert listed.loc["t-2", "attributes"] == {
        "aText": "a;b,c", "aCount": "-7", "anAmount": "2.5", "aFlag": "false",
        "aDay": "2026-01-02", "aMoment": "2026-01-02T00:00:00Z", "aColour": "green"}
    assert listed.loc["1368007744041-575948.01_00", "attributes"] == {
        "anAmount": "0", "aFlag": "true", "aColour": "red"}  # missing cells: not set


def test_numpy_scalars_and_floats_from_a_list_of_dicts(people, typed_connection):
    data = [{"identity_type": "mbox3rdPartyId", "identity": "n-1", "count": np.int64(3),
             "amount": 0.25, "flag": "yes", "day": dt.date(2026, 2, 1)},
            {"identity_type": "mbox3rdPartyId", "identity": "n-2", "count": 12.0,
             "amount": np.float64(1e3), "colour": "green"}]
    result = notebook.as_user("operator").stage(data, connection="typed")
    assert result.ok
    stored = {u.identity: u.attributes for u in ProfileUpdate.objects.all()}
    assert stored == {"n-1": {"aCount": "3", "anAmount": "0.25", "aFlag": "true",
                              "aDay": "2026-02-01"},
                      "n-2": {"aCount": "12", "anAmount": "1000", "aColour": "green"}}


def test_errors_are_located_by_the_dataframes_index_label_and_nothing_is_saved(people, connection):
    frame = rows(4, tier=["gold", "silver", "bronze", "gold"])
    frame.index = ["alice", "bob", "carol", "dave"]
    frame.loc["bob", "loan_status"] = "maybe"
    frame.loc["dave", "identity"] = "cust/3"
    before = (ProfileUpdate.objects.count(), AuditEvent.objects.count())

    result = notebook.as_user("operator").stage(frame, connection="acme")

    assert (ProfileUpdate.objects.count(), AuditEvent.objects.count()) == before
    assert list(result.table.index) == ["alice", "bob", "carol", "dave"]
    assert result.table["status"].astype(str).to_dict() == {
        "alice": "not saved", "bob": "invalid", "carol": "not saved", "dave": "invalid"}
    assert result.table["update_id"].isna().all()
    assert [(e["row"], e["column"]) for e in result.errors_table.to_dict("records")] == [
        ("bob", "loan_status"), ("dave", "identity")]
    assert "maybe" in result.table.loc["bob", "errors"]
    assert result.counts == {"rows": 4, "saved": 0, "invalid": 2}


def test_a_second_row_for_the_same_visitor_names_both_row_labels(people, connection):
    frame = rows(3)
    frame.index = [10, 20, 30]
    frame.loc[30, "identity"] = "cust-0"
    result = notebook.as_user("operator").stage(frame, connection="acme")
    assert result.errors_table.loc[0, "row"] == 30
    assert "rows 10 and 30" in result.errors_table.loc[0, "message"]


def test_keep_good_saves_the_good_rows_with_their_ids_and_audit(people, connection):
    frame = rows(3)
    frame.loc[1, "loan_status"] = "maybe"
    result = notebook.as_user("operator").stage(frame, connection="acme", keep_good=True,
                                                reason="campaign 7")
    assert result.table["status"].astype(str).tolist() == ["draft", "invalid", "draft"]
    ids = result.table["update_id"]
    assert ids.dtype == "Int64" and ids.isna().tolist() == [False, True, False]
    saved = {u.pk: u for u in ProfileUpdate.objects.all()}
    assert sorted(saved) == sorted(result.ids)
    assert saved[int(ids[0])].identity == "cust-0" and saved[int(ids[2])].identity == "cust-2"
    assert {u.reason for u in saved.values()} == {"campaign 7"}
    [imported] = AuditEvent.objects.filter(update=None, action="imported")
    assert imported.changes["updates"] == 2
    assert {u.import_job_id for u in saved.values()} == {imported.changes["import_job"]}


def test_a_refused_save_leaves_nothing_half_saved(people, connection):
    with pytest.raises(ValidationError, match="reason"):
        notebook.as_user("operator").stage(rows(2500), connection="acme", reason="x" * 201)
    assert not ProfileUpdate.objects.exists() and not AuditEvent.objects.exists()


def test_a_refusal_between_two_save_chunks_rolls_back_the_first(people, connection,
                                                                monkeypatch):
    """The connection is deactivated after the first 2,000 rows were written: the service
    refuses the second chunk, and the first is rolled back with it."""
    real = workflow.updates_stage_many
    calls = []

    def deactivate_before_the_second_chunk(**kwargs):
        calls.append(len(kwargs["rows"]))
        if len(calls) == 2:
            type(connection).objects.filter(pk=connection.pk).update(active=False)
            kwargs["connection"].active = False
        return real(**kwargs)

    monkeypatch.setattr(workflow, "updates_stage_many", deactivate_before_the_second_chunk)
    with pytest.raises(ValidationError, match="inactive"):
        notebook.as_user("operator").stage(rows(2500), connection="acme")
    assert calls == [2000, 500]
    assert not ProfileUpdate.objects.exists() and not AuditEvent.objects.exists()


def test_a_bad_header_is_refused_as_a_whole(people, connection):
    frame = rows(2, colour=["red", "blue"])
    with pytest.raises(ValidationError, match="colour: Unknown column"):
        notebook.as_user("operator").stage(frame, connection="acme")
    assert not ProfileUpdate.objects.exists()


# --- review, send, look -----------------------------------------------------------------------------

SECRET = "tok-SECRET-4242"
VALUE = "VALUE-sentinel-991"


@pytest.fixture
def secret_connection(db, emulator):
    connection = make_connection("sec", base_url=emulator.base_url, bearer_token=SECRET)
    make_mapping(connection, "note", "callNote")
    return connection


def test_no_token_or_value_in_any_repr_or_log_and_the_preview_redacts_the_token(
        people, secret_connection, caplog):
    caplog.set_level(logging.DEBUG)
    operator = notebook.as_user("operator")
    supervisor = notebook.as_user("supervisor")
    data = [{"identity_type": "mbox3rdPartyId", "identity": f"{VALUE}-id", "note": VALUE}]

    staged = operator.stage(data, connection="sec", submit=True)
    preview = supervisor.preview(ids=staged.ids)
    decided = supervisor.approve(ids=staged.ids)
    sent = supervisor.send(connection="sec")
    listings = [operator.updates(), operator.attempts(), operator.audit(), operator.quota()]

    assert sent.counts["acknowledged"] == 1
    for obj in (operator, supervisor, staged, preview, decided, sent):
        assert SECRET not in repr(obj) and VALUE not in repr(obj)
    assert SECRET not in caplog.text and VALUE not in caplog.text
    assert preview.table.loc[0, "headers"] == "Authorization: Bearer [redacted]"
    shown = preview._repr_html_() + preview.table.to_csv()
    assert VALUE in shown and SECRET not in shown  # customer data shown, the token never
    for frame in listings:
        assert SECRET not in frame.to_csv()


def test_adobe_credentials_and_the_tokens_they_obtain_appear_in_no_notebook_output(
        people, adobe_emulator, caplog):
    connection = make_connection("adb")
    make_mapping(connection, "note", "callNote")
    use_adobe_credentials(connection, adobe_emulator)
    caplog.set_level(logging.DEBUG)
    operator, supervisor = notebook.as_user("operator"), notebook.as_user("supervisor")
    staged = operator.stage([{"identity_type": "mbox3rdPartyId", "identity": "adb-1",
                              "note": "hello"}], connection="adb", submit=True)
    preview = supervisor.preview(ids=staged.ids)
    supervisor.approve(ids=staged.ids)
    sent = supervisor.send(connection="adb")
    assert sent.counts["acknowledged"] == 1
    secrets = [connection.adobe_client_secret, adobe_emulator.adobe.current_profile_token()]
    shown = (repr(preview) + preview._repr_html_() + preview.table.to_csv() + repr(sent)
             + operator.audit().to_csv() + operator.attempts().to_csv() + caplog.text)
    assert preview.table.loc[0, "headers"] == "Authorization: Bearer [redacted]"
    assert not any(secret in shown for secret in secrets)


def test_html_is_escaped(people, connection):
    frame = rows(1, tier=["<script>alert(1)</script>"], loan_status=["<b>bad</b>"])
    result = notebook.as_user("operator").stage(frame, connection="acme")
    shown = result._repr_html_()
    assert "<b>bad</b>" not in shown and "&lt;b&gt;bad&lt;/b&gt;" in shown

    frame = rows(1, tier=["<script>alert(1)</script>"])
    staged = notebook.as_user("operator").stage(frame, connection="acme")
    preview = notebook.as_user("operator").preview(ids=staged.ids)
    listed = notebook.as_user("operator").updates().to_html()
    assert "<script>" not in listed and "&lt;script&gt;" in listed
    assert "<script>" not in preview._repr_html_()


def test_preview_shows_the_exact_request_and_its_quota_cost(people, connection):
    frame = rows(2, note=["short", "é " * 450])
    staged = notebook.as_user("operator").stage(frame, connection="acme")
    preview = notebook.as_user("operator").preview(ids=staged.ids)

    first = preview.table.iloc[0]
    assert first["method"] == "GET"
    assert first["url"] == ("https://acme.tt.omtrdc.net/m2/acme/profile/update?mbox3rdPartyId=cust-0"
                            "&profile.callNote=short&profile.loanStatus=funded")
    assert first["size_bytes"] == len(first["url"])
    assert "profile.callNote=%C3%A9%20%C3%A9%20" in preview.table.iloc[1]["url"]
    assert preview.quota_cost == 2
    assert preview.quota_table.to_dict("records") == [{
        "connection": "Connection acme", "quota_cost": 2, "window_requests": 0,
        "limit": 1_000_000, "headroom": 1_000_000, "fits": True}]


def test_send_listings_quota_and_plot_after_a_real_send(people, emulator):
    connection = make_connection("live", base_url=emulator.base_url, quota_limit=50)
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded")
    staged = notebook.as_user("operator").stage(rows(5), connection="live", submit=True)
    notebook.as_user("supervisor").approve(ids=staged.ids)

    report = notebook.as_user("supervisor").send(connection="live")

    assert report.counts["acknowledged"] == 5 and len(emulator.received) == 5
    session = notebook.as_user("operator")
    updates = session.updates(connection="live")
    assert str(updates["id"].dtype) == "Int64"
    assert isinstance(updates["status"].dtype, pd.CategoricalDtype)
    assert set(updates["status"]) == {"sent"}
    assert str(updates["created_at"].dt.tz) == "UTC"
    assert updates["acknowledged_at"].notna().all()
    attempts = session.attempts(ids=staged.ids)
    assert len(attempts) == 5 and set(attempts["http_status"]) == {200}
    assert str(attempts["started_at"].dt.tz) == "UTC"
    assert isinstance(attempts["outcome"].dtype, pd.CategoricalDtype)
    quota = session.quota(connection="live").iloc[0]
    assert (quota["window_requests"], quota["remaining"]) == (5, 45)
    today = session.daily_usage(connection="live", days=3).iloc[-1]
    assert (today["requests"], today["acknowledged"], today["failed"]) == (5, 5, 0)

    figure = session.plot_usage(connection="live", days=3)
    by_day, window = figure.axes
    assert window.lines[-1].get_ydata()[0] == 50  # the limit line
    assert "5 of 50 used" in window.get_title()
    figure.savefig(io.BytesIO(), format="png")  # renders without pyplot (Agg)


# --- the Jupyter event-loop trap ------------------------------------------------------------------

def test_calls_work_inside_a_running_event_loop_without_the_unsafe_flag(people, connection):
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ

    async def cell():  # what a Jupyter cell is: synchronous code in a thread running a loop
        with pytest.raises(SynchronousOnlyOperation):
            ProfileUpdate.objects.count()  # Django's check still guards this thread
        return notebook.as_user("operator").stage(rows(3), connection="acme")

    result = asyncio.run(cell())
    assert result.counts["saved"] == 3 and ProfileUpdate.objects.count() == 3
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ


def test_run_executes_own_orm_code_on_the_worker_thread(people, connection):
    stage_pending(connection, people["operator"], n=2)

    async def cell():
        return notebook.run(lambda: ProfileUpdate.objects.filter(status="pending").count())

    assert asyncio.run(cell()) == 2


# --- setup and the optional dependency -------------------------------------------------------------

def test_setup_works_from_the_notebooks_folder_with_the_apps_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("from profileops import notebook; notebook.setup(); "
            "from django.conf import settings; import target_emulator; "
            "print(settings.SETTINGS_MODULE, settings.DATABASES['default']['NAME'])")
    env["DATABASE_URL"] = "sqlite:////tmp/somewhere-else.sqlite3"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "notebooks", env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["profileops.settings", "/tmp/somewhere-else.sqlite3"]


def test_without_pandas_the_import_error_says_what_to_install():
    code = ("import sys; sys.modules['pandas'] = None\n"
            "try:\n    from profileops import notebook\n"
            "except ImportError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert "pip install -e .[notebook]" in done.stdout, done.stdout + done.stderr
