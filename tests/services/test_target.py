"""The Single Profile Update protocol (updates/target.py), on its own: no database, no network."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings, strategies as st

from updates import target

BASE = "http://127.0.0.1:8765"
TRICKY = "a&b=c+d%e#f/g?h i\u00e9\U0001F600\nMiXeD"


def build(attributes=None, identity="customer-1", identity_type="mbox3rdPartyId", **kwargs):
    return target.build_request(
        base_url=kwargs.pop("base_url", BASE), client_code=kwargs.pop("client_code", "acme"),
        identity_type=identity_type, identity=identity,
        attributes={"loanStatus": "funded"} if attributes is None else attributes, **kwargs)


def decoded(params: str) -> list[tuple[str, str]]:
    return parse_qsl(params, keep_blank_values=True, strict_parsing=True, encoding="utf-8",
                     errors="strict")


# --- building the request --------------------------------------------------------------------

def test_request_goes_to_the_update_path_of_the_client_code_on_the_base_url():
    request = build(base_url=BASE + "/")
    assert request.method == "GET"
    assert request.url == f"{BASE}/m2/acme/profile/update?mbox3rdPartyId=customer-1&profile.loanStatus=funded"
    assert request.body is None


def test_identity_comes_first_and_every_attribute_carries_the_profile_prefix():
    request = build({"b": "2", "a": "1"}, identity="1368007744041-575948.01_00",
                    identity_type="mboxPC")
    assert decoded(urlsplit(request.url).query) == [
        ("mboxPC", "1368007744041-575948.01_00"), ("profile.a", "1"), ("profile.b", "2")]


def test_a_space_is_encoded_as_percent_20_never_as_plus():
    request = build({"first name": "Jo Ann"})
    query = urlsplit(request.url).query
    assert "profile.first%20name=Jo%20Ann" in query
    assert "+" not in query


def test_reserved_characters_non_ascii_emoji_and_newlines_are_percent_encoded_as_utf8():
    request = build({TRICKY: TRICKY})
    query = urlsplit(request.url).query
    # Only unreserved characters, '%' escapes and the separators remain.
    assert set(query) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%&=")
    assert "%C3%A9" in query and "%F0%9F%98%80" in query and "%0A" in query
    assert decoded(query) == [("mbox3rdPartyId", "customer-1"), (f"profile.{TRICKY}", TRICKY)]


def test_names_and_values_keep_their_case():
    query = urlsplit(build({"LoyaltyTier": "GoLd"}).url).query
    assert "profile.LoyaltyTier=GoLd" in query


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
       value=st.text(max_size=40))
def test_any_unicode_name_and_value_decode_back_to_themselves(name, value):
    try:
        value.encode("utf-8")
        name.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates are refused when staged (validation.py)
    request = build({name: value})
    assert dict(decoded(urlsplit(request.url).query))[f"profile.{name}"] == value


def _fill_to(total_url_bytes: int) -> dict[str, str]:
    """Attributes that make the GET URL exactly `total_url_bytes` long."""
    bare = len(build({"note": ""}).url)
    return {"note": "x" * (total_url_bytes - bare)}


def test_get_while_the_whole_url_is_at_most_8192_bytes():
    request = build(_fill_to(8192))
    assert request.method == "GET"
    assert request.size == len(request.url) == 8192


def test_post_with_a_form_body_once_the_url_would_be_8193_bytes():
    attributes = _fill_to(8193)
    request = build(attributes)
    assert request.method == "POST"
    assert request.url == f"{BASE}/m2/acme/profile/update"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert decoded(request.body.decode("ascii")) == [
        ("mbox3rdPartyId", "customer-1"), ("profile.note", attributes["note"])]
    assert request.size == len(request.body)


def test_the_get_limit_counts_bytes_of_the_encoded_url_not_characters():
    # One "é" is 6 bytes once encoded (%C3%A9).
    bare = len(build({"note": ""}).url)
    fits = build({"note": "\u00e9" * ((8192 - bare) // 6)})
    assert fits.method == "GET"
    too_long = build({"note": "\u00e9" * ((8192 - bare) // 6 + 1)})
    assert too_long.method == "POST"


def _body_of(size: int) -> dict[str, str]:
    bare = target.encoded_size("mbox3rdPartyId", "customer-1", {"note": ""})
    return {"note": "y" * (size - bare)}


def test_a_post_body_of_exactly_61440_bytes_is_allowed():
    request = build(_body_of(61_440))
    assert request.method == "POST" and len(request.body) == 61_440


def test_a_body_over_61440_bytes_cannot_be_sent():
    with pytest.raises(target.RequestTooLarge):
        build(_body_of(61_441))


def test_the_bearer_token_is_sent_as_authorization_header_and_kept_out_of_repr():
    request = build(token="s3cret-token")
    assert request.headers == {"Authorization": "Bearer s3cret-token"}
    assert "s3cret-token" not in repr(request)


def test_no_authorization_header_without_a_token():
    assert "Authorization" not in build().headers


def test_an_unknown_identity_type_is_refused():
    with pytest.raises(ValueError):
        build(identity_type="ecid")


# --- reading the answer -----------------------------------------------------------------------

@pytest.mark.parametrize("status,body", [
    (200, "trueRequest successfully submitted"),
    (200, "  trueRequest successfully submitted\r\n"),
    (202, "trueRequest successfully submitted"),
])
def test_a_2xx_with_the_acknowledgment_body_is_acknowledged(status, body):
    answer = target.read_answer(status, body)
    assert answer.outcome == target.Outcome.ACKNOWLEDGED
    assert answer.http_status == status


@pytest.mark.parametrize("body", [
    "", "true", "trueRequest successfully submitted.", "TRUEREQUEST SUCCESSFULLY SUBMITTED",
    "<html><body>maintenance</body></html>",
])
def test_a_2xx_without_the_exact_acknowledgment_is_an_unexpected_answer_kept_verbatim(body):
    answer = target.read_answer(200, body)
    assert answer.outcome == target.Outcome.UNEXPECTED
    assert answer.body == body


def test_the_acknowledgment_outside_2xx_is_not_an_acknowledgment():
    assert target.read_answer(500, "trueRequest successfully submitted").outcome == \
        target.Outcome.TRANSIENT


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_429_and_5xx_are_transient(status):
    answer = target.read_answer(status, "busy")
    assert answer.outcome == target.Outcome.TRANSIENT
    assert answer.error == f"HTTP {status}"


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 413, 414, 415])
def test_other_non_2xx_answers_are_permanent(status):
    assert target.read_answer(status, "no").outcome == target.Outcome.PERMANENT


def test_retry_after_in_seconds_is_read():
    assert target.read_answer(429, "", "120").retry_after_seconds == 120.0


def test_retry_after_as_an_http_date_is_read_relative_to_now():
    assert target.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 90) == 90.0


def test_an_unreadable_retry_after_is_ignored():
    assert target.read_answer(503, "", "soon").retry_after_seconds is None


# A few kilobytes of "[" are enough: Python's JSON parser raises RecursionError past ~1,000 levels.
NESTED_PAST_THE_PARSER = "[" * 100_000


def test_json_nested_past_the_parser_is_no_json():
    assert target.json_from_outside(NESTED_PAST_THE_PARSER) is None
    assert target.json_from_outside("not json") is None
    assert target.json_from_outside('{"jobId": ["a"]}') == {"jobId": ["a"]}


def test_a_profile_read_nested_past_the_parser_is_unexpected_not_a_transport_failure():
    answer = target.read_profile_answer(200, '{"profileAttributes": ' + NESTED_PAST_THE_PARSER)
    assert answer.outcome == target.ReadOutcome.UNEXPECTED
    assert target.read_profile_answer(404, NESTED_PAST_THE_PARSER).outcome == (
        target.ReadOutcome.PERMANENT)


def test_long_answers_are_truncated_for_the_record():
    answer = target.read_answer(200, "z" * 10_000)
    assert len(answer.body) == target.ANSWER_KEEP_CHARS


def test_a_transport_failure_is_transient_and_its_message_loses_the_query_string():
    error = ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
        "/m2/acme/profile/update?mbox3rdPartyId=secret-id&profile.note=private (Caused by X)")
    answer = target.transport_failure(error)
    assert answer.outcome == target.Outcome.TRANSIENT
    assert answer.http_status is None
    assert "secret-id" not in answer.error and "private" not in answer.error
    assert answer.error.startswith("ConnectionError: ") and "(Caused by X)" in answer.error


def test_the_protocols_outcomes_are_the_ones_an_attempt_stores():
    from updates.models import SendAttempt

    assert SendAttempt.Outcome is target.Outcome
    assert dict(SendAttempt._meta.get_field("outcome").choices) == {
        o.value: o.label for o in target.Outcome}
    assert str(target.Outcome.ACKNOWLEDGED) == "acknowledged"
