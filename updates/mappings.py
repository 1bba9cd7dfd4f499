"""Attribute mappings: turn what operators type into the exact string Target receives.

Every type has one documented normal form (README, "Attribute mappings"):

    text      the text itself, after the mapping's trim and case transform
    integer   optional '-', digits, no leading zeros, no '+', no separators     "042" -> "42"
    decimal   plain notation, no exponent, no trailing zeros after the point   "1.50E3" -> "1500"
    boolean   "true" or "false"; accepts true/false, yes/no, 1/0, y/n, on/off (any case)
    date      ISO-8601 YYYY-MM-DD; accepts that, or a datetime at midnight
    datetime  ISO-8601 in UTC with a "Z": YYYY-MM-DDTHH:MM:SSZ; a value without an offset is UTC
    choice    one of the mapping's choices, exact case after the transforms

Normalising a normal form returns it unchanged, so the services can check that what is stored
is already normal without knowing where it came from.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import audit
from .errors import require_perm
from .models import AttributeMapping, AuditEvent, TargetConnection
from .permissions import PERM_ADD_MAPPING, PERM_CHANGE_MAPPING
from .validation import attribute_name_errors

Type = AttributeMapping.ValueType
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_INTEGER = re.compile(r"[+-]?\d+\Z")


def _bad(mapping: AttributeMapping, message: str) -> ValidationError:
    return ValidationError(f"{mapping.source_name}: {message}", code="invalid_value")


def normalise_value(mapping: AttributeMapping, raw) -> str:
    """The string to send for `raw` under `mapping`, or a ValidationError saying why not."""
    if raw is None:
        raw = ""
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    elif isinstance(raw, dt.datetime):
        raw = raw.isoformat()
    elif isinstance(raw, dt.date):
        raw = raw.isoformat()
    elif isinstance(raw, float) and raw.is_integer() and mapping.value_type == Type.INTEGER:
        raw = str(int(raw))  # spreadsheets hand integers over as floats
    elif isinstance(raw, (int, float, Decimal, dt.time, dt.timedelta)):
        raw = str(raw)  # what a spreadsheet cell or a DataFrame column can hold besides text
    elif not isinstance(raw, str):
        # bytes (perhaps not even UTF-8), lists, dicts…: their repr() is not what anyone meant.
        raise _bad(mapping, f"a {type(raw).__name__} value is not text, a number or a date; "
                            "convert it to text first.")
    text = raw.strip() if mapping.trim else raw
    if text != text.strip() and mapping.value_type != Type.TEXT and text.strip():
        # Without the mapping's trim, spaces around a number or date are the operator's to
        # remove: refused with the reason, never dropped silently by a parser.
        raise _bad(mapping, "the value starts or ends with spaces, and this mapping does not trim "
                            "(remove them, or choose trim in the mapping).")
    if mapping.case_transform == AttributeMapping.CaseTransform.LOWER:
        text = text.lower()
    elif mapping.case_transform == AttributeMapping.CaseTransform.UPPER:
        text = text.upper()

    if text == "":
        if mapping.required or not mapping.send_empty:
            raise _bad(mapping, "a value is required." if mapping.required else
                       "the value is empty, and this mapping does not send empty values.")
        return ""

    value = _typed(mapping, text)
    if len(value) > mapping.max_length:
        raise _bad(mapping, f"{len(value)} characters; at most {mapping.max_length} are allowed.")
    if mapping.pattern and not _pattern_matches(mapping, value):
        raise _bad(mapping, f"does not match the required pattern {mapping.pattern}.")
    return value


# --- operator patterns: RE2, linear in the value, never backtracking -------------------------
# A mapping's pattern runs on every staged value and import row, so it must not be able to stall
# a worker: RE2 (google-re2) matches in time linear in the value whatever the pattern, instead
# of Python's backtracking `re` with its exponential worst case (`^(a+)+$` on "a" * 40 + "b").
# A deterministic engine rather than a time limit: the answer never depends on the machine's
# load. RE2 refuses look-arounds and back-references; the README says so.

@functools.cache
def _re2():
    """The RE2 module with our options, imported on first use: processes that only send (the
    sender, qcluster workers) never compile a pattern and need not load it."""
    import re2

    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to the operator, not to stderr
    options.never_capture = True  # only "does it match": lets RE2 use its DFA throughout
    return re2, options


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str):
    re2, options = _re2()
    return re2.compile(pattern, options)


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` cannot be a mapping's pattern, or None."""
    try:
        _compiled(pattern)
    except UnicodeError:
        return "Not a valid regular expression: it contains characters that are not valid text."
    except _re2()[0].error as error:
        reason = error.args[0] if error.args else "not a valid regular expression"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = ""
        if "\\Z" in pattern:
            hint = " Write \\z for the end of the value (or nothing: the whole value must match)."
        elif "(?" in pattern or re.search(r"\\[1-9]", pattern):
            hint = " Look-arounds and back-references are not supported (RE2 syntax)."
        return f"Not a valid regular expression: {reason}.{hint}"
    return None


def _pattern_matches(mapping: AttributeMapping, value: str) -> bool:
    if (problem := pattern_error(mapping.pattern)) is not None:
        # Stored before this check existed (or through the ORM): refuse the value, say why.
        raise _bad(mapping, f"its pattern cannot be used ({problem}) — the mapping must be "
                            "corrected first.")
    return _compiled(mapping.pattern).fullmatch(value) is not None


def _typed(mapping: AttributeMapping, text: str) -> str:
    kind = mapping.value_type
    if kind == Type.TEXT:
        return text
    if kind == Type.INTEGER:
        if not _INTEGER.match(text):
            raise _bad(mapping, f"{text[:50]!r} is not a whole number.")
        return str(int(text))
    if kind == Type.DECIMAL:
        try:
            number = Decimal(text.replace(",", "")) if "," in text and "." in text else Decimal(text)
        except InvalidOperation:
            raise _bad(mapping, f"{text[:50]!r} is not a decimal number.") from None
        if not number.is_finite():
            raise _bad(mapping, f"{text[:50]!r} is not a finite number.")
        plain = format(number, "f")
        if "." in plain:
            plain = plain.rstrip("0").rstrip(".")
        return "0" if plain in ("-0", "") else plain
    if kind == Type.BOOLEAN:
        lowered = text.lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise _bad(mapping, f"{text[:50]!r} is not a yes/no value (true/false, yes/no, 1/0).")
    if kind == Type.DATE:
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            pass
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise _bad(mapping, f"{text[:50]!r} is not a date (YYYY-MM-DD).") from None
        if moment.time() != dt.time(0, 0):
            raise _bad(mapping, f"{text[:50]!r} has a time of day; a date was expected.")
        return moment.date().isoformat()
    if kind == Type.DATETIME:
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _bad(mapping, f"{text[:50]!r} is not a date and time (ISO-8601).") from None
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == Type.CHOICE:
        allowed = mapping.choice_list
        if text not in allowed:
            raise _bad(mapping, f"{text[:50]!r} is not one of the permitted choices: {', '.join(allowed)}.")
        return text
    raise _bad(mapping, f"unknown value type {kind!r}.")


def active_mappings(connection: TargetConnection, *, lock: bool = False
                    ) -> list[AttributeMapping]:
    """The connection's active mappings; `lock=True` (inside a transaction) locks their rows so
    no mapping changes before the transaction that checks content against them commits."""
    rows = AttributeMapping.objects.filter(connection=connection, active=True)
    # Locked: ordered without the join the default ordering needs, so only mapping rows lock.
    return list(rows.order_by("source_name").select_for_update() if lock else rows)


# What decides whether content passes a mapping (help text does not).
_RULE_FIELDS = ("pk", "source_name", "target_name", "value_type", "trim", "case_transform",
                "required", "max_length", "choices", "pattern", "send_empty")


def mappings_fingerprint(connection_mappings: list[AttributeMapping]) -> str:
    """A digest of the rules of a set of active mappings: equal digests, equal checks. Content
    checked under one fingerprint may be saved only while the mappings still have it."""
    rules = sorted([str(getattr(m, f)) for f in _RULE_FIELDS] for m in connection_mappings)
    return hashlib.sha256(json.dumps(rules).encode()).hexdigest()


def attribute_errors(mappings: list[AttributeMapping], attributes: dict[str, str]) -> list[str]:
    """Problems with already-normalised attributes (keyed by Target name) under `mappings`."""
    by_target = {m.target_name: m for m in mappings}
    problems = []
    for name, value in attributes.items():
        mapping = by_target.get(name)
        if mapping is None:
            problems.append(
                f"Attribute {name!r} has no active mapping on this connection; "
                "an administrator or operator must define one first."
            )
            continue
        try:
            normal = normalise_value(mapping, value)
        except ValidationError as error:
            problems.extend(error.messages)
            continue
        if normal != value:
            problems.append(
                f"{mapping.source_name}: {value[:50]!r} is not in its normal form "
                f"(it would be sent as {normal[:50]!r})."
            )
    for mapping in mappings:
        if mapping.required and mapping.target_name not in attributes:
            problems.append(f"{mapping.source_name}: a value is required.")
    return problems


def normalise_source_values(
    mappings: list[AttributeMapping], values: dict[str, object]
) -> tuple[dict[str, str], dict[str, str]]:
    """Map {source name: raw value} to ({Target name: normal value}, {source name: error}).

    A source left out, or empty where its mapping neither requires nor sends empties, is simply
    not part of the update.
    """
    attributes: dict[str, str] = {}
    errors: dict[str, str] = {}
    by_source = {m.source_name: m for m in mappings}
    for source, raw in values.items():
        mapping = by_source.get(source)
        if mapping is None:
            errors[source] = f"{source}: no active mapping has this source name."
            continue
        if (raw is None or (isinstance(raw, str) and raw.strip() == "")) and not (
            mapping.required or mapping.send_empty
        ):
            continue
        try:
            attributes[mapping.target_name] = normalise_value(mapping, raw)
        except ValidationError as error:
            errors[source] = error.messages[0]
    for mapping in mappings:
        if mapping.required and mapping.source_name not in values and mapping.source_name not in errors:
            errors[mapping.source_name] = f"{mapping.source_name}: a value is required."
    return attributes, errors


# --- the mapping service: create, change, deactivate, each with its audit row ------------------

# Every field an administrator can change, derived from the model so that no field added later
# escapes the audit. The connection is the mapping's for life (the admin shows it read-only once
# saved) and is the audit row's own column.
_AUDITED_FIELDS = audit.audited_fields(AttributeMapping, leaving_out={"connection"})


def mapping_check(mapping: AttributeMapping) -> None:
    """Field-level checks beyond the model's own (`mapping_validate` runs both)."""
    errors: dict[str, list[str]] = {}
    for field in ("source_name", "choices", "pattern", "help_text"):
        text = getattr(mapping, field) or ""
        if "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text):
            errors[field] = ["Contains a NUL character or an unpaired surrogate, which cannot "
                             "be stored."]
    if problems := attribute_name_errors(mapping.target_name):
        errors["target_name"] = problems
    source = mapping.source_name
    if source.strip() == "" or source != source.strip():
        errors.setdefault("source_name", ["The source name must not be empty or start/end with "
                                          "spaces."])
    elif source in ("identity", "identity_type"):
        errors.setdefault("source_name", ["'identity' and 'identity_type' are reserved import "
                                          "columns."])
    if mapping.value_type == Type.CHOICE and not mapping.choice_list:
        errors.setdefault("choices", ["A choice mapping needs at least one allowed value."])
    if mapping.pattern and "pattern" not in errors and (problem := pattern_error(mapping.pattern)):
        errors["pattern"] = [problem]
    if errors:
        raise ValidationError(errors)


def mapping_validate(mapping: AttributeMapping) -> None:
    """Everything a mapping must satisfy, whoever saves it: the model's full validation (field
    validators, choices, constraints) and mapping_check, in one ValidationError by field."""
    errors: dict[str, list] = {}
    for check in (lambda: mapping_check(mapping),
                  lambda: mapping.full_clean(validate_unique=False, validate_constraints=False)):
        try:
            check()
        except ValidationError as error:
            for field, problems in error.update_error_dict({}).items():
                errors.setdefault(field, []).extend(problems)
    if errors:
        raise ValidationError(errors)
    # Only now the database: the uniqueness queries need text the database can store.
    mapping.validate_constraints()


def mapping_save(*, mapping: AttributeMapping, by) -> AttributeMapping:
    """Create or change a mapping; the audit row records before/after of every changed field."""
    perm = PERM_CHANGE_MAPPING if mapping.pk else PERM_ADD_MAPPING
    require_perm(by, perm, "You may not define or change attribute mappings.")
    mapping_validate(mapping)
    with transaction.atomic():
        old = (AttributeMapping.objects.select_for_update().get(pk=mapping.pk)
               if mapping.pk else None)
        changes = audit.field_changes(old, mapping, _AUDITED_FIELDS)
        created = not mapping.pk
        mapping.save()
        if changes:
            action = (AuditEvent.Action.MAPPING_CREATED if created
                      else AuditEvent.Action.MAPPING_CHANGED)
            audit.record(action, by=by, mapping=mapping, connection=mapping.connection_id,
                         changes=changes)
    return mapping
