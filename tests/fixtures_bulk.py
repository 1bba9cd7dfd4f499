"""Fixtures of the bulk route (bulk_sending.py): a connection routed bulk over real HTTP to the
emulator's bulk twin, and a way to decide a batch. Used by tests/services/test_bulk_route.py,
test_bulk_purging.py and tests/security/test_forget_leaves_no_trace_in_bulk_files.py."""

from __future__ import annotations

import pytest

from updates import decisions, routing, workflow
from updates.models import ProfileUpdate, SendRoute, UpdateStatus

S = UpdateStatus


@pytest.fixture
def bulk_settings(settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "BULK_MIN_BATCH_ROWS": 10,
                           "READS_PER_SECOND": 5000, "VERIFY_FIRST_CHECK_SECONDS": 60,
                           "BULK_POLL_FIRST_SECONDS": 30}
    return settings


@pytest.fixture
def bulk_target(emulator_factory):
    return emulator_factory(faithful=True, apply_delay=60.0, seed=3,
                            bulk={"delay": 30, "loss_rate": 0.05})


@pytest.fixture
def bulk_connection(connection, bulk_target, bulk_settings):
    connection.base_url = bulk_target.base_url
    connection.send_route = SendRoute.THRESHOLD
    connection.bulk_row_threshold = 100
    connection.save()
    return connection


@pytest.fixture
def decide(bulk_connection, operator, supervisor):
    """decide(rows, route=...) -> the ids of `rows` staged, submitted and approved as one batch."""

    def _decide(rows: list[dict], route: str = routing.AUTOMATIC) -> list[int]:
        workflow.updates_stage_many(connection=bulk_connection, rows=rows, by=operator,
                                    submit=True)
        pending = list(ProfileUpdate.objects.filter(status=S.PENDING).order_by("id"))
        decisions.updates_decide_shown(shown={u.pk: u.content_hash for u in pending},
                                       decision="approve", by=supervisor, route=route)
        return [u.pk for u in pending]

    return _decide
