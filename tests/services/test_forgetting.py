"""Forgetting a visitor (updates/forgetting.py, suppression.py): cancel its open updates, purge
every stored value and identity, keep the keyed hash so it cannot come back by mistake."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import (FORGOTTEN_IDENTITY, FORGOTTEN_VALUES, KEPT_IDENTITY, KEPT_VALUE,
                            make_user)
from updates import errors, forgetting, importing, mappings, workflow
from updates.hashing import keyed_hash
from updates.models import (AuditEvent, ImportJob, PrivacyRequest, ProfileRead, ProfileUpdate,
                            PurgeReason, SendAttempt, UpdateStatus)

S = UpdateStatus


@pytest.fixture
def dpo(db):
    return make_user("dpo", "Data protection officers")


def forget(connection, by, identity=FORGOTTEN_IDENTITY, **kwargs):
    return forgetting.visitor_forget(connection=connection, identity_type="mbox3rdPartyId",
                                     identity=identity, regulation="gdpr", by=by, **kwargs)


def test_forgetting_cancels_the_open_updates_and_purges_every_value(acme, visitor_history, dpo):
    sent, pending = visitor_history

    request = forget(acme, dpo)

    assert request.state == PrivacyRequest.State.LOCAL_DONE
    assert request.cancelled_updates == 1
    assert request.purge_counts["profile updates"] == 2
    assert request.purge_counts["profile reads"] >= 1
    assert request.purge_counts["send attempts"] == 1
    assert request.purge_counts["import jobs"] == 1
    assert request.purge_counts["admin log entries"] == 1
    assert request.identity_hash == keyed_hash(FORGOTTEN_IDENTITY)
    for update in ProfileUpdate.objects.filter(pk__in=[sent.pk, pending.pk]):
        assert update.identity == keyed_hash(FORGOTTEN_IDENTITY)
        assert update.purge_reason == PurgeReason.FORGOTTEN and update.purged_at
        assert FORGOTTEN_IDENTITY not in repr(update.attributes)
    assert ProfileUpdate.objects.get(pk=pending.pk).status == S.CANCELLED
    assert ProfileUpdate.objects.get(pk=sent.pk).status == S.SENT  # the record stays
    assert not SendAttempt.objects.filter(update=sent).exclude(response_body="").exists()
    for read in ProfileRead.objects.filter(update__in=[sent, pending]):
        assert "silver-K4Z" not in repr(read.attributes) and read.purged_at
    job = ImportJob.objects.get()
    assert bytes(job.file_data) == b"" and job.purged_at
    assert AuditEvent.objects.filter(action="visitor_forgotten",
                                     changes__privacy_request=request.pk).exists()


def test_the_other_visitors_keep_their_values(acme, visitor_history, dpo):
    forget(acme, dpo)
    kept = ProfileUpdate.objects.get(identity=KEPT_IDENTITY)
    assert kept.attributes == {"loyaltyTier": KEPT_VALUE} and kept.purged_at is None


def test_the_same_value_sent_twice_is_still_recognisable_after_the_purge(acme, visitor_history,
                                                                          dpo):
    sent, _ = visitor_history
    forget(acme, dpo)
    purged = ProfileUpdate.objects.get(pk=sent.pk)
    assert purged.attributes == {"loyaltyTier": keyed_hash("platinum-X9Q")}


def test_without_adobe_credentials_the_request_says_to_file_by_hand(acme, visitor_history, dpo):
    request = forget(acme, dpo)
    assert request.state == PrivacyRequest.State.LOCAL_DONE
    assert "must be filed by hand" in request.note


def test_an_operator_may_not_forget_a_visitor(acme, visitor_history, operator, supervisor):
    for user in (operator, supervisor):
        with pytest.raises(errors.Refused) as refused:
            forget(acme, user)
        assert refused.value.code == errors.PERMISSION_DENIED
    assert not PrivacyRequest.objects.exists()


def test_a_visitor_being_sent_is_refused_until_the_send_ends(acme, stage, dpo):
    update = stage(identity=FORGOTTEN_IDENTITY)
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.SENDING)
    with pytest.raises(errors.Refused) as refused:
        forget(acme, dpo)
    assert refused.value.code == errors.IN_FLIGHT
    assert ProfileUpdate.objects.get(pk=update.pk).identity == FORGOTTEN_IDENTITY


def test_a_forgotten_visitor_cannot_be_staged_again(acme, stage, dpo):
    forget(acme, dpo)
    with pytest.raises(ValidationError) as refused:
        stage(identity=FORGOTTEN_IDENTITY)
    message = " ".join(refused.value.message_dict["identity"])
    assert "forgotten" in message and FORGOTTEN_IDENTITY not in message
    stage(identity=FORGOTTEN_IDENTITY + "-other")  # another visitor is fine


def test_a_reimport_of_a_forgotten_visitor_names_the_row_and_the_field(acme, operator, dpo):
    forget(acme, dpo)
    job = importing.import_job_create(
        connection=acme, file_name="old-export.csv", by=operator, file_data=(
            "identity_type,identity,loan_status\r\n"
            "mbox3rdPartyId,someone-else,funded\r\n"
            f"mbox3rdPartyId,{FORGOTTEN_IDENTITY},funded\r\n").encode())
    assert job.status == ImportJob.Status.INVALID
    [error] = job.errors
    assert error["row"] == 3 and error["column"] == "identity"
    assert "forgotten" in error["message"]


def test_rows_checked_before_the_forget_are_refused_when_they_are_saved(acme, operator, dpo):
    rows = [{"identity_type": "mbox3rdPartyId", "identity": FORGOTTEN_IDENTITY,
             "attributes": {"loanStatus": "funded"}}]
    checked = mappings.mappings_fingerprint(mappings.active_mappings(acme))  # checked, then …
    forget(acme, dpo)  # … forgotten before the rows are saved
    with pytest.raises(ValidationError) as refused:
        workflow.updates_stage_many(connection=acme, rows=rows, by=operator,
                                    checked_against=checked)
    assert refused.value.error_list[0].code == errors.FORGOTTEN
    assert "Row 1, identity" in refused.value.messages[0]
    assert not ProfileUpdate.objects.exists()


def test_an_administrator_lifts_the_suppression_with_a_reason(acme, stage, dpo, admin_user,
                                                              operator):
    request = forget(acme, dpo)
    with pytest.raises(errors.Refused):
        forgetting.suppression_lift(request=request, by=operator, comment="came back")
    with pytest.raises(ValidationError):
        forgetting.suppression_lift(request=request, by=admin_user, comment=" ")
    forgetting.suppression_lift(request=request, by=admin_user, comment="signed up again")
    stage(identity=FORGOTTEN_IDENTITY)  # allowed again
    assert AuditEvent.objects.filter(action="suppression_lifted").count() == 1


def test_a_purged_update_never_moves_again(acme, visitor_history, dpo, operator):
    sent, pending = visitor_history
    forget(acme, dpo)
    with pytest.raises(errors.Refused) as refused:
        workflow.update_cancel(update=ProfileUpdate.objects.get(pk=pending.pk), by=operator)
    assert refused.value.code == errors.PURGED


def test_the_identity_is_checked_before_anything_is_written(acme, dpo):
    with pytest.raises(ValidationError) as refused:
        forgetting.visitor_forget(connection=acme, identity_type="email", identity=" ",
                                  regulation="hipaa", by=dpo)
    assert set(refused.value.message_dict) == {"identity_type", "identity", "regulation"}
    assert not PrivacyRequest.objects.exists()


def test_a_form_loaded_before_the_forget_cannot_stage_the_visitor(acme, operator, dpo):
    """The staging form checked the identity (and read the list) before the forget; the saving
    transaction reads the list afresh."""
    from updates import suppression

    assert suppression.forgotten_problem(acme, "mbox3rdPartyId", FORGOTTEN_IDENTITY) == ""
    forget(acme, dpo)
    with pytest.raises(ValidationError):
        workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                              identity=FORGOTTEN_IDENTITY, attributes={"loanStatus": "funded"},
                              by=operator)


def test_an_update_edited_away_from_the_visitor_keeps_no_trace_of_it(acme, stage, operator, dpo,
                                                                      faithful_emulator):
    # The update once named the forgotten visitor: its edit's audit row holds the identity as
    # "before", and a live diff read while it named the visitor holds Target's value for it.
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    from updates import reading

    faithful_emulator.seed_profile(identity=FORGOTTEN_IDENTITY,
                                   attributes={"loyaltyTier": "silver-K4Z"})
    moved = stage(identity=FORGOTTEN_IDENTITY, attributes={"loyaltyTier": KEPT_VALUE})
    reading.update_live_diff(update=moved, by=operator)
    named = LogEntry.objects.create(  # as the admin's change form logs it, by its str()
        user=operator, action_flag=CHANGE, object_id=str(moved.pk), object_repr=str(moved),
        content_type=ContentType.objects.get_for_model(ProfileUpdate), change_message="[]")
    workflow.update_edit(update=moved, by=operator, identity=KEPT_IDENTITY)

    request = forget(acme, dpo)

    held = [repr(e.changes) + e.comment for e in AuditEvent.objects.filter(update=moved)]
    held += [repr(r.attributes) for r in ProfileRead.objects.filter(update=moved)]
    held += [LogEntry.objects.get(pk=named.pk).object_repr]
    assert held and not any(FORGOTTEN_IDENTITY in h or "silver-K4Z" in h for h in held)
    assert request.purge_counts["audit events"] >= 1 and request.purge_counts["profile reads"] == 1
    still = ProfileUpdate.objects.get(pk=moved.pk)  # the other visitor's update is untouched
    assert (still.identity, still.attributes, still.purged_at) == (
        KEPT_IDENTITY, {"loyaltyTier": KEPT_VALUE}, None)


def test_an_invalid_import_quoting_the_visitors_value_keeps_no_trace_of_it(acme, operator, dpo):
    # An invalid file is not kept, but its errors quote the cell ('… is not one of the
    # permitted choices'): nothing left says whose row it was, so the texts must go.
    job = importing.import_job_create(
        connection=acme, file_name="visitors.csv", by=operator, file_data=(
            "identity_type,identity,loan_status\r\n"
            f"mbox3rdPartyId,{FORGOTTEN_IDENTITY},secret-loan-9Z\r\n").encode())
    assert job.status == ImportJob.Status.INVALID and "secret-loan-9Z" in repr(job.errors)

    request = forget(acme, dpo)

    job.refresh_from_db()
    assert "secret-loan-9Z" not in repr(job.errors) and job.purged_at
    assert job.errors[0]["row"] == 2 and request.purge_counts["import jobs"] == 1


def test_a_batch_reads_fingerprint_of_the_visitor_is_rekeyed(acme, visitor_history, dpo):
    # The fingerprint is a plain SHA-256 of identity and values: anyone holding the identity
    # could confirm a guessed value with it (why approved_hash is re-keyed on purge, too).
    from django.utils import timezone

    from updates.models import BatchRead

    sent, pending = visitor_history
    plain = ProfileUpdate.objects.get(pk=pending.pk).content_hash
    job = BatchRead.objects.create(created_by=dpo, created_at=timezone.now(), connection=acme,
                                   update_ids=[pending.pk], verdicts={
                                       str(pending.pk): ["changes", plain]})

    forget(acme, dpo)

    job.refresh_from_db()
    assert job.verdicts == {str(pending.pk): ["changes", keyed_hash(plain)]}
