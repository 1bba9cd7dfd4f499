"""A revert stages only what a mapping would accept from a person (updates/verification.py,
revert_plan): what Target held is outside data. Over real HTTP against the faithful emulator,
seeded with values a broken or hostile Target could hold."""

from __future__ import annotations


import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.conftest import approve_via_workflow, make_user
from updates import reading, sending, verification
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus


@pytest.fixture(autouse=True)
def quick(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "SEND_CONCURRENCY": 2}
    reading.read_limiter.reset()


@pytest.fixture
def acme(connection, target):
    connection.base_url = target.base_url
    connection.skip_unchanged = True  # reads before sending: the prior values are kept
    connection.save(update_fields=["base_url", "skip_unchanged"])
    return connection


@pytest.fixture
def sent(acme, stage, operator, supervisor, target):
    """sent(identity, held) -> a sent update changing loyaltyTier and loanStatus of a visitor
    whose profile held `held` as loyaltyTier (and loanStatus "applied", which can be restored)."""
    def _sent(identity: str, held) -> ProfileUpdate:
        target.seed_profile(identity=identity, any_json=True,
                            attributes={"loyaltyTier": held, "loanStatus": "applied"})
        update = approve_via_workflow(stage, operator, supervisor, identity=identity,
                                      attributes={"loyaltyTier": "silver",
                                                  "loanStatus": "funded"})
        sending.send_due()
        return ProfileUpdate.objects.get(pk=update.pk)
    return _sent


HELD = {
    "json object": ({"x": [1, 2]}, "held a JSON object, not text"),
    "json list": ([1, 2], "held a JSON array, not text"),
    "json number": (42, "held a JSON number, not text"),
    "replacement character": ("Z\ufffdrich", "U+FFFD"),
    "bell": ("gold\x07", "control character U+0007"),
    "escape": ("\x1b[31mgold", "control character U+001B"),
    "line break": ("gold\r\nplatinum", "control character U+000D (a line break)"),
    "right-to-left override": ("\u202edlog", "U+202E"),
    "zero-width space": ("go\u200bld", "U+200B"),
    "not the mapping's normal form": ("gold ", "never a rewritten value"),  # the mapping trims
    "too long for the mapping": ("g" * 300, "at most 256"),
}


@pytest.mark.parametrize("held,reason", HELD.values(), ids=HELD.keys())
def test_a_value_no_person_could_type_is_listed_with_its_reason_never_staged(sent, held, reason):
    update = sent("c-1", held)
    lead = make_user("lead", "Operators")
    revert, plan = verification.update_revert(update=update, by=lead)

    assert revert.attributes == {"loanStatus": "applied"}  # only what can be put back
    assert reason in plan.not_revertible["loyaltyTier"]
    note = AuditEvent.objects.get(update=update, action="revert_staged")
    assert "loyaltyTier" in note.changes["not_revertible"]


def test_a_revert_of_nothing_restorable_stages_nothing_and_names_each_reason(sent, operator):
    update = sent("c-2", {"x": [1, 2]})
    ProfileUpdate.objects.filter(pk=update.pk).update(attributes={"loyaltyTier": "silver"})
    with pytest.raises(ValidationError, match="nothing can be reverted.*JSON object"):
        verification.update_revert(update=ProfileUpdate.objects.get(pk=update.pk), by=operator)
    assert ProfileUpdate.objects.count() == 1
    assert "{'x'" not in str(list(ProfileUpdate.objects.values_list("attributes", flat=True)))


def test_the_revert_button_names_what_it_cannot_restore(client, sent, operator):
    update = sent("c-3", "\u202edlog")
    client.force_login(operator)
    response = client.post(reverse("updates_revert", args=[update.pk]),
                           follow=True)
    revert = ProfileUpdate.objects.exclude(pk=update.pk).get()
    assert revert.attributes == {"loanStatus": "applied"}
    assert revert.status == UpdateStatus.DRAFT
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "profile.loyaltyTier is not reverted" in shown and "U+202E" in shown
