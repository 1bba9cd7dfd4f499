"""Target's attribute catalogue (updates/catalogue.py) from the emulator's Admin API: read once
and kept with its time, a warning — never a refusal — for a name Target does not know, a louder
one for a name that differs from a known one only in case."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import use_adobe_credentials
from updates import catalogue
from updates.models import AttributeMapping, CredentialState

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(connection, adobe_emulator):
    adobe_emulator.adobe.attributes = ["loanStatus", "loyaltyTier", "callNote"]
    return use_adobe_credentials(connection, adobe_emulator)


def test_the_catalogue_is_read_once_and_kept_with_its_time(acme, adobe_emulator):
    first = catalogue.attribute_catalogue(acme)
    assert first.names == ("callNote", "loanStatus", "loyaltyTier")
    assert catalogue.attribute_catalogue(acme) == first
    assert adobe_emulator.adobe.counts.attribute_reads == 1
    CredentialState.objects.filter(connection=acme).update(
        attributes_read_at=timezone.now() - dt.timedelta(hours=2))  # older than the max age
    adobe_emulator.adobe.attributes.append("storeVisits")
    assert "storeVisits" in catalogue.attribute_catalogue(acme).names
    assert adobe_emulator.adobe.counts.attribute_reads == 2


def test_a_known_name_has_no_warning_an_unknown_one_a_gentle_one(acme):
    assert catalogue.mapping_warnings(AttributeMapping(connection=acme,
                                                       target_name="loyaltyTier")) == []
    [warning] = catalogue.mapping_warnings(AttributeMapping(connection=acme,
                                                            target_name="storeVisits"))
    assert "does not know the attribute 'storeVisits' yet" in warning
    assert "The first update creates it" in warning


def test_a_case_only_difference_is_named(acme):
    [warning] = catalogue.mapping_warnings(AttributeMapping(connection=acme,
                                                            target_name="loyaltytier"))
    assert "knows the attribute 'loyaltyTier', which differs from 'loyaltytier' only in case" \
        in warning
    assert "second attribute" in warning


def test_without_credentials_there_is_no_catalogue_and_no_warning(acme):
    acme.adobe_client_id = acme.adobe_client_secret = acme.target_tenant = ""
    acme.save()
    assert catalogue.attribute_catalogue(acme) is None
    assert catalogue.mapping_warnings(AttributeMapping(connection=acme, target_name="x")) == []


def test_the_admin_saves_the_mapping_and_warns(client, admin_user, acme):
    client.force_login(admin_user)
    response = client.post(reverse("admin:updates_attributemapping_add"), {
        "connection": str(acme.pk), "source_name": "tier_lower", "target_name": "loyaltytier",
        "value_type": "text", "case_transform": "none", "max_length": "256", "active": "on"},
        follow=True)
    assert AttributeMapping.objects.filter(target_name="loyaltytier").exists()  # saved
    page = response.content.decode()
    assert "differs from &#x27;loyaltytier&#x27; only in case" in page


def test_when_adobe_does_not_answer_the_last_list_is_used_with_its_time(acme, adobe_emulator):
    first = catalogue.attribute_catalogue(acme)
    adobe_emulator.stop()
    assert catalogue.attribute_catalogue(acme, refresh=True) == first
