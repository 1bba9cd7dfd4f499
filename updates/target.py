"""The Single Profile Update protocol: build one request, read one answer.

Pure Python — no models, no database — so it is unit-testable on its own. See
shared/reference/target-profile-api.md for the facts and the decisions encoded here.
"""

from __future__ import annotations

import email.utils
import enum
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

ACKNOWLEDGMENT = "trueRequest successfully submitted"
GET_LIMIT_BYTES = 8 * 1024  # whole URL
POST_LIMIT_BYTES = 60 * 1024  # form body
IDENTITY_PARAMETERS = ("mboxPC", "mbox3rdPartyId")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
ANSWER_KEEP_CHARS = 2000
_UNRESERVED_ONLY = re.compile(r"[A-Za-z0-9._~-]*")  # ASCII only: \w would match more
REQUEST_QUOTA_COST = 1  # one update is one request, whichever the method


class RequestTooLarge(ValueError):
    """The update cannot be sent in one request of either method."""


def encode_component(text: str) -> str:
    """Percent-encode UTF-8, everything outside the unreserved set; a space becomes %20."""
    if _UNRESERVED_ONLY.fullmatch(text):  # most names and identities: nothing to encode
        return text
    return quote(text, safe="-._~", encoding="utf-8", errors="strict")


def encode_parameters(identity_type: str, identity: str, attributes: dict[str, str]) -> str:
    if identity_type not in IDENTITY_PARAMETERS:
        raise ValueError(f"unknown identity type {identity_type!r}")
    parts = [f"{identity_type}={encode_component(identity)}"]
    for name in sorted(attributes):
        parts.append(f"profile.{encode_component(name)}={encode_component(attributes[name])}")
    return "&".join(parts)


def update_url(base_url: str, client_code: str) -> str:
    return f"{base_url.rstrip('/')}/m2/{encode_component(client_code)}/profile/update"


@dataclass(frozen=True)
class ProfileRequest:
    method: str  # "GET" or "POST"
    url: str  # full URL for GET (query included); endpoint for POST
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold the token

    @property
    def size(self) -> int:
        """Bytes that count against Adobe's limit for this method."""
        return len(self.url.encode("utf-8")) if self.method == "GET" else len(self.body or b"")


def build_request(
    *,
    base_url: str,
    client_code: str,
    identity_type: str,
    identity: str,
    attributes: dict[str, str],
    token: str = "",
) -> ProfileRequest:
    """GET while the whole URL fits in 8 KB, else POST with a form body of at most 60 KB."""
    endpoint = update_url(base_url, client_code)
    params = encode_parameters(identity_type, identity, attributes)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{endpoint}?{params}"
    # Bytes, not characters: a configured base URL could hold a non-ASCII host name.
    if len(url.encode("utf-8")) <= GET_LIMIT_BYTES:
        return ProfileRequest("GET", url, None, headers)
    body = params.encode("ascii")
    if len(body) > POST_LIMIT_BYTES:
        raise RequestTooLarge(
            f"The encoded update is {len(body):,} bytes; Target accepts at most "
            f"{POST_LIMIT_BYTES:,} bytes in one request."
        )
    return ProfileRequest("POST", endpoint, body, {**headers, "Content-Type": FORM_CONTENT_TYPE})


def request_for(update: Any) -> ProfileRequest:
    """The exact request the sender makes for a profile update — what the admin previews too.

    `update` is anything with identity_type, identity, attributes and a connection (with
    effective_base_url, client_code, bearer_token): a ProfileUpdate, without importing models.
    Raises RequestTooLarge (or ValueError for an unknown identity type) if none can carry it.
    """
    connection = update.connection
    return build_request(
        base_url=connection.effective_base_url,
        client_code=connection.client_code,
        identity_type=update.identity_type,
        identity=update.identity,
        attributes=update.attributes,
        token=connection.bearer_token,
    )


def encoded_size(identity_type: str, identity: str, attributes: dict[str, str]) -> int:
    """Size of the form body (the POST limit applies to it); for staging-time checks."""
    return len(encode_parameters(identity_type, identity, attributes).encode("ascii"))


class Outcome(enum.StrEnum):
    """How one request ended — the only such type: SendAttempt.outcome stores these values."""

    ACKNOWLEDGED = "acknowledged"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNEXPECTED = "unexpected"

    @property
    def label(self) -> str:
        return _OUTCOME_LABELS[self]


_OUTCOME_LABELS = {
    Outcome.ACKNOWLEDGED: "Acknowledged",
    Outcome.TRANSIENT: "Transient error",
    Outcome.PERMANENT: "Permanent error",
    Outcome.UNEXPECTED: "Unexpected answer",
}
OUTCOME_CHOICES = [(outcome.value, outcome.label) for outcome in Outcome]


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    http_status: int | None
    body: str  # verbatim, truncated
    error: str = ""
    retry_after_seconds: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now_ts = time.time() if now is None else now
    return max(0.0, when.timestamp() - now_ts)


def read_answer(status: int, body: str, retry_after: str | None = None) -> Answer:
    kept = body[:ANSWER_KEEP_CHARS]
    if 200 <= status < 300:
        if body.strip() == ACKNOWLEDGMENT:
            return Answer(Outcome.ACKNOWLEDGED, status, kept)
        return Answer(Outcome.UNEXPECTED, status, kept, "2xx answer without the acknowledgment")
    if status == 429 or status >= 500:
        return Answer(
            Outcome.TRANSIENT, status, kept, f"HTTP {status}", parse_retry_after(retry_after)
        )
    return Answer(Outcome.PERMANENT, status, kept, f"HTTP {status}")


def transport_failure(error: BaseException) -> Answer:
    """A request that failed before an answer arrived: it may still have reached Target."""
    return Answer(Outcome.TRANSIENT, None, "", f"{type(error).__name__}: {_redact(str(error))}")


def _redact(message: str) -> str:
    # requests puts the URL (with profile values) into some exception texts; keep only the path.
    cut = message.find("?")
    if cut == -1:
        return message[:500]
    end = message.find(" ", cut)
    return (message[:cut] + "?…" + (message[end:] if end != -1 else ""))[:500]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
