"""CSRF protection on every POST endpoint: a POST without the token is refused with 403 and
changes nothing — for every admin URL pattern (the list is walked, not written down, so a page
added later is covered), logged in as a superuser, who could otherwise do anything."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from updates.models import AuditEvent, ImportJob, ProfileUpdate

from .conftest import World, concrete_admin_urls

# Plausible form bodies for the endpoints that do something, so a missing CSRF check could not
# hide behind a form error: each of these would change something if it were accepted.
BODIES = {
    "updates_profileupdate_workflow": lambda w: {"transition": "approve"},
    "updates_queue": lambda w: {"approve_one": str(w.update.pk)},
    "updates_profileupdate_changelist": lambda w: {
        "action": "approve_selected", "_selected_action": [w.update.pk], "index": 0},
    "updates_importjob_start": lambda w: {},
    "updates_profileupdate_delete": lambda w: {"post": "yes"},
    "auth_user_delete": lambda w: {"post": "yes"},
    "logout": lambda w: {},
}


def state(world: World) -> tuple:
    update = ProfileUpdate.objects.get(pk=world.update.pk)
    job = ImportJob.objects.get(pk=world.job.pk)
    return (update.status, update.attributes, AuditEvent.objects.count(),
            ProfileUpdate.objects.count(), job.status, ImportJob.objects.count(),
            User.objects.count())


def refused_for_csrf(response) -> bool:
    return response.status_code == 403 and b"CSRF verification failed" in response.content


def test_every_admin_post_without_a_csrf_token_is_refused_and_changes_nothing(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["admin"])
    before = state(world)
    urls = concrete_admin_urls(world)
    assert len(urls) > 60  # every model's five pages, the custom views, the admin's own
    accepted = []
    for admin_url in urls:
        body = BODIES.get(admin_url.name, lambda w: {"anything": "x"})(world)
        response = client.post(admin_url.url, body)
        if not refused_for_csrf(response):
            accepted.append(f"{admin_url.name} {admin_url.url}: {response.status_code}")
    assert not accepted, "POSTs accepted without a CSRF token:\n" + "\n".join(accepted)
    assert state(world) == before
    # Still logged in: not even the logout went through.
    assert client.get(reverse("admin:index")).status_code == 200


def test_logging_in_without_a_csrf_token_is_refused(world):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("admin:login"), {"username": "admin", "password": "pw-admin"})
    assert refused_for_csrf(response)
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("forged", ["", "x" * 64, "wrong-token"])
def test_a_wrong_token_is_refused_like_a_missing_one(world, forged):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["supervisor"])
    client.get(reverse("updates_queue"))  # sets the CSRF cookie
    response = client.post(reverse("updates_queue"),
                           {"approve_one": world.update.pk, "csrfmiddlewaretoken": forged})
    assert refused_for_csrf(response)
    assert ProfileUpdate.objects.get(pk=world.update.pk).status == "pending"


def test_with_the_token_from_the_page_the_same_post_goes_through(world):
    # The control: the refusals above are about the token, not about the request.
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["supervisor"])
    page = client.get(reverse("updates_queue"))
    token = page.context["csrf_token"]
    response = client.post(reverse("updates_queue"),
                           {"approve_one": world.update.pk, "shown": page.context["shown"],
                            "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert ProfileUpdate.objects.get(pk=world.update.pk).status == "approved"
