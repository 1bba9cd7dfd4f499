"""System checks: ProfileOps refuses to start with settings that cannot work.

Registered in UpdatesConfig.ready(); they run with `manage.py check` and before every management
command that checks the system (runserver, migrate, qcluster, send_updates …). Each refusal is an
Error with an id `profileops.E0nn`, naming the setting and what would make it work.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.db.models import Q

from .conf import KNOBS, SettingError, setting
from .encryption import embedded, key_problem


def _error(id_: int, message: str, hint: str) -> checks.Error:
    return checks.Error(message, hint=hint, id=f"profileops.E{id_:03d}")


def check_profileops_settings(app_configs=None, **kwargs) -> list[checks.Error]:
    values, errors = _read_values()
    if errors:
        return errors  # the combinations below need every value
    return (_sending_errors(values) + _background_errors(values) + _address_errors(values)
            + _bulk_errors(values) + _secret_errors() + _lifecycle_errors(values))


def _secret_errors() -> list[checks.Error]:
    """Stored secrets are encrypted (encryption.py): production needs its own key."""
    problem = key_problem()
    if not problem:
        return []
    return [_error(18, problem, "Generate a key with `python -c \"from cryptography.fernet "
                                "import Fernet; print(Fernet.generate_key().decode())\"` and "
                                "set PROFILEOPS_ENCRYPTION_KEYS to it (docs/operations/secrets.md).")]


def _lifecycle_errors(values: dict) -> list[checks.Error]:
    """The keyed hash's key (hashing.py): required, and long, in production."""
    from .hashing import MIN_KEY_LENGTH

    key = values["HASH_KEY"]
    if not embedded() and len(key) < MIN_KEY_LENGTH:
        return [_error(
            22, f"PROFILEOPS_HASH_KEY must be set to a secret of at least {MIN_KEY_LENGTH} "
                "characters outside the embedded mode (DEBUG off).",
            "Purged identities and values are replaced by keyed hashes; without a secret key "
            "anyone could test a guessed identity against them. Generate one (python -c "
            "'import secrets; print(secrets.token_urlsafe(48))') and never change it.")]
    errors = []
    if values["PRIVACY_POLLS_PER_DAY"] < 1:
        errors.append(_error(23, "PROFILEOPS_PRIVACY_POLLS_PER_DAY must be at least 1.",
                             KNOBS["PRIVACY_POLLS_PER_DAY"].meaning))
    if values["RETENTION_CHUNK_SIZE"] < 1:
        errors.append(_error(24, "PROFILEOPS_RETENTION_CHUNK_SIZE must be at least 1.",
                             KNOBS["RETENTION_CHUNK_SIZE"].meaning))
    return errors


def check_retention_on(app_configs=None, **kwargs) -> list[checks.Warning]:
    """In production, warn about every connection that keeps some customer data for ever."""
    from django.db import DatabaseError

    from .models import TargetConnection

    if embedded():
        return []
    try:
        kept = [c.client_code for c in TargetConnection.objects.filter(
            Q(retain_values_days__isnull=True) | Q(retain_reads_days__isnull=True))
            .only("client_code")]
    except DatabaseError:  # not migrated yet: nothing to say
        return []
    if not kept:
        return []
    return [checks.Warning(
        f"Retention is off on {len(kept)} connection(s): {', '.join(kept[:10])}; their customer "
        "data (identities, values, profile reads) is kept for ever.",
        hint="Set the connection's retention (days values / reads are kept) in the admin; see "
             "docs/operations/retention.md.", id="profileops.W025")]


def _read_values() -> tuple[dict[str, int | float], list[checks.Error]]:
    """Every knob's value, and an error for each that is not a number."""
    errors: list[checks.Error] = []
    values: dict[str, int | float] = {}
    for name in KNOBS:
        try:
            values[name] = setting(name)
        except SettingError as error:
            errors.append(_error(1, str(error), f"Set PROFILEOPS_{name} to a number, or unset it "
                                                f"for the default ({KNOBS[name].default})."))
    return values, errors


def _at_least_one(values: dict, id_: int, name: str, hint: str) -> list[checks.Error]:
    if values[name] < 1:
        return [_error(id_, f"PROFILEOPS_{name} is {values[name]}; it must be at least 1.", hint)]
    return []


def _positive(values: dict, id_: int, name: str) -> list[checks.Error]:
    if values[name] <= 0:
        return [_error(id_, f"PROFILEOPS_{name} is {values[name]}; it must be more than 0 "
                            "seconds.", KNOBS[name].meaning)]
    return []


def _sending_errors(values: dict) -> list[checks.Error]:
    """The sender's knobs: batches, concurrency, timeouts against the lease, retries."""
    errors = (_at_least_one(values, 2, "SEND_BATCH_SIZE",
                            "A batch claims this many updates at a time.")
              + _at_least_one(values, 3, "SEND_CONCURRENCY", "This many requests are sent at once.")
              + _positive(values, 4, "CONNECT_TIMEOUT") + _positive(values, 5, "READ_TIMEOUT"))
    worst_request = values["CONNECT_TIMEOUT"] + values["READ_TIMEOUT"]
    if values["LEASE_SECONDS"] <= worst_request:
        errors.append(_error(
            6, f"PROFILEOPS_LEASE_SECONDS ({values['LEASE_SECONDS']}) must be longer than "
               f"PROFILEOPS_CONNECT_TIMEOUT + PROFILEOPS_READ_TIMEOUT ({worst_request:g}).",
            "A claim must outlast one request, or another worker takes the update while it is "
            "still being sent; raise the lease or lower the timeouts."))
    errors += _at_least_one(values, 7, "MAX_ATTEMPTS", "An update is tried at least once.")
    errors += _at_least_one(values, 8, "MAX_UNEXPECTED_ANSWERS",
                            "An update may see at least one unexpected answer.")
    errors += _positive(values, 9, "BACKOFF_BASE_SECONDS")
    if values["BACKOFF_BASE_SECONDS"] > values["BACKOFF_MAX_SECONDS"]:
        errors.append(_error(
            10, f"PROFILEOPS_BACKOFF_BASE_SECONDS ({values['BACKOFF_BASE_SECONDS']:g}) is more "
                f"than PROFILEOPS_BACKOFF_MAX_SECONDS ({values['BACKOFF_MAX_SECONDS']:g}).",
            "The first retry delay cannot exceed the longest one."))
    return errors + _positive(values, 11, "RUN_TIME_BUDGET_SECONDS")


def _background_errors(values: dict) -> list[checks.Error]:
    """What runs in django-q2: the send run's budget against the task timeout, the sizes of
    background imports and verification runs, the timeout against the broker's retry."""
    errors: list[checks.Error] = []
    task_timeout = (getattr(settings, "Q_CLUSTER", None) or {}).get("timeout")
    if task_timeout is not None and values["RUN_TIME_BUDGET_SECONDS"] >= task_timeout:
        errors.append(_error(
            12, f"PROFILEOPS_RUN_TIME_BUDGET_SECONDS ({values['RUN_TIME_BUDGET_SECONDS']:g}) "
                f"must be less than the django-q2 task timeout (Q_CLUSTER['timeout'] = "
                f"{task_timeout}).",
            "A send run still claiming when django-q2 kills the task leaves its claims to "
            "expire; keep the budget well inside the timeout."))
    errors += _at_least_one(values, 13, "IMPORT_BACKGROUND_ROWS",
                            "Imports above this many rows run in django-q2.")
    errors += _at_least_one(values, 16, "VERIFY_CONCURRENCY",
                            "A verification run reads this many profiles at once.")
    retry = (getattr(settings, "Q_CLUSTER", None) or {}).get("retry")
    if task_timeout is not None and retry is not None and task_timeout >= retry:
        errors.append(_error(
            14, f"Q_CLUSTER['timeout'] ({task_timeout}) must be less than Q_CLUSTER['retry'] "
                f"({retry}).",
            "Otherwise the broker hands a still-running send task to a second worker."))
    return errors


def _address_errors(values: dict) -> list[checks.Error]:
    """The proxy's and the site's URLs."""
    errors: list[checks.Error] = []
    proxy = values["TARGET_PROXY"]
    if proxy:
        parts = urlsplit(proxy)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path not in {"", "/"} \
                or parts.query or parts.fragment:
            errors.append(_error(
                15, "PROFILEOPS_TARGET_PROXY must be a proxy's URL, http://host:port or "
                    "https://host:port (credentials allowed).",
                "Unset it to send without a proxy."))
    site = values["SITE_URL"]
    if site:
        parts = urlsplit(site)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query \
                or parts.fragment or parts.username or parts.password:
            errors.append(_error(
                17, "PROFILEOPS_SITE_URL must be the address the admin is served at, "
                    "https://host[:port][/path], without credentials, query or fragment.",
                "Unset it to send alerts without a link."))
    return errors


def _bulk_errors(values: dict) -> list[checks.Error]:
    """The bulk route's knobs against Target's documented limits (ids 280-: issue 28)."""
    errors: list[checks.Error] = []
    if not 0 < values["BULK_CALLS_PER_MINUTE"] <= 50:
        errors.append(_error(
            280, f"PROFILEOPS_BULK_CALLS_PER_MINUTE is {values['BULK_CALLS_PER_MINUTE']:g}; it "
                 "must be more than 0 and at most 50.",
            "Target answers 503 beyond 50 calls a minute, shared with its Admin APIs."))
    if not 1 <= values["BULK_FILE_MAX_ROWS"] <= 500_000:
        errors.append(_error(281, "PROFILEOPS_BULK_FILE_MAX_ROWS must be 1 to 500,000.",
                             "Target takes at most 500,000 rows per file."))
    if not 1 <= values["BULK_FILE_MAX_BYTES"] < 50 * 1024 * 1024:
        errors.append(_error(282, "PROFILEOPS_BULK_FILE_MAX_BYTES must be under 50 MB.",
                             "Target takes files under 50 MB."))
    errors += _positive(values, 283, "BULK_POLL_FIRST_SECONDS")
    if values["BULK_POLL_FIRST_SECONDS"] > values["BULK_POLL_MAX_SECONDS"]:
        errors.append(_error(284, "PROFILEOPS_BULK_POLL_FIRST_SECONDS is more than "
                                  "PROFILEOPS_BULK_POLL_MAX_SECONDS.",
                             "The first poll delay cannot exceed the longest one."))
    for id_, name in ((285, "BULK_JOB_MAX_ROWS"), (286, "BULK_MAX_ATTEMPTS"),
                      (287, "BULK_TIMEOUT_HOURS"), (288, "BULK_ROWS_PER_MINUTE")):
        errors += _at_least_one(values, id_, name, KNOBS[name].meaning)
    return errors
