"""Hostile input through the whole path: staged → submitted → approved → sent to the emulator.

Arbitrary Unicode identities (both types), attribute names (as a mapping's target name) and
values either

- are staged, and after submit, approve and `sending.send_due` arrive at the emulator exactly
  as staged — the same characters, so the same UTF-8 bytes, after the emulator's strict
  decoding — with the update acknowledged; or
- are refused with a ValidationError naming the field (`identity`, `attributes`, or for a
  mapping `target_name`), with not one row written.

Anything else — another exception, a 4xx from the emulator, a value that changed on the way, a
row left behind by a refusal — fails the test. Each example runs in a savepoint that is rolled
back afterwards (conftest.rolled_back), against one emulator reset per example.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import event, example, given
from hypothesis import strategies as st

from updates import mappings, sending, workflow
from updates.models import AttributeMapping, ProfileUpdate, UpdateStatus

from .conftest import rolled_back, row_counts
from .strategies import (HOSTILE, acceptable_third_party_id, any_text, encodable_text,
                         hostile_text, identity_types, long_text)

SAFE_IDENTITY = "customer-1"
SAFE_NAME = "note"
SAFE_VALUE = "v"


def add_mapping(connection, target_name: str, by, number: int = 0) -> AttributeMapping:
    """A text mapping that passes values through untouched: no trimming, no case change, long
    values allowed (the 60 KB request limit is then the only bound)."""
    mapping = AttributeMapping(connection=connection, source_name=f"column_{number}",
                               target_name=target_name, max_length=60_000, trim=False)
    return mappings.mapping_save(mapping=mapping, by=by)


def stage_or_refusal(connection, by, **content) -> ProfileUpdate | ValidationError:
    """The staged draft, or the ValidationError that refused it — after checking the refusal
    wrote nothing. Any other exception propagates and fails the example."""
    before = row_counts()
    try:
        return workflow.update_stage(connection=connection, by=by, **content)
    except ValidationError as refusal:
        assert row_counts() == before, "a refused staging left rows behind"
        return refusal


def deliver(update: ProfileUpdate, *, operator, supervisor, emulator) -> dict:
    """Submit, approve and send `update`; the one request the emulator received for it."""
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    emulator.reset()
    run = sending.send_due(connection=update.connection)
    update.refresh_from_db()
    assert (run.acknowledged, run.failed) == (1, 0), update.last_error
    assert update.status == UpdateStatus.SENT, update.last_error
    received = emulator.received
    assert len(received) == 1, received
    assert received[0]["outcome"] == "acknowledged", received[0]["error"]
    return received[0]


def assert_arrived_unchanged(record: dict, identity_type: str, identity: str,
                             attributes: dict[str, str]) -> None:
    assert record["identity_type"] == identity_type
    assert record["identity"] == identity
    assert record["attributes"] == attributes
    # Spelled out: equal text means equal UTF-8 bytes — no normalisation, no replacement chars.
    assert record["identity"].encode("utf-8") == identity.encode("utf-8")
    for name, value in attributes.items():
        assert record["attributes"][name].encode("utf-8") == value.encode("utf-8")


def assert_stored_unchanged(update: ProfileUpdate, identity: str, attributes: dict[str, str]):
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.identity == identity
    assert fresh.attributes == attributes


@pytest.fixture
def note_mapping(hostile_connection, operator):
    return add_mapping(hostile_connection, SAFE_NAME, operator)


# --- identities ----------------------------------------------------------------------------

@HOSTILE
@given(identity_type=identity_types,
       identity=st.one_of(hostile_text, encodable_text, encodable_text, long_text))
@example(identity_type="mbox3rdPartyId", identity="a&b=c+d%e#f?g h")
@example(identity_type="mbox3rdPartyId", identity="ü😀e\u0301שלום\u202e")
@example(identity_type="mboxPC", identity="1368007744041-575948.01_00")
@example(identity_type="mbox3rdPartyId", identity="nul\x00inside")
@example(identity_type="mbox3rdPartyId", identity="lone\ud800surrogate")
@example(identity_type="mbox3rdPartyId", identity="line\nbreak")
@example(identity_type="mboxPC", identity="a" * 129)
def test_any_identity_arrives_unchanged_or_is_refused_naming_the_identity(
        hostile_connection, note_mapping, operator, supervisor, module_emulator,
        identity_type, identity):
    with rolled_back():
        outcome = stage_or_refusal(hostile_connection, operator, identity_type=identity_type,
                                   identity=identity, attributes={SAFE_NAME: SAFE_VALUE})
        if isinstance(outcome, ValidationError):
            assert set(outcome.message_dict) == {"identity"}, outcome.message_dict
            event("refused")
            return
        event("sent")
        assert_stored_unchanged(outcome, identity, {SAFE_NAME: SAFE_VALUE})
        record = deliver(outcome, operator=operator, supervisor=supervisor,
                         emulator=module_emulator)
        assert_arrived_unchanged(record, identity_type, identity, {SAFE_NAME: SAFE_VALUE})


@HOSTILE
@given(identity=acceptable_third_party_id)
@example(identity="&mboxPC=x")
@example(identity="%zz%20-%")
@example(identity="\U0010ffff" * 256)
def test_a_printable_customer_id_without_plus_or_slash_is_always_accepted_and_arrives_unchanged(
        hostile_connection, note_mapping, operator, supervisor, module_emulator, identity):
    # The counterpart of the test above: proves the either/or is not met by refusing everything.
    with rolled_back():
        update = workflow.update_stage(connection=hostile_connection, by=operator,
                                       identity_type="mbox3rdPartyId", identity=identity,
                                       attributes={SAFE_NAME: SAFE_VALUE})
        record = deliver(update, operator=operator, supervisor=supervisor,
                         emulator=module_emulator)
        assert_arrived_unchanged(record, "mbox3rdPartyId", identity, {SAFE_NAME: SAFE_VALUE})


@pytest.mark.parametrize("identity, why", [
    ("nul\x00", "NUL"),
    ("\ud800", "surrogate"),
    ("\udfffx", "surrogate"),
    (" padded", "whitespace"),
    ("tab\tinside", "control character"),
    ("a+b", "'+'"),
    ("a/b", "'/'"),
    ("x" * 257, "at most 256"),
    ("", "empty"),
    ("\ufeffbom", "U+FEFF"),
    ("customer-\u202e24", "U+202E"),
    ("cust\u200bomer", "U+200B"),
])
def test_identities_that_cannot_travel_are_refused_with_the_reason(
        hostile_connection, note_mapping, operator, identity, why):
    before = row_counts()
    with pytest.raises(ValidationError) as refused:
        workflow.update_stage(connection=hostile_connection, by=operator,
                              identity_type="mbox3rdPartyId", identity=identity,
                              attributes={SAFE_NAME: SAFE_VALUE})
    assert why in " ".join(refused.value.message_dict["identity"])
    assert row_counts() == before


# --- attribute names (a mapping's target name) ------------------------------------------------

@HOSTILE
@given(names=st.lists(st.one_of(hostile_text, encodable_text), min_size=1, max_size=3,
                      unique=True))
@example(names=["a&b=c", "x+y%z", "q?r#s/t"])
@example(names=["名前", "😀", "e\u0301"])
@example(names=["profile.x"])
@example(names=["user.agent"])
@example(names=["with\x00nul"])
@example(names=["\udc80"])
@example(names=[" padded"])
def test_any_attribute_name_a_mapping_accepts_arrives_unchanged_and_the_rest_are_refused(
        hostile_connection, operator, supervisor, module_emulator, names):
    with rolled_back():
        accepted = []
        for number, name in enumerate(names):
            before = row_counts()
            try:
                add_mapping(hostile_connection, name, operator, number)
            except ValidationError as refusal:
                assert "target_name" in refusal.message_dict, refusal.message_dict
                assert row_counts() == before
            else:
                accepted.append(name)
        event(f"{len(accepted)} of {len(names)} names accepted")
        if not accepted:
            return
        attributes = {name: f"value of {name}" for name in accepted}
        # A name the mapping service accepted must be stageable: the two checks agree.
        update = workflow.update_stage(connection=hostile_connection, by=operator,
                                       identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY,
                                       attributes=attributes)
        assert_stored_unchanged(update, SAFE_IDENTITY, attributes)
        record = deliver(update, operator=operator, supervisor=supervisor,
                         emulator=module_emulator)
        assert_arrived_unchanged(record, "mbox3rdPartyId", SAFE_IDENTITY, attributes)


@HOSTILE
@given(name=hostile_text)
def test_an_unmapped_attribute_name_is_refused_naming_the_attributes(
        hostile_connection, note_mapping, operator, name):
    with rolled_back():
        before = row_counts()
        with pytest.raises(ValidationError) as refused:
            workflow.update_stage(connection=hostile_connection, by=operator,
                                  identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY,
                                  attributes={SAFE_NAME: SAFE_VALUE, name + "\u2063": "x"})
        assert set(refused.value.message_dict) == {"attributes"}
        assert row_counts() == before


# --- values --------------------------------------------------------------------------------

@HOSTILE
@given(identity_type=identity_types,
       identity=st.one_of(st.just(SAFE_IDENTITY), st.just(SAFE_IDENTITY), encodable_text),
       values=st.lists(any_text, min_size=1, max_size=3))
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY,
         values=["a&b=c+d%e#f?g/h i", "line 1\r\nline 2\n", "😀e\u0301שלום\u202e\ufeff"])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=["&" * 2_700])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=["é" * 10_000])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=["x" * 60_000])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=["\x00"])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=["\ud83d"])
@example(identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY, values=[""])
def test_any_values_arrive_unchanged_by_get_or_post_or_are_refused_naming_the_field(
        hostile_connection, operator, supervisor, module_emulator, identity_type, identity,
        values):
    with rolled_back():
        attributes = {}
        for number, value in enumerate(values):
            name = f"attr{number}"
            add_mapping(hostile_connection, name, operator, number)
            attributes[name] = value
        outcome = stage_or_refusal(hostile_connection, operator, identity_type=identity_type,
                                   identity=identity, attributes=attributes)
        if isinstance(outcome, ValidationError):
            assert set(outcome.message_dict) <= {"identity", "attributes"}, outcome.message_dict
            assert outcome.message_dict, "a refusal names at least one field"
            event(f"refused: {', '.join(sorted(outcome.message_dict))}")
            return
        event(f"sent by {sending.request_for(outcome).method}")
        assert_stored_unchanged(outcome, identity, attributes)
        record = deliver(outcome, operator=operator, supervisor=supervisor,
                         emulator=module_emulator)
        assert_arrived_unchanged(record, identity_type, identity, attributes)


@pytest.mark.parametrize("value, method", [("x" * 7_000, "GET"), ("&" * 2_800, "POST"),
                                           ("😀" * 4_000, "POST")])
def test_long_values_take_the_method_their_size_needs_and_still_arrive_unchanged(
        hostile_connection, note_mapping, operator, supervisor, module_emulator, value, method):
    update = workflow.update_stage(connection=hostile_connection, by=operator,
                                   identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY,
                                   attributes={SAFE_NAME: value})
    record = deliver(update, operator=operator, supervisor=supervisor, emulator=module_emulator)
    assert record["method"] == method
    assert_arrived_unchanged(record, "mbox3rdPartyId", SAFE_IDENTITY, {SAFE_NAME: value})


def test_a_value_past_the_60_kb_request_limit_is_refused_at_staging_never_queued(
        hostile_connection, note_mapping, operator):
    before = row_counts()
    with pytest.raises(ValidationError) as refused:
        workflow.update_stage(connection=hostile_connection, by=operator,
                              identity_type="mbox3rdPartyId", identity=SAFE_IDENTITY,
                              attributes={SAFE_NAME: "😀" * 6_000})
    assert "60 KB" in " ".join(refused.value.message_dict["attributes"])
    assert row_counts() == before
