"""The update page's timeline in words: what each audit event and send attempt means, its
changes as small tables (an attribute dict becomes one row per attribute), and one time format
with its zone everywhere on the page (utc_text).

Presentation only: selectors.update_timeline decides what belongs on the timeline.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from updates.models import AuditEvent
from updates.selectors import TimelineEntry

TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"

FIELD_WORDS = {
    "identity_type": "identity type",
    "identity": "identity",
    "attributes": "attributes",
    "reason": "reason",
    "not_before": "earliest send time",
    "attempt": "attempt",
    "http_status": "HTTP status",
    "next_attempt_at": "next attempt",
    # Verification and unchanged-attribute events (verification.py)
    "matching": "shows the sent value",
    "differing": "does not show the sent value",
    "at_target": "at Target",
    "left_out": "left out (unchanged at Target)",
    "revert_update": "revert staged as update",
    "not_revertible": "not revertible",
}
# Bookkeeping in an event's changes that a reader does not need: the read's row id, the check's
# number and the read's outcome are said in the event's comment already.
HIDDEN_FIELDS = {"attempt", "http_status", "next_attempt_at", "read_id", "check", "read_outcome"}
# An ISO 8601 moment inside a text (Target's modifiedAt, stored summaries): shown as utc_text.
_ISO_MOMENT = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def action_words(action: str) -> str:
    """An audit action as a reader says it: its AuditEvent.Action label. A name no longer (or not
    yet) among the choices is shown with spaces for underscores."""
    if action in AuditEvent.Action.values:
        return AuditEvent.Action(action).label
    return action.replace("_", " ")


def utc_text(moment: dt.datetime | None) -> str:
    """The page's one time format: 2024-05-01 10:30:05 UTC."""
    if moment is None:
        return "—"
    return moment.astimezone(dt.timezone.utc).strftime(TIME_FORMAT)


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
    return None


def _cell(name: str, value: Any, *, words: bool = True) -> str:
    """One value of an event's changes as text. `words=False` for attribute values: shown
    exactly as stored and sent (a date-time value is not rewritten)."""
    if value is None:
        return "—"
    if not words:
        return "(empty)" if value == "" else str(value)
    if name in ("not_before", "next_attempt_at") and (moment := _parse_time(value)):
        return utc_text(moment)
    if value == "":
        return "(empty)"
    if isinstance(value, (list, tuple)):  # attribute names: matching, differing, left out
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, dict):  # e.g. not_revertible: {attribute: why}
        return "; ".join(f"{k}: {v}" for k, v in value.items()) if value else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return iso_moments_as_utc(str(value))


def iso_moments_as_utc(text: str) -> str:
    """`text` with every ISO 8601 moment in it written in the page's one format (utc_text)."""
    def _one(match: re.Match) -> str:
        moment = _parse_time(match.group(0))
        return utc_text(moment) if moment is not None else match.group(0)
    return _ISO_MOMENT.sub(_one, text)


@dataclass
class ChangeRow:
    name: str
    before: str | None  # None: the event records no "before" (a plain value, or a new field)
    after: str
    code: bool = False  # an attribute name, shown as code


@dataclass
class Line:
    at: dt.datetime
    when: str
    title: str
    kind: str  # "event" or "attempt"
    actor: str = ""
    transition: tuple[str, str] | None = None
    comment: str = ""
    changes: list[ChangeRow] = field(default_factory=list)
    has_before: bool = False
    attempt: Any = None


def _attribute_rows(before: Any, after: Any) -> list[ChangeRow]:
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    rows = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new and before:
            continue  # unchanged attributes of an edit are noise
        rows.append(ChangeRow(f"profile.{name}",
                              None if old is None else _cell(name, old, words=False),
                              "(removed)" if new is None and name in before
                              else _cell(name, new, words=False),
                              code=True))
    return rows


def _change_rows(changes: dict) -> list[ChangeRow]:
    rows: list[ChangeRow] = []
    for name, change in (changes or {}).items():
        if isinstance(change, dict) and set(change) <= {"before", "after"}:
            before, after = change.get("before"), change.get("after")
            if name == "attributes":
                rows += _attribute_rows(before, after)
                continue
            rows.append(ChangeRow(FIELD_WORDS.get(name, name.replace("_", " ")),
                                  None if before is None else _cell(name, before),
                                  _cell(name, after)))
        elif name not in HIDDEN_FIELDS:  # said in the title or the comment
            rows.append(ChangeRow(FIELD_WORDS.get(name, name.replace("_", " ")), None,
                                  _cell(name, change)))
    return rows


def _event_title(event, attempt_number: int | None = None) -> str:
    """`attempt_number`: the send attempt this event answers, numbered as the attempts are (over
    the update's life); the event's own "attempt" counts since the last re-queue."""
    changes = event.changes or {}
    if event.action == AuditEvent.Action.RETRY_SCHEDULED:
        moment = _parse_time(changes.get("next_attempt_at"))
        attempt = attempt_number or changes.get("attempt")
        head = f"attempt {attempt} not acknowledged; " if attempt else ""
        if moment is not None:
            seconds = max(0, int((moment - event.at).total_seconds()))
            return f"{head}retry scheduled in {seconds} s"
        return f"{head}retry scheduled"
    words = action_words(event.action)
    if event.action in (AuditEvent.Action.ACKNOWLEDGED, AuditEvent.Action.FAILED) \
            and changes.get("attempt"):
        words += f" (attempt {attempt_number or changes['attempt']})"
    return words


# Events after which the sender counts its attempts from 1 again (workflow.py sets
# attempt_count = 0 on approval and on re-queue); the attempts themselves count over the update's
# life (SendAttempt.number).
_ATTEMPT_COUNT_RESETS = {AuditEvent.Action.APPROVED, AuditEvent.Action.REQUEUED}


def timeline_lines(entries: list[TimelineEntry]) -> list[Line]:
    lines = []
    seen = 0  # the highest attempt number so far (entries are oldest first)
    base = 0  # attempts made before the sender's count last restarted
    for entry in entries:
        if entry.kind == "event":
            e = entry.event
            rows = _change_rows(e.changes)
            if e.action in _ATTEMPT_COUNT_RESETS:
                base = seen
            counted = (e.changes or {}).get("attempt")
            number = base + counted if isinstance(counted, int) else None
            lines.append(Line(
                at=e.at, when=utc_text(e.at), title=_event_title(e, number), kind="event",
                actor=e.actor.get_username() if e.actor else "the system",
                transition=((e.from_status or "—", e.to_status or "—")
                            if (e.from_status or e.to_status) else None),
                comment=e.comment, changes=rows,
                has_before=any(r.before is not None for r in rows)))
        else:
            a = entry.attempt
            seen = max(seen, a.number)
            lines.append(Line(at=a.started_at, when=utc_text(a.started_at),
                              title=f"attempt {a.number}", kind="attempt", attempt=a))
    return lines
