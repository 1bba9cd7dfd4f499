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
import re
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from .models import AttributeMapping, AuditEvent, TargetConnection
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
    elif not isinstance(raw, str):
        raw = str(raw)
    text = raw.strip() if mapping.trim else raw
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
    if mapping.pattern and not re.fullmatch(mapping.pattern, value):
        raise _bad(mapping, f"does not match the required pattern {mapping.pattern}.")
    return value


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


def active_mappings(connection: TargetConnection) -> list[AttributeMapping]:
    return list(AttributeMapping.objects.filter(connection=connection, active=True))


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

_AUDITED_FIELDS = (
    "source_name", "target_name", "value_type", "trim", "case_transform", "required",
    "max_length", "choices", "pattern", "send_empty", "help_text", "label", "active",
)


def mapping_check(mapping: AttributeMapping) -> None:
    """Field-level checks beyond the model's own."""
    errors: dict[str, list[str]] = {}
    if problems := attribute_name_errors(mapping.target_name):
        errors["target_name"] = problems
    if mapping.source_name.strip() == "" or mapping.source_name != mapping.source_name.strip():
        errors["source_name"] = ["The source name must not be empty or start/end with spaces."]
    elif mapping.source_name in ("identity", "identity_type"):
        errors["source_name"] = ["'identity' and 'identity_type' are reserved import columns."]
    if mapping.value_type == Type.CHOICE and not mapping.choice_list:
        errors["choices"] = ["A choice mapping needs at least one allowed value."]
    if mapping.pattern:
        try:
            re.compile(mapping.pattern)
        # OverflowError: a repeat count too large for the engine (e.g. a{99999999999999999999});
        # RecursionError: nesting too deep. Neither is an re.error, and both were server errors.
        except (re.error, OverflowError, RecursionError) as error:
            errors["pattern"] = [f"Not a valid regular expression: {error}."]
    if errors:
        raise ValidationError(errors)


def mapping_save(*, mapping: AttributeMapping, by) -> AttributeMapping:
    """Create or change a mapping; the audit row records before/after of every changed field."""
    perm = "updates.change_attributemapping" if mapping.pk else "updates.add_attributemapping"
    if not by.has_perm(perm):
        raise PermissionDenied("You may not define or change attribute mappings.")
    mapping_check(mapping)
    mapping.validate_constraints()
    with transaction.atomic():
        before = {}
        if mapping.pk:
            old = AttributeMapping.objects.select_for_update().get(pk=mapping.pk)
            before = {f: getattr(old, f) for f in _AUDITED_FIELDS}
        after = {f: getattr(mapping, f) for f in _AUDITED_FIELDS}
        changes = {
            f: {"before": before.get(f), "after": after[f]}
            for f in _AUDITED_FIELDS
            if before.get(f) != after[f]
        }
        created = not mapping.pk
        mapping.save()
        if changes:
            AuditEvent.objects.create(
                at=timezone.now(),
                actor=by,
                action="mapping_created" if created else "mapping_changed",
                mapping=mapping,
                connection_id=mapping.connection_id,
                changes=changes,
            )
    return mapping
