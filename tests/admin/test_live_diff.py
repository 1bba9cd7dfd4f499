"""The live diff and the revert button through Django's test client, reading over real HTTP from
the faithful emulator."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.conftest import approve_via_workflow, make_mapping, make_user
from updates import reading, sending, workflow
from updates.models import ProfileRead, ProfileUpdate, UpdateStatus

S = UpdateStatus


@pytest.fixture(autouse=True)
def _fresh_limiter():
    reading.read_limiter.reset()


def diff_of(client, update) -> dict:
    response = client.get(reverse("updates_live_diff", args=[update.pk]))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    return response.json()


# One mapping per value type; what is staged (normalised) and what Target holds now.
TYPED = [
    # (target name, mapping options, staged value, value at Target, changes?)
    ("aText", {}, "Zoë & co", "Zoë & co", False),
    ("aTextCase", {}, "Gold", "gold", True),
    ("anInteger", {"value_type": "integer"}, "7", "7", False),
    ("aDecimal", {"value_type": "decimal"}, "3.5", "3.50", True),
    ("aBoolean", {"value_type": "boolean"}, "true", "true", False),
    ("aDate", {"value_type": "date"}, "2026-11-27", "2026-11-26", True),
    ("aDateTime", {"value_type": "datetime"}, "2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z", False),
    ("aChoice", {"value_type": "choice", "choices": "a\nb"}, "b", "a", True),
]


def test_a_known_visitor_shows_per_attribute_what_changes_for_every_value_type(
        acme, stage, faithful_emulator, client, supervisor):
    for name, options, *_ in TYPED:
        make_mapping(acme, name, **options)
    faithful_emulator.seed_profile(identity="c-1", attributes={n: t for n, _, _, t, _ in TYPED},
                                   modified_at="2026-11-01T08:00:00.000Z")
    update = stage(identity="c-1", attributes={n: s for n, _, s, _, _ in TYPED})
    client.force_login(supervisor)

    data = diff_of(client, update)

    assert data["state"] == "found" and data["message"] == ""
    rows = {row["name"]: row for row in data["rows"]}
    for name, _, staged, held, changes in TYPED:
        assert (rows[name]["current"], rows[name]["new"], rows[name]["changes"]) == \
            (held, staged, changes), name
        assert rows[name]["current_modified_at"] == "2026-11-01T08:00:00.000Z"
    assert data["changes"] == sum(1 for *_, c in TYPED if c)


def test_an_unknown_visitor_is_shown_as_missing_at_target(acme, stage, client, supervisor):
    update = stage(identity="stranger", attributes={"loyaltyTier": "gold"})
    client.force_login(supervisor)

    data = diff_of(client, update)

    assert data["state"] == "not_found"
    assert data["message"] == ("Target has no profile for this visitor — the update will be "
                               "acknowledged but not applied.")
    assert data["rows"] == [{"name": "loyaltyTier", "current": None, "current_escaped": False,
                             "current_modified_at": "", "new": "gold", "changes": True}]


def test_a_recent_read_is_reused_and_a_failing_read_api_is_reported(
        acme, stage, faithful_emulator, client, supervisor):
    update = stage(identity="stranger")
    client.force_login(supervisor)
    diff_of(client, update)
    faithful_emulator.configure(read_error_rate=1.0)

    assert diff_of(client, update)["state"] == "not_found"  # the read of a moment ago
    assert ProfileRead.objects.filter(update=update).count() == 1
    ProfileRead.objects.update(at=ProfileRead.objects.get().at.replace(year=2020))
    failed = diff_of(client, update)
    assert failed["state"] == "error" and "HTTP 503" in failed["message"]


def test_the_queue_and_the_update_page_render_at_once_and_fill_in_later(
        acme, stage, operator, faithful_emulator, client, supervisor):
    update = stage(identity="<b>x&y")
    workflow.update_submit(update=update, by=operator)
    faithful_emulator.stop()  # the pages must not wait for Target
    client.force_login(supervisor)

    queue = client.get(reverse("updates_queue")).content.decode()
    page = client.get(reverse("admin:updates_profileupdate_change", args=[update.pk])).content.decode()

    url = reverse("updates_live_diff", args=[update.pk])
    for html in (queue, page):
        assert f'data-live-diff-url="{url}"' in html and "reading…" in html
        assert "live_diff.js" in html and "<b>x&y" not in html
    assert not ProfileRead.objects.exists()


def test_the_diff_needs_permission_to_see_updates(acme, stage, client):
    client.force_login(make_user("nobody"))
    assert client.get(reverse("updates_live_diff", args=[stage().pk])).status_code == 403


def test_the_revert_button_stages_a_draft_and_names_what_it_cannot_undo(
        acme, stage, operator, supervisor, faithful_emulator, client):
    acme.skip_unchanged = True
    acme.save(update_fields=["skip_unchanged"])
    faithful_emulator.seed_profile(identity="c-5", attributes={"loyaltyTier": "silver"})
    update = approve_via_workflow(stage, operator, supervisor, identity="c-5",
                                  attributes={"loyaltyTier": "gold", "loanStatus": "funded"})
    sending.send_due()
    client.force_login(operator)

    page = client.get(reverse("admin:updates_profileupdate_change", args=[update.pk]))
    response = client.post(reverse("updates_revert", args=[update.pk]), follow=True)

    assert "Stage a revert" in page.content.decode()
    revert = ProfileUpdate.objects.exclude(pk=update.pk).get()
    assert revert.attributes == {"loyaltyTier": "silver"} and revert.status == S.DRAFT
    texts = [str(m) for m in response.context["messages"]]
    assert any("profile.loanStatus is not reverted" in t and "cannot remove" in t for t in texts)
