"""updates/setwise.py and updates/batch_decisions.py: decisions as set operations (issue 25,
item 1). A set-wise decision makes the single decision's checks and writes its rows — compared
field by field with workflow.update_approve / update_reject — in chunks, each all or nothing; a
decision larger than one chunk runs as a DecisionJob (run synchronously here) with its progress
recorded. Real database: SQLite, and PostgreSQL with DATABASE_URL."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from updates import batch_decisions, decisions, setwise, workflow
from updates.errors import OWN_UPDATE, STALE, WRONG_STATE
from updates.models import AuditEvent, DecisionJob, ProfileUpdate, UpdateStatus

S = UpdateStatus
EVIL = {"loanStatus": "funded", "loyaltyTier": "EVIL"}
AUDIT_FIELDS = ("actor_id", "action", "connection_id", "from_status", "to_status", "comment",
                "changes", "mapping_id")
UPDATE_FIELDS = ("status", "decided_by_id", "decision_comment", "approved_hash",
                 "attempt_count", "next_attempt_at", "last_edited_by_id", "last_edited_at",
                 "submitted_at", "identity_type", "identity", "attributes")


def pending(stage, by, **kwargs):
    return workflow.update_submit(update=stage(by=by, **kwargs), by=by)


def shown_of(*updates) -> dict[int, str]:
    return {u.pk: ProfileUpdate.objects.get(pk=u.pk).content_hash for u in updates}


def decision_row(update) -> tuple[dict, dict]:
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    [event] = AuditEvent.objects.filter(update_id=update.pk,
                                        action__in=("approved", "rejected"))
    return ({f: getattr(fresh, f) for f in UPDATE_FIELDS},
            {f: getattr(event, f) for f in AUDIT_FIELDS})


@pytest.mark.parametrize("decision, comment", [("approve", ""), ("approve", " checked "),
                                               ("reject", "  not this one  ")])
def test_a_set_wise_decision_writes_the_rows_a_single_decision_writes(
        stage, operator, supervisor, decision, comment):
    single, *many = [pending(stage, operator, attributes={"loanStatus": "funded",
                                                          "loyaltyTier": f"t{i}"})
                     for i in range(3)]
    service = workflow.update_approve if decision == "approve" else workflow.update_reject
    service(update=single, by=supervisor, comment=comment, shown=single.content_hash)
    decisions.updates_decide_shown(shown=shown_of(*many), decision=decision, by=supervisor,
                                   comment=comment)
    want_update, want_audit = decision_row(single)
    for update in many:
        got_update, got_audit = decision_row(update)
        fresh = ProfileUpdate.objects.get(pk=update.pk)
        want = {**want_update, "approved_hash": fresh.content_hash if decision == "approve"
                else "", "attributes": fresh.attributes, "identity": fresh.identity,
                "last_edited_at": fresh.last_edited_at, "submitted_at": fresh.submitted_at}
        assert got_update == want
        assert got_audit == want_audit
        assert fresh.decided_at is not None
        event = AuditEvent.objects.get(update_id=update.pk, action=want_audit["action"])
        assert abs((event.at - fresh.decided_at).total_seconds()) < 1


def test_a_chunk_is_decided_with_a_handful_of_statements(stage, operator, supervisor):
    many = [pending(stage, operator) for _ in range(30)]
    shown = shown_of(*many)
    with CaptureQueriesContext(db_connection) as queries:
        decisions.updates_decide_shown(shown=shown, decision="approve", by=supervisor)
    # (an executemany is logged as "N times: INSERT ...")
    writes = [q["sql"].split(": ", 1)[-1] if " times: " in q["sql"] else q["sql"]
              for q in queries.captured_queries]
    writes = [sql for sql in writes if sql.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert len(writes) == 2, writes  # one UPDATE of the updates, one INSERT of audit rows
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 30
    assert AuditEvent.objects.filter(action="approved").count() == 30


def test_set_wise_refuses_own_updates_one_by_one_and_decides_the_rest(stage, operator,
                                                                      admin_user):
    theirs = pending(stage, operator)
    own = pending(stage, operator)
    workflow.update_edit(update=own, by=admin_user, attributes=EVIL)  # now a content author
    workflow.update_submit(update=own, by=operator)
    outcome = decisions.updates_decide_shown(shown=shown_of(theirs, own), decision="approve",
                                             by=admin_user)
    assert [u.pk for u in outcome.done] == [theirs.pk]
    [(refused, message)] = outcome.refused
    assert refused.pk == own.pk and "four-eyes" in message
    assert ProfileUpdate.objects.get(pk=own.pk).status == S.PENDING


def test_set_wise_checks_the_permission_before_anything(stage, operator):
    waiting = pending(stage, operator)
    with pytest.raises(ValidationError) as refused:
        decisions.updates_decide_shown(shown=shown_of(waiting), decision="approve", by=operator)
    assert refused.value.code == "permission_denied"
    assert ProfileUpdate.objects.get(pk=waiting.pk).status == S.PENDING


def test_not_strict_refuses_each_changed_left_or_own_update_with_the_single_message(
        stage, operator, admin_user):
    supervisor = admin_user
    ok, edited, cancelled, draft = [pending(stage, operator) for _ in range(4)]
    own = pending(stage, admin_user)
    shown = shown_of(ok, edited, cancelled, own)
    shown[draft.pk] = ""
    workflow.update_edit(update=edited, by=operator, attributes=EVIL)
    workflow.update_submit(update=edited, by=operator)
    workflow.update_cancel(update=cancelled, by=operator)
    workflow.update_edit(update=draft, by=operator, attributes=EVIL)  # back to draft
    from django.db import transaction

    with transaction.atomic():
        result = setwise.decide_set(shown=shown, transition=workflow.T["approve"], by=supervisor,
                                    comment="", strict=False)
    assert result.done == [ok.pk]
    assert result.codes == {edited.pk: STALE, cancelled.pk: STALE, own.pk: OWN_UPDATE,
                            draft.pk: WRONG_STATE}
    # The same words as the single service.
    for update in (edited, cancelled, own, draft):
        try:
            workflow.update_approve(update=update, by=supervisor, shown=shown[update.pk])
        except ValidationError as error:
            assert dict(result.refused)[update.pk] == " ".join(error.messages)


def test_bare_ids_decide_whatever_is_there_now_and_refuse_a_wrong_state(stage, operator,
                                                                       supervisor):
    edited, done = pending(stage, operator), pending(stage, operator)
    workflow.update_approve(update=done, by=supervisor)
    workflow.update_edit(update=edited, by=operator, attributes=EVIL)
    workflow.update_submit(update=edited, by=operator)
    from django.db import transaction

    with transaction.atomic():
        result = setwise.decide_set(shown=None, ids=[edited.pk, done.pk],
                                    transition=workflow.T["approve"], by=supervisor,
                                    comment="", strict=False)
    assert result.done == [edited.pk] and result.codes == {done.pk: WRONG_STATE}
    fresh = ProfileUpdate.objects.get(pk=edited.pk)
    assert fresh.approved_hash == fresh.content_hash


# --- larger than one chunk: a DecisionJob, chunk by chunk --------------------------------------

@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(setwise, "CHUNK", 3)
    return 3


def start_job(updates, by, *, decision="approve", comment="", connection=None):
    pairs = sorted(shown_of(*updates).items())
    job, _ = batch_decisions.decision_job_show(pairs=pairs, by=by, connection=connection,
                                               import_job=None)
    return batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest,
                                              decision=decision, by=by, comment=comment,
                                              background=False)


def test_a_job_decides_chunk_by_chunk_and_records_its_progress(stage, operator, supervisor,
                                                               small_chunks):
    many = [pending(stage, operator) for _ in range(8)]
    job = start_job(many, supervisor)
    assert job.status == DecisionJob.Status.DONE
    assert (job.total, job.chunks, job.chunks_done, job.decided, job.refused) == (8, 3, 3, 8, 0)
    assert [(e["first"], e["last"], e["size"], e["outcome"]) for e in job.report] == [
        (many[0].pk, many[2].pk, 3, "decided"), (many[3].pk, many[5].pk, 3, "decided"),
        (many[6].pk, many[7].pk, 2, "decided")]
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 8
    assert AuditEvent.objects.filter(action="approved", actor=supervisor).count() == 8
    progress = batch_decisions.decision_job_progress(job).as_json()
    assert progress["percent"] == 100 and "8 of 8 updates decided" in progress["text"]


@pytest.mark.parametrize("race", ("cancel", "edit_resubmit", "older_draft"))
def test_a_chunk_with_a_change_is_refused_whole_and_the_others_go_on(
        stage, operator, supervisor, connection, small_chunks, race):
    smuggled = stage(attributes=EVIL)  # older than the batch, a draft when it is shown
    many = [pending(stage, operator) for _ in range(8)]
    pairs = sorted(shown_of(*many).items())
    job, _ = batch_decisions.decision_job_show(pairs=pairs, by=supervisor, connection=None,
                                               import_job=None)
    if race == "cancel":
        workflow.update_cancel(update=many[4], by=operator)  # second chunk
    elif race == "edit_resubmit":
        workflow.update_edit(update=many[4], by=operator, attributes=EVIL)
        workflow.update_submit(update=many[4], by=operator)
    else:
        workflow.update_submit(update=smuggled, by=operator)  # joins the first chunk's range
    job = batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest,
                                             decision="approve", by=supervisor,
                                             background=False)
    refused_chunk = 1 if race == "older_draft" else 2
    outcomes = [e["outcome"] for e in job.report]
    assert outcomes == ["refused" if n == refused_chunk else "decided" for n in (1, 2, 3)]
    refused = job.report[refused_chunk - 1]
    word = {"cancel": "1 left", "edit_resubmit": "1 changed", "older_draft": "1 joined"}[race]
    assert word in refused["why"] and "What you were shown changed" in refused["why"]
    in_refused = many[(refused_chunk - 1) * 3:refused_chunk * 3]
    assert not AuditEvent.objects.filter(update__in=in_refused, action="approved").exists()
    decided = [u for u in many if u not in in_refused]
    assert {ProfileUpdate.objects.get(pk=u.pk).status for u in decided} == {S.APPROVED}
    assert ProfileUpdate.objects.get(pk=smuggled.pk).status != S.APPROVED
    assert (job.decided, job.refused) == (len(decided), 3)


def test_a_withdrawn_permission_stops_a_jobs_remaining_chunks(
        stage, operator, supervisor, small_chunks, monkeypatch):
    many = [pending(stage, operator) for _ in range(6)]
    pairs = sorted(shown_of(*many).items())
    job, _ = batch_decisions.decision_job_show(pairs=pairs, by=supervisor, connection=None,
                                               import_job=None)
    checks = []
    real = batch_decisions._check_decision

    def withdrawn_after_first_chunk(decision, by, comment):
        checks.append(1)
        if len(checks) > 2:  # the start, the first chunk; then the permission is gone
            supervisor.groups.clear()
            by = type(by).objects.get(pk=by.pk)
        return real(decision, by, comment)

    monkeypatch.setattr(batch_decisions, "_check_decision", withdrawn_after_first_chunk)
    job = batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest,
                                             decision="approve", by=supervisor,
                                             background=False)
    assert [e["outcome"] for e in job.report] == ["decided", "refused"]
    assert "permission" in job.report[1]["why"]
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 3
    assert (job.decided, job.refused) == (3, 3)


def test_a_job_is_started_once_by_whom_it_showed_with_its_digest(stage, operator, supervisor,
                                                                 other_supervisor,
                                                                 small_chunks):
    many = [pending(stage, operator) for _ in range(4)]
    job, _ = batch_decisions.decision_job_show(pairs=sorted(shown_of(*many).items()),
                                               by=supervisor, connection=None, import_job=None)
    for by, digest in ((other_supervisor, job.digest), (supervisor, "0" * 64)):
        with pytest.raises(ValidationError) as refused:
            batch_decisions.decision_job_start(job_id=job.pk, digest=digest, decision="approve",
                                               by=by, background=False)
        assert refused.value.code == STALE
    with pytest.raises(ValidationError) as refused:
        batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest, decision="reject",
                                           by=supervisor, comment=" ", background=False)
    assert refused.value.code == "comment_required"
    batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest, decision="reject",
                                       by=supervisor, comment="no", background=False)
    with pytest.raises(ValidationError) as refused:
        batch_decisions.decision_job_start(job_id=job.pk, digest=job.digest, decision="reject",
                                           by=supervisor, comment="no", background=False)
    assert refused.value.code == STALE
    assert ProfileUpdate.objects.filter(status=S.REJECTED).count() == 4


def test_a_job_token_reads_back_only_for_its_scope(stage, operator, supervisor, small_chunks):
    many = [pending(stage, operator) for _ in range(4)]
    job, token = batch_decisions.decision_job_show(pairs=sorted(shown_of(*many).items()),
                                                   by=supervisor, connection=None,
                                                   import_job=None, scope="import=3")
    assert batch_decisions.read_job_token(token, scope="import=3") == (job.pk, job.digest)
    assert batch_decisions.read_job_token(token, scope="") is None
    assert batch_decisions.read_job_token(token[:-2] + "xx", scope="import=3") is None
