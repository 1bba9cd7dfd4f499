"""Replacing customer data with keyed hashes, table by table — the one way both the retention
(retention.py) and forgetting a visitor (forgetting.py) erase it.

Each function purges the rows it is given inside the caller's transaction and returns how many
it changed. What is purged, and into what:

    ProfileUpdate   identity, attribute values, prior values, reason and decision comment →
                    keyed hashes (hashing.py); the last error emptied; the approval fingerprint
                    re-keyed; `purged_at` and `purge_reason` set
    ProfileRead     the values Target returned → keyed hashes; the error text emptied
    SendAttempt     Target's answer body and the error text emptied
    AuditEvent      every value in `changes` and the comment → keyed hashes (field names stay)
    LogEntry        the admin's own log names an update by its identity → "#<id> (purged)"
    BatchRead       the verdicts' content fingerprints (plain SHA-256 of identity and values)
                    → keyed hashes
    ImportJob       the uploaded file emptied; each error keeps its row and column, not its text

Attribute names, states, times, counts and hashes stay: "was the same value sent twice?" and the
audit's structure survive the values.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet

from .hashing import hashed_tree, keyed_hash
from .models import AuditEvent, BatchRead, ImportJob, ProfileRead, ProfileUpdate, SendAttempt

# The tables a purge reports counts for, in the words of the evidence.
UPDATES, READS, ATTEMPTS, AUDIT, ADMIN_LOG, IMPORTS, DELETED = (
    "profile updates", "profile reads", "send attempts", "audit events", "admin log entries",
    "import jobs", "records deleted")

PURGED_ERROR = "(purged)"
_UPDATE_FIELDS = ["identity", "attributes", "prior_values", "reason", "decision_comment",
                  "last_error", "approved_hash", "purged_at", "purge_reason"]


def _hashed_text(text: str) -> str:
    return keyed_hash(text) if text else ""


def purge_updates(update_ids: Sequence[int], *, now: dt.datetime, reason: str) -> Counter:
    """Purge these updates and everything that holds their values. Call with the rows locked
    (or known final) inside a transaction."""
    counts: Counter = Counter()
    updates = list(ProfileUpdate.with_pending_imports.filter(pk__in=update_ids))
    for update in updates:
        update.identity = keyed_hash(update.identity)
        update.attributes = hashed_tree(update.attributes)
        update.prior_values = hashed_tree(update.prior_values)
        update.reason = _hashed_text(update.reason)
        update.decision_comment = _hashed_text(update.decision_comment)
        update.last_error = ""
        update.approved_hash = _hashed_text(update.approved_hash)
        update.purged_at, update.purge_reason = now, reason
    ProfileUpdate.with_pending_imports.bulk_update(updates, _UPDATE_FIELDS)
    counts[UPDATES] = len(updates)
    ids = [u.pk for u in updates]
    counts[READS] = purge_reads(ProfileRead.objects.filter(update_id__in=ids), now=now)
    counts[ATTEMPTS] = purge_attempts(SendAttempt.objects.filter(update_id__in=ids), now=now)
    counts[AUDIT] = purge_audit(AuditEvent.objects.filter(update_id__in=ids))
    counts[ADMIN_LOG] = _purge_admin_log(ids)
    _rekey_batch_reads(ids)
    return counts


def purge_reads(reads: QuerySet, *, now: dt.datetime) -> int:
    rows = list(reads.filter(purged_at__isnull=True).only("pk", "attributes", "error"))
    for read in rows:
        read.attributes = hashed_tree(read.attributes)
        read.error = ""
        read.purged_at = now
    ProfileRead.objects.bulk_update(rows, ["attributes", "error", "purged_at"])
    return len(rows)


def purge_attempts(attempts: QuerySet, *, now: dt.datetime) -> int:
    return attempts.filter(purged_at__isnull=True).update(response_body="", error="",
                                                         purged_at=now)


def purge_audit(events: QuerySet) -> int:
    rows = list(events.only("pk", "changes", "comment"))
    for event in rows:
        event.changes = hashed_tree(event.changes)
        event.comment = _hashed_text(event.comment)
    AuditEvent.objects.bulk_update(rows, ["changes", "comment"])
    return len(rows)


def _rekey_batch_reads(update_ids: list[int]) -> None:
    """A batch read's verdicts hold each update's content fingerprint, a plain SHA-256 of its
    identity and values (like approved_hash): re-keyed, so no guess can be confirmed against it."""
    keys = [str(pk) for pk in update_ids]
    jobs: dict[int, BatchRead] = {}
    for start in range(0, len(keys), 100):  # SQLite limits an expression's depth (1,000)
        found = BatchRead.objects.filter(verdicts__has_any_keys=keys[start:start + 100])
        jobs.update((job.pk, job) for job in found.only("pk", "verdicts").exclude(pk__in=jobs))
    for job in jobs.values():
        for key in keys:
            entry = job.verdicts.get(key)
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str):
                entry[1] = keyed_hash(entry[1])
    BatchRead.objects.bulk_update(list(jobs.values()), ["verdicts"])


def purge_admin_log_naming(update_ids: list[int], identity: str) -> int:
    """Rename the admin log entries of these updates that name `identity`."""
    return _purge_admin_log(update_ids, naming=identity)


def _purge_admin_log(update_ids: list[int], naming: str | None = None) -> int:
    content_type = ContentType.objects.get_for_model(ProfileUpdate)
    entries = LogEntry.objects.filter(content_type=content_type,
                                      object_id__in=[str(pk) for pk in update_ids])
    if naming is not None:  # only the entries that name it (an update edited to another)
        entries = entries.filter(object_repr__contains=naming)
    changed = 0
    for entry in entries.only("pk", "object_id"):
        changed += LogEntry.objects.filter(pk=entry.pk).update(
            object_repr=f"#{entry.object_id} (purged)")
    return changed


def purge_import_jobs(jobs: QuerySet, *, now: dt.datetime) -> int:
    """Empty the uploaded files and the errors' texts (which may quote a cell)."""
    rows = list(jobs.filter(purged_at__isnull=True).only("pk", "errors"))
    for job in rows:
        job.file_data = b""
        job.errors = [{"row": e.get("row"), "column": e.get("column"), "message": PURGED_ERROR}
                      for e in job.errors if isinstance(e, dict)]
        job.purged_at = now
    ImportJob.objects.bulk_update(rows, ["file_data", "errors", "purged_at"])
    return len(rows)
