"""Two processes read one connection's profiles as fast as the read rate limit lets them.

The limit is one per connection for every process (updates/reading.py, SharedReadLimiter: the
ReadRateSlot row), so Target sees READS_PER_SECOND together, not per process. Each window's count
is taken at the emulator, when each read arrived.
"""

from __future__ import annotations

import sys

from tests.reliability.conftest import (AT_THE_GATE, MANAGE, connect, open_gate_when_ready,
                                        reliability, start_gate, subprocess_env)

pytestmark = reliability

RATE = 20
SECONDS = 4.0
WINDOW = 1.0

READER = """
import time
from updates import reading
from updates.models import ProfileUpdate, TargetConnection
connection = TargetConnection.objects.get(client_code="acme")
update = ProfileUpdate(connection=connection, identity_type="mbox3rdPartyId", identity="r-1")
session = reading.make_session()
""" + AT_THE_GATE + """
start = time.time()
while time.time() < start + {seconds!r}:
    if reading.read_limiter.acquire(connection.pk, wait=0.5):
        reading.fetch(update, session=session)
"""


def test_two_processes_reading_as_fast_as_allowed_share_one_rate(emulator, processes):
    conn = connect(emulator)
    code = READER.format(seconds=SECONDS)
    env = subprocess_env(start_gate(processes), reads_per_second=RATE)
    readers = [processes.start(f"reader-{n}", [sys.executable, MANAGE, "shell", "-c", code], env)
               for n in range(2)]
    start = open_gate_when_ready(processes, readers)
    processes.wait_all_ok(readers, timeout=60)

    times = [t for t in emulator.read_times() if start <= t < start + SECONDS]
    burst = RATE
    # Together, not per process: two per-process limits would let ~2 × RATE × SECONDS through.
    assert RATE * SECONDS * 0.6 <= len(times) <= RATE * SECONDS * 1.2 + burst, len(times)
    for n in range(int(SECONDS / WINDOW)):
        begin = start + n * WINDOW
        in_window = sum(1 for t in times if begin <= t < begin + WINDOW)
        assert in_window <= RATE * WINDOW * 1.2 + burst, (n, in_window)
    assert conn.pk  # the row the processes shared
