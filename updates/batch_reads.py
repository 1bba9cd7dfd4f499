"""What a batch of pending updates would do at Target: from its sample, one verdict per sampled
update (changes, unchanged, no profile at Target) and an estimate for the whole batch, with its
uncertainty, per verdict; and, read whole in the background (a BatchRead, run by django-q2), the
updates that change something, so that only those are decided.

Verdicts come from reads already on record no older than DIFF_MAX_READ_AGE_SECONDS — the live
diff's reads (reading.update_live_diff), which the batch page fills in by script — so nothing here
waits for Target. A sampled update without such a read is "not read" and counts in no share.

The estimate is a Wilson score interval (95 %) of each verdict's share among the sampled updates
that were read, scaled to the batch. It treats the sample as drawn with replacement, which
overstates the uncertainty a little for a sample that is a large part of its batch; a sample
that covers the whole batch is exact.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import logging
import time

import requests
from django.db import transaction
from django.utils import timezone

from . import reading
from .conf import setting
from .errors import require_perm
from .models import BatchRead, ImportJob, ProfileRead, ProfileUpdate, TargetConnection, UpdateStatus
from .permissions import PERM_APPROVE

logger = logging.getLogger(__name__)

# verdict -> how a row says it, and how the estimate says it of visitors; in the page's order.
VERDICTS = {
    "no_profile": ("no profile at Target", "have no profile at Target (acknowledged, not applied)"),
    "unchanged": ("unchanged", "already hold every staged value (unchanged)"),
    "changes": ("changes", "would change something at Target"),
}
NOT_READ = "not_read"
NOT_READ_LABEL = "not read yet"
GONE = "gone"  # a whole-batch read: no longer pending when its turn came
Z_95 = 1.959963984540054


def verdict(update: ProfileUpdate, read: ProfileRead | None) -> str:
    """What sending `update` would do at Target per `read`: a VERDICTS key, or NOT_READ."""
    if read is None or read.outcome == ProfileRead.Outcome.ERROR:
        return NOT_READ
    if read.outcome == ProfileRead.Outcome.NOT_FOUND:
        return "no_profile"
    return "unchanged" if reading.changes_nothing(update, read) else "changes"


def label(key: str) -> str:
    return VERDICTS[key][0] if key in VERDICTS else NOT_READ_LABEL


def fresh_reads(update_ids: list[int], *, now: dt.datetime | None = None
                ) -> dict[int, ProfileRead]:
    """The newest usable read of each update no older than DIFF_MAX_READ_AGE_SECONDS (one
    query): the reads the live diff would reuse."""
    now = now or timezone.now()
    since = now - dt.timedelta(seconds=setting("DIFF_MAX_READ_AGE_SECONDS"))
    latest: dict[int, ProfileRead] = {}
    reads = (ProfileRead.objects.filter(update_id__in=update_ids, at__gte=since)
             .exclude(outcome=ProfileRead.Outcome.ERROR).order_by("update_id", "-at", "-id"))
    for read in reads:
        latest.setdefault(read.update_id, read)
    return latest


def sample_verdicts(updates: list[ProfileUpdate], *, now: dt.datetime | None = None
                    ) -> dict[int, str]:
    """update id -> verdict, from fresh reads on record only (never reads Target)."""
    reads = fresh_reads([u.pk for u in updates], now=now)
    return {u.pk: verdict(u, reads.get(u.pk)) for u in updates}


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (low, high), both in 0..1."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - margin)
    high = 1.0 if successes == n else min(1.0, centre + margin)
    return low, high


@dataclass(frozen=True)
class Share:
    key: str
    seen: int  # sampled updates with this verdict
    read: int  # sampled updates that were read
    batch_size: int
    low: float
    high: float

    @property
    def share(self) -> float:
        return self.seen / self.read if self.read else 0.0

    @property
    def exact(self) -> bool:
        return self.read >= self.batch_size

    @property
    def text(self) -> str:
        what = VERDICTS[self.key][1]
        if self.exact:
            return (f"{self.seen:,} of {self.batch_size:,} ({self.share:.0%}) {what} — every "
                    "update of the batch was read.")
        return (f"About {self.share:.0%} (between {self.low:.0%} and {self.high:.0%}, 95 % "
                f"confidence; {self.seen:,} of {self.read:,} sampled) {what}: roughly "
                f"{round(self.share * self.batch_size):,} of {self.batch_size:,} — between "
                f"{math.floor(self.low * self.batch_size):,} and "
                f"{math.ceil(self.high * self.batch_size):,}.")


@dataclass(frozen=True)
class Estimate:
    batch_size: int
    sampled: int
    read: int
    shares: list[Share]

    @property
    def complete(self) -> bool:
        """Every sampled update was read."""
        return self.read == self.sampled

    def as_json(self) -> dict:
        return {"batch_size": self.batch_size, "sampled": self.sampled, "read": self.read,
                "complete": self.complete,
                "shares": [{"verdict": s.key, "seen": s.seen, "share": round(s.share, 4),
                            "low": round(s.low, 4), "high": round(s.high, 4), "text": s.text}
                           for s in self.shares]}


def batch_estimate(verdicts: dict[int, str], *, batch_size: int) -> Estimate:
    """Per verdict, its share of the batch as estimated from the sample's verdicts."""
    read = [v for v in verdicts.values() if v in VERDICTS]
    shares = []
    for key in VERDICTS:
        seen = read.count(key)
        low, high = wilson(seen, len(read))
        shares.append(Share(key, seen, len(read), batch_size, low, high))
    return Estimate(batch_size, len(verdicts), len(read), shares if read else [])


# --- the whole batch, read in the background ---------------------------------------------------

TASK_FUNCTION = "updates.tasks.read_batch"
TASK_TIMEOUT_SECONDS = 3600  # 10,000 reads at 10 a second take about 17 minutes
SAVE_EVERY_SECONDS = 2.0  # progress written at most this often (and at the end)
CHUNK = 500  # updates loaded at a time
READ_WAIT_SECONDS = 5.0  # one read waits this long for the rate limit, then tries again
READ_TRIES = 12
LEFT_OUT_WHY = {
    "unchanged": "unchanged: Target already holds every staged value",
    "no_profile": "no profile at Target: it would be acknowledged but not applied",
    NOT_READ: "could not be read from Target",
    "joined": "joined the batch after the read",
    "changed": "its content changed since the read",
}


def batch_read_current(*, connection_id: int | None, import_job_id: int | None
                       ) -> BatchRead | None:
    """The newest whole-batch read of this scope, if any."""
    return (BatchRead.objects.filter(connection_id=connection_id, import_job_id=import_job_id)
            .defer("update_ids").order_by("-id").first())


def batch_read_start(*, update_ids: list[int], connection: TargetConnection | None,
                     import_job: ImportJob | None, by, background: bool = True) -> BatchRead:
    """Start reading every update of a batch (its ids now, in order) from Target: queued for
    django-q2 after commit, or run here (background=False). A read of the same scope still
    queued or running is returned instead of starting another."""
    require_perm(by, PERM_APPROVE, "Reading a whole batch needs the permission \"Can approve or "
                                   "reject profile updates\".")
    now = timezone.now()
    with transaction.atomic():
        running = (BatchRead.objects.select_for_update()
                   .filter(connection=connection, import_job=import_job,
                           status__in=(BatchRead.Status.QUEUED, BatchRead.Status.RUNNING))
                   .order_by("-id").first())
        if running is not None:
            if (running.started_at or running.created_at) >= now - dt.timedelta(
                    seconds=TASK_TIMEOUT_SECONDS):
                return running
            # Past the task's timeout: its worker stopped (or none ever took it). Not in the
            # way of a new read.
            running.status, running.finished_at = BatchRead.Status.FAILED, now
            running.error = "The read did not finish: its worker stopped or never started."
            running.save(update_fields=["status", "finished_at", "error"])
        ids = sorted(update_ids)
        job = BatchRead.objects.create(created_by=by, created_at=now,
                                       connection=connection, import_job=import_job,
                                       update_ids=ids, total=len(ids))
        if background:
            from django_q.tasks import async_task

            # Enqueued after commit: a worker must never look for a job not yet saved.
            transaction.on_commit(lambda: async_task(
                TASK_FUNCTION, job.pk, task_name=f"batch-read-{job.pk}",
                timeout=TASK_TIMEOUT_SECONDS))
    if not background:
        job = batch_read_run(job_id=job.pk)
    return job


def batch_read_run(*, job_id: int, session: requests.Session | None = None) -> BatchRead:
    """Read every update of the job (reusing reads younger than DIFF_MAX_READ_AGE_SECONDS, as
    the live diff does), at the connection's read rate, recording each verdict against the
    content it was read for. Runs once: it claims the job (queued → running) first."""
    now = timezone.now()
    if not BatchRead.claim(job_id, now=now):
        return BatchRead.objects.get(pk=job_id)  # another worker has it, or it ended
    job = BatchRead.objects.select_related("created_by").get(pk=job_id)
    own_session = session is None
    session = session or reading.make_session()
    job.verdicts, job.counts, job.done = {}, {}, 0
    saved = time.monotonic()
    try:
        for start in range(0, len(job.update_ids), CHUNK):
            ids = job.update_ids[start:start + CHUNK]
            updates = {u.pk: u for u in ProfileUpdate.objects.select_related("connection")
                       .filter(pk__in=ids, status=UpdateStatus.PENDING)}
            fresh = fresh_reads(list(updates))
            for pk in ids:
                update = updates.get(pk)
                if update is None:
                    key, content = GONE, ""
                else:
                    read = fresh.get(pk) or _read(update, job, session)
                    key, content = verdict(update, read), update.content_hash
                job.verdicts[str(pk)] = [key, content]
                job.counts[key] = job.counts.get(key, 0) + 1
                job.done += 1
                if time.monotonic() - saved >= SAVE_EVERY_SECONDS:
                    job.save(update_fields=["verdicts", "counts", "done"])
                    saved = time.monotonic()
        job.status, job.finished_at = BatchRead.Status.DONE, timezone.now()
    except reading.ConnectionInactive as inactive:
        job.status, job.finished_at, job.error = BatchRead.Status.FAILED, timezone.now(), \
            str(inactive)[:300]
    except Exception as error:
        logger.exception("batch read #%s failed", job.pk)
        job.status, job.finished_at = BatchRead.Status.FAILED, timezone.now()
        job.error = f"The read stopped: {type(error).__name__}."
    finally:
        if own_session:
            session.close()
        job.save(update_fields=["verdicts", "counts", "done", "status", "finished_at", "error"])
    return job


def _read(update: ProfileUpdate, job: BatchRead, session: requests.Session) -> ProfileRead | None:
    """Read now, waiting for the rate limit (the live diff and verification share it); None
    when no room came after READ_TRIES waits. Raises ConnectionInactive."""
    for _ in range(READ_TRIES):
        try:
            return reading.profile_read(update=update, purpose=ProfileRead.Purpose.DIFF,
                                        by=job.created_by, session=session,
                                        wait=READ_WAIT_SECONDS)
        except reading.ConnectionInactive:
            raise
        except reading.ReadThrottled:
            continue
    return None


@dataclass(frozen=True)
class ReadProgress:
    status: str
    done: int
    total: int
    eta_seconds: int | None  # None: unknown (or finished)

    @property
    def percent(self) -> int:
        return min(100, self.done * 100 // self.total) if self.total else 100

    @property
    def text(self) -> str:
        if self.status in (BatchRead.Status.DONE, BatchRead.Status.FAILED):
            return f"{self.done:,} of {self.total:,} read."
        eta = "" if self.eta_seconds is None else f"; about {duration_text(self.eta_seconds)} left"
        waiting = " (waiting for a worker)" if self.status == BatchRead.Status.QUEUED else ""
        return f"{self.done:,} of {self.total:,} read ({self.percent}%){eta}{waiting}."

    def as_json(self) -> dict:
        return {"status": self.status, "done": self.done, "total": self.total,
                "percent": self.percent, "eta_seconds": self.eta_seconds, "text": self.text}


def duration_text(seconds: float) -> str:
    seconds = max(0, int(math.ceil(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    minutes = int(math.ceil(seconds / 60))
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def read_duration(count: int) -> float:
    """Seconds to read `count` profiles at the read rate limit (reads already fresh are quicker)."""
    return count / max(0.001, float(setting("READS_PER_SECOND")))


def batch_read_progress(job: BatchRead, *, now: dt.datetime | None = None) -> ReadProgress:
    """How far the read is, and when it should end: at the rate measured so far, or at the
    read rate limit before the first reads are in."""
    now = now or timezone.now()
    eta = None
    remaining = max(0, job.total - job.done)
    if job.status == BatchRead.Status.QUEUED:
        eta = int(read_duration(remaining))
    elif job.status == BatchRead.Status.RUNNING:
        elapsed = (now - job.started_at).total_seconds() if job.started_at else 0
        if job.done and elapsed > 0:
            eta = int(remaining * elapsed / job.done)
        else:
            eta = int(read_duration(remaining))
    return ReadProgress(job.status, job.done, job.total, eta)


@dataclass(frozen=True)
class Narrowed:
    """A batch as its whole-batch read splits it: what changes something, and what is left out
    (each with why). Left-out updates are not decided: they keep their state."""

    changing: list[ProfileUpdate]
    left_out: list[tuple[ProfileUpdate, str]]

    @property
    def changing_ids(self) -> list[int]:
        return [u.pk for u in self.changing]


def batch_read_narrow(job: BatchRead, batch: list[ProfileUpdate]) -> Narrowed:
    """Split the batch's updates now (`batch`, pending, in id order) by the finished read: an
    update changes something when it was read as changing with the content it has now."""
    changing, left_out = [], []
    for update in batch:
        entry = job.verdicts.get(str(update.pk))
        if entry is None:
            left_out.append((update, LEFT_OUT_WHY["joined"]))
        elif entry[1] != update.content_hash:
            left_out.append((update, LEFT_OUT_WHY["changed"]))
        elif entry[0] == "changes":
            changing.append(update)
        else:
            left_out.append((update, LEFT_OUT_WHY.get(entry[0], LEFT_OUT_WHY[NOT_READ])))
    return Narrowed(changing, left_out)
