"""The "Send approved updates" schedule sends through django-q2's Redis broker as through the ORM's.

A real `manage.py qcluster` runs against this test's database: its scheduler turns the schedule
(from migration 0003, made due now) into a task on the broker, a cluster worker runs
updates.tasks.send_due_updates, and the approved updates reach the emulator. Each cluster gets a
name of its own, which is also its Redis key prefix, so other users of the Redis server and other
test runs never see its queue.

django-q2 calls its scheduler every 30 s of guard cycles, starting 30 s after the cluster starts;
that wait is most of this test's time.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import uuid
from collections import Counter

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_q.models import Schedule, Success

from tests.reliability.conftest import (
    MANAGE, acknowledged_per_update, connect, make_approved, reliability, status_counts,
    subprocess_env, wait_until,
)
from updates.models import SendRun

pytestmark = reliability

# Database 11 of the machine's Redis, unless told otherwise; keys are prefixed by the cluster name.
REDIS_URL = os.environ.get("PROFILEOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
SCHEDULE_NAME = "Send approved updates"
UPDATES = 50


@pytest.fixture
def cluster_name():
    """A unique cluster name; afterwards its Redis keys (if any) are removed."""
    name = f"profileops-test-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        client = _redis()
        keys = list(client.scan_iter(match=f"django_q:{name}:*"))
        if keys:
            client.delete(*keys)
    except Exception:  # Redis absent: nothing was written there
        pass


def _redis():
    import redis

    return redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def _require_redis() -> None:
    import redis

    try:
        _redis().ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({type(error).__name__}); "
                    "set PROFILEOPS_TEST_REDIS_URL to test the Redis broker")


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_the_schedule_sends_approved_updates_through_the_broker(
        broker, cluster_name, emulator, author, approver, processes):
    if broker == "redis":
        _require_redis()
    conn = connect(emulator)
    updates = make_approved(connection=conn, count=UPDATES, author=author, approver=approver)
    schedule = Schedule.objects.get(name=SCHEDULE_NAME)  # migration 0003's, exactly one
    assert schedule.func == "updates.tasks.send_due_updates"
    due = timezone.now() - dt.timedelta(minutes=1)
    Schedule.objects.filter(pk=schedule.pk).update(next_run=due)

    extra = {"Q_CLUSTER_NAME": cluster_name, "Q_WORKERS": "1", "LOG_LEVEL": "INFO"}
    extra.update({"Q_REDIS_URL": REDIS_URL} if broker == "redis" else {"Q_ORM_POLL": "0.2"})
    cluster = processes.start(f"qcluster-{broker}", [sys.executable, MANAGE, "qcluster"],
                              subprocess_env(extra))

    wait_until(lambda: status_counts(connection=conn) == {"sent": UPDATES}, timeout=60,
               what=f"the schedule to send the approved updates through the {broker} broker",
               explain=lambda: f"{status_counts(connection=conn)}\n{processes.output(cluster)}")
    # The task's result is saved by the cluster's monitor once the task has returned.
    task = wait_until(
        lambda: Success.objects.filter(func="updates.tasks.send_due_updates").first(),
        timeout=20, what="the task result", explain=lambda: processes.output(cluster))
    if broker == "redis":
        # The cluster kept its queue and status in Redis under its own name.
        assert any(_redis().scan_iter(match=f"django_q:{cluster_name}:*"))

    assert processes.stop(cluster, signal.SIGTERM, timeout=30) == 0, processes.output(cluster)

    assert Counter(acknowledged_per_update(emulator, updates).values()) == {1: UPDATES}
    runs = SendRun.objects.filter(trigger="schedule")
    assert runs.aggregate(n=Sum("acknowledged"))["n"] == UPDATES
    assert task.group == SCHEDULE_NAME and task.result in set(runs.values_list("pk", flat=True))
    assert Schedule.objects.get(pk=schedule.pk).task == task.id  # the task came from the schedule
