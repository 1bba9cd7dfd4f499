"""Read queries for the admin and the notebook: the update list's search, the approval queue, an
update's timeline, the operations dashboard, and updates, attempts and audit events selected by
id and filter.

Everything here reads a bounded number of rows whatever the history holds (a million updates, a
year of daily usage): queries follow the indexes declared in models.py, counts are capped where
an exact figure would mean scanning the table, and statistics are computed in Python from a
bounded slice. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field
from functools import lru_cache

from django.db import connection as db
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from . import audit, quota
from .models import (
    AuditEvent,
    CredentialState,
    DailyUsage,
    ImportJob,
    ProfileUpdate,
    SendAttempt,
    SendRun,
    TargetConnection,
    UpdateStatus,
)

S = UpdateStatus
CHART_DAYS = 30
LATENCY_SAMPLE = 1000
STATUS_COUNT_CAP = 100_000
TIMELINE_LIMIT = 500


# --- search ------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _codepoint_ordered(vendor: str, alias: str) -> bool:
    """Whether the database orders text by code point, so a prefix is one contiguous index range."""
    if vendor == "sqlite":
        return True  # BINARY collation: memcmp over UTF-8, which keeps code point order
    if vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
            row = cursor.fetchone()
        return bool(row) and row[0].lower() in {"c", "posix", "c.utf-8", "c.utf8", "ucs_basic"}
    return False


def search_identity(queryset: QuerySet[ProfileUpdate], term: str) -> QuerySet[ProfileUpdate]:
    """Updates whose identity is `term` exactly; with a trailing '*', whose identity starts with
    it; '#123' finds update 123. Case-sensitive, like Target's ids, so the identity index serves
    the lookup (a case-insensitive LIKE would scan the table)."""
    term = term.strip()
    if not term:
        return queryset
    if term.startswith("#") and term[1:].isascii() and term[1:].isdigit():
        return queryset.filter(pk=int(term[1:]))
    if term.endswith("*") and len(term) > 1:
        prefix = term.rstrip("*")
        if _codepoint_ordered(db.vendor, db.alias) and (after := _next_prefix(prefix)):
            # The very same rows as a range the identity index scans, and nothing beside it: a
            # LIKE next to the range made PostgreSQL estimate a handful of rows for a prefix that
            # matched 80,000 of 10 million and fetch them all before sorting (0.5 s against
            # 6 ms). SQLite's LIKE ignores ASCII case anyway; the range does not.
            return queryset.filter(identity__gte=prefix, identity__lt=after)
        return queryset.filter(identity__startswith=prefix)
    return queryset.filter(identity=term)


def _next_prefix(prefix: str) -> str:
    """The first string after every string that starts with `prefix`, in code point order: the
    prefix with its last character moved one code point on ("" when there is none)."""
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return ""
    # Surrogates never occur in stored text; the next character that can follows them.
    following = 0xE000 if 0xD800 <= last + 1 <= 0xDFFF else last + 1
    return prefix[:-1] + chr(following)


# --- what an update will send --------------------------------------------------------------------

def attribute_rows(update: ProfileUpdate) -> list[tuple[str, str]]:
    """(name, value) in the order the request carries them: exactly what Target will receive."""
    attributes = update.attributes if isinstance(update.attributes, dict) else {}
    return [(name, attributes[name]) for name in sorted(attributes)]


# --- the approval queue ------------------------------------------------------------------------

def pending_updates(*, connection_id: int | None = None) -> QuerySet[ProfileUpdate]:
    """Pending updates, longest-waiting first (by id: the status/-id index read backwards)."""
    qs = ProfileUpdate.objects.filter(status=S.PENDING)
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    return qs.select_related("connection", "created_by", "last_edited_by").order_by("id")


def queue_updates(*, connection_id: int | None = None, identity: str = "",
                  reason: str = "") -> QuerySet[ProfileUpdate]:
    """The queue's rows: pending_updates narrowed by identity (search_identity: exact, a prefix
    ending in '*' as an index range, '#123') and by a reason containing `reason` (any case;
    read among the pending rows only, which the status index picks out)."""
    queryset = search_identity(pending_updates(connection_id=connection_id), identity)
    reason = reason.strip()
    return queryset.filter(reason__icontains=reason) if reason else queryset


def imports_waiting(*, connection_id: int | None = None, limit: int = 20
                    ) -> list[tuple[ImportJob, int]]:
    """(import, how many of its updates still wait for a decision), newest import first, only
    imports with at least one pending update: one grouped count over the pending rows, then one
    read of those imports — never a count per import."""
    pending = ProfileUpdate.objects.filter(status=S.PENDING, import_job__isnull=False)
    if connection_id is not None:
        pending = pending.filter(connection_id=connection_id)
    counts = {row["import_job"]: row["n"] for row in pending.order_by().values("import_job")
              .annotate(n=Count("id")).order_by("-import_job")[:limit]}
    jobs = (ImportJob.objects.defer("file_data", "errors").select_related("connection")
            .filter(pk__in=counts).order_by("-id"))
    return [(job, counts[job.pk]) for job in jobs]


def capped_count(queryset: QuerySet, *, cap: int) -> tuple[int, bool]:
    """(count, capped): counts at most cap + 1 rows, so a huge table is never counted in full."""
    n = queryset.order_by()[: cap + 1].count()
    return min(n, cap), n > cap


# --- an update's timeline ------------------------------------------------------------------------

@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # "event" or "attempt"
    event: AuditEvent | None = None
    attempt: SendAttempt | None = None


def update_timeline(*, update: ProfileUpdate, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Audit events and send attempts of `update`, oldest first (the latest `limit` of each).

    An imported update has no audit row of its own for its creation: its "imported" entry is
    rebuilt from its import job's one AuditEvent (who, when, the file) and the update's first
    state — the values as imported, even after edits (see _imported_event)."""
    events = list(
        AuditEvent.objects.filter(update=update).select_related("actor")
        .order_by("-at", "-id")[:limit]
    )
    if update.import_job_id is not None and len(events) < limit:
        events.append(_imported_event(update))
    attempts = list(SendAttempt.objects.filter(update=update).order_by("-number")[:limit])
    entries = [TimelineEntry(e.at, "event", event=e) for e in events]
    entries += [TimelineEntry(a.started_at, "attempt", attempt=a) for a in attempts]
    # At the same instant an event (e.g. "claimed for sending") comes before the attempt.
    entries.sort(key=lambda e: (e.at, 0 if e.kind == "event" else 1,
                                (e.event.pk or 0) if e.event else e.attempt.number))
    return entries


CONTENT_FIELDS = ("identity_type", "identity", "attributes")


def _imported_event(update: ProfileUpdate) -> AuditEvent:
    """The update's "imported" entry (not saved): the job's AuditEvent, found through the
    (update, at) index at the job's finished_at, with this update's content as imported. The
    content as imported is the update's first state: each field's "before" in the oldest
    event that changed it, or its value now if nothing ever did."""
    job = (ImportJob.objects.filter(pk=update.import_job_id).select_related("created_by")
           .defer("file_data").get())
    job_event = (AuditEvent.objects.filter(update__isnull=True, at=job.finished_at,
                                           changes__import_job=job.pk)
                 .select_related("actor").first()) if job.finished_at else None
    first = {field: getattr(update, field) for field in CONTENT_FIELDS}
    unseen = set(CONTENT_FIELDS)
    for changes in (AuditEvent.objects.filter(update=update).order_by("at", "id")
                    .values_list("changes", flat=True).iterator()):
        for name in [f for f in unseen if isinstance(changes, dict)
                     and isinstance(changes.get(f), dict) and "before" in changes[f]]:
            first[name] = changes[name]["before"]
            unseen.discard(name)
        if not unseen:
            break
    return audit.unsaved(
        job_event.action if job_event else AuditEvent.Action.IMPORTED,
        at=job_event.at if job_event else (job.finished_at or update.created_at),
        by=job_event.actor if job_event else job.created_by,
        update=update, connection=job.connection_id,
        to_status=job_event.to_status if job_event else "",
        comment=f"Imported from file {job.file_name} (import #{job.pk})",
        changes={field: {"before": None, "after": first[field]} for field in CONTENT_FIELDS})


# --- the dashboard -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayUsage:
    day: dt.date
    requests: int = 0
    acknowledged: int = 0
    failed: int = 0


@dataclass
class ConnectionPicture:
    connection: TargetConnection
    # One read of the rolling window (its minute rows): the figures, the hourly chart and when
    # quota frees up all come from it, so they agree.
    window: quota.WindowPicture
    days: list[DayUsage] = field(default_factory=list)

    @property
    def window_requests(self) -> int:
        return self.window.used

    @property
    def limit(self) -> int:
        return self.window.limit

    @property
    def oldest_leaves_at(self) -> dt.datetime | None:
        return self.window.oldest_leaves_at

    @property
    def remaining(self) -> int:
        return self.window.remaining

    @property
    def percent_used(self) -> float:
        return self.window.percent_used

    @property
    def totals(self) -> DayUsage:
        return DayUsage(
            self.days[-1].day if self.days else timezone.now().date(),
            sum(d.requests for d in self.days),
            sum(d.acknowledged for d in self.days),
            sum(d.failed for d in self.days),
        )


@dataclass(frozen=True)
class StatusCount:
    status: str
    label: str
    count: int
    capped: bool


@dataclass(frozen=True)
class Latency:
    sample_size: int
    median_ms: float | None
    p95_ms: int | None
    since: dt.datetime | None


@dataclass
class Dashboard:
    now: dt.datetime
    connections: list[ConnectionPicture]
    statuses: list[StatusCount]
    oldest_pending: ProfileUpdate | None
    last_run: SendRun | None
    latency: Latency


def daily_usage(*, connection_ids: list[int], today: dt.date,
                days: int = CHART_DAYS) -> dict[int, list[DayUsage]]:
    """Per connection, one DayUsage per day of the last `days` days up to `today` (zeros filled)."""
    first = today - dt.timedelta(days=days - 1)
    found: dict[tuple[int, dt.date], DayUsage] = {}
    rows = DailyUsage.objects.filter(connection_id__in=connection_ids, day__gte=first,
                                     day__lte=today)
    for row in rows.values("connection_id", "day", "requests", "acknowledged", "failed"):
        found[(row["connection_id"], row["day"])] = DayUsage(
            row["day"], row["requests"], row["acknowledged"], row["failed"])
    span = [first + dt.timedelta(days=i) for i in range(days)]
    return {cid: [found.get((cid, day), DayUsage(day)) for day in span] for cid in connection_ids}


def status_counts(*, cap: int = STATUS_COUNT_CAP) -> list[StatusCount]:
    """Updates per status, each counted through the status index and capped at `cap`: bounded
    work even when one status holds most of a million rows."""
    result = []
    for status, label in S.choices:
        n, capped = capped_count(ProfileUpdate.objects.filter(status=status), cap=cap)
        result.append(StatusCount(status, label, n, capped))
    return result


def oldest_pending() -> ProfileUpdate | None:
    """The oldest update (lowest id) that is waiting for approval."""
    return (ProfileUpdate.objects.filter(status=S.PENDING).select_related("connection")
            .order_by("id").first())


def last_send_run() -> SendRun | None:
    return SendRun.objects.order_by("-started_at").first()


def percentile(sorted_values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of an ascending list (p95 of 20 values is the 19th)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def ack_latency(*, sample: int = LATENCY_SAMPLE) -> Latency:
    """Median and 95th percentile latency of the latest `sample` acknowledged attempts (read
    through the partial att_acked_recent index)."""
    rows = list(
        SendAttempt.objects.filter(outcome=SendAttempt.Outcome.ACKNOWLEDGED)
        .order_by("-started_at")
        .values_list("latency_ms", "started_at")[:sample]
    )
    values = sorted(ms for ms, _ in rows if ms is not None)
    if not values:
        return Latency(0, None, None, None)
    return Latency(len(values), statistics.median(values), percentile(values, 0.95), rows[-1][1])


def dashboard(*, now: dt.datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    connections = list(TargetConnection.objects.order_by("-active", "label"))
    usage = daily_usage(connection_ids=[c.pk for c in connections], today=now.date())
    pictures = [
        ConnectionPicture(
            connection=c, window=quota.window_picture(connection=c, now=now), days=usage[c.pk])
        for c in connections
    ]
    return Dashboard(
        now=now,
        connections=pictures,
        statuses=status_counts(),
        oldest_pending=oldest_pending(),
        last_run=last_send_run(),
        latency=ack_latency(),
    )


# --- the admin index's recent actions ---------------------------------------------------------

RECENT_EVENTS_LIMIT = 10
RECENT_OWN_UPDATES = 50  # the viewer's latest updates whose events by others are shown


def recent_workflow_events(*, user, limit: int = RECENT_EVENTS_LIMIT) -> list[AuditEvent]:
    """The workflow events that concern `user`, newest first: what they did to updates
    (staged, imported, submitted, approved, rejected, re-queued…) and what happened to their own
    latest updates (approved by a supervisor, sent, failed, verified…).

    Two bounded queries (the actor's foreign-key index; the audit index by update for the
    viewer's latest `RECENT_OWN_UPDATES` updates), merged here. Events of updates an unfinished
    import is still writing are left out — they cannot be opened yet."""
    if not getattr(user, "pk", None):
        return []
    live = {"update__isnull": False, "update__import_pending__isnull": True}
    own = list(AuditEvent.objects.filter(actor=user, **live)
               .select_related("actor").order_by("-id")[:limit])
    latest = list(ProfileUpdate.objects.filter(created_by=user).order_by("-id")
                  .values_list("id", flat=True)[:RECENT_OWN_UPDATES])
    others = list(AuditEvent.objects.filter(update_id__in=latest, **live)
                  .exclude(actor=user).select_related("actor").order_by("-id")[:limit]
                  ) if latest else []
    events = {e.pk: e for e in own + others}.values()
    return sorted(events, key=lambda e: (e.at, e.pk), reverse=True)[:limit]


# --- selected by id and filter (the notebook's listings) ------------------------------------------

def person_named(username: str):
    """The user called `username` (active or not), read afresh; None when there is none."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(username=username).first()


def active_connections() -> QuerySet[TargetConnection]:
    return TargetConnection.objects.filter(active=True)


def connection_named(ref: TargetConnection | int | str | None) -> TargetConnection:
    """The connection `ref` names — itself (read afresh), its id, its label or its client code;
    None names the one active connection. ValueError when None could mean several (or none),
    LookupError naming the connections there are when nothing matches."""
    if isinstance(ref, TargetConnection):
        return TargetConnection.objects.get(pk=ref.pk)
    if ref is None:
        active = list(active_connections()[:2])
        if len(active) == 1:
            return active[0]
        raise ValueError("Name the connection (label or client code): "
                         f"{len(active)} active connections could be meant.")
    if isinstance(ref, int):
        found = TargetConnection.objects.filter(pk=ref).first()
    else:
        found = (TargetConnection.objects.filter(label=ref).first()
                 or TargetConnection.objects.filter(client_code=ref).first())
    if found is None:
        labels = ", ".join(TargetConnection.objects.values_list("label", flat=True)) or "none"
        raise LookupError(f"No connection {ref!r} (connections: {labels}).")
    return found


def updates_selected(*, ids: list[int] | None = None, connection: TargetConnection | None = None,
                     statuses: list[str] | None = None, created_by: str | None = None,
                     reason: str | None = None, import_job_id: int | None = None
                     ) -> QuerySet[ProfileUpdate]:
    """Updates by id, narrowed by every filter given (None: not narrowed), by id. `import_job_id`
    selects the updates that import created — never those that merely carry its reason text."""
    return _narrowed(ProfileUpdate.objects.all(), pk__in=ids, connection=connection,
                     status__in=statuses, created_by__username=created_by, reason=reason,
                     import_job_id=import_job_id).order_by("id")


def _narrowed(queryset: QuerySet, **lookups) -> QuerySet:
    """`queryset` filtered by each lookup whose value is not None (None: not narrowed)."""
    return queryset.filter(**{name: value for name, value in lookups.items() if value is not None})


def import_job_update_ids(job: ImportJob) -> dict[tuple[str, str], int]:
    """{(identity type, identity): update id} of the updates `job` created (one per visitor)."""
    created = (ProfileUpdate.objects.filter(import_job=job)
               .values_list("identity_type", "identity", "id"))
    return {(t, i): pk for t, i, pk in created.iterator(chunk_size=5000)}


def attempts_selected(*, update_ids: list[int] | None = None,
                      connection: TargetConnection | None = None, outcome: str | None = None
                      ) -> QuerySet[SendAttempt]:
    """Send attempts of the updates, connection and outcome given, newest first."""
    return _narrowed(SendAttempt.objects.all(), update_id__in=update_ids, connection=connection,
                     outcome=outcome).order_by("-id")


def audit_selected(*, update_ids: list[int] | None = None,
                   connection: TargetConnection | None = None, actor: str | None = None,
                   action: str | None = None) -> QuerySet[AuditEvent]:
    """Audit events of the updates, connection, actor and action given, newest first. An
    imported update's creation is its import's one event (no update of its own; see
    update_timeline), so the events of `update_ids` include their imports' events."""
    qs = AuditEvent.objects.all()
    if update_ids is not None:
        jobs = set(ProfileUpdate.objects.filter(pk__in=update_ids, import_job__isnull=False)
                   .values_list("import_job_id", flat=True))
        qs = qs.filter(Q(update_id__in=update_ids)
                       | Q(update__isnull=True, changes__import_job__in=jobs))
    return _narrowed(qs, connection=connection, actor__username=actor,
                     action=action).order_by("-id")


def credential_state(connection: TargetConnection | None) -> CredentialState | None:
    """The tokens' state of a connection with Adobe credentials (None: nothing obtained yet)."""
    if connection is None or connection.pk is None:
        return None
    return CredentialState.objects.filter(connection_id=connection.pk).first()
