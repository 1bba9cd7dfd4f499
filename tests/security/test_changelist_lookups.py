"""Admin list URLs run only the filters, search, ordering and paging the page offers.

Django's changelist would turn any parameter naming a local field into a lookup — a regular
expression the database backtracks on, a JSON containment SQLite cannot run, a number no column
holds. Every ProfileOps list refuses such a parameter with a 400 before any query runs (never a
500), and keeps answering the parameters its own filters, links and search produce.
"""

from __future__ import annotations

import pytest
from django.contrib import admin

from tests.security.conftest import client_for
from updates.admin.base import OfferedLookupsAdmin, OfferedLookupsChangeList

UPDATES = "/admin/updates/profileupdate/"
MAPPINGS = "/admin/updates/attributemapping/"
CONNECTIONS = "/admin/updates/targetconnection/"
IMPORTS = "/admin/updates/importjob/"
CHANGELISTS = (UPDATES, MAPPINGS, CONNECTIONS, IMPORTS)

HUGE = "9" * 30
# Lookups the pages do not offer: each would be queryset.filter(**{key: value}).
HOSTILE = {
    UPDATES: [
        ("identity__regex", "(a+)+$"),
        ("identity__iregex", "^(([a-z])+.)+[A-Z]([a-z])+$"),
        ("attributes__contains", '{"loanStatus": "funded"}'),
        ("attributes__has_key", "loanStatus"),
        ("attributes__loanStatus", "funded"),
        ("id__gt", HUGE),
        ("id", HUGE),
        ("pk__in", f"1,{HUGE}"),
        ("identity__contains", "a"),
        ("reason__regex", "(x+x+)+y"),
        ("decision_comment__icontains", "a"),
        ("attempt_count__gte", "-" + HUGE),
        ("created_by__password__startswith", "md5"),
        ("connection__bearer_token__startswith", "t"),
        ("last_error__isnull", "0"),
        ("status__in", "draft,pending"),
        ("not_a_field", "1"),
        ("verification_state__regex", "(a+)+$"),
        ("verification_state__in", "verified,pending"),
        ("prior_values__contains", '{"loanStatus": null}'),
        ("verification_checks__gt", HUGE),
    ],
    MAPPINGS: [
        ("pattern__regex", "(a+)+$"),
        ("help_text__contains", "x"),
        ("max_length__gt", HUGE),
        ("id__lt", "-" + HUGE),
        ("connection__bearer_token__startswith", "t"),
        ("source_name", "tier"),
    ],
    CONNECTIONS: [
        ("bearer_token__startswith", "t"),
        ("bearer_token__regex", "^(a|aa)+$"),
        ("quota_limit__gt", HUGE),
        ("client_code__regex", "(a+)+"),
        ("label", "x"),
    ],
    IMPORTS: [
        ("errors__contains", '[{"row": 2}]'),
        ("file_name__regex", "(a+)+$"),
        ("file_data__isnull", "0"),
        ("total_rows__gt", HUGE),
        ("created_by__password__startswith", "md5"),
    ],
}
CASES = [(url, key, value) for url, cases in HOSTILE.items() for key, value in cases]


@pytest.mark.django_db
@pytest.mark.parametrize("url, key, value", CASES, ids=[f"{u.split('/')[3]}-{k}" for u, k, _ in
                                                      CASES])
def test_a_lookup_the_page_does_not_offer_is_refused_with_400(client, world, url, key, value):
    client_for(client, world, "admin")
    response = client.get(url, {key: value})
    assert response.status_code == 400, (key, response.status_code)
    # Also hidden among parameters the page does offer.
    response = client.get(url, {"q": "x", "o": "1", key: value})
    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["operator", "supervisor", "admin"])
def test_every_role_gets_the_same_refusal(client, world, role):
    client_for(client, world, role)
    assert client.get(UPDATES, {"identity__regex": "(a+)+$"}).status_code == 400
    assert client.get(MAPPINGS, {"pattern__regex": "(a+)+$"}).status_code == 400


# What each list's own filters, links and search produce — with values hostile and benign.
OFFERED = {
    UPDATES: [
        {"status__exact": "pending"}, {"status__exact": "<script>"},
        {"connection__id__exact": "1"}, {"connection__id__exact": HUGE},
        {"connection__id__exact": "abc"}, {"connection__isnull": "True"},
        {"identity_type__exact": "mboxPC"}, {"created_by": "1"}, {"created_by": HUGE},
        {"created_by": "²"}, {"q": "#²"}, {"q": "#١٢"},
        {"created_at__gte": "2024-01-01 00:00:00+00:00", "created_at__lt": "2025-01-01 00:00:00+00:00"},
        {"created_at__gte": "not-a-date"}, {"created_at__gte": "99999-01-01"},
        {"q": "customer-1"}, {"q": "customer-*"}, {"q": "#1"}, {"q": "#" + HUGE},
        {"q": "(a+)+$"}, {"q": "x" * 5000}, {"o": "1"}, {"o": "-2.1"}, {"o": "99.x.-"},
        {"o": HUGE}, {"p": "2"}, {"p": HUGE}, {"p": "-1"}, {"p": "x"},
        {"reason": "import #1: updates.csv"}, {"all": ""}, {"e": "1"}, {"_facets": "1"},
        {"verification_state__exact": "not_applied"}, {"verification_state__exact": "<script>"},
        {"verification_state__exact": HUGE}, {"verification_state__isnull": "True"},
    ],
    MAPPINGS: [
        {"connection__id__exact": "1"}, {"connection__id__exact": HUGE},
        {"active__exact": "1"}, {"active__exact": "maybe"}, {"value_type__exact": "choice"},
        {"q": "tier"}, {"q": "%_\\"}, {"o": "3"}, {"p": HUGE}, {"_facets": "1"},
    ],
    CONNECTIONS: [
        {"active__exact": "0"}, {"q": "acme"}, {"o": "-1"}, {"p": "1"},
    ],
    IMPORTS: [
        {"status__exact": "invalid"}, {"status__exact": "checking"},
        {"connection__id__exact": HUGE}, {"o": "2"}, {"p": HUGE},
    ],
}
OFFERED_CASES = [(url, params) for url, cases in OFFERED.items() for params in cases]


@pytest.mark.django_db
@pytest.mark.parametrize("url, params", OFFERED_CASES,
                         ids=[f"{u.split('/')[3]}-{'&'.join(p)}" for u, p in OFFERED_CASES])
def test_the_pages_own_parameters_answer_without_a_server_error(client, world, url, params):
    client_for(client, world, "admin")
    response = client.get(url, params)
    # A page, or Django's redirect to "?e=1" for a value its filter cannot read: never a 500.
    assert response.status_code in (200, 302), (params, response.status_code)
    if response.status_code == 302:
        assert "e=1" in response["Location"]


@pytest.mark.django_db
def test_the_offered_filters_still_filter(client, world):
    client_for(client, world, "admin")
    cell = '<span class="po-value">customer-1</span>'
    assert cell in client.get(UPDATES, {"status__exact": "pending"}).content.decode()
    assert cell not in client.get(UPDATES, {"status__exact": "sent"}).content.decode()
    reason = world.update.reason or ""
    assert client.get(UPDATES, {"reason": reason}).status_code == 200


def test_every_model_admin_of_the_app_refuses_unoffered_lookups():
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "updates":
            continue
        assert isinstance(model_admin, OfferedLookupsAdmin), model
        assert model_admin.get_changelist(None) is OfferedLookupsChangeList, model


# The pages beside the lists read ids from the query string too.
OTHER_PAGES = [
    ("/admin/queue/", {"connection": HUGE}), ("/admin/queue/", {"connection": "²"}),
    ("/admin/queue/", {"p": HUGE}), ("/admin/queue/", {"p": "x"}),
    ("/admin/queue/", {"identity__regex": "(a+)+$"}),
    ("/admin/dashboard/", {"identity__regex": "(a+)+$"}),
    (UPDATES + "add/", {"connection": HUGE}), (UPDATES + "add/", {"connection": "²"}),
    (UPDATES + "add/", {"connection": "-1"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("url, params", OTHER_PAGES,
                         ids=[f"{u}-{'&'.join(f'{k}={v[:5]}' for k, v in p.items())}"
                              for u, p in OTHER_PAGES])
def test_queue_dashboard_and_staging_pages_read_their_ids_without_a_server_error(
        client, world, url, params):
    client_for(client, world, "admin")
    assert client.get(url, params).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["²", "9" * 30, "-1"])
def test_ids_posted_or_in_paths_are_read_without_a_server_error(client, world, value):
    client_for(client, world, "admin")
    queue = client.post("/admin/queue/", {"decision": "approve", "update": [value]})
    assert queue.status_code == 302
    # No such job: the admin's change page sends the user back to the list with a message.
    assert client.get(f"{IMPORTS}{value}/change/").status_code == 302
    assert client.post(f"{UPDATES}{value}/workflow/", {"transition": "submit"}).status_code == 404
    # The live diff, revert and status take ASCII digits only (a huge number is no such row:
    # 404); anything else falls to the admin's own redirect for "<object id>/…" (302).
    unknown = 404 if value.isascii() and value.isdigit() else 302
    assert client.get(f"{UPDATES}{value}/live-diff/").status_code == unknown
    assert client.post(f"{UPDATES}{value}/revert/").status_code == unknown
    assert client.get(f"{IMPORTS}{value}/status/").status_code == unknown
