"""One date/time style on the update form: the earliest send time and every date or datetime
mapping field use the admin's date (+ time) inputs with their calendar and clock shortcuts, each
input labelled; a datetime mapping's two inputs are joined into the value the mapping parses."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.conftest import make_mapping
from updates.models import ProfileUpdate

ADD = reverse("admin:updates_profileupdate_add")


@pytest.fixture
def dated(connection):
    """The connection with a date and a datetime mapping besides its text ones."""
    return (make_mapping(connection, "funded_on", "fundedOn", value_type="date"),
            make_mapping(connection, "called_at", "calledAt", value_type="datetime",
                         label="Called at"))


def add_page(client, user, connection) -> str:
    client.force_login(user)
    return client.get(f"{ADD}?connection={connection.pk}").content.decode()


def inputs(html: str, name: str) -> list[str]:
    return re.findall(rf'<input[^>]*name="{name}(?:_[01])?"[^>]*>', html)


def post(client, connection, **fields):
    data = {"identity_type": "mbox3rdPartyId", "identity": "customer-1", "reason": "",
            "not_before_0": "", "not_before_1": "", "_save": "Save", **fields}
    return client.post(f"{ADD}?connection={connection.pk}", data)


@pytest.mark.django_db
def test_every_date_and_time_field_has_the_same_admin_widgets_and_labels(
        client, operator, connection, dated):
    funded_on, called_at = dated
    html = add_page(client, operator, connection)
    date_name, moment_name = f"attr_{funded_on.pk}", f"attr_{called_at.pk}"
    for name in ("not_before", moment_name):
        date_input, time_input = inputs(html, name)
        assert 'class="vDateField"' in date_input and f'name="{name}_0"' in date_input
        assert 'class="vTimeField"' in time_input and f'name="{name}_1"' in time_input
        assert f'<label for="id_{name}_0">Date:</label>' in html
        assert f'<label for="id_{name}_1">Time:</label>' in html
    [date_input] = inputs(html, date_name)
    assert 'class="vDateField"' in date_input and 'type="text"' in date_input
    assert "datetime-local" not in html and 'type="date"' not in html  # no second style
    assert f'<label for="id_{moment_name}_0">Called at:</label>' in html
    assert "admin/js/calendar.js" in html and "admin/js/admin/DateTimeShortcuts.js" in html


@pytest.mark.django_db
def test_the_two_inputs_of_a_datetime_mapping_are_stored_as_one_utc_value(
        client, operator, connection, dated):
    funded_on, called_at = dated
    client.force_login(operator)
    response = post(client, connection, **{
        f"attr_{funded_on.pk}": "2026-05-01",
        f"attr_{called_at.pk}_0": "2026-05-01", f"attr_{called_at.pk}_1": "10:30:05"})
    assert response.status_code == 302, response.content.decode()[:2000]
    update = ProfileUpdate.objects.get()
    assert update.attributes == {"fundedOn": "2026-05-01", "calledAt": "2026-05-01T10:30:05Z"}

    # Editing shows the stored value in the same two inputs.
    page = client.get(reverse("admin:updates_profileupdate_change",
                              args=[update.pk])).content.decode()
    date_input, time_input = inputs(page, f"attr_{called_at.pk}")
    assert 'value="2026-05-01"' in date_input and 'value="10:30:05"' in time_input


@pytest.mark.django_db
def test_a_date_without_its_time_is_refused_on_the_field(client, operator, connection, dated):
    _, called_at = dated
    client.force_login(operator)
    response = post(client, connection, **{f"attr_{called_at.pk}_0": "2026-05-01",
                                           f"attr_{called_at.pk}_1": ""})
    assert response.status_code == 200 and not ProfileUpdate.objects.exists()
    errors = response.context["adminform"].form.errors
    assert list(errors) == [f"attr_{called_at.pk}"]


@pytest.mark.django_db
def test_empty_date_and_time_inputs_leave_the_attribute_out(client, operator, connection, dated):
    _, called_at = dated
    client.force_login(operator)
    response = post(client, connection, **{f"attr_{called_at.pk}_0": "",
                                           f"attr_{called_at.pk}_1": "",
                                           "attr_" + str(connection.mappings.get(
                                               source_name="tier").pk): "gold"})
    assert response.status_code == 302
    assert ProfileUpdate.objects.get().attributes == {"loyaltyTier": "gold"}


@pytest.mark.django_db
def test_a_single_posted_value_is_still_accepted(client, operator, connection, dated):
    _, called_at = dated
    client.force_login(operator)
    assert post(client, connection,
                **{f"attr_{called_at.pk}": "2026-05-01T10:30:05Z"}).status_code == 302
    assert ProfileUpdate.objects.get().attributes == {"calledAt": "2026-05-01T10:30:05Z"}
