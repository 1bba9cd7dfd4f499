"""Customer data in the bulk route's records: forgotten with the visitor, purged with retention.

A BulkFile keeps the file exactly as uploaded, zlib-compressed (``body``: identities and
percent-encoded values of up to 500,000 visitors, for retries and as proof), and Target's
answers (``BulkFile.answer``, ``BulkCall.answer``), which may quote what they were sent. A scan
of the database cannot see into compressed bytes, so these are erased explicitly:

- **Forgetting a visitor** (forgetting.py) is refused while one of the visitor's updates is in a
  file Target has not accepted yet (the file is still to be sent as it is); otherwise it rewrites
  every kept body that carried the visitor without the visitor's lines, notes "N lines removed on
  <date> by privacy request #" on the file (``purges``; ``sha256`` and ``size_bytes`` stay those
  of the file as sent), and empties every answer of those files that names the identity.
- **Retention** (retention.py) empties a finished file's body and its answers once the values
  retention of its connection has passed since it finished *and* the values of every update it
  carried are purged; it deletes a bulk job (its files and calls) once the records retention has
  passed since all its files were emptied and no update record refers to it any more.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import Counter
from collections.abc import Iterable
from xml.sax.saxutils import escape

from django.db.models import Exists, OuterRef, Q, QuerySet

from .models import BulkCall, BulkFile, BulkJob, ProfileUpdate, TargetConnection
from .target import encode_component

# The tables a purge reports counts for, in the words of the evidence (as purging.py's).
BULK_FILES, BULK_LINES, BULK_ANSWERS, BULK_JOBS_DELETED = (
    "bulk files", "bulk file lines", "bulk answers", "bulk jobs deleted")
FINISHED = (BulkFile.State.COMPLETE, BulkFile.State.STUCK, BulkFile.State.TIMED_OUT,
            BulkFile.State.REFUSED)
PURGED_ANSWER = "(purged)"


# --- forgetting a visitor ------------------------------------------------------------------------

def unaccepted_files(updates: Iterable[ProfileUpdate]) -> QuerySet:
    """The files not yet accepted by Target that carry one of these updates."""
    file_ids = {u.bulk_file_id for u in updates if u.bulk_file_id}
    return BulkFile.objects.filter(pk__in=file_ids, state=BulkFile.State.PENDING)


def lines_without(body: bytes, identity: str) -> tuple[bytes, int]:
    """The file `body` without the rows of `identity`, and how many rows went. A row's first
    field is the percent-encoded identity and every row has at least one value after it
    (bulk_files.route_problem), so "<identity>," at the start of a line matches only its rows."""
    start = encode_component(identity).encode("ascii") + b","
    lines = body.splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if not line.startswith(start)]
    return b"".join(kept), len(lines) - len(kept)


def _names(text: str, identity: str) -> bool:
    return any(needle in text for needle in {identity, encode_component(identity),
                                             escape(identity)})


def forget_in_files(updates: Iterable[ProfileUpdate], identity: str, *, request_id: int,
                    now: dt.datetime) -> Counter:
    """Erase `identity` from the kept bodies and answers of the files that carried `updates`
    (the visitor's, read before their purge); call inside the forget's transaction."""
    file_ids = sorted({u.bulk_file_id for u in updates if u.bulk_file_id})
    counts: Counter = Counter({BULK_FILES: 0, BULK_LINES: 0, BULK_ANSWERS: 0})
    files = (BulkFile.objects.select_for_update().filter(pk__in=file_ids).order_by("pk")
             .only("pk", "body", "answer", "purges"))
    for file in files:
        changed: list[str] = []
        body, removed = lines_without(zlib.decompress(bytes(file.body)) if file.body else b"",
                                      identity)
        if removed:
            file.body = zlib.compress(body)
            file.purges = [*(file.purges or []), {"at": now.isoformat(), "lines": removed,
                                                   "privacy_request": request_id}]
            changed += ["body", "purges"]
            counts[BULK_FILES] += 1
            counts[BULK_LINES] += removed
        if file.answer and _names(file.answer, identity):
            file.answer = PURGED_ANSWER
            changed.append("answer")
            counts[BULK_ANSWERS] += 1
        if changed:
            file.save(update_fields=changed)
    calls = BulkCall.objects.filter(file_id__in=file_ids).exclude(answer="").only("pk", "answer")
    naming = [call.pk for call in calls.iterator() if _names(call.answer, identity)]
    counts[BULK_ANSWERS] += BulkCall.objects.filter(pk__in=naming).update(answer=PURGED_ANSWER)
    return counts


# --- retention -----------------------------------------------------------------------------------

def _cutoff(days: int | None, now: dt.datetime) -> dt.datetime | None:
    return None if days is None else now - dt.timedelta(days=days)


def bodies_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    """The connection's finished files whose body and answers are due for emptying."""
    cutoff = _cutoff(connection.retain_values_days, now)
    if cutoff is None:
        return BulkFile.objects.none()
    unpurged = ProfileUpdate.with_pending_imports.filter(bulk_file=OuterRef("pk"),
                                                         purged_at__isnull=True)
    return (BulkFile.objects.filter(job__connection=connection, body_purged_at__isnull=True,
                                    state__in=FINISHED, finished_at__lt=cutoff)
            .exclude(Exists(unpurged)))


def purge_bodies(ids: list[int], now: dt.datetime) -> Counter:
    files = BulkFile.objects.filter(pk__in=ids, body_purged_at__isnull=True, state__in=FINISHED)
    emptied = list(files.select_for_update().values_list("pk", flat=True))
    answers = (BulkCall.objects.filter(file_id__in=emptied).exclude(answer="")
               .update(answer=""))
    files = BulkFile.objects.filter(pk__in=emptied)
    return Counter({BULK_FILES: files.update(body=b"", answer="", body_purged_at=now),
                    BULK_ANSWERS: answers})


def jobs_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    """The connection's bulk jobs whose record is due for deleting: every file emptied before
    the records retention's cutoff, no update record pointing at one of its files."""
    cutoff = _cutoff(connection.retain_records_days, now)
    if cutoff is None:
        return BulkJob.objects.none()
    kept_files = BulkFile.objects.filter(job=OuterRef("pk")).filter(
        Q(body_purged_at__isnull=True) | Q(body_purged_at__gte=cutoff))
    return (BulkJob.objects.filter(connection=connection, finished_at__lt=cutoff)
            .exclude(Exists(kept_files)).exclude(Exists(_referring_updates())))


def _referring_updates() -> QuerySet:
    return ProfileUpdate.with_pending_imports.filter(bulk_file__job=OuterRef("pk"))


def delete_jobs(ids: list[int], now: dt.datetime) -> Counter:
    # Checked again: an update record still pointing at a file protects it (on_delete=PROTECT).
    jobs = BulkJob.objects.filter(pk__in=ids).exclude(Exists(_referring_updates()))
    deleted = jobs.delete()[1]
    return Counter({BULK_JOBS_DELETED: deleted.get(BulkJob._meta.label, 0)})
