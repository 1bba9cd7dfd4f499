"""The profile read protocol (updates/target.py, reader part): requests and answers, no network."""

from __future__ import annotations

import json

import pytest

from updates import target
from updates.target import ReadOutcome


@pytest.mark.parametrize("identity_type, identity, path", [
    ("mboxPC", "1368007744041-575948.01_00", "/rest/v1/profiles/1368007744041-575948.01_00"),
    ("mbox3rdPartyId", "CUST-1", "/rest/v1/profiles/thirdPartyId/CUST-1"),
    ("mbox3rdPartyId", "a/b?c#d%e f&g", "/rest/v1/profiles/thirdPartyId/a%2Fb%3Fc%23d%25e%20f%26g"),
    ("mbox3rdPartyId", "Zoë", "/rest/v1/profiles/thirdPartyId/Zo%C3%AB"),
])
def test_the_identity_is_one_percent_encoded_path_segment(identity_type, identity, path):
    request = target.build_read_request(base_url="http://127.0.0.1:9/", client_code="acme",
                                        identity_type=identity_type, identity=identity)
    assert request.url == f"http://127.0.0.1:9{path}?client=acme"
    assert "Authorization" not in request.headers


def test_the_token_is_a_bearer_header_and_never_in_the_repr():
    request = target.build_read_request(base_url="http://x", client_code="acme",
                                        identity_type="mboxPC", identity="1", token="s3cret")
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(request)


@pytest.mark.parametrize("identity_type, identity", [("ecid", "1"), ("mboxPC", "")])
def test_an_unknown_identity_type_or_empty_identity_is_refused(identity_type, identity):
    with pytest.raises(ValueError):
        target.build_read_request(base_url="http://x", client_code="acme",
                                  identity_type=identity_type, identity=identity)


def test_a_found_profile_gives_each_value_with_its_modified_at():
    body = json.dumps({"client": "acme", "visitorId": "c-1", "modifiedAt": "2026-01-02T00:00:00Z",
                       "profileAttributes": {"tier": {"value": "gold",
                                                      "modifiedAt": "2026-01-01T10:00:00.000Z"}}})
    answer = target.read_profile_answer(200, body)
    assert answer.found and answer.outcome == ReadOutcome.FOUND
    assert answer.attributes == {"tier": {"value": "gold", "modifiedAt": "2026-01-01T10:00:00.000Z"}}
    assert target.parse_modified_at("2026-01-01T10:00:00.000Z").isoformat() == \
        "2026-01-01T10:00:00+00:00"


@pytest.mark.parametrize("status, body, outcome", [
    (404, '{"status": 404, "message": "No profile found for client acme with mboxPC=1"}',
     ReadOutcome.NOT_FOUND),
    (404, "<html>Not Found</html>", ReadOutcome.PERMANENT),
    (401, "", ReadOutcome.PERMANENT),
    (429, "", ReadOutcome.TRANSIENT),
    (503, "", ReadOutcome.TRANSIENT),
    (200, "<html>maintenance</html>", ReadOutcome.UNEXPECTED),
    (200, '{"profileAttributes": []}', ReadOutcome.UNEXPECTED),
])
def test_answers_are_classed_as_for_updates(status, body, outcome):
    answer = target.read_profile_answer(status, body)
    assert answer.outcome == outcome and answer.attributes == {}


def test_a_transport_failure_keeps_only_the_exception_type():
    answer = target.read_transport_failure(ConnectionError("http://x/rest/v1/profiles/secret-id"))
    assert answer.outcome == ReadOutcome.TRANSIENT and "secret" not in answer.error
