"""The bulk API's call rate, shared by every worker: at most 50 calls a minute per Target client.

Target allows 50 calls a minute for its Admin, Reporting and Bulk Profile Update APIs together and
answers 503 beyond. ProfileOps paces its own bulk calls — uploads and batchStatus polls — at
BULK_CALLS_PER_MINUTE (default 40, leaving room for the Admin API calls others make) through one
BulkCallSlot row per connection, as the profile reads are paced through ReadRateSlot
(reading.py): the row holds the time from which the next call is free; taking a call moves it
one step (60 / rate seconds) on in one UPDATE, which takes the row's lock (PostgreSQL) or the
write lock (SQLite) first, so two workers never get the same slot. Up to ``burst`` calls may lie
behind "now" (an idle minute is not lost completely), chosen so that any 60 seconds hold at most
``rate + burst`` ≤ 50 calls.
"""

from __future__ import annotations

import time

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from .conf import setting
from .models import BulkCallSlot

TARGET_CALLS_PER_MINUTE = 50


def _step_and_window() -> tuple[float, float]:
    rate = float(setting("BULK_CALLS_PER_MINUTE"))
    burst = max(1, min(5, int(TARGET_CALLS_PER_MINUTE - rate)))
    step = 60.0 / rate
    return step, (burst - 1) * step


def take_call(connection_id: int, *, wait: float = 0.0, sleep=time.sleep) -> bool:
    """Take one bulk call for the connection, waiting at most `wait` seconds for its slot;
    False (nothing taken) when no slot is free by then."""
    at = _reserve(connection_id, now=time.time(), wait=wait)
    if at is None:
        return False
    pause = at - time.time()
    if pause > 0:
        sleep(pause)
    return True


def _reserve(connection_id: int, *, now: float, wait: float) -> float | None:
    step, window = _step_and_window()
    for _ in range(2):
        with transaction.atomic():
            taken = (BulkCallSlot.objects
                     .filter(connection_id=connection_id, next_free_at__lte=now + wait)
                     .update(next_free_at=Greatest(F("next_free_at"), Value(now - window))
                             + Value(step)))
            if taken:
                end = BulkCallSlot.objects.filter(connection_id=connection_id).values_list(
                    "next_free_at", flat=True).get()
                return end - step
            if BulkCallSlot.objects.filter(connection_id=connection_id).exists():
                return None
        try:
            with transaction.atomic():
                BulkCallSlot.objects.create(connection_id=connection_id, next_free_at=0.0)
        except IntegrityError:
            pass  # another worker made it first
    return None
