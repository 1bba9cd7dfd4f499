"""updates/deadlines.py on its own (no database): a call through a DeadlineAdapter session ends
at its wall-clock deadline however slowly the answer drips, and a call that ended in time never
has its pooled connection shut down afterwards."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from updates import deadlines

PATH = "/m2/acme/profile/update?mbox3rdPartyId=c-1&profile.a=b"


def session() -> requests.Session:
    return deadlines.mount(requests.Session(), max_retries=0)


def test_a_dripping_answer_ends_at_the_deadline_not_at_the_socket_timeout(emulator_factory):
    target = emulator_factory(drip_seconds=0.2)  # every byte well within the 2 s read timeout
    with session() as s:
        began = time.monotonic()
        with pytest.raises(deadlines.DeadlineExceeded):
            with deadlines.bounded(time.monotonic() + 1.0):
                s.get(target.base_url + PATH, timeout=(2, 2)).close()
        assert time.monotonic() - began < 1.0 + 2.0  # generous: the machine is shared


def test_plain_timeout_alone_does_not_bound_a_drip(emulator_factory):
    """Why the module exists: without it, the same call is still going after 2 s."""
    target = emulator_factory(drip_seconds=0.2)
    with requests.Session() as s:
        began = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):
            # Ended from outside after 2 s by stopping the emulator (its drip stops mid-answer).
            threading.Timer(2.0, target.stop).start()
            s.get(target.base_url + PATH, timeout=(2, 2))
        assert time.monotonic() - began >= 1.9


def test_a_call_that_ended_in_time_keeps_its_pooled_connection(emulator_factory):
    target = emulator_factory()
    with session() as s:
        for _ in range(2):
            with deadlines.bounded(time.monotonic() + 0.3):
                assert s.get(target.base_url + PATH, timeout=(2, 2)).status_code == 200
            time.sleep(0.5)  # the first call's deadline passes while its connection idles
    assert target.stats()["connections_accepted"] == 1


def test_no_time_left_starts_no_call(emulator_factory):
    target = emulator_factory()
    with pytest.raises(deadlines.DeadlineExceeded):
        with deadlines.bounded(time.monotonic() - 0.1):
            requests.get(target.base_url + PATH, timeout=1)
    assert target.stats()["requests"] == 0


def test_webhook_posts_are_bounded_by_the_same_mechanism():
    """One wall-clock deadline mechanism: an alert's webhook POST (webhooks.post_json) runs
    inside `bounded` with its socket handed to the same watchdog, and fails with the same
    DeadlineExceeded (a requests Timeout for the Target callers, a TimeoutError for others)."""
    from updates import webhooks
    assert webhooks.DeadlineExceeded is deadlines.DeadlineExceeded
    assert issubclass(deadlines.DeadlineExceeded, (requests.exceptions.Timeout,))
    assert issubclass(deadlines.DeadlineExceeded, TimeoutError)
    deadline = deadlines.Deadline(0.0)
    assert deadline.passed()
    with pytest.raises(deadlines.DeadlineExceeded, match=r"no answer within 0 s"):
        deadline.left()
