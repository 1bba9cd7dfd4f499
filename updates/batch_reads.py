"""What a batch of pending updates would do at Target, from its sample: one verdict per sampled
update (changes, unchanged, no profile at Target) and an estimate for the whole batch, with its
uncertainty, per verdict.

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

from django.utils import timezone

from . import reading
from .conf import setting
from .models import ProfileRead, ProfileUpdate

# verdict -> how a row says it, and how the estimate says it of visitors; in the page's order.
VERDICTS = {
    "changes": ("changes", "would change something at Target"),
    "unchanged": ("unchanged", "already hold every staged value (unchanged)"),
    "no_profile": ("no profile at Target", "have no profile at Target (acknowledged, not applied)"),
}
NOT_READ = "not_read"
NOT_READ_LABEL = "not read yet"
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
