"""A batch decision larger than one chunk: kept when the page is shown, decided in the background.

A batch page that shows more than setwise.CHUNK updates does not post their (id, fingerprint)
pairs back (55 bytes an update: 5 MB for 100,000). When it is rendered it stores them here — one
DecisionJob with the snapshot, in id order, and its SHA-256 `digest` — and the page posts the
job's id and digest, signed for the page's scope (`job_token`). Clicking Approve or Reject
(`decision_job_start`) checks what a single decision checks first (permission, comment), binds
the job to the decision and queues it for django-q2 (`decisions_run_job`).

The task (`decision_job_run`) decides the snapshot (a ShownSnapshot row of its own, removed when
the job has run) in chunks of setwise.CHUNK updates, in id
order, each chunk in its own transaction and all or nothing (setwise.decide_set, strict): a
chunk in which any update left, changed content, or had an update of the batch's scope join its
id range is refused whole as `stale` and changes nothing; the other chunks go on. The viewer's
own updates are refused one by one (four eyes) and stay pending, as on a small batch. The
permission is checked again for every chunk: withdrawn meanwhile, the remaining chunks are
refused. Progress (chunks done, decided, refused) and the report — per chunk its first and last
id, its size, decided or refused and why — are saved after every chunk; the batch page polls
them (`decision_job_progress`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from . import routing, setwise
from .decisions import _check_decision
from .errors import StaleBatch
from .models import DecisionJob, ImportJob, ProfileUpdate, ShownSnapshot, TargetConnection

logger = logging.getLogger(__name__)

TASK_FUNCTION = "updates.tasks.decide_batch"
TASK_TIMEOUT_SECONDS = 3600
_SALT = "updates.batch_decisions.shown"
SNAPSHOT_KEEP = dt.timedelta(days=1)  # shown, never decided: removed when a new one is made


def snapshot_pairs(scope: QuerySet[ProfileUpdate]) -> list[tuple[int, str]]:
    """The scope's (id, content fingerprint) pairs in id order: one values_list query."""
    from .models import content_hash

    return [(pk, content_hash(t, i, a)) for pk, t, i, a in scope.order_by("id").values_list(
        "id", "identity_type", "identity", "attributes")]


def snapshot_digest(pairs: list[tuple[int, str]]) -> str:
    digest = hashlib.sha256()
    for pk, fingerprint in pairs:
        digest.update(f"{pk}:{fingerprint}\n".encode())
    return digest.hexdigest()


def _pack(pairs: list[tuple[int, str]]) -> bytes:
    return zlib.compress(json.dumps(pairs, separators=(",", ":")).encode(), 1)


def _unpack(data) -> list[tuple[int, str]]:
    return [(int(pk), str(fp)) for pk, fp in json.loads(zlib.decompress(bytes(data)))]


def decision_job_show(*, pairs: list[tuple[int, str]], by, connection: TargetConnection | None,
                      import_job: ImportJob | None, scope: str = "",
                      check_joined: bool = True) -> tuple[DecisionJob, str]:
    """Keep what a batch page shows (its pairs, in id order); returns the job and the token the
    page posts back. Snapshots never decided go when they are more than SNAPSHOT_KEEP old, or
    when the same person is shown the same scope again (reloading does not pile them up; an
    older tab's decision is then refused as not knowing what it showed)."""
    now = timezone.now()
    DecisionJob.objects.filter(status=DecisionJob.Status.SHOWN,
                               created_at__lt=now - SNAPSHOT_KEEP).delete()
    DecisionJob.objects.filter(status=DecisionJob.Status.SHOWN, created_by=by,
                               connection=connection, import_job=import_job).delete()
    digest = snapshot_digest(pairs)
    with transaction.atomic():
        job = DecisionJob.objects.create(
            created_by=by, created_at=now, connection=connection, import_job=import_job,
            check_joined=check_joined, digest=digest, total=len(pairs),
            chunks=-(-len(pairs) // setwise.CHUNK))
        ShownSnapshot.objects.create(job=job, pairs=_pack(pairs))
    return job, job_token(job, scope=scope)


def job_token(job: DecisionJob, *, scope: str = "") -> str:
    return signing.dumps({"job": job.pk, "digest": job.digest}, salt=f"{_SALT}:{scope}")


def read_job_token(token: str | None, *, scope: str = "") -> tuple[int, str] | None:
    """(job id, digest) from a page's token; None for a missing, tampered or other scope's."""
    if not token:
        return None
    try:
        data = signing.loads(token, salt=f"{_SALT}:{scope}")
        return int(data["job"]), str(data["digest"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None


def decision_job_start(*, job_id: int, digest: str, decision: str, by, comment: str = "",
                       background: bool = True, route: str = "auto") -> DecisionJob:
    """Decide what job `job_id` kept (the page the user was shown, with `digest`): queued for
    django-q2 after commit, or run here (background=False). The checks a decision makes before
    it looks at any update come first (permission, comment); a job that is not the user's, not
    this digest's, or already decided is refused (code `stale`)."""
    from .errors import STALE, Refused

    _, comment = _check_decision(decision, by, comment)
    with transaction.atomic():
        job = DecisionJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.created_by_id != by.pk or job.digest != digest:
            raise Refused("The page did not say which updates it showed (reload it and look "
                          "again); nothing was decided.", code=STALE)
        if job.status != DecisionJob.Status.SHOWN:
            raise Refused(f"This batch was already decided ({job.get_status_display().lower()})"
                          "; reload the page to see what is pending now.", code=STALE)
        job.decision, job.comment = decision, comment
        job.status, job.decided_at = DecisionJob.Status.QUEUED, timezone.now()
        job.route_choice, job.route_plan = route, _route_plan(job, route)
        job.save(update_fields=["decision", "comment", "status", "decided_at", "route_choice",
                                "route_plan"])
        if background:
            from django_q.tasks import async_task

            pk = job.pk
            transaction.on_commit(lambda: async_task(
                TASK_FUNCTION, pk, task_name=f"batch-decision-{pk}",
                timeout=TASK_TIMEOUT_SECONDS))
    if not background:
        job = decision_job_run(job_id=job.pk)
    return job


def _route_plan(job: DecisionJob, choice: str) -> dict:
    """The route of the whole batch, per connection, decided once at the click (each chunk
    follows it): planned on the scope's pending updates of each connection."""
    counts = dict(_scope(job).values("connection_id").annotate(n=Count("id"))
                  .values_list("connection_id", "n"))
    connections = TargetConnection.objects.in_bulk(list(counts))
    plans = {pk: routing.plan_route(connection=connections[pk], rows=n, choice=choice)
             for pk, n in counts.items()}
    return {str(pk): {"route": plan.route, "why": plan.why} for pk, plan in plans.items()}


def _scope(job: DecisionJob) -> QuerySet[ProfileUpdate]:
    from . import selectors

    qs = selectors.pending_updates(connection_id=job.connection_id)
    if job.import_job_id is not None:
        qs = qs.filter(import_job_id=job.import_job_id)
    return qs


def decision_job_run(*, job_id: int) -> DecisionJob:
    """Decide the job's snapshot chunk by chunk (see the module). Runs once: it claims the job
    (queued → running) first."""
    now = timezone.now()
    if not DecisionJob.claim(job_id, now=now):
        return DecisionJob.objects.get(pk=job_id)  # another worker has it, or it ended
    job = DecisionJob.objects.get(pk=job_id)
    fields = ["chunks_done", "decided", "refused", "report"]
    try:
        kept = ShownSnapshot.objects.filter(job=job).first()
        pairs = _unpack(kept.pairs) if kept is not None else []
        if snapshot_digest(pairs) != job.digest:
            raise ValueError("the kept snapshot does not match its digest")
        job.report, job.chunks_done, job.decided, job.refused = [], 0, 0, 0
        previous = None
        for number, start in enumerate(range(0, len(pairs), setwise.CHUNK), start=1):
            chunk = dict(pairs[start:start + setwise.CHUNK])
            entry = _decide_chunk(job, chunk, after=previous)
            entry.update(chunk=number, first=min(chunk), last=max(chunk), size=len(chunk))
            job.report.append(entry)
            job.chunks_done += 1
            job.decided += entry["decided"]
            job.refused += entry["size"] - entry["decided"]
            previous = max(chunk)
            job.save(update_fields=fields)
        job.status = DecisionJob.Status.DONE
    except Exception as error:
        logger.exception("batch decision #%s failed", job.pk)
        job.status = DecisionJob.Status.FAILED
        job.error = f"The decision stopped: {type(error).__name__}."
    job.finished_at = timezone.now()
    job.save(update_fields=[*fields, "status", "finished_at", "error"])
    ShownSnapshot.objects.filter(job=job).delete()  # decided: the report says what was done
    return job


def _decide_chunk(job: DecisionJob, chunk: Mapping[int, str], *, after: int | None) -> dict:
    """One chunk, all or nothing: its report entry."""
    by = get_user_model().objects.get(pk=job.created_by_id)  # permissions as they are now
    try:
        transition, comment = _check_decision(job.decision, by, job.comment)
        with transaction.atomic():
            result = setwise.decide_set(shown=chunk, transition=transition, by=by,
                                        comment=comment, after=after,
                                        scope=_scope(job) if job.check_joined else None,
                                        strict=True)
            if job.decision == "approve" and result.done:
                routing.route_approved(update_ids=list(result.done), by=by, plans={
                    int(pk): routing.RoutePlan(plan["route"], plan["why"], job.total, 0, None)
                    for pk, plan in job.route_plan.items()})
    except StaleBatch as stale:
        return {"outcome": "refused", "decided": 0, "own": 0, "why": " ".join(stale.messages),
                "left": stale.left[:20], "joined": stale.joined[:20],
                "changed": stale.changed[:20]}
    except ValidationError as refused:  # the permission, withdrawn meanwhile
        return {"outcome": "refused", "decided": 0, "own": 0, "why": " ".join(refused.messages)}
    why = (f"{result.own} of them you created or changed: refused under the four-eyes rule, "
           "still pending." if result.own else "")
    return {"outcome": "decided", "decided": len(result.done), "own": result.own, "why": why}


@dataclass(frozen=True)
class DecisionProgress:
    status: str
    total: int
    chunks: int
    chunks_done: int
    decided: int
    refused: int
    report: list

    @property
    def percent(self) -> int:
        return min(100, self.chunks_done * 100 // self.chunks) if self.chunks else 100

    @property
    def text(self) -> str:
        verb = "decided"
        head = (f"{self.chunks_done:,} of {self.chunks:,} chunk{'s' if self.chunks != 1 else ''}"
                f" done: {self.decided:,} of {self.total:,} updates {verb}, "
                f"{self.refused:,} not.")
        if self.status == DecisionJob.Status.QUEUED:
            return head + " (waiting for a worker)"
        if self.status == DecisionJob.Status.FAILED:
            return head + " The decision stopped; the chunks not listed were not decided."
        return head

    def as_json(self) -> dict:
        return {"status": self.status, "total": self.total, "chunks": self.chunks,
                "chunks_done": self.chunks_done, "decided": self.decided,
                "refused": self.refused, "percent": self.percent, "text": self.text,
                "report": [{k: entry.get(k) for k in ("chunk", "first", "last", "size",
                                                      "outcome", "decided", "own", "why")}
                           for entry in self.report]}


def decision_job_progress(job: DecisionJob) -> DecisionProgress:
    return DecisionProgress(job.status, job.total, job.chunks, job.chunks_done, job.decided,
                            job.refused, list(job.report))
