"""django-q2 entry points (schedules and queued tasks): nothing but calls into the services."""

from __future__ import annotations

from . import batch_decisions, batch_reads, bulk_polling, bulk_sending, sending, verification
from .alerts import alerts_check
from .conf import setting
from .importing import import_job_check, import_job_run
from .models import ImportJob, SchedulerHeartbeat


def send_due_updates() -> int:
    """Run by the "Send approved updates" schedule every minute; returns the SendRun id."""
    run = sending.send_due(
        trigger="schedule", time_budget=setting("RUN_TIME_BUDGET_SECONDS")
    )
    # Only a run that completed counts: a schedule that keeps failing makes /readyz go stale.
    SchedulerHeartbeat.beat(name=SchedulerHeartbeat.SEND_SCHEDULE)
    return run.pk


def verify_sent_updates() -> int:
    """Run by the "Verify sent updates" schedule every minute, apart from the sender's task
    (it takes none of the sender's locks and no quota); returns the reads made."""
    run = verification.updates_verify_due(
        time_budget=setting("RUN_TIME_BUDGET_SECONDS"))
    return run.checked


def check_alerts() -> str:
    """Run by the "Check alert rules" schedule every five minutes."""
    events = alerts_check()
    return f"{len(events)} alert state change{'s' if len(events) != 1 else ''}"


def purge_retention() -> str:
    """Run by the "Purge customer data past its retention" schedule every hour."""
    from . import retention  # imported where used: the sender's workers rarely need it

    runs = retention.retention_purge()
    purged = sum(sum(run.counts.values()) for run in runs)
    left = sum(1 for run in runs if not run.complete)
    return f"{purged} rows purged on {len(runs)} connections; {left} with more left"


def poll_privacy_requests() -> str:
    """Run by the "Follow privacy requests at Adobe" schedule every hour."""
    from . import privacy  # imported where used: it loads requests

    return f"{privacy.privacy_requests_poll()} privacy jobs read"


def run_import_job(job_id: int) -> str:
    """Run one confirmed import; a job already claimed by another worker is left alone."""
    job = import_job_run(job=ImportJob.objects.get(pk=job_id))
    return f"import #{job.pk}: {job.status}, {job.created_updates} updates created"


def check_import_job(job_id: int) -> str:
    """Check one uploaded file in the background (the preview of a large file)."""
    job = import_job_check(job=ImportJob.objects.get(pk=job_id))
    return f"import #{job.pk}: {job.status}, {job.total_rows} rows, {job.error_count} problems"


def read_batch(job_id: int) -> str:
    """Read a whole batch of pending updates from Target (the batch page's "Read the whole
    batch from Target")."""
    job = batch_reads.batch_read_run(job_id=job_id)
    return f"batch read #{job.pk}: {job.status}, {job.done} of {job.total} read"


def decide_batch(job_id: int) -> str:
    """Decide a batch larger than one chunk (the batch page's Approve or Reject), chunk by
    chunk."""
    job = batch_decisions.decision_job_run(job_id=job_id)
    return (f"batch decision #{job.pk}: {job.status}, {job.decided} of {job.total} decided in "
            f"{job.chunks_done} of {job.chunks} chunks")


def send_and_poll_bulk() -> str:
    """Run by the "Send and poll bulk files" schedule every minute: build and upload the bulk
    route's files, then poll the accepted ones at Target."""
    run = bulk_sending.bulk_send_due()
    polls = bulk_polling.bulk_poll_due()
    return (f"bulk: {run.jobs} job(s), {run.uploads} upload(s), {run.accepted} accepted, "
            f"{polls} poll(s)")
