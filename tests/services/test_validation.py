"""What is checked when an update is staged (updates/validation.py, via workflow.check_content).

Each rule is exercised through the staging service: the error names the field and the reason,
and nothing — no update, no audit row — is saved. Nothing is trimmed or case-folded for the
operator: what would have to change is refused.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import make_connection, make_mapping
from updates import target, workflow
from updates.models import AuditEvent, ProfileUpdate

pytestmark = pytest.mark.django_db

THIRD_PARTY = "mbox3rdPartyId"
MBOX_PC = "mboxPC"


@pytest.fixture
def refused_staging(stage):
    """refused_staging(**overrides) -> {field: [messages]}, after checking nothing was saved."""

    def _refused(**kwargs) -> dict[str, list[str]]:
        with pytest.raises(ValidationError) as info:
            stage(**kwargs)
        assert not ProfileUpdate.objects.exists()
        assert not AuditEvent.objects.exists()
        return info.value.message_dict

    return _refused


def accepted(stage, **kwargs) -> ProfileUpdate:
    """Stage it, and return it as stored."""
    return ProfileUpdate.objects.get(pk=stage(**kwargs).pk)


# --- mboxPC ----------------------------------------------------------------------------------

@pytest.mark.parametrize("identity", [
    "1368007744041-575948.01_00",           # the documented example
    "0f3a9c2e8b7d4e6fa1b2c3d4e5f60718.35_0",  # 32 hex characters plus a location hint
    "1368007744041-575948",                 # no location hint at all
    "a" * 128,
])
def test_valid_mboxpc_identities_are_stored_verbatim(stage, identity):
    assert accepted(stage, identity_type=MBOX_PC, identity=identity).identity == identity


def test_an_mboxpc_has_at_most_128_characters(refused_staging):
    errors = refused_staging(identity_type=MBOX_PC, identity="a" * 129)
    assert errors == {"identity": ["An mboxPC has at most 128 characters; this one has 129."]}


@pytest.mark.parametrize("identity", ["1368007744041.575948.01_00", "a..b"])
def test_an_mboxpc_has_at_most_one_dot(refused_staging, identity):
    (message,) = refused_staging(identity_type=MBOX_PC, identity=identity)["identity"]
    assert "An mboxPC has at most one '.'" in message and "location hint" in message


@pytest.mark.parametrize("identity", [".01_00", "1368007744041-575948."])
def test_the_dot_of_an_mboxpc_only_separates_the_id_from_its_location_hint(
        refused_staging, identity):
    (message,) = refused_staging(identity_type=MBOX_PC, identity=identity)["identity"]
    assert "separates the id from its location hint" in message


def test_an_mboxpc_contains_no_whitespace(refused_staging):
    errors = refused_staging(identity_type=MBOX_PC, identity="1368007744041 575948.01_00")
    assert errors == {"identity": ["An mboxPC contains no whitespace."]}


# --- mbox3rdPartyId --------------------------------------------------------------------------

def test_an_mbox3rdpartyid_has_at_most_256_characters(stage, refused_staging):
    assert accepted(stage, identity="c" * 256).identity == "c" * 256
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    errors = refused_staging(identity="c" * 257)
    assert errors == {
        "identity": ["An mbox3rdPartyId has at most 256 characters; this one has 257."]}


@pytest.mark.parametrize(("identity", "message"), [
    ("jane+doe@example.com", "An mbox3rdPartyId may not contain '+'."),
    ("crm/4711", "An mbox3rdPartyId may not contain '/'."),
    ("a+b/c", "An mbox3rdPartyId may not contain '+' or '/'."),
])
def test_an_mbox3rdpartyid_contains_no_plus_or_slash(refused_staging, identity, message):
    assert refused_staging(identity=identity) == {"identity": [message]}


def test_an_mbox3rdpartyid_may_hold_other_punctuation_and_keeps_its_case(stage):
    identity = "Jane.Doe@Example.com-ÄÖ_42"
    assert accepted(stage, identity=identity).identity == identity


# --- any identity: never trimmed, never case-folded ------------------------------------------

@pytest.mark.parametrize("identity", ["ABC ", " ABC", "ABC\t"])
@pytest.mark.parametrize("identity_type", [THIRD_PARTY, MBOX_PC])
def test_an_identity_with_surrounding_whitespace_is_refused_not_trimmed(
        refused_staging, identity_type, identity):
    messages = refused_staging(identity_type=identity_type, identity=identity)["identity"]
    assert any("starts or ends with whitespace; it is not trimmed for you" in m for m in messages)


def test_an_identity_is_not_case_folded(stage):
    assert accepted(stage, identity="CustomerABC").identity == "CustomerABC"
    assert accepted(stage, identity="customerabc").identity == "customerabc"


def test_an_empty_identity_is_refused(refused_staging):
    assert refused_staging(identity="") == {"identity": ["The identity is empty."]}


def test_an_identity_with_a_control_character_is_refused(refused_staging):
    errors = refused_staging(identity="customer\n42")
    assert errors == {
        "identity": ["The identity contains a control character (e.g. a line break)."]}


@pytest.mark.parametrize(("identity", "reason"), [
    ("cust\x00omer", "contains a NUL character"),
    ("cust\udc80omer", "contains a lone surrogate character"),
])
def test_an_identity_that_cannot_be_stored_or_sent_as_utf8_is_refused(
        refused_staging, identity, reason):
    (message,) = refused_staging(identity=identity)["identity"]
    assert message.startswith("The identity ") and reason in message


SPOOFING = [
    ("\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("\u200b", "U+200B (ZERO WIDTH SPACE)"),
    ("\u200d", "U+200D (ZERO WIDTH JOINER)"),
    ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("\u00ad", "U+00AD (SOFT HYPHEN)"),
]


@pytest.mark.parametrize(("character", "named"), SPOOFING)
def test_an_identity_with_an_invisible_formatting_character_is_refused(
        refused_staging, character, named):
    # "customer-\u202e24" shows as "customer-42" in the list; it is another visitor.
    (message,) = refused_staging(identity=f"customer-{character}24")["identity"]
    assert message == (f"The identity contains the invisible character {named}; bidirectional "
                       "controls and zero-width characters are refused because they make "
                       "different text look the same.")


def test_an_identity_holding_the_replacement_character_is_refused(refused_staging):
    (message,) = refused_staging(identity="customer-\ufffd42")["identity"]
    assert message == ("The identity contains U+FFFD, the replacement character, which stands "
                       "for bytes that were not valid UTF-8.")


@pytest.mark.parametrize("identity", ["Zürich-straße-42", "顧客-42", "client—42", "😀-42"])
def test_identities_in_any_script_are_accepted(stage, identity):
    assert accepted(stage, identity=identity).identity == identity


@pytest.mark.parametrize(("character", "named"), SPOOFING[:3])
def test_an_attribute_name_with_an_invisible_formatting_character_is_refused(
        refused_staging, connection, character, named):
    name = f"loan{character}Status"
    make_mapping(connection, "spoof", name)  # defined directly: staging must still refuse
    (message,) = refused_staging(attributes={name: "funded"})["attributes"]
    assert message == (f"Attribute name {ascii(name)} contains the invisible character {named}; "
                       "bidirectional controls and zero-width characters are refused because "
                       "they make different text look the same.")


def test_a_mapping_whose_target_name_holds_an_invisible_character_cannot_be_saved(
        connection, operator):
    from updates import mappings
    from updates.models import AttributeMapping
    mapping = AttributeMapping(connection=connection, source_name="spoof",
                               target_name="loan\u200bStatus")
    with pytest.raises(ValidationError) as refused:
        mappings.mapping_save(mapping=mapping, by=operator)
    assert "U+200B" in refused.value.message_dict["target_name"][0]


@pytest.mark.parametrize("identity_type", ["ECID", "mboxpc", "MBOX3RDPARTYID", ""])
def test_the_identity_type_is_mboxpc_or_mbox3rdpartyid_exactly(refused_staging, identity_type):
    (message,) = refused_staging(identity_type=identity_type)["identity_type"]
    assert message.startswith("Identity type must be one of mboxPC, mbox3rdPartyId")
    assert repr(identity_type) in message


# --- attribute names -------------------------------------------------------------------------

def test_an_attribute_name_keeps_its_case_and_names_differing_in_case_are_different(
        stage, refused_staging):
    assert accepted(stage, attributes={"loanStatus": "funded"}).attributes == {
        "loanStatus": "funded"}
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    # The connection maps "loanStatus"; "LoanStatus" is another attribute, and has no mapping.
    (message,) = refused_staging(attributes={"LoanStatus": "funded"})["attributes"]
    assert message.startswith("Attribute 'LoanStatus' has no active mapping on this connection")


def test_an_attribute_name_is_not_empty(refused_staging):
    errors = refused_staging(attributes={"": "funded"})
    assert errors == {"attributes": ["An attribute name is empty."]}


def test_an_attribute_name_has_at_most_128_characters(stage, refused_staging, connection):
    make_mapping(connection, "long_128", "n" * 128)
    assert list(accepted(stage, attributes={"n" * 128: "x"}).attributes) == ["n" * 128]
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    (message,) = refused_staging(attributes={"n" * 129: "x"})["attributes"]
    assert "has 129 characters; Target allows at most 128" in message


@pytest.mark.parametrize("name", ["profile.loanStatus", "Profile.loanStatus", "PROFILE.x"])
def test_an_attribute_name_does_not_start_with_profile(refused_staging, name):
    errors = refused_staging(attributes={name: "funded"})
    assert errors == {"attributes": [
        f"Attribute name {name!r} must not start with 'profile.': the request adds that prefix."]}


@pytest.mark.parametrize(("name", "namespace"), [
    ("user.categoryId", "user."), ("geolocation.city", "geolocation."),
    ("mobile.deviceName", "mobile."), ("User.anything", "user."), ("GEOLOCATION.zip", "geolocation."),
])
def test_an_attribute_name_does_not_collide_with_targets_built_in_namespaces(
        refused_staging, name, namespace):
    errors = refused_staging(attributes={name: "x"})
    assert errors == {"attributes": [
        f"Attribute name {name!r} collides with Target's built-in '{namespace}*' namespace."]}


@pytest.mark.parametrize("name", ["sessionCount", "SessionCount"])
def test_an_attribute_name_is_not_a_target_built_in_attribute(refused_staging, name):
    errors = refused_staging(attributes={name: "3"})
    assert errors == {"attributes": [f"Attribute name {name!r} is a Target built-in attribute."]}


@pytest.mark.parametrize("name", [" loanStatus", "loanStatus ", "loan\nStatus"])
def test_an_attribute_name_with_surrounding_whitespace_or_a_control_character_is_refused(
        refused_staging, connection, name):
    make_mapping(connection, "odd", name)  # defined directly: staging must still refuse
    (message,) = refused_staging(attributes={name: "funded"})["attributes"]
    assert message.startswith(f"Attribute name {name!r} ")
    assert "whitespace" in message or "control character" in message


@pytest.mark.parametrize(("name", "reason"), [
    ("loan\x00Status", "contains a NUL character"),
    ("loan\ud800Status", "contains a lone surrogate character"),
])
def test_an_attribute_name_that_cannot_be_sent_as_utf8_is_refused(refused_staging, name, reason):
    (message,) = refused_staging(attributes={name: "funded"})["attributes"]
    assert message.startswith(f"Attribute name {name!r}") and reason in message


# --- attribute values ------------------------------------------------------------------------

def test_a_value_has_at_most_256_characters_by_default(stage, refused_staging):
    assert accepted(stage, attributes={"loyaltyTier": "g" * 256}).attributes == {
        "loyaltyTier": "g" * 256}
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    errors = refused_staging(attributes={"loyaltyTier": "g" * 257})
    assert errors == {"attributes": [
        "The value of 'loyaltyTier' has 257 characters; at most 256 are allowed."]}


def test_a_mapping_may_raise_the_value_limit(stage, refused_staging):
    # The fixture's callNote mapping allows 1000 characters.
    assert len(accepted(stage, attributes={"callNote": "n" * 1000}).attributes["callNote"]) == 1000
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    errors = refused_staging(attributes={"callNote": "n" * 1001})
    assert errors == {"attributes": [
        "The value of 'callNote' has 1001 characters; at most 1000 are allowed."]}


def test_an_empty_value_is_refused_unless_its_mapping_sends_empties(
        stage, refused_staging, connection):
    errors = refused_staging(attributes={"loyaltyTier": ""})
    assert errors == {"attributes": ["The value of 'loyaltyTier' is empty; an empty value is "
                                     "sent only when its mapping says so."]}
    make_mapping(connection, "segment", "segment", send_empty=True)
    assert accepted(stage, attributes={"segment": ""}).attributes == {"segment": ""}


def test_a_value_is_text(refused_staging):
    errors = refused_staging(attributes={"loyaltyTier": 5})
    assert errors == {"attributes": ["The value of 'loyaltyTier' must be text, not int."]}


@pytest.mark.parametrize(("value", "reason"), [
    ("gold\x00", "contains a NUL character"),
    ("gold\udfff", "contains a lone surrogate character"),
])
def test_a_value_that_cannot_be_stored_or_sent_as_utf8_is_refused(refused_staging, value, reason):
    (message,) = refused_staging(attributes={"loyaltyTier": value})["attributes"]
    assert message.startswith("The value of 'loyaltyTier'") and reason in message


def test_a_value_keeps_its_case_and_characters(stage):
    value = "Gold & Platinum = 100% +1 #vip éà 漢字"
    assert accepted(stage, attributes={"loyaltyTier": value}).attributes == {"loyaltyTier": value}


def test_a_value_with_surrounding_whitespace_is_refused_not_trimmed_by_the_service(
        refused_staging):
    # The callNote mapping trims: its normal form has no surrounding whitespace. The service
    # refuses instead of trimming silently (normalising is the mapping's explicit step).
    (message,) = refused_staging(attributes={"callNote": "  spoke to Jane  "})["attributes"]
    assert message == ("note: '  spoke to Jane  ' is not in its normal form "
                       "(it would be sent as 'spoke to Jane').")


def test_a_value_must_be_in_its_mappings_normal_form(refused_staging):
    # loanStatus is a choice mapping with exact-case choices.
    (message,) = refused_staging(attributes={"loanStatus": "Funded"})["attributes"]
    assert message.startswith("loan_status:") and "not one of the permitted choices" in message


# --- mappings and the connection -------------------------------------------------------------

def test_an_update_needs_at_least_one_attribute(refused_staging):
    assert refused_staging(attributes={}) == {
        "attributes": ["An update needs at least one attribute."]}


def test_an_attribute_whose_mapping_is_inactive_is_refused(refused_staging, connection):
    make_mapping(connection, "old_segment", "segment", active=False)
    (message,) = refused_staging(attributes={"segment": "a"})["attributes"]
    assert message.startswith("Attribute 'segment' has no active mapping on this connection")


def test_an_attribute_mapped_only_on_another_connection_is_refused(refused_staging):
    make_mapping(make_connection("other"), "segment", "segment")
    (message,) = refused_staging(attributes={"segment": "a"})["attributes"]
    assert message.startswith("Attribute 'segment' has no active mapping on this connection")


def test_a_required_mapping_needs_a_value(refused_staging, connection):
    make_mapping(connection, "branch", "branch", required=True)
    errors = refused_staging(attributes={"loanStatus": "funded"})
    assert errors == {"attributes": ["branch: a value is required."]}


def test_nothing_is_staged_for_an_inactive_connection(refused_staging, connection):
    connection.active = False
    connection.save(update_fields=["active"])
    errors = refused_staging()
    assert errors == {"connection": [
        "Connection Connection acme is inactive; nothing can be staged for it."]}


# --- the encoded request ---------------------------------------------------------------------

@pytest.fixture
def big_note(connection):
    make_mapping(connection, "big_note", "bigNote", max_length=60_000)


def _note_of_encoded_size(identity: str, size: int) -> str:
    """A bigNote value whose whole form body is exactly `size` bytes ('é' encodes as 6)."""
    fixed = len(f"mbox3rdPartyId={identity}&profile.bigNote=")
    wide, narrow = divmod(size - fixed, 6)
    return "é" * wide + "a" * narrow


def test_a_request_of_exactly_60_kb_is_accepted(stage, big_note):
    value = _note_of_encoded_size("c-1", target.POST_LIMIT_BYTES)
    update = accepted(stage, identity="c-1", attributes={"bigNote": value})
    assert target.encoded_size(update.identity_type, update.identity, update.attributes) == 61_440


def test_a_request_over_60_kb_is_refused_when_staged(refused_staging, big_note):
    value = _note_of_encoded_size("c-1", target.POST_LIMIT_BYTES + 1)
    assert len(value) < 60_000  # within the mapping's limit: only the request size refuses it
    errors = refused_staging(identity="c-1", attributes={"bigNote": value})
    assert errors == {"attributes": [
        "The encoded request would be 61,441 bytes; Target accepts at most 61,440 bytes (60 KB) "
        "in one request."]}


# --- reason, several problems at once, edits -------------------------------------------------

def test_a_reason_has_at_most_200_characters(stage, refused_staging):
    assert accepted(stage, reason="r" * 200).reason == "r" * 200
    ProfileUpdate.objects.all().delete()
    AuditEvent.objects.all().delete()
    errors = refused_staging(reason="r" * 201)
    assert errors == {"reason": ["The reason has 201 characters; at most 200 are allowed."]}


def test_a_reason_that_cannot_be_stored_is_refused(refused_staging):
    (message,) = refused_staging(reason="funded\x00")["reason"]
    assert "NUL character" in message


def test_every_problem_is_reported_at_once_by_field(refused_staging, connection):
    connection.active = False
    connection.save(update_fields=["active"])
    errors = refused_staging(identity="a/b ", attributes={"profile.x": "1"}, reason="r" * 201)
    assert set(errors) == {"identity", "attributes", "connection", "reason"}
    assert len(errors["identity"]) == 2  # surrounding whitespace, and the '/'


def test_an_edit_is_checked_by_the_same_rules(stage, operator):
    update = stage()
    with pytest.raises(ValidationError) as info:
        workflow.update_edit(update=update, by=operator, attributes={"sessionCount": "1"},
                             reason="r" * 201)
    assert set(info.value.message_dict) == {"attributes", "reason"}
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.attributes == {"loanStatus": "funded"} and stored.reason == ""
    assert AuditEvent.objects.filter(update=update).count() == 1  # the staging only


def test_a_staged_update_that_passes_every_rule_is_saved_exactly_as_given(stage, connection):
    update = accepted(stage, identity_type=MBOX_PC, identity="1368007744041-575948.01_00",
                      attributes={"loanStatus": "funded", "loyaltyTier": "Gold",
                                  "callNote": "Spoke to Jane; she'll call back."},
                      reason="loan funded — call centre")
    assert update.connection == connection
    assert (update.identity_type, update.identity) == (MBOX_PC, "1368007744041-575948.01_00")
    assert update.attributes == {"loanStatus": "funded", "loyaltyTier": "Gold",
                                 "callNote": "Spoke to Jane; she'll call back."}
