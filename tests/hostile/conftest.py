"""Fixtures for the hostile-input tests: one emulator for the whole module (reset per example),
a connection that sends to it, and row counts to prove nothing was half-saved."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import transaction

from tests.conftest import make_connection
from target_emulator import TargetEmulator
from updates.models import (AttributeMapping, AuditEvent, ImportJob, ProfileUpdate, SendAttempt,
                            TargetConnection)


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[TargetEmulator]:
    # One server for every example of the module: starting one per example would dominate.
    with TargetEmulator() as emulator:
        yield emulator


@pytest.fixture
def hostile_connection(db, module_emulator) -> TargetConnection:
    return make_connection("hostile", base_url=module_emulator.base_url)


def row_counts() -> dict[str, int]:
    """Rows of every table a staging, import or admin save could write."""
    return {model.__name__: model.objects.count() for model in (
        ProfileUpdate, AuditEvent, SendAttempt, AttributeMapping, TargetConnection, ImportJob)}


@contextmanager
def rolled_back() -> Iterator[None]:
    """Run one hypothesis example in a savepoint that is always rolled back, so examples share
    the test's database without seeing each other's rows (and names can repeat)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)
