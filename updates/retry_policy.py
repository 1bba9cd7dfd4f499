"""The retry policy: what an answer means for an update, and how long a retry waits.

acknowledged → sent; transient (429, 5xx, no answer) → approved with a backed-off next-attempt
time; a 2xx without the acknowledgment → retried a bounded number of times; permanent (other
4xx) or the attempt budget spent → failed. Pure decisions: nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from . import workflow
from .delivery import Sent
from .models import ProfileUpdate
from .target import Outcome

RETRY_AFTER_CAP = dt.timedelta(hours=24)
LAST_ERROR_CHARS = 1000


@dataclass
class Decision:
    """The new state of one update after an answer, and the audit row that says why."""

    update: ProfileUpdate
    transition: workflow.Transition  # acknowledge, retry or fail (workflow.TRANSITIONS)
    comment: str = ""
    changes: dict = field(default_factory=dict)

    @property
    def to_status(self) -> str:
        return self.transition.target


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_unexpected_answers: int
    backoff_base_seconds: float
    backoff_max_seconds: float

    def backoff(self, *, attempt: int, retry_after: float | None = None,
                rng: random.Random | None = None) -> dt.timedelta:
        """Delay before attempt `attempt + 1`: exponential with jitter, or Retry-After if larger."""
        step = min(self.backoff_max_seconds, self.backoff_base_seconds * (2 ** max(0, attempt - 1)))
        # "Equal jitter": at least half the step, so retries never bunch up at zero.
        delay = step / 2 + (rng or random).uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP.total_seconds()))
        return dt.timedelta(seconds=delay)

    def decide(self, sent: Sent, *, now: dt.datetime, unexpected_so_far: int) -> Decision:
        """Apply one answer to its update (in memory) and say what was decided.
        `unexpected_so_far`: unexpected answers since the last (re-)queue, this one included."""
        update, answer = sent.update, sent.answer
        update.attempt_count += 1
        update.attempts_total += 1
        attempt = update.attempt_count
        changes = {"attempt": attempt}
        if answer.http_status is not None:
            changes["http_status"] = answer.http_status

        if answer.outcome == Outcome.ACKNOWLEDGED:
            acknowledge = workflow.sender_transition("acknowledge")
            update.status = acknowledge.target
            update.acknowledged_at = now
            update.next_attempt_at = None
            update.last_error = ""
            return Decision(update, acknowledge, "Target acknowledged the update.", changes)
        if answer.outcome == Outcome.PERMANENT:
            reason = f"Target refused the request ({answer.error})"
            if answer.body.strip():
                reason += f": {answer.body.strip()[:300]}"
            return fail(update, reason, changes)
        if (answer.outcome == Outcome.UNEXPECTED
                and unexpected_so_far >= self.max_unexpected_answers):
            reason = (f"{unexpected_so_far} unexpected answers (HTTP {answer.http_status} without "
                      f"the acknowledgment); last: {answer.body.strip()[:200]!r}")
            return fail(update, reason, changes)
        if attempt >= self.max_attempts:
            return fail(update, f"Gave up after {attempt} attempts; last: {answer.error}", changes)
        return self._retry(update, answer, now, changes)

    def _retry(self, update: ProfileUpdate, answer, now: dt.datetime, changes: dict) -> Decision:
        delay = self.backoff(attempt=update.attempt_count, retry_after=answer.retry_after_seconds)
        retry = workflow.sender_transition("retry")
        update.status = retry.target
        update.next_attempt_at = now + delay
        update.last_error = answer.error[:LAST_ERROR_CHARS]
        changes["next_attempt_at"] = update.next_attempt_at.isoformat()
        return Decision(update, retry,
                        f"{answer.error}; attempt {update.attempt_count} of {self.max_attempts}, "
                        f"next try in {int(delay.total_seconds())} s.", changes)


def fail(update: ProfileUpdate, reason: str, changes: dict | None = None) -> Decision:
    failed = workflow.sender_transition("fail")
    update.status = failed.target
    update.next_attempt_at = None
    update.last_error = reason[:LAST_ERROR_CHARS]
    return Decision(update, failed, update.last_error, changes or {})
