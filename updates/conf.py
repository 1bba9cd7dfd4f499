"""ProfileOps' own settings, in one place: their names, types, defaults and meaning.

Read them with `setting("SEND_BATCH_SIZE")`. A deployment sets them as `PROFILEOPS_<NAME>`
environment variables (profileops/settings.py collects those into `settings.PROFILEOPS`, as
text); a settings module or a test may put numbers there instead. Anything not set takes the
default below. Impossible values and combinations are refused at start by the system check in
updates/checks.py (`manage.py check`, and every command that runs the checks), not patched
silently at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Knob:
    kind: type  # int, float, str, bool (1/0, true/false, on/off) or tuple (comma-separated numbers)
    default: Any
    meaning: str


KNOBS: dict[str, Knob] = {
    "SEND_BATCH_SIZE": Knob(int, 500, "Updates claimed per batch."),
    "SEND_CONCURRENCY": Knob(int, 32, "Requests in flight at once."),
    "CONNECT_TIMEOUT": Knob(float, 5.0, "Seconds to connect to Target."),
    "READ_TIMEOUT": Knob(float, 20.0, "Seconds to wait for Target's answer."),
    "TARGET_PROXY": Knob(
        str, "", "A forward proxy (http://host:port) for every request to Target, sends and "
                 "reads; none by default, whatever HTTP(S)_PROXY say."),
    "LEASE_SECONDS": Knob(int, 120, "How long a claim is a worker's before another may take it."),
    "MAX_ATTEMPTS": Knob(int, 8, "Attempts per update before it fails."),
    "MAX_UNEXPECTED_ANSWERS": Knob(int, 3, "Unexpected 2xx answers before an update fails."),
    "BACKOFF_BASE_SECONDS": Knob(float, 30.0, "First retry delay; doubles per attempt."),
    "BACKOFF_MAX_SECONDS": Knob(float, 3600.0, "Longest retry delay."),
    "RUN_TIME_BUDGET_SECONDS": Knob(
        float, 45.0, "A scheduled send run claims no new batch after this long; it must end "
                     "well inside the django-q2 task timeout."),
    "IMPORT_BACKGROUND_ROWS": Knob(
        int, 2000, "Imports with more rows than this run in django-q2, not in the request."),
    "IMPORT_BACKGROUND_CHECK_BYTES": Knob(
        int, 256 * 1024, "Uploads larger than this are checked in django-q2, not in the request."),
    # Upload limits: reading stops, and the file is refused, as soon as one is crossed.
    "IMPORT_MAX_UNCOMPRESSED_BYTES": Knob(
        int, 200 * 1024 * 1024, "Most bytes an XLSX's members may unpack to."),
    "IMPORT_MAX_COLUMNS": Knob(int, 1000, "Most cells per row of an uploaded file."),
    "IMPORT_MAX_CELL_CHARS": Knob(
        int, 65_536, "Most characters per cell (above Target's 60 KB per request)."),
    "IMPORT_MAX_ROWS": Knob(int, 2_000_000, "Most rows of an uploaded file, empty ones included."),
    # Operations (updates/health.py, updates/metrics.py).
    "HEARTBEAT_STALE_SECONDS": Knob(
        int, 180, "/readyz fails when the send schedule has not completed a run for this long."),
    "METRICS_TOKEN": Knob(str, "", "Bearer token for /metrics; without one it answers 404."),
    "METRICS_STATUS_SECONDS": Knob(
        float, 60.0, "Updates by status are recounted at most this often (by one process, "
                     "aside: scrapes answer with the last count); 0 counts on every scrape."),
    # Reading profiles back (updates/reading.py, updates/verification.py).
    "READS_PER_SECOND": Knob(
        float, 40.0, "Profile reads per second per connection, shared by every process (the "
                     "ReadRateSlot row); never quota."),
    "PROFILE_READ_CONNECT_TIMEOUT": Knob(float, 2.0, "Seconds to connect for one profile read."),
    "PROFILE_READ_TIMEOUT": Knob(float, 3.0, "Seconds to wait for one profile read's answer."),
    "VERIFY_SCHEDULE_MINUTES": Knob(
        tuple, (5, 15, 60, 240, 1440), "Minutes after the acknowledgment at which an update is "
        "read back; after the last, it is 'not applied' if Target still shows other values."),
    "VERIFY_FIRST_CHECK_SECONDS": Knob(
        int, 3600, "The first read-back comes this long after the acknowledgment (Target applies "
                   "usually within an hour); earlier VERIFY_SCHEDULE_MINUTES entries are skipped. "
                   "0: the schedule alone."),
    "VERIFY_BATCH_SIZE": Knob(int, 5000, "Most updates one verification run reads."),
    "VERIFY_CONCURRENCY": Knob(int, 16, "Profile reads in flight at once in a verification run."),
    "SKIP_UNCHANGED_MAX_READ_AGE_SECONDS": Knob(
        int, 300, "Skip-unchanged trusts a read this recent; otherwise it reads again."),
    "SKIP_UNCHANGED_READ_BUDGET_SECONDS": Knob(
        float, 5.0, "Most time one claimed batch spends reading before it is sent."),
    "DIFF_MAX_READ_AGE_SECONDS": Knob(int, 60, "The live diff reuses a read this recent."),
    # Alerts (updates/alerts.py, updates/webhooks.py).
    "SITE_URL": Knob(
        str, "", "The address people open the admin at (https://profileops.example.com), for "
                 "the link in every alert; unset: alerts carry no link."),
    "BULK_CALLS_PER_MINUTE": Knob(
        float, 40.0, "Bulk API calls (uploads and status polls) per minute per connection, shared "
                     "by every worker; Target allows 50, shared with its Admin APIs."),
    "BULK_FILE_MAX_ROWS": Knob(int, 500_000, "Most rows in one bulk file (Target: 500,000)."),
    "BULK_FILE_MAX_BYTES": Knob(
        int, 50 * 1024 * 1024 - 1, "Largest bulk file in bytes (Target: under 50 MB)."),
    "BULK_JOB_MAX_ROWS": Knob(int, 2_000_000, "Most updates one bulk job takes."),
    "BULK_MIN_BATCH_ROWS": Knob(
        int, 1000, "Smaller decided batches always stay on the single route, even when bulk "
                   "is chosen explicitly (small, urgent corrections)."),
    "BULK_MAX_ATTEMPTS": Knob(int, 8, "Upload attempts of one bulk file before it is refused."),
    "BULK_POLL_FIRST_SECONDS": Knob(
        float, 60.0, "First batchStatus poll after an upload; the delay doubles per poll."),
    "BULK_POLL_MAX_SECONDS": Knob(float, 900.0, "Longest delay between two batchStatus polls."),
    "BULK_TIMEOUT_HOURS": Knob(
        float, 24.0, "A bulk file not complete this long after Target accepted it is timed out "
                     "(Target: applied within 24 hours)."),
    "BULK_ROWS_PER_MINUTE": Knob(
        float, 100_000.0, "Rows a minute Target is assumed to apply in bulk, for the route's "
                          "time estimate on the batch page."),
    "WEBHOOK_ALLOW_PRIVATE": Knob(
        bool, None, "Webhooks may go to loopback and private addresses (an internal relay). "
                    "Unset (None): on only in the embedded mode (PROFILEOPS_DEMO, which follows "
                    "DEBUG), where the demo and the tests post to 127.0.0.1 (updates/webhooks.py)."),
    # Customer data lifecycle (updates/hashing.py, retention.py, forgetting.py, privacy.py).
    "HASH_KEY": Knob(
        str, "", "The secret key of the keyed hash (HMAC-SHA256) that replaces purged identities "
                 "and values; at least 32 characters, required in production, never changed "
                 "once data was purged (hashes made with another key no longer match)."),
    "RETENTION_CHUNK_SIZE": Knob(
        int, 500, "Updates (or reads, attempts, import jobs) one retention transaction purges; "
                  "each chunk commits on its own, so no lock is held long."),
    "RETENTION_RUN_BUDGET_SECONDS": Knob(
        float, 40.0, "A retention run starts no new chunk after this long; the rest waits for "
                     "the next run."),
    "PRIVACY_SERVICE_URL": Knob(
        str, "https://platform.adobe.io/data/core/privacy",
        "Adobe Privacy Service's base URL (its jobs are at <url>/jobs); the emulator's "
        "http://127.0.0.1:8765/data/core/privacy in the demo."),
    "PRIVACY_POLL_HOURS": Knob(
        tuple, (1, 4, 12, 24), "Hours between the polls of one filed privacy job, in turn; the "
        "last repeats until Adobe answers complete or error."),
    "PRIVACY_POLLS_PER_DAY": Knob(
        int, 200, "Most Privacy Service status reads per UTC day, over all requests (Adobe's "
                  "job endpoints are not for frequent polling)."),
    "PRIVACY_EVENTS_TOKEN": Knob(
        str, "", "The secret in the address of the hook that receives Adobe I/O Events about "
                 "privacy jobs (/privacy/adobe-events/<token>/); unset: the hook answers 404."),
    # Secrets and Adobe credentials (updates/encryption.py, updates/credentials.py).
    "ENCRYPTION_KEYS": Knob(
        str, "", "Fernet keys, comma-separated: the first encrypts stored secrets, every one "
                 "decrypts (rotation: docs/operations/secrets.md). Required in production; "
                 "unset in the embedded mode (PROFILEOPS_DEMO): a key derived from SECRET_KEY."),
    "TOKEN_RENEW_AHEAD_SECONDS": Knob(
        float, 3600.0, "An IMS or profile token is renewed this long before it expires (at most "
                       "a fifth of its lifetime ahead)."),
    "ATTRIBUTE_CATALOGUE_MAX_AGE_SECONDS": Knob(
        int, 3600, "Target's list of known profile attributes is read again after this long."),
}


class SettingError(ImproperlyConfigured):
    """A PROFILEOPS value that is not a number of the right kind."""


def _configured() -> dict[str, Any]:
    return getattr(settings, "PROFILEOPS", None) or {}


def _coerce(name: str, raw: Any, knob: Knob) -> Any:
    if knob.kind is str:
        if not isinstance(raw, str):
            raise SettingError(f"PROFILEOPS_{name} must be text.")
        return raw  # never quoted in an error: it may be a secret
    if knob.kind is tuple:
        return _numbers(name, raw)
    if knob.kind is bool:
        return _flag(name, raw)
    what = "a whole number" if knob.kind is int else "a number"
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = knob.kind(raw.strip() if isinstance(raw, str) else raw)
        if knob.kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise SettingError(f"PROFILEOPS_{name} must be {what}, not {raw!r}.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(f"PROFILEOPS_{name} must be a finite number, not {raw!r}.")
    return value


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise SettingError(f"PROFILEOPS_{name} must be on or off (1/0, true/false), not {raw!r}.")


def _numbers(name: str, raw: Any) -> tuple[float, ...]:
    """A list of numbers ≥ 0, given as "5,15,60" or as a sequence."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    try:
        values = tuple(float(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise SettingError(f"PROFILEOPS_{name} must be comma-separated numbers, not {raw!r}.") \
            from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise SettingError(f"PROFILEOPS_{name} must be one or more numbers ≥ 0, not {raw!r}.")
    return values


def setting(name: str) -> Any:
    """The value of PROFILEOPS setting `name` (its default when not set)."""
    knob = KNOBS[name]  # a KeyError here is a typo in the code, not in the configuration
    configured = _configured()
    if name not in configured:
        return knob.default
    return _coerce(name, configured[name], knob)
