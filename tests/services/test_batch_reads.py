"""What a batch would do at Target, from its sample (updates/batch_reads.py): verdicts from fresh
reads on record, and the Wilson interval of each verdict's share."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from updates import batch_reads
from updates.models import ProfileRead


def test_wilson_interval_matches_the_textbook_values():
    low, high = batch_reads.wilson(6, 10)
    assert (round(low, 4), round(high, 4)) == (0.3127, 0.8318)
    assert batch_reads.wilson(0, 10)[0] == 0.0 and round(batch_reads.wilson(0, 10)[1], 4) == 0.2775
    assert batch_reads.wilson(10, 10)[1] == 1.0
    assert batch_reads.wilson(0, 0) == (0.0, 1.0)


def test_the_estimate_scales_each_share_to_the_batch_with_its_range():
    verdicts = {i: "no_profile" for i in range(6)} | {6: "changes", 7: "changes",
                                                      8: "unchanged", 9: batch_reads.NOT_READ,
                                                      10: "changes", 11: "changes"}
    estimate = batch_reads.batch_estimate(verdicts, batch_size=2000)
    assert (estimate.sampled, estimate.read, estimate.complete) == (12, 11, False)
    shares = {s.key: s for s in estimate.shares}
    assert shares["no_profile"].seen == 6 and shares["changes"].seen == 4
    assert shares["no_profile"].text.startswith(
        "About 55% (between 28% and 79%, 95 % confidence; 6 of 11 sampled) have no profile at "
        "Target (acknowledged, not applied): roughly 1,091 of 2,000")


def test_a_sample_that_is_the_whole_batch_is_exact_and_an_unread_sample_estimates_nothing():
    whole = batch_reads.batch_estimate({1: "changes", 2: "no_profile"}, batch_size=2)
    assert whole.shares[-1].text == ("1 of 2 (50%) would change something at Target — every "
                                    "update of the batch was read.")
    assert batch_reads.batch_estimate({1: batch_reads.NOT_READ}, batch_size=9).shares == []


@pytest.mark.django_db
def test_verdicts_use_only_reads_younger_than_the_live_diffs_max_age(stage, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "DIFF_MAX_READ_AGE_SECONDS": 60}
    now = timezone.now()
    fresh, stale, none, failed, same = (stage(identity=f"v-{n}", attributes={"loanStatus": "funded"})
                                        for n in range(5))

    def read(update, outcome, attributes=None, age=0):
        ProfileRead.objects.create(
            update=update, connection=update.connection, purpose=ProfileRead.Purpose.DIFF,
            at=now - dt.timedelta(seconds=age), outcome=outcome, attributes=attributes or {})

    read(fresh, ProfileRead.Outcome.NOT_FOUND)
    read(stale, ProfileRead.Outcome.NOT_FOUND, age=120)
    read(failed, ProfileRead.Outcome.ERROR)
    read(same, ProfileRead.Outcome.FOUND, {"loanStatus": {"value": "funded"}})

    verdicts = batch_reads.sample_verdicts([fresh, stale, none, failed, same], now=now)

    assert verdicts == {fresh.pk: "no_profile", stale.pk: "not_read", none.pk: "not_read",
                        failed.pk: "not_read", same.pk: "unchanged"}


@pytest.mark.django_db
def test_progress_says_how_far_and_how_long_at_the_rate_so_far(supervisor, settings):
    from updates.models import BatchRead

    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 10.0}
    now = timezone.now()
    job = BatchRead(created_by=supervisor, created_at=now, total=2000, status="queued")
    assert batch_reads.batch_read_progress(job, now=now).text == (
        "0 of 2,000 read (0%); about 4 min left (waiting for a worker).")
    job.status, job.started_at, job.done = "running", now - dt.timedelta(seconds=50), 500
    progress = batch_reads.batch_read_progress(job, now=now)
    assert progress.eta_seconds == 150 and progress.percent == 25
    assert progress.text == "500 of 2,000 read (25%); about 3 min left."
    job.status, job.done = "done", 2000
    assert batch_reads.batch_read_progress(job, now=now).as_json()["eta_seconds"] is None


@pytest.mark.django_db
def test_reading_a_batch_needs_the_approve_permission(operator, stage):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        batch_reads.batch_read_start(update_ids=[stage().pk], connection=None, import_job=None,
                                     by=operator, background=False)
    assert refused.value.code == "permission_denied"


@pytest.mark.django_db
def test_a_read_whose_worker_stopped_does_not_block_a_new_one(supervisor, stage):
    from updates.models import BatchRead

    old = timezone.now() - dt.timedelta(seconds=batch_reads.TASK_TIMEOUT_SECONDS + 60)
    stuck = BatchRead.objects.create(created_by=supervisor, created_at=old, started_at=old,
                                     status=BatchRead.Status.RUNNING, total=1)
    update = stage()
    recent = BatchRead.objects.create(created_by=supervisor, created_at=timezone.now(),
                                      connection=update.connection, total=1)

    assert batch_reads.batch_read_start(update_ids=[update.pk], connection=update.connection,
                                        import_job=None, by=supervisor) == recent
    fresh = batch_reads.batch_read_start(update_ids=[update.pk], connection=None,
                                         import_job=None, by=supervisor)

    stuck.refresh_from_db()
    assert stuck.status == "failed" and "did not finish" in stuck.error
    assert fresh.pk not in (stuck.pk, recent.pk) and fresh.status == "queued"


def test_batch_reads_and_decision_jobs_share_their_scope_and_progress_fields():
    """One abstract BatchJob holds who started a batch job, its scope and its progress; its two
    kinds add only their own states and counters."""
    from updates.models import BatchJob, BatchRead, DecisionJob
    shared = {"created_by", "created_at", "connection", "import_job", "total", "started_at",
              "finished_at", "error"}
    assert {f.name for f in BatchJob._meta.fields} == shared
    for kind in (BatchRead, DecisionJob):
        assert issubclass(kind, BatchJob)
        assert shared <= {f.name for f in kind._meta.fields}
        assert kind._meta.ordering == ["-id"]
        assert {"queued", "running"} <= set(kind.Status.values)  # what BatchJob.claim moves
