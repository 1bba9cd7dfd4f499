"""The Single Profile Update protocol: build one request, read one answer.

Pure Python — no models, no database — so it is unit-testable on its own. See
shared/reference/target-profile-api.md for the facts and the decisions encoded here.
"""

from __future__ import annotations

import email.utils
import enum
import json
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


def request_for(update: Any, *, token: str) -> ProfileRequest:
    """The exact request the sender makes for a profile update — what the admin previews too.

    `update` is anything with identity_type, identity, attributes and a connection (with
    effective_base_url and client_code): a ProfileUpdate, without importing models. `token` is
    the bearer token (credentials.profile_token; "" for none).
    Raises RequestTooLarge (or ValueError for an unknown identity type) if none can carry it.
    """
    connection = update.connection
    return build_request(
        base_url=connection.effective_base_url,
        client_code=connection.client_code,
        identity_type=update.identity_type,
        identity=update.identity,
        # before_send may leave out attributes Target already holds (drop_unchanged_attributes).
        attributes=getattr(update, "send_attributes", None) or update.attributes,
        token=token,
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


# --- what came from outside, made safe to store and show ---------------------------------------
# PostgreSQL can store neither NUL (in text or jsonb) nor a lone surrogate (which is not even
# UTF-8); both can arrive from Target inside JSON (\u0000, \ud800). Secrets can arrive too: an
# endpoint or proxy that echoes the request's headers sends the bearer token back.

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPED_CHARACTERS = re.compile("[\\\\\x00\ud800-\udfff]")
_ESCAPE_SEQUENCE = re.compile(r"\\(\\|u[0-9a-f]{4})")
_BEARER = re.compile(r"(?i)(bearer)(\s+)[^\s\"',;&<>]+")
REDACTED = "[redacted]"


def holds_unstorable(text: str) -> bool:
    """NUL or a lone surrogate (in a str, any code point in U+D800–U+DFFF is one)."""
    return _UNSTORABLE.search(text) is not None


def escape_unstorable(text: str) -> str:
    """A storable, reversible spelling: a backslash is doubled, NUL and lone surrogates become
    \\uXXXX (unescape_unstorable gives the text back exactly)."""
    return _ESCAPED_CHARACTERS.sub(
        lambda m: "\\\\" if m[0] == "\\" else f"\\u{ord(m[0]):04x}", text)


def unescape_unstorable(text: str) -> str:
    return _ESCAPE_SEQUENCE.sub(
        lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


def shown(text: str) -> str:
    """For display: text holding unstorable characters is shown escaped, other text as is."""
    return escape_unstorable(text) if holds_unstorable(text) else text


def redact(text: str, secrets: tuple[str, ...] | list[str] = (), *, bearer: bool = True) -> str:
    """`text` without any of `secrets` (the connection's, TargetConnection.secrets()) and, with
    `bearer`, without whatever follows "Bearer " — any token an answer echoes, even one no longer
    configured."""
    if not text:
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if bearer and ("earer" in text or "EARER" in text):
        text = _BEARER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    return text


def shown_headers(headers: dict[str, str]) -> dict[str, str]:
    """Our own request's headers as they may be shown (previews, dry runs): the credentials said
    to be there, never what they are."""
    return {name: (f"{value.split(' ', 1)[0]} {REDACTED}" if name.lower() == "authorization"
                   else value) for name, value in headers.items()}


def from_outside(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Text that came from outside (an answer body, an error message), as it may be stored and
    shown: secrets redacted, NUL and lone surrogates escaped. The one function for that."""
    text = redact(text, secrets)
    return escape_unstorable(text) if holds_unstorable(text) else text


def storable_attributes(attributes: dict[str, dict[str, str]], secrets: tuple[str, ...] | list[str] = ()
                        ) -> tuple[dict[str, dict[str, str]], bool]:
    """A read's attributes as they may be stored, and whether they were escaped.

    Secrets are redacted from names and values. If any name or value holds an unstorable
    character, every name and string in the read is escaped (escape_unstorable), so the stored
    read maps back to exactly what Target returned (ProfileRead.held) — escaping only some would
    make an escaped spelling and a real one indistinguishable. Only the secrets themselves are
    redacted here: a value may well say "bearer" without holding a token."""
    clean = {redact(name, secrets, bearer=False): {
                key: redact(value, secrets, bearer=False) if isinstance(value, str) else value
                                     for key, value in entry.items()}
             for name, entry in attributes.items()}
    if not any(holds_unstorable(name) or any(isinstance(v, str) and holds_unstorable(v)
                                             for v in entry.values())
               for name, entry in clean.items()):
        return clean, False
    return {escape_unstorable(name): {key: escape_unstorable(v) if isinstance(v, str) else v
                                      for key, v in entry.items()}
            for name, entry in clean.items()}, True


def unescaped_attributes(attributes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {unescape_unstorable(name): {key: unescape_unstorable(v) if isinstance(v, str) else v
                                        for key, v in entry.items()}
            for name, entry in attributes.items()}


def transport_failure(error: BaseException) -> Answer:
    """A request that failed before an answer arrived: it may still have reached Target."""
    return Answer(Outcome.TRANSIENT, None, "", error_text(error))


def error_text(error: BaseException, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """An exception as it may be stored and shown: its type and message, a URL's query (profile
    values) cut, `secrets` and bearer tokens redacted, unstorable characters escaped — the one
    spelling of a failure for a send attempt, a run's error, a page."""
    return from_outside(f"{type(error).__name__}: {_without_query(str(error))}", secrets)


def _without_query(message: str) -> str:
    # requests puts the URL (with profile values) into some exception texts; keep only the path.
    cut = message.find("?")
    if cut == -1:
        return message[:500]
    end = message.find(" ", cut)
    return (message[:cut] + "?…" + (message[end:] if end != -1 else ""))[:500]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- the profile read API (§3 of the reference) -------------------------------------------------
# Reads are not metered against the update quota; they need the same bearer token as updates.

READ_IDENTITY_PATHS = {"mboxPC": "", "mbox3rdPartyId": "thirdPartyId/"}


class ReadOutcome(str, enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class ReadRequest:
    url: str  # holds the identity: never log it
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold the token


def build_read_request(*, base_url: str, client_code: str, identity_type: str, identity: str,
                       token: str = "") -> ReadRequest:
    """GET /rest/v1/profiles/<tntId> or /rest/v1/profiles/thirdPartyId/<id>, ?client=<code>.

    The identity is one path segment: everything outside the unreserved set is percent-encoded
    (a '/', '?', '#' or '%' in a customer id must not change the path or the query)."""
    if identity_type not in READ_IDENTITY_PATHS:
        raise ValueError(f"unknown identity type {identity_type!r}")
    if not identity:
        raise ValueError("empty identity")
    path = f"/rest/v1/profiles/{READ_IDENTITY_PATHS[identity_type]}{encode_component(identity)}"
    url = f"{base_url.rstrip('/')}{path}?client={encode_component(client_code)}"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return ReadRequest(url, headers)


@dataclass(frozen=True)
class ReadAnswer:
    outcome: ReadOutcome
    http_status: int | None
    # name -> {"value": str, "modifiedAt": ISO-8601 str or ""}; empty unless FOUND
    attributes: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    modified_at: str = ""
    error: str = ""

    @property
    def found(self) -> bool:
        return self.outcome == ReadOutcome.FOUND


def read_profile_answer(status: int, body: str) -> ReadAnswer:
    """Classify one read answer: a profile (200 with the documented JSON), no profile (404 with
    Target's "No profile found" JSON), or an error classed as for updates."""
    if status == 404:
        message = _json_object(body).get("message", "")
        if isinstance(message, str) and message.startswith("No profile found"):
            return ReadAnswer(ReadOutcome.NOT_FOUND, status)
        return ReadAnswer(ReadOutcome.PERMANENT, status, error="HTTP 404 without 'No profile found'")
    if status == 429 or status >= 500:
        return ReadAnswer(ReadOutcome.TRANSIENT, status, error=f"HTTP {status}")
    if not 200 <= status < 300:
        return ReadAnswer(ReadOutcome.PERMANENT, status, error=f"HTTP {status}")
    payload = _json_object(body)
    raw = payload.get("profileAttributes")
    if not payload or not isinstance(raw, dict):
        return ReadAnswer(ReadOutcome.UNEXPECTED, status,
                          error="2xx answer without a profileAttributes object")
    attributes: dict[str, dict[str, str]] = {}
    for name, entry in raw.items():
        if isinstance(entry, dict):
            value, modified = entry.get("value"), entry.get("modifiedAt")
        else:  # tolerate a bare value; Target documents objects
            value, modified = entry, None
        held = {"value": "" if value is None else str(value),
                "modifiedAt": modified if isinstance(modified, str) else ""}
        if value is not None and not isinstance(value, str):
            # Not text: kept as JSON (not Python's repr) and marked, so nothing takes it for
            # text a person typed (a revert lists it as not restorable).
            held["value"] = json.dumps(value, ensure_ascii=False, sort_keys=True)
            held["json_type"] = _JSON_TYPES.get(type(value), "number")
        attributes[str(name)] = held
    modified_at = payload.get("modifiedAt")
    return ReadAnswer(ReadOutcome.FOUND, status, attributes,
                      modified_at if isinstance(modified_at, str) else "")


_JSON_TYPES = {dict: "object", list: "array", bool: "boolean"}


def read_transport_failure(error: BaseException) -> ReadAnswer:
    # Only the exception's type: its text may quote the URL, which holds the identity.
    return ReadAnswer(ReadOutcome.TRANSIENT, None, error=type(error).__name__)


def parse_modified_at(text: str) -> datetime | None:
    """Target's ISO-8601 `modifiedAt` as an aware datetime (None when absent or unreadable)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def json_from_outside(text: str | bytes) -> Any:
    """JSON another party sent (Target, Adobe IMS, the Privacy Service, an event): the parsed
    value, or None when it is not JSON — or nested deeper than Python's parser goes (a few
    kilobytes of "[[[[" raise RecursionError, not ValueError)."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None


def _json_object(body: str) -> dict:
    payload = json_from_outside(body)
    return payload if isinstance(payload, dict) else {}
