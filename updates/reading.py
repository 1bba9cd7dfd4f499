"""Read a visitor's profile from Target for an update, and keep the read as evidence.

Used by the live diff at approval, by skip-unchanged before sending and by verification after
sending. Reads are not metered against the update quota (Target's reference §3), so nothing here
touches quota.py; they have their own rate limit per connection instead.

The rate limit is per connection and shared by every process (SharedReadLimiter, one ReadRateSlot
row per connection in the database — the embedded deployment has no Redis): adding workers shares
READS_PER_SECOND, it does not multiply it. Every reader goes through it: the live diff, the batch
read, skip-unchanged before sending, verification.

Never logged: identities, URLs (they hold the identity), values read, tokens.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import threading
import time
from dataclasses import dataclass

import requests
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from .conf import setting
from .errors import require_perm
from . import credentials, deadlines, delivery, target
from .errors import Refused
from .models import ProfileRead, ProfileUpdate, ReadRateSlot, TargetConnection
from .permissions import PERM_VIEW, refusal

USER_AGENT = "ProfileOps (profile reader)"
READ_BODY_LIMIT_BYTES = 256 * 1024  # a whole profile's external data is capped at 64 KB



# --- rate limit ----------------------------------------------------------------------------------

# Slots a process takes per round trip to the ReadRateSlot row: as many as the rate gives in this
# many seconds (one when the caller will not wait), so the row is written ~twice a second at most.
RESERVE_SECONDS = 0.5
# A slot handed out this late is still used (a thread wakes a little after its slot).
LATE_TOLERANCE_SECONDS = 0.05


class SharedReadLimiter:
    """The read rate limit of a connection, shared by every process through its ReadRateSlot row:
    READS_PER_SECOND reads a second, bursts of at most that many (at least one).

    The row holds the time from which the next slot is free (a "next free slot" limiter, GCRA).
    A process takes k slots in one UPDATE — ``next = max(next, now - burst) + k / rate``, which
    takes the row's lock (PostgreSQL) or the write lock (SQLite) before it reads, so two processes
    never get the same slot — and hands them out locally, each read waiting for its slot. A slot
    not used within the burst window after its time is dropped (reading less than allowed, never
    more): in any window of T seconds every process together starts at most rate × T + burst reads.
    Slots are only taken when the next one is free within the caller's `wait`.

    Database calls happen in the calling thread; verification calls it from its main thread only
    and hands the slots to its reader threads (updates/verification.py).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[int, collections.deque[float]] = {}  # connection id -> slot times

    @staticmethod
    def _rate() -> float:
        return max(0.001, float(setting("READS_PER_SECOND")))

    def slot(self, connection_id: int, *, wait: float = 0.0) -> float | None:
        """A slot (time.time()) for one read, no later than `wait` seconds from now; None if none
        is free by then. The caller starts its read no earlier than the slot."""
        rate = self._rate()
        window = max(0.0, (max(1.0, rate) - 1) / rate)  # a full burst's slots may lie behind now
        with self._lock:
            now = time.time()
            slots = self._slots.setdefault(connection_id, collections.deque())
            while slots and slots[0] + window + LATE_TOLERANCE_SECONDS < now:
                slots.popleft()  # not used in time: dropped
            if not slots:
                count = max(1, math.ceil(rate * min(max(wait, 0.0), RESERVE_SECONDS)))
                slots.extend(_reserve(connection_id, count, rate=rate, now=now, wait=wait,
                                      window=window))
            if slots and slots[0] <= now + wait:
                return slots.popleft()
            return None

    def lateness_allowed(self) -> float:
        """How long after its time a slot may still start a read."""
        rate = self._rate()
        return max(0.0, (max(1.0, rate) - 1) / rate) + LATE_TOLERANCE_SECONDS

    def acquire(self, connection_id: int, *, wait: float = 0.0) -> bool:
        """Take one read, waiting for its slot (at most `wait` seconds). False if none came in
        time."""
        at = self.slot(connection_id, wait=wait)
        if at is None:
            return False
        pause = at - time.time()
        if pause > 0:
            time.sleep(pause)
        return True

    def reset(self) -> None:
        """Forget this process's slots (tests; the shared row is the database's)."""
        with self._lock:
            self._slots.clear()


def _reserve(connection_id: int, count: int, *, rate: float, now: float, wait: float,
             window: float) -> list[float]:
    """Take `count` consecutive slots from the connection's ReadRateSlot row, if the first is free
    by now + wait; their times, or [] if not."""
    step = 1.0 / rate
    for _ in range(2):
        with transaction.atomic():
            taken = (ReadRateSlot.objects
                     .filter(connection_id=connection_id, next_free_at__lte=now + wait)
                     .update(next_free_at=Greatest(F("next_free_at"), Value(now - window))
                             + Value(count * step)))
            if taken:
                end = ReadRateSlot.objects.filter(connection_id=connection_id).values_list(
                    "next_free_at", flat=True).get()
                return [end - (count - i) * step for i in range(count)]
            if ReadRateSlot.objects.filter(connection_id=connection_id).exists():
                return []  # the next free slot is later than the caller waits
        try:
            with transaction.atomic():
                ReadRateSlot.objects.create(connection_id=connection_id, next_free_at=0.0)
        except IntegrityError:
            pass  # another process made it first
    return []


read_limiter = SharedReadLimiter()


class ReadThrottled(Exception):
    """The connection's read rate limit left no room for this read."""


class ConnectionInactive(ReadThrottled):
    """The connection is inactive (perhaps deactivated since the page or batch was loaded): no
    read is made with its token. A kind of "not now", so callers that wait for room wait."""


# --- reading ---------------------------------------------------------------------------------

def make_session(*, pool_size: int = 1) -> requests.Session:
    """A session for reads; `pool_size`: the reader threads sharing it (verification)."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    delivery.apart_from_the_environment(session)  # as the sender's: no proxy, no netrc
    # Every read has a wall-clock deadline (read_deadline_seconds).
    if pool_size > 1:
        deadlines.mount(session, pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    else:
        deadlines.mount(session)
    return session


def read_deadline_seconds() -> float:
    """The most one read may take, from the first byte to the last: its connect and read
    timeouts together (a server that drips keeps no read open longer)."""
    return setting("PROFILE_READ_CONNECT_TIMEOUT") + setting("PROFILE_READ_TIMEOUT")


def profile_read(*, update: ProfileUpdate, purpose: str, by=None, now: dt.datetime | None = None,
                 session: requests.Session | None = None, wait: float = 0.0,
                 until: float | None = None) -> ProfileRead:
    """Read the update's visitor from Target and store the read (found, not found or error).

    `by`: the person asking (the live diff) — they must be allowed to see the update; None for the
    system (sender, verification). Raises ReadThrottled, storing nothing, when the connection's
    read rate leaves no room within `wait` seconds. Never raises for Target's answers: a failed
    read is stored with outcome "error" — one that ran past its deadline (read_deadline_seconds,
    or `until` (time.monotonic()) if sooner) too, as are values that could not be stored.
    Values holding NUL or a lone surrogate are stored escaped (ProfileRead.escaped, `held`), and
    the connection's secrets are redacted from what is stored.
    """
    if by is not None:
        require_perm(by, PERM_VIEW, refusal(PERM_VIEW))
    if purpose not in ProfileRead.Purpose.values:
        raise ValueError(f"unknown read purpose {purpose!r}")
    connection: TargetConnection = update.connection
    require_active(connection)
    if not read_limiter.acquire(connection.pk, wait=wait):
        raise ReadThrottled(f"Reads for {connection.label} are at their rate limit.")
    answer, latency_ms = fetch_refetching_token(update, session=session, until=until)
    return store_read(update=update, purpose=purpose, answer=answer, latency_ms=latency_ms,
                      now=now)


def require_active(connection: TargetConnection) -> None:
    """Raise ConnectionInactive unless the connection is active now (read fresh: deactivating a
    connection stops every request with its token, reads included)."""
    if not TargetConnection.objects.filter(pk=connection.pk, active=True).exists():
        raise ConnectionInactive(f"Connection {connection.label} is inactive; Target is not read "
                                 "for it.")


def fetch(update: ProfileUpdate, *, session: requests.Session | None = None,
          until: float | None = None, token: str | None = None
          ) -> tuple[target.ReadAnswer, int | None]:
    """The HTTP half of a read: Target's answer and the latency, within the read's deadline (or
    `until`, time.monotonic(), if sooner). With `token` given (credentials.profile_token, got in
    the main thread), no database access: reader threads call it so."""
    deadline = time.monotonic() + read_deadline_seconds()
    if token is None:
        token = credentials.profile_token(update.connection)
    return _fetch(update.connection, update.identity_type, update.identity, session,
                  deadline if until is None else min(deadline, until), token)


def fetch_refetching_token(update: ProfileUpdate, *, session: requests.Session | None = None,
                           until: float | None = None, token: str | None = None
                           ) -> tuple[target.ReadAnswer, int | None]:
    """`fetch`, and when Target refuses the token (401/403) the token fetched once more and the
    read made once more with it (main thread: it may renew the token)."""
    if token is None:
        try:
            token = credentials.profile_token(update.connection)
        except Refused as refusal:  # Adobe gave no token: a failed read, as for no answer
            return target.ReadAnswer(target.ReadOutcome.TRANSIENT, None,
                                     error=f"no token: {refusal.code}"), None
    answer, latency_ms = fetch(update, session=session, until=until, token=token)
    if credentials.is_refusal(answer.http_status):
        again = credentials.token_refused(update.connection, token)
        if again:
            answer, latency_ms = fetch(update, session=session, until=until, token=again)
    return answer, latency_ms


def store_read(*, update: ProfileUpdate, purpose: str, answer: target.ReadAnswer,
               latency_ms: int | None, now: dt.datetime | None = None) -> ProfileRead:
    """Keep a fetched answer as a ProfileRead (found, not found or error), the connection's secrets
    redacted and unstorable characters escaped; an answer that cannot be stored is kept as a
    failed read."""
    read = _read_row(update=update, purpose=purpose, answer=answer, latency_ms=latency_ms, now=now)
    return _save_read(read)


def store_reads(items: list[tuple[ProfileUpdate, target.ReadAnswer, int | None]], *, purpose: str,
                now: dt.datetime | None = None) -> list[ProfileRead]:
    """store_read for many answers, in one INSERT when they can all be stored (verification's
    groups); otherwise one by one, each as store_read keeps it."""
    reads = [_read_row(update=update, purpose=purpose, answer=answer, latency_ms=latency_ms,
                       now=now) for update, answer, latency_ms in items]
    try:
        with transaction.atomic():
            return ProfileRead.objects.bulk_create(reads)
    except Exception:  # noqa: BLE001 - one unstorable answer: each alone, it kept as an error
        for read in reads:
            read.pk = None
            read._state.adding = True
        return [_save_read(read) for read in reads]


def _read_row(*, update: ProfileUpdate, purpose: str, answer: target.ReadAnswer,
              latency_ms: int | None, now: dt.datetime | None) -> ProfileRead:
    connection: TargetConnection = update.connection
    if answer.outcome == target.ReadOutcome.FOUND:
        outcome = ProfileRead.Outcome.FOUND
    elif answer.outcome == target.ReadOutcome.NOT_FOUND:
        outcome = ProfileRead.Outcome.NOT_FOUND
    else:
        outcome = ProfileRead.Outcome.ERROR
    secrets = connection.secrets()
    attributes, escaped = target.storable_attributes(answer.attributes, secrets)
    read = ProfileRead(
        update=update, connection=connection, at=now or timezone.now(), purpose=purpose,
        outcome=outcome, http_status=answer.http_status,
        error=target.from_outside(f"{answer.outcome.value}: {answer.error}" if answer.error
                                  else "", secrets)[:300],
        attributes=attributes, escaped=escaped, latency_ms=latency_ms,
    )
    return read


def _save_read(read: ProfileRead) -> ProfileRead:
    try:
        with transaction.atomic():
            read.save(force_insert=True)
    except Exception as error:  # noqa: BLE001 - one answer must not stop the caller's run
        # Kept as a failed read, so the caller goes on as for any read that failed. Only the
        # type: the database's message may quote the values.
        read = ProfileRead.objects.create(
            update=read.update, connection=read.connection, at=read.at, purpose=read.purpose,
            outcome=ProfileRead.Outcome.ERROR, http_status=read.http_status,
            error=f"unstorable: the answer could not be stored ({type(error).__name__})",
            latency_ms=read.latency_ms)
    return read


def _fetch(connection: TargetConnection, identity_type: str, identity: str,
           session: requests.Session | None, until: float, token: str
           ) -> tuple[target.ReadAnswer, int | None]:
    try:
        request = target.build_read_request(
            base_url=connection.effective_base_url, client_code=connection.client_code,
            identity_type=identity_type, identity=identity, token=token)
    except ValueError as error:
        return target.ReadAnswer(target.ReadOutcome.PERMANENT, None, error=str(error)), None
    own = session is None
    session = session or make_session()
    began = time.perf_counter()
    try:
        with deadlines.bounded(until), session.get(
                request.url, headers=request.headers, allow_redirects=False, stream=True,
                timeout=(setting("PROFILE_READ_CONNECT_TIMEOUT"),
                         setting("PROFILE_READ_TIMEOUT"))) as response:
            raw = response.raw.read(READ_BODY_LIMIT_BYTES, decode_content=True)
            status = response.status_code
        answer = target.read_profile_answer(status, raw.decode("utf-8", errors="replace"))
    except requests.exceptions.InvalidHeader:
        # requests would quote the header (the token) in its message.
        answer = target.ReadAnswer(target.ReadOutcome.PERMANENT, None,
                                   error="InvalidHeader: the bearer token cannot be sent")
    except Exception as error:  # transport: only the type, the message may quote the URL
        answer = target.read_transport_failure(error)
    finally:
        if own:
            session.close()
    return answer, int((time.perf_counter() - began) * 1000)


def latest_read(update: ProfileUpdate, *, max_age: dt.timedelta | None = None,
                now: dt.datetime | None = None, usable_only: bool = True) -> ProfileRead | None:
    """The newest stored read of the update's visitor (found or not found unless
    usable_only=False), optionally no older than `max_age`."""
    reads = ProfileRead.objects.filter(update=update)
    if usable_only:
        reads = reads.exclude(outcome=ProfileRead.Outcome.ERROR)
    if max_age is not None:
        reads = reads.filter(at__gte=(now or timezone.now()) - max_age)
    return reads.order_by("-at", "-id").first()


# --- comparing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttributeDiff:
    name: str
    new_value: str
    current_value: str | None  # None: Target has no such attribute (or no profile)
    current_modified_at: str
    changes: bool

    @property
    def current_shown(self) -> str | None:
        """The current value as it may be shown: escaped when it holds NUL or a lone surrogate
        (a page cannot carry a lone surrogate at all)."""
        return None if self.current_value is None else target.shown(self.current_value)

    @property
    def current_escaped(self) -> bool:
        return self.current_value is not None and target.holds_unstorable(self.current_value)


def attribute_diff(update: ProfileUpdate, read: ProfileRead) -> list[AttributeDiff]:
    """Per staged attribute: what Target holds per `read`, what will be sent, whether it changes.

    Values are compared as the exact strings Target stores (names and values are case-sensitive),
    escaped ones as Target returned them (ProfileRead.held).
    """
    held = read.held if read.outcome == ProfileRead.Outcome.FOUND else {}
    rows = []
    for name in sorted(update.attributes):
        entry = held.get(name)
        current = None if entry is None else entry.get("value", "")
        rows.append(AttributeDiff(
            name=name, new_value=update.attributes[name], current_value=current,
            current_modified_at="" if entry is None else entry.get("modifiedAt", ""),
            changes=current != update.attributes[name]))
    return rows


def changes_nothing(update: ProfileUpdate, read: ProfileRead) -> bool:
    """Every staged attribute already holds the staged value at Target (per `read`)."""
    return (read.outcome == ProfileRead.Outcome.FOUND
            and not any(row.changes for row in attribute_diff(update, read)))


def prior_values(update: ProfileUpdate, read: ProfileRead) -> dict[str, dict | None]:
    """What Target held for each staged attribute per `read` (None: it did not exist). A value
    holding NUL or a lone surrogate is kept escaped, marked "escaped" (a revert cannot stage it)."""
    held = read.held if read.outcome == ProfileRead.Outcome.FOUND else {}
    return {name: (_storable_entry(held[name]) if name in held else None)
            for name in update.attributes}


def _storable_entry(entry: dict) -> dict:
    if not any(isinstance(v, str) and target.holds_unstorable(v) for v in entry.values()):
        return dict(entry)
    return {**{key: target.escape_unstorable(v) if isinstance(v, str) else v
               for key, v in entry.items()}, "escaped": True}


# --- the live diff (approval queue, update page) ----------------------------------------------

NO_PROFILE_MESSAGE = ("Target has no profile for this visitor — the update will be acknowledged "
                      "but not applied.")


@dataclass(frozen=True)
class LiveDiff:
    state: str  # "found", "not_found", "error" or "throttled"
    read_at: dt.datetime | None
    rows: list[AttributeDiff]
    message: str = ""

    @property
    def changes_count(self) -> int:
        return sum(1 for row in self.rows if row.changes)

    def as_json(self) -> dict:
        return {
            "state": self.state,
            "read_at": self.read_at.isoformat() if self.read_at else None,
            "message": self.message,
            "changes": self.changes_count,
            "rows": [{"name": r.name, "current": r.current_shown,
                      "current_escaped": r.current_escaped,
                      "current_modified_at": r.current_modified_at, "new": r.new_value,
                      "changes": r.changes} for r in self.rows],
        }


def update_live_diff(*, update: ProfileUpdate, by, now: dt.datetime | None = None,
                     session: requests.Session | None = None) -> LiveDiff:
    """What the update would change at Target now: from a read no older than
    DIFF_MAX_READ_AGE_SECONDS, reading again when there is none (the read is kept)."""
    now = now or timezone.now()
    max_age = dt.timedelta(seconds=setting("DIFF_MAX_READ_AGE_SECONDS"))
    read = latest_read(update, max_age=max_age, now=now)
    if read is None:
        try:
            read = profile_read(update=update, purpose=ProfileRead.Purpose.DIFF, by=by, now=now,
                                session=session)
        except ConnectionInactive as inactive:
            return LiveDiff("error", None, [], str(inactive))
        except ReadThrottled:
            older = latest_read(update)
            if older is None:
                return LiveDiff("throttled", None, [], "Reads are at their rate limit; "
                                "trying again shortly.")
            read = older
    elif by is not None:
        require_perm(by, PERM_VIEW, refusal(PERM_VIEW))
    if read.outcome == ProfileRead.Outcome.ERROR:
        return LiveDiff("error", read.at, [], f"Target's profile could not be read ({read.error}). "
                        "Sending does not depend on it.")
    message = NO_PROFILE_MESSAGE if read.outcome == ProfileRead.Outcome.NOT_FOUND else ""
    return LiveDiff(read.outcome, read.at, attribute_diff(update, read), message)
