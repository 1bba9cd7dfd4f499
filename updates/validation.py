"""Checks every staged update passes, wherever it comes from (admin, import, command).

Nothing here trims, case-folds or otherwise changes what an operator typed: a value that would
need changing is refused with a message saying why. Normalisation by attribute mappings happens
before (see mappings.py) and is explicit.
"""

from __future__ import annotations

import functools
import unicodedata

from django.core.exceptions import ValidationError

from . import target
from .models import DEFAULT_VALUE_MAX_LENGTH, IdentityType, ProfileUpdate

MBOX_PC_MAX = 128
THIRD_PARTY_ID_MAX = 256
ATTRIBUTE_NAME_MAX = 128
# Target's own namespaces: an attribute of ours must not shadow them (compared case-insensitively
# because a near-collision is a mistake far more often than an intent).
RESERVED_NAME_PREFIXES = ("profile.", "user.", "geolocation.", "mobile.")
RESERVED_NAMES = ("sessionCount",)
# The column's own limit: checked here so SQLite (which would store more) and PostgreSQL (which
# would fail mid-transaction) give the same answer.
REASON_MAX = ProfileUpdate._meta.get_field("reason").max_length


def _unencodable(text: str) -> str | None:
    """Why `text` cannot travel as UTF-8 in a URL, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\x00), which cannot be stored or sent"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate character, which is not valid UTF-8"
    return None


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _spoofing(text: str) -> str | None:
    """Why `text` could pass for something it is not, or None: an invisible formatting character
    (Unicode category Cf — bidirectional controls such as U+202E, zero-width spaces and joiners,
    the byte-order mark) makes two different identities or names look alike on every screen;
    U+FFFD is what a decoder leaves where the bytes were not valid UTF-8, so the text is not
    what was sent."""
    for ch in text:
        if ch == "\ufffd":
            return ("contains U+FFFD, the replacement character, which stands for bytes that "
                    "were not valid UTF-8")
        if unicodedata.category(ch) == "Cf":
            name = unicodedata.name(ch, "FORMAT CHARACTER")
            return (f"contains the invisible character U+{ord(ch):04X} ({name}); bidirectional "
                    "controls and zero-width characters are refused because they make different "
                    "text look the same")
    return None


def person_typed_problem(text: str) -> str | None:
    """Why `text` cannot be a value a person typed into the staging form's one-line fields, or
    None: a NUL or lone surrogate, a control character (C0 or C1: BEL, ESC, a line break …), an
    invisible formatting character or U+FFFD (_spoofing). Checked where a value comes from
    outside instead of from a person — a revert staging what Target returned."""
    if (why := _unencodable(text)) is not None:
        return why
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            kind = " (a line break)" if ch in "\r\n" else ""
            return f"contains the control character U+{ord(ch):04X}{kind}"
    return _spoofing(text)


def identity_errors(identity_type: str, identity: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if identity_type not in IdentityType.values:
        errors["identity_type"] = [
            f"Identity type must be one of {', '.join(IdentityType.values)} "
            f"(Target does not accept {identity_type!r} here)."
        ]
        return errors
    problems = []
    if identity == "":
        problems.append("The identity is empty.")
    elif (why := _unencodable(identity)) is not None:
        problems.append(f"The identity {why}.")
    else:
        if _has_control(identity):
            problems.append("The identity contains a control character (e.g. a line break).")
        if (why := _spoofing(identity)) is not None:
            problems.append(f"The identity {why}.")
        if identity != identity.strip():
            problems.append(
                "The identity starts or ends with whitespace; it is not trimmed for you — "
                "remove it if it was not intended."
            )
        if identity_type == IdentityType.MBOX_PC:
            if len(identity) > MBOX_PC_MAX:
                problems.append(
                    f"An mboxPC has at most {MBOX_PC_MAX} characters; this one has {len(identity)}."
                )
            if any(ch.isspace() for ch in identity):
                problems.append("An mboxPC contains no whitespace.")
            dots = identity.count(".")
            if dots > 1:
                problems.append(
                    "An mboxPC has at most one '.', the one before its location hint "
                    "(e.g. 1368007744041-575948.01_00)."
                )
            elif dots == 1 and (identity.startswith(".") or identity.endswith(".")):
                problems.append(
                    "The '.' in an mboxPC separates the id from its location hint, so text must "
                    "come on both sides of it."
                )
        else:
            if len(identity) > THIRD_PARTY_ID_MAX:
                problems.append(
                    f"An mbox3rdPartyId has at most {THIRD_PARTY_ID_MAX} characters; "
                    f"this one has {len(identity)}."
                )
            bad = sorted({ch for ch in identity if ch in "+/"})
            if bad:
                problems.append(
                    f"An mbox3rdPartyId may not contain {' or '.join(repr(c) for c in bad)}."
                )
    if problems:
        errors["identity"] = problems
    return errors


def attribute_name_errors(name: str) -> list[str]:
    if not isinstance(name, str):
        return ["An attribute name is empty."]
    # A file repeats the same few names on every row: each distinct name is checked once.
    return list(_attribute_name_errors(name))


@functools.lru_cache(maxsize=4096)
def _attribute_name_errors(name: str) -> tuple[str, ...]:
    return tuple(_name_problems(name))


def _name_problems(name: str) -> list[str]:
    if name == "":
        return ["An attribute name is empty."]
    if (why := _unencodable(name)) is not None:
        return [f"Attribute name {name!r} {why}."]
    problems = []
    if name != name.strip():
        problems.append(
            f"Attribute name {name!r} starts or ends with whitespace; it is not trimmed for you — "
            "remove it if it was not intended."
        )
    if _has_control(name):
        problems.append(f"Attribute name {name!r} contains a control character (e.g. a line break).")
    if (why := _spoofing(name)) is not None:
        problems.append(f"Attribute name {ascii(name)} {why}.")
    if len(name) > ATTRIBUTE_NAME_MAX:
        problems.append(
            f"Attribute name {name[:40]!r}… has {len(name)} characters; "
            f"Target allows at most {ATTRIBUTE_NAME_MAX}."
        )
    lowered = name.lower()
    if lowered.startswith("profile."):
        problems.append(
            f"Attribute name {name!r} must not start with 'profile.': the request adds that prefix."
        )
    else:
        for prefix in RESERVED_NAME_PREFIXES[1:]:
            if lowered.startswith(prefix):
                problems.append(
                    f"Attribute name {name!r} collides with Target's built-in '{prefix}*' namespace."
                )
        if lowered in (n.lower() for n in RESERVED_NAMES):
            problems.append(f"Attribute name {name!r} is a Target built-in attribute.")
    return problems


def attribute_value_errors(
    name: str, value, *, max_length: int = DEFAULT_VALUE_MAX_LENGTH, allow_empty: bool = False
) -> list[str]:
    if not isinstance(value, str):
        return [f"The value of {name!r} must be text, not {type(value).__name__}."]
    if (why := _unencodable(value)) is not None:
        return [f"The value of {name!r} {why}."]
    if value == "" and not allow_empty:
        return [
            f"The value of {name!r} is empty; an empty value is sent only when its mapping says so."
        ]
    if len(value) > max_length:
        return [
            f"The value of {name!r} has {len(value)} characters; at most {max_length} are allowed."
        ]
    return []


# A decision's or transition's comment: what the reject form allows, whoever calls the service.
COMMENT_MAX = 2000


def _free_text_errors(value, *, name: str, limit: int) -> list[str]:
    """Problems with a person's free text: text the database can hold on SQLite and PostgreSQL
    alike, of at most `limit` characters."""
    if not isinstance(value, str):
        return [f"The {name} must be text, not {type(value).__name__}."]
    if (why := _unencodable(value)) is not None:
        return [f"The {name} {why}."]
    if len(value) > limit:
        return [f"The {name} has {len(value)} characters; at most {limit} are allowed."]
    return []


def comment_errors(comment) -> list[str]:
    """Problems with a comment a transition records (decision, audit row)."""
    return _free_text_errors(comment, name="comment", limit=COMMENT_MAX)


def reason_errors(reason) -> list[str]:
    """Problems with an update's reason."""
    return _free_text_errors(reason, name="reason", limit=REASON_MAX)


def validate_update_content(
    *,
    identity_type: str,
    identity: str,
    attributes: dict[str, str],
    value_rules: dict[str, tuple[int, bool]] | None = None,
) -> None:
    """Raise one ValidationError naming every problem, keyed by field.

    `value_rules` maps an attribute name to (max_length, allow_empty) — from its mapping.
    Attributes without a rule get Target's defaults (256 characters, empty refused).
    """
    errors = identity_errors(identity_type, identity)
    attribute_problems: list[str] = []
    if not isinstance(attributes, dict):
        attribute_problems.append("Attributes must be a mapping of name to value.")
    elif not attributes:
        attribute_problems.append("An update needs at least one attribute.")
    else:
        rules = value_rules or {}
        for name, value in attributes.items():
            name_problems = attribute_name_errors(name)
            attribute_problems.extend(name_problems)
            if name_problems:
                continue
            max_length, allow_empty = rules.get(name, (DEFAULT_VALUE_MAX_LENGTH, False))
            attribute_problems.extend(
                attribute_value_errors(name, value, max_length=max_length, allow_empty=allow_empty)
            )
    if attribute_problems:
        errors["attributes"] = attribute_problems
    if not errors:
        size = target.encoded_size(identity_type, identity, attributes)
        if size > target.POST_LIMIT_BYTES:
            errors["attributes"] = [
                f"The encoded request would be {size:,} bytes; Target accepts at most "
                f"{target.POST_LIMIT_BYTES:,} bytes (60 KB) in one request."
            ]
    if errors:
        raise ValidationError(
            {field: [ValidationError(m, code="invalid") for m in msgs] for field, msgs in errors.items()}
        )
