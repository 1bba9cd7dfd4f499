"""Attribute mappings: every type's normal form and every refusal, the audited mapping service,
its admin, and the staging form built from a connection's active mappings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.helpers import another_value
from tests.conftest import make_connection, make_mapping, make_user
from updates import mappings, workflow
from updates.errors import Refused
from updates.forms import staging_form_class
from updates.models import AttributeMapping, AuditEvent, ProfileUpdate

T = AttributeMapping.ValueType


def m(value_type=T.TEXT, **kwargs) -> AttributeMapping:
    """An unsaved mapping: normalisation needs no database."""
    kwargs.setdefault("source_name", "field")
    kwargs.setdefault("target_name", "attr")
    return AttributeMapping(value_type=value_type, **kwargs)


# --- normal forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("mapping, raw, sent", [
    (m(T.TEXT, trim=True), "  Gold  ", "Gold"),
    (m(T.TEXT), "  Gold  ", "  Gold  "),  # no transformation unless the mapping chooses one
    (m(T.TEXT, case_transform="lower"), "GoLd", "gold"),
    (m(T.TEXT, case_transform="upper"), "GoLd", "GOLD"),
    (m(T.TEXT), "Zürich & co = 100%", "Zürich & co = 100%"),
    (m(T.INTEGER), "042", "42"),
    (m(T.INTEGER), "+7", "7"),
    (m(T.INTEGER), "-0012", "-12"),
    (m(T.INTEGER), 17.0, "17"),
    (m(T.INTEGER), 12345678901234567890, "12345678901234567890"),
    (m(T.DECIMAL), "1.50E3", "1500"),
    (m(T.DECIMAL), "12.500", "12.5"),
    (m(T.DECIMAL), "1,234.50", "1234.5"),
    (m(T.DECIMAL), "-0.000", "0"),
    (m(T.DECIMAL), "1e-7", "0.0000001"),
    (m(T.DECIMAL), Decimal("2.10"), "2.1"),
    (m(T.BOOLEAN), "YES", "true"),
    (m(T.BOOLEAN), "on", "true"),
    (m(T.BOOLEAN), "1", "true"),
    (m(T.BOOLEAN), "N", "false"),
    (m(T.BOOLEAN), "Off", "false"),
    (m(T.BOOLEAN), False, "false"),
    (m(T.DATE), "2024-02-29", "2024-02-29"),
    (m(T.DATE), "2024-02-29T00:00:00", "2024-02-29"),
    (m(T.DATE), dt.date(2024, 5, 1), "2024-05-01"),
    (m(T.DATE), dt.datetime(2024, 5, 1), "2024-05-01"),
    (m(T.DATETIME), "2024-05-01T10:30:00", "2024-05-01T10:30:00Z"),
    (m(T.DATETIME), "2024-05-01T12:30:00+02:00", "2024-05-01T10:30:00Z"),
    (m(T.DATETIME), "2024-05-01T10:30:00.987Z", "2024-05-01T10:30:00Z"),
    (m(T.DATETIME), "2024-05-01 10:30", "2024-05-01T10:30:00Z"),
    (m(T.DATETIME), dt.datetime(2024, 5, 1, 10, 30, tzinfo=dt.timezone.utc), "2024-05-01T10:30:00Z"),
    (m(T.CHOICE, choices="applied\nfunded\n", trim=True), " funded ", "funded"),
    (m(T.CHOICE, choices="APPLIED\nFUNDED", case_transform="upper"), "funded", "FUNDED"),
    (m(T.TEXT, send_empty=True, trim=True), "   ", ""),
    (m(T.TEXT, pattern=r"[A-Z]{2}\d{3}"), "AB123", "AB123"),
], ids=lambda v: repr(v) if not isinstance(v, AttributeMapping) else f"{v.value_type}")
def test_each_type_is_sent_in_its_documented_normal_form(mapping, raw, sent):
    assert mappings.normalise_value(mapping, raw) == sent


@pytest.mark.parametrize("mapping, raw", [
    (m(T.TEXT), "Gold"), (m(T.INTEGER), "42"), (m(T.DECIMAL), "1500"), (m(T.DECIMAL), "0.5"),
    (m(T.BOOLEAN), "true"), (m(T.DATE), "2024-05-01"), (m(T.DATETIME), "2024-05-01T10:30:00Z"),
    (m(T.CHOICE, choices="funded"), "funded"),
], ids=lambda v: repr(v) if not isinstance(v, AttributeMapping) else f"{v.value_type}")
def test_a_normal_form_normalises_to_itself(mapping, raw):
    assert mappings.normalise_value(mapping, raw) == raw


@pytest.mark.parametrize("mapping, raw, reason", [
    (m(T.INTEGER), "4.5", "is not a whole number"),
    (m(T.INTEGER), "1 000", "is not a whole number"),
    (m(T.INTEGER), "ten", "is not a whole number"),
    (m(T.DECIMAL), "12,5", "is not a decimal number"),
    (m(T.DECIMAL), "abc", "is not a decimal number"),
    (m(T.DECIMAL), "Infinity", "is not a finite number"),
    (m(T.DECIMAL), "NaN", "is not a finite number"),
    (m(T.BOOLEAN), "maybe", "is not a yes/no value"),
    (m(T.DATE), "01/05/2024", "is not a date"),
    (m(T.DATE), "2024-02-30", "is not a date"),
    (m(T.DATE), "2024-05-01T10:00", "has a time of day"),
    (m(T.DATETIME), "yesterday", "is not a date and time"),
    (m(T.CHOICE, choices="applied\nfunded"), "Funded", "is not one of the permitted choices"),
    (m(T.TEXT, max_length=5), "abcdef", "6 characters; at most 5"),
    (m(T.TEXT), "x" * 257, "257 characters; at most 256"),
    (m(T.TEXT, pattern=r"[A-Z]{2}\d{3}"), "AB12", "does not match the required pattern"),
    (m(T.TEXT, trim=True), "  ", "does not send empty values"),
    (m(T.INTEGER), " 42", "does not trim"),
    (m(T.DECIMAL), "1.5 ", "does not trim"),
    (m(T.CHOICE, choices="funded"), " funded", "does not trim"),
    (m(T.TEXT, required=True, send_empty=True), "", "a value is required"),
    # From a notebook's DataFrame: their repr() ("b'gold\\xff'") would be stored and sent.
    (m(T.TEXT), b"gold\xff", "a bytes value is not text"),
    (m(T.TEXT), b"gold", "a bytes value is not text"),
    (m(T.TEXT), ["gold"], "a list value is not text"),
    (m(T.TEXT), {"tier": "gold"}, "a dict value is not text"),
], ids=lambda v: repr(v)[:40] if not isinstance(v, AttributeMapping) else f"{v.value_type}")
def test_each_refusal_names_the_field_and_the_reason(mapping, raw, reason):
    with pytest.raises(ValidationError) as caught:
        mappings.normalise_value(mapping, raw)
    message = caught.value.messages[0]
    assert message.startswith("field: ")
    assert reason in message


def test_source_values_map_to_target_names_and_leave_out_optional_empties():
    loan = m(T.CHOICE, source_name="loan_status", target_name="loanStatus", choices="funded")
    note = m(T.TEXT, source_name="note", target_name="callNote")
    clear = m(T.TEXT, source_name="segment", target_name="segment", send_empty=True)
    attributes, errors = mappings.normalise_source_values(
        [loan, note, clear], {"loan_status": "funded", "note": "  ", "segment": ""})
    assert (attributes, errors) == ({"loanStatus": "funded", "segment": ""}, {})


def test_source_values_report_unknown_sources_and_missing_required_ones():
    loan = m(T.CHOICE, source_name="loan_status", target_name="loanStatus", choices="funded",
             required=True)
    attributes, errors = mappings.normalise_source_values([loan], {"colour": "blue"})
    assert attributes == {}
    assert errors == {"colour": "colour: no active mapping has this source name.",
                      "loan_status": "loan_status: a value is required."}


# --- the mapping service ---------------------------------------------------------------------

def test_creating_and_changing_a_mapping_writes_audit_rows_with_before_and_after(operator):
    conn = make_connection("audit")
    mapping = mappings.mapping_save(
        mapping=AttributeMapping(connection=conn, source_name="tier", target_name="loyaltyTier"),
        by=operator)
    mapping.max_length = 40
    mapping.help_text = "Gold, silver or bronze"
    mappings.mapping_save(mapping=mapping, by=operator)
    mappings.mapping_save(mapping=mapping, by=operator)  # nothing changed: no event

    events = list(AuditEvent.objects.filter(mapping=mapping))
    assert [e.action for e in events] == ["mapping_created", "mapping_changed"]
    assert events[0].actor == operator and events[0].connection == conn
    assert events[0].changes["target_name"] == {"before": None, "after": "loyaltyTier"}
    assert events[1].changes == {"max_length": {"before": 256, "after": 40},
                                 "help_text": {"before": "", "after": "Gold, silver or bronze"}}


@pytest.mark.parametrize("field", [
    f for f in AttributeMapping._meta.concrete_fields
    if f.editable and not f.primary_key and f.name != "connection"], ids=lambda f: f.name)
def test_a_change_of_any_field_an_administrator_can_edit_writes_an_audit_row(operator, field):
    """Every editable field of the model, one by one — a field added later included: none
    escapes the audit. (The connection is the mapping's for life: read-only once saved.)"""
    conn = make_connection("every-field")
    mapping = mappings.mapping_save(
        mapping=AttributeMapping(connection=conn, source_name="tier", target_name="loyaltyTier",
                                 choices="gold\nsilver"),
        by=operator)
    before = getattr(mapping, field.name)
    setattr(mapping, field.name, another_value(field, before))
    mappings.mapping_save(mapping=mapping, by=operator)

    event = AuditEvent.objects.filter(mapping=mapping).last()
    assert event.action == "mapping_changed"
    assert event.changes == {field.name: {"before": before, "after": getattr(mapping, field.name)}}


def test_two_active_mappings_may_not_target_the_same_attribute(operator):
    conn = make_connection("uniq")
    make_mapping(conn, "tier", "loyaltyTier")
    twin = AttributeMapping(connection=conn, source_name="tier2", target_name="loyaltyTier")
    with pytest.raises(ValidationError, match="already targets this attribute"):
        mappings.mapping_save(mapping=twin, by=operator)
    assert not AuditEvent.objects.filter(action="mapping_created").exists()
    with pytest.raises(IntegrityError), transaction.atomic():  # the database agrees
        AttributeMapping.objects.create(connection=conn, source_name="tier2",
                                        target_name="loyaltyTier")


def test_an_inactive_mapping_frees_its_target_for_a_new_one(operator):
    conn = make_connection("free")
    old = make_mapping(conn, "tier", "loyaltyTier")
    old.active = False
    mappings.mapping_save(mapping=old, by=operator)
    new = mappings.mapping_save(
        mapping=AttributeMapping(connection=conn, source_name="tier", target_name="loyaltyTier"),
        by=operator)
    assert new.pk != old.pk


@pytest.mark.parametrize("fields, key", [
    ({"target_name": "profile.tier"}, "target_name"),
    ({"target_name": "user.age"}, "target_name"),
    ({"source_name": "identity"}, "source_name"),
    ({"source_name": " tier"}, "source_name"),
    ({"value_type": T.CHOICE, "choices": ""}, "choices"),
    ({"pattern": "([a-z"}, "pattern"),
])
def test_the_service_refuses_a_bad_mapping_on_its_field(operator, fields, key):
    conn = make_connection("bad")
    values = {"source_name": "tier", "target_name": "loyaltyTier", **fields}
    with pytest.raises(ValidationError) as caught:
        mappings.mapping_save(mapping=AttributeMapping(connection=conn, **values), by=operator)
    assert key in caught.value.message_dict
    assert not AttributeMapping.objects.filter(connection=conn).exists()


def test_a_supervisor_may_not_define_mappings(supervisor):
    conn = make_connection("perm")
    with pytest.raises(Refused) as refused:
        mappings.mapping_save(mapping=AttributeMapping(connection=conn, source_name="tier",
                                                       target_name="loyaltyTier"), by=supervisor)
    assert refused.value.code == "permission_denied"
    assert not AttributeMapping.objects.exists()


# --- the mapping admin -----------------------------------------------------------------------

def _mapping_post(conn, **overrides):
    data = {"connection": conn.pk, "source_name": "tier", "target_name": "loyaltyTier",
            "value_type": "text", "trim": "on", "case_transform": "none", "max_length": "256",
            "choices": "", "pattern": "", "help_text": "", "active": "on"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_mapping_admin_saves_through_the_service_and_shows_the_audit_trail(client, operator):
    conn = make_connection("adm")
    client.force_login(operator)
    response = client.post("/admin/updates/attributemapping/add/", _mapping_post(conn))
    assert response.status_code == 302, response.content.decode()[:2000]
    mapping = AttributeMapping.objects.get(connection=conn)
    response = client.post(f"/admin/updates/attributemapping/{mapping.pk}/change/",
                           _mapping_post(conn, max_length="40", connection=None))
    assert response.status_code == 302
    assert [e.action for e in mapping.audit_events.all()] == ["mapping_created", "mapping_changed"]

    page = client.get(f"/admin/updates/attributemapping/{mapping.pk}/change/").content.decode()
    assert "mapping changed" in page and "max_length: 256 → 40" in page
    assert "operator" in page


def test_the_mapping_admin_shows_the_services_refusals_on_the_form(client, operator):
    conn = make_connection("adm2")
    make_mapping(conn, "tier", "loyaltyTier")
    client.force_login(operator)
    response = client.post("/admin/updates/attributemapping/add/",
                           _mapping_post(conn, source_name="tier2"))
    assert response.status_code == 200
    assert "already targets this attribute" in response.content.decode()
    response = client.post("/admin/updates/attributemapping/add/",
                           _mapping_post(conn, source_name="x", target_name="profile.x"))
    assert "must not start with" in response.content.decode()
    assert AttributeMapping.objects.filter(connection=conn).count() == 1


def test_mappings_cannot_be_deleted_in_the_admin(client, admin_user, connection):
    client.force_login(admin_user)
    mapping = connection.mappings.first()
    response = client.post(f"/admin/updates/attributemapping/{mapping.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AttributeMapping.objects.filter(pk=mapping.pk).exists()


# --- the staging form ------------------------------------------------------------------------

@pytest.fixture
def typed_connection(db):
    conn = make_connection("typed")
    make_mapping(conn, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded", required=True)
    make_mapping(conn, "amount", "loanAmount", value_type="decimal")
    make_mapping(conn, "funded_on", "fundedOn", value_type="date")
    make_mapping(conn, "called_at", "calledAt", value_type="datetime")
    make_mapping(conn, "vip", "isVip", value_type="boolean")
    make_mapping(conn, "visits", "visitCount", value_type="integer")
    make_mapping(conn, "segment", "segment", send_empty=True, case_transform="lower")
    make_mapping(conn, "old", "oldAttribute", active=False)
    return conn


def _form_data(form_class, **values):
    data = {"identity_type": "mbox3rdPartyId", "identity": "customer-1", "reason": ""}
    by_source = {mp.source_name: name for name, mp in form_class.mapping_fields.items()}
    for source, value in values.items():
        data[by_source[source]] = value
    return data


def test_the_staging_form_has_one_typed_field_per_active_mapping(typed_connection):
    Form = staging_form_class(typed_connection)
    form = Form()
    labels = {f.label: f for f in form.fields.values()}
    assert "old" not in labels
    assert labels["loan_status"].required and not labels["amount"].required
    assert labels["funded_on"].widget.input_type == "date"
    assert labels["called_at"].widget.input_type == "datetime-local"
    assert [c[0] for c in labels["loan_status"].widget.choices] == ["", "applied", "funded"]
    assert [c[0] for c in labels["vip"].widget.choices] == ["", "true", "false"]
    assert "profile.loanAmount" in labels["amount"].help_text
    assert "sent empty" in labels["segment"].help_text


def test_the_admin_stages_with_the_one_staging_form(typed_connection):
    """One staging base form: the admin's is StagingForm with its own widgets, same fields."""
    from updates.admin.updates import update_form_class
    from updates.forms import StagingForm
    admin_form, plain = update_form_class(typed_connection, None), staging_form_class(typed_connection)
    assert issubclass(admin_form, StagingForm) and issubclass(plain, StagingForm)
    assert set(admin_form.base_fields) == set(plain.base_fields)
    assert "supersede" in plain.base_fields


def test_the_staging_form_keeps_the_normalised_values_that_will_be_sent(typed_connection, operator):
    Form = staging_form_class(typed_connection)
    form = Form(data=_form_data(Form, loan_status="funded", amount="1.50E3",
                                funded_on="2024-05-01", called_at="2024-05-01T10:30", vip="true",
                                visits="007", segment=""))
    assert form.is_valid(), form.errors
    assert form.attributes() == {"loanStatus": "funded", "loanAmount": "1500",
                                 "fundedOn": "2024-05-01", "calledAt": "2024-05-01T10:30:00Z",
                                 "isVip": "true", "visitCount": "7", "segment": ""}
    update = workflow.update_stage(connection=typed_connection, by=operator, **form.service_kwargs())
    assert ProfileUpdate.objects.get(pk=update.pk).attributes == form.attributes()


def test_the_staging_form_refuses_bad_values_on_their_fields(typed_connection):
    Form = staging_form_class(typed_connection)
    form = Form(data=_form_data(Form, loan_status="", amount="lots", visits="4.5"))
    assert not form.is_valid()
    errors = {Form.mapping_fields[name].source_name: msgs for name, msgs in form.errors.items()
              if name in Form.mapping_fields}
    assert set(errors) == {"loan_status", "amount", "visits"}
    assert "is not a decimal number" in errors["amount"][0]


def test_the_staging_form_runs_the_staging_checks_on_the_identity(typed_connection):
    Form = staging_form_class(typed_connection)
    data = _form_data(Form, loan_status="funded")
    data["identity"] = "customer/1"
    form = Form(data=data)
    assert not form.is_valid()
    assert "may not contain '/'" in form.errors["identity"][0]


def test_the_staging_form_refuses_an_update_whose_attribute_lost_its_mapping(
        typed_connection, operator):
    update = workflow.update_stage(connection=typed_connection, by=operator,
                                   identity_type="mbox3rdPartyId", identity="c-9",
                                   attributes={"loanStatus": "funded", "loanAmount": "5"})
    amount = typed_connection.mappings.get(source_name="amount")
    amount.active = False
    mappings.mapping_save(mapping=amount, by=operator)

    Form = staging_form_class(typed_connection, update=update)
    initial = Form.initial_for(update)
    assert initial["identity"] == "c-9"
    form = Form(data={**initial, **{k: v for k, v in initial.items() if v is not None},
                      "not_before": ""})
    assert not form.is_valid()
    assert "loanAmount" in form.non_field_errors()[0]
    assert "cannot be staged" in form.non_field_errors()[0]


def test_an_operator_without_rights_gets_the_form_but_not_the_staging(typed_connection):
    nobody = make_user("nobody")
    Form = staging_form_class(typed_connection)
    form = Form(data=_form_data(Form, loan_status="funded"))
    assert form.is_valid()
    with pytest.raises(Refused) as refused:
        workflow.update_stage(connection=typed_connection, by=nobody, **form.service_kwargs())
    assert refused.value.code == "permission_denied"


# --- patterns cannot stall the system (RE2: linear time, no backtracking) ---------------------

def _finishes(call, seconds: float = 30.0):
    """Run `call` in a thread; its result, or a failure if it is still running after a bound
    only a backtracking engine would reach (Python's re needs hours for the case below)."""
    import threading

    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the pattern check is still running: it backtracks"
    return outcome


def test_a_catastrophic_pattern_ends_at_once_with_a_clear_refusal():
    mapping = m(T.TEXT, pattern=r"^(a+)+$", max_length=1000)
    outcome = _finishes(lambda: mappings.normalise_value(mapping, "a" * 40 + "b"))
    error = outcome["error"]
    assert isinstance(error, ValidationError)
    assert "does not match the required pattern ^(a+)+$" in error.messages[0]
    assert mappings.normalise_value(mapping, "a" * 40) == "a" * 40


@pytest.mark.parametrize("pattern, text", [
    (r"(x+x+)+y", "x" * 5000), (r"(a|aa)*b", "a" * 5000), (r"(\w+\s?)*!", "word " * 1000),
    (r"(.*a){20}", "a" * 19 + "b" * 5000),
])
def test_patterns_that_backtrack_in_python_are_linear_here(pattern, text):
    mapping = m(T.TEXT, pattern=pattern, max_length=60_000)
    outcome = _finishes(lambda: mappings.normalise_value(mapping, text))
    assert "does not match the required pattern" in outcome["error"].messages[0]


@pytest.mark.parametrize("pattern, good, bad", [
    (r"[A-Z]{2}\d{3}", "AB123", "AB1234"),
    (r"^[a-z]+$", "abc", "abc1"),  # anchors are allowed, the whole value must match anyway
    (r"(?i)gold|silver", "GOLD", "bronze"),
    (r"\p{Lu}\p{Ll}+", "Émile", "émile"),
    (r"[^/]{1,10}", "a-b.c", "a/b"),
    (r"(gold|silver)-\d+", "gold-7", "gold-"),
])
def test_ordinary_patterns_keep_their_meaning(pattern, good, bad):
    mapping = m(T.TEXT, pattern=pattern)
    assert mappings.normalise_value(mapping, good) == good
    with pytest.raises(ValidationError, match="does not match the required pattern"):
        mappings.normalise_value(mapping, bad)


@pytest.mark.parametrize("pattern, hint", [
    (r"[a-z]+\Z", "Write \\z"), (r"(?=a)a", "Look-arounds"), (r"(a)\1", "back-references"),
    (r"a{1001}", "repetition"), (r"(a{100}){100}", "repetition"), ("([a-z", "missing ]"),
    ("\ud800", "unpaired surrogate"), ("a\x00", "NUL character"),
])
def test_a_pattern_re2_cannot_run_is_refused_when_saved_with_a_hint(operator, pattern, hint):
    conn = make_connection("re2")
    with pytest.raises(ValidationError) as caught:
        mappings.mapping_save(mapping=AttributeMapping(
            connection=conn, source_name="code", target_name="code", pattern=pattern),
            by=operator)
    assert hint in " ".join(caught.value.message_dict["pattern"])
    assert not AttributeMapping.objects.filter(connection=conn).exists()


def test_a_stored_pattern_re2_cannot_run_refuses_values_and_says_why(operator):
    conn = make_connection("legacy")
    # Stored before this check, or through the ORM.
    make_mapping(conn, "code", "code", pattern=r"(?=x)x")
    mapping = conn.mappings.get()
    with pytest.raises(ValidationError) as caught:
        mappings.normalise_value(mapping, "x")
    assert "its pattern cannot be used" in caught.value.messages[0]
    with pytest.raises(ValidationError):
        workflow.update_stage(connection=conn, by=operator, identity_type="mbox3rdPartyId",
                              identity="c-1", attributes={"code": "x"})
    assert not ProfileUpdate.objects.exists()


# --- rules live in the service: whoever calls mapping_save gets the model's full validation ---

@pytest.mark.parametrize("fields, key", [
    ({"max_length": 0}, "max_length"),
    ({"max_length": 60_001}, "max_length"),
    ({"max_length": 10**9}, "max_length"),
    ({"value_type": "blob"}, "value_type"),
    ({"case_transform": "title"}, "case_transform"),
    ({"source_name": "x" * 129}, "source_name"),
    ({"target_name": ""}, "target_name"),
    ({"help_text": "h" * 301}, "help_text"),
    ({"pattern": "p" * 501}, "pattern"),
])
def test_the_service_refuses_what_the_model_refuses_on_its_field(operator, fields, key):
    conn = make_connection("full")
    values = {"source_name": "tier", "target_name": "loyaltyTier", **fields}
    with pytest.raises(ValidationError) as caught:
        mappings.mapping_save(mapping=AttributeMapping(connection=conn, **values), by=operator)
    assert key in caught.value.message_dict
    assert not AttributeMapping.objects.filter(connection=conn).exists()
    assert not AuditEvent.objects.exists()


def test_a_change_through_the_service_is_refused_and_the_stored_mapping_kept(operator):
    conn = make_connection("chg")
    mapping = mappings.mapping_save(mapping=AttributeMapping(
        connection=conn, source_name="tier", target_name="loyaltyTier"), by=operator)
    mapping.max_length = 0
    mapping.case_transform = "title"
    with pytest.raises(ValidationError) as caught:
        mappings.mapping_save(mapping=mapping, by=operator)
    assert {"max_length", "case_transform"} <= set(caught.value.message_dict)
    stored = AttributeMapping.objects.get(pk=mapping.pk)
    assert (stored.max_length, stored.case_transform) == (256, "none")
    assert AuditEvent.objects.filter(mapping=mapping).count() == 1


def test_a_mapping_without_a_connection_is_refused_on_that_field(operator):
    with pytest.raises(ValidationError) as caught:
        mappings.mapping_save(mapping=AttributeMapping(source_name="a", target_name="a"),
                              by=operator)
    assert "connection" in caught.value.message_dict


def test_the_admin_form_shows_the_services_field_errors(client, operator):
    conn = make_connection("adm3")
    client.force_login(operator)
    for overrides, says in [({"max_length": "0"}, "greater than or equal to 1"),
                            ({"pattern": r"(?=a)a"}, "Look-arounds")]:
        response = client.post("/admin/updates/attributemapping/add/",
                               _mapping_post(conn, **overrides))
        assert response.status_code == 200
        assert says in response.content.decode()
    assert not AttributeMapping.objects.filter(connection=conn).exists()


# --- defaults that keep the promise: no transformation unless chosen -----------------------

def test_a_new_mapping_neither_trims_nor_changes_case(operator):
    conn = make_connection("dflt")
    mapping = mappings.mapping_save(mapping=AttributeMapping(
        connection=conn, source_name="note", target_name="callNote"), by=operator)
    assert (mapping.trim, mapping.case_transform) == (False, "none")
    assert mappings.normalise_value(mapping, "  Gold  ") == "  Gold  "


def test_the_mapping_admin_offers_no_trim_by_default(client, operator):
    client.force_login(operator)
    html = client.get("/admin/updates/attributemapping/add/").content.decode()
    assert 'name="trim"' in html
    assert 'name="trim" id="id_trim" checked' not in html


@pytest.mark.parametrize("fields, says", [
    ({}, "Sent exactly as typed: no trimming, no change of case."),
    ({"trim": True}, "Before it is sent, surrounding spaces are removed."),
    ({"case_transform": "lower"}, "Before it is sent, it is changed to lower case."),
    ({"trim": True, "case_transform": "upper"},
     "Before it is sent, surrounding spaces are removed and it is changed to UPPER CASE."),
    ({"value_type": "integer"}, "Not trimmed: surrounding spaces are refused."),
])
def test_the_staging_form_says_which_transform_applies(fields, says):
    from updates.forms import MappingField

    assert says in MappingField(m(**fields)).help_text


def test_the_staged_value_is_the_transformed_one_and_the_page_shows_it(client, operator):
    conn = make_connection("shown")
    make_mapping(conn, "tier", "loyaltyTier", trim=True, case_transform="lower")
    client.force_login(operator)
    Form = staging_form_class(conn)
    data = _form_data(Form, tier="  GOLD ")
    response = client.post(f"/admin/updates/profileupdate/add/?connection={conn.pk}",
                           {**data, "not_before_0": "", "not_before_1": ""})
    assert response.status_code == 302, response.content.decode()[:3000]
    update = ProfileUpdate.objects.get()
    assert update.attributes == {"loyaltyTier": "gold"}
    page = client.get(f"/admin/updates/profileupdate/{update.pk}/change/").content.decode()
    assert '<td class="po-value">gold</td>' in page


def test_an_import_against_a_catastrophic_pattern_is_refused_row_by_row_at_once(operator):
    from updates import importing

    conn = make_connection("imp")
    make_mapping(conn, "code", "code", pattern=r"^(a+)+$", max_length=100)
    rows = "".join(f"mbox3rdPartyId,c-{n},{'a' * 40}b\r\n" for n in range(200))
    data = ("identity_type,identity,code\r\n" + rows).encode()
    # In this thread (the test's database transaction); the engine is the one timed above.
    job = importing.import_job_create(connection=conn, file_name="codes.csv", file_data=data,
                                      by=operator)
    assert (job.status, job.error_count) == ("invalid", 200)
    assert "does not match the required pattern" in job.errors[0]["message"]
    assert not ProfileUpdate.objects.exists()
