"""The emulator's twin of Target's Bulk Profile Update API (v1 and v2) and its batchStatus.

What it does, per shared/reference/target-profile-api.md §2 (**[doc]** Adobe's page, everything
else our decision, stated here so nobody relies on it by accident):

- ``POST /m2/<client>/v2/profile/batchUpdate`` (v2) and ``POST /m2/<client>/profile/batchUpdate``
  (v1) take a text file as the request body. First line ``batch=pcId,<attr>,...`` or
  ``batch=thirdPartyId,<attr>,...``; then one visitor per line, fields separated by ``,``; every
  name and value URL-decoded as UTF-8 (``%XX``; a raw ``+`` stays a ``+`` — ProfileOps encodes
  everything, so it never sends one). Lines end in ``\\n`` (``\\r\\n`` accepted); empty lines
  are ignored. The file must be under 50 MB and hold at most 500,000 rows **[doc]**; otherwise,
  or when the header or the encoding is wrong, the answer is HTTP 400 with ``success=false``.
  A row with a different number of fields than the header, or an empty id, counts as a
  failed update.
- **Empty values** are ignored: they never clear an attribute; a row of only empty values
  changes nothing (it is consumed and counted neither as a success nor as a failure).
- **Rate limit**: 50 calls in any rolling 60 seconds **[doc]**, shared with Target's Admin APIs
  (other emulator routes call ``take_call``); beyond it HTTP 503. Uploads *and* batchStatus
  calls count (Adobe does not say whether status calls do; counting them is the stricter
  reading).
- The answer is Target's XML with ``success`` and a **batchStatus URL on another listener**
  (the "edge": another port, optionally another loopback address, ``edge_host``) — a client
  that rebuilds the URL from the upload's host gets 404 there. The upload listener does not
  serve batchStatus and the edge does not take uploads.
- **Asynchronous**: a batch stays ``incomplete`` for ``delay`` seconds of the emulator's clock
  (``TargetEmulator.advance`` moves it), then its rows are applied and it is ``complete`` —
  or, with ``stuck=True``, ``stuck`` with nothing applied. ``showDetails=true`` adds
  ``consumedCount``, ``successfulUpdates``, ``profilesNotFound`` and ``failedUpdates``; nothing
  per row, as at Target.
- **Profiles**: v2 creates a profile for an unknown thirdPartyId **[doc]**; v1 never creates one,
  and no version creates one for an unknown pcId: such rows count as ``profilesNotFound``. The
  bulk twin behaves so in every emulator mode (the lenient mode's shortcut is for single
  updates only).
- **Silent loss**: ``loss_rate`` (0–1) of the rows that would apply are dropped and still counted
  as successful — Target's "up to 0.1 % of a large batch may not be kept" **[doc]**.

Privacy: files carry customer data; nothing here logs a row, a name or a value.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape

MAX_ROWS = 500_000
MAX_FILE_BYTES = 50 * 1024 * 1024  # "less than 50 MB"
CALLS_PER_MINUTE = 50
IDENTITY_TYPES = {"pcId": "mboxPC", "thirdPartyId": "mbox3rdPartyId"}
COMPLETE, INCOMPLETE, STUCK = "complete", "incomplete", "stuck"


@dataclass(frozen=True)
class BulkOptions:
    delay: float = 5.0  # seconds (emulator clock) before a batch is processed
    loss_rate: float = 0.0  # share of applicable rows silently not kept
    stuck: bool = False  # batches end "stuck", nothing applied
    calls_per_minute: int = CALLS_PER_MINUTE
    max_rows: int = MAX_ROWS
    max_file_bytes: int = MAX_FILE_BYTES

    def validated(self) -> BulkOptions:
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if not 0.0 <= self.loss_rate <= 1.0:
            raise ValueError("loss_rate must be between 0 and 1")
        if self.calls_per_minute < 0 or self.max_rows < 1 or self.max_file_bytes < 1:
            raise ValueError("calls_per_minute, max_rows and max_file_bytes must be positive")
        return self


class FileRefused(ValueError):
    """The whole file is refused (HTTP 400, success=false)."""


@dataclass
class BulkBatch:
    batch_id: str
    version: str  # "v1" or "v2"
    client_code: str
    identity_type: str  # "pcId" or "thirdPartyId"
    names: list[str]
    rows: list[list[str]]  # identity first, then one value per name
    failed: int  # rows refused while parsing
    due_at: float  # emulator clock
    authorization: str | None
    status: str = INCOMPLETE
    counts: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # identities silently not kept

    @property
    def size(self) -> int:
        return len(self.rows) + self.failed


def parse_file(body: bytes, *, max_rows: int = MAX_ROWS,
               max_bytes: int = MAX_FILE_BYTES) -> tuple[str, list[str], list[list[str]], int]:
    """(identity type, attribute names, rows, failed rows) of a bulk file, by the rules above."""
    if len(body) >= max_bytes:
        raise FileRefused(f"file of {len(body):,} bytes; Target takes less than {max_bytes:,}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused("the file is not UTF-8") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    header, data = lines[0], [line for line in lines[1:] if line]
    if not header.startswith("batch="):
        raise FileRefused("the first line must start with batch=")
    columns = [_decoded(name) for name in header[len("batch="):].split(",")]
    if columns[0] not in IDENTITY_TYPES or len(columns) < 2 or not all(columns[1:]):
        raise FileRefused("the first line must be batch=pcId,... or batch=thirdPartyId,... "
                          "with at least one attribute name")
    if len(set(columns[1:])) != len(columns) - 1:
        raise FileRefused("an attribute name appears twice in the first line")
    if len(data) > max_rows:
        raise FileRefused(f"{len(data):,} rows; Target takes at most {max_rows:,} per file")
    rows, failed = [], 0
    for line in data:
        fields_ = line.split(",")
        try:
            values = [_decoded(value) for value in fields_]
        except FileRefused:
            failed += 1
            continue
        if len(values) != len(columns) or not values[0]:
            failed += 1
            continue
        rows.append(values)
    return columns[0], columns[1:], rows, failed


def _decoded(text: str) -> str:
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise FileRefused("a name or value is not URL-encoded UTF-8") from None


def upload_answer(status_url: str) -> str:
    return ("<response><success>true</success>"
            f"<batchStatus>{escape(status_url)}</batchStatus>"
            "<message>Batch submitted for processing</message></response>")


def refusal_answer(message: str) -> str:
    return f"<response><success>false</success><message>{escape(message)}</message></response>"


def status_answer(batch: BulkBatch, *, details: bool) -> str:
    parts = [f"<batchId>{escape(batch.batch_id)}</batchId>", f"<status>{batch.status}</status>",
             f"<batchSize>{batch.size}</batchSize>"]
    if details:
        counts = batch.counts or dict.fromkeys(
            ("consumedCount", "successfulUpdates", "profilesNotFound", "failedUpdates"), 0)
        parts += [f"<{name}>{value}</{name}>" for name, value in counts.items()]
    return "<response>" + "".join(parts) + "</response>"


class BulkTwin:
    """The bulk state of one emulator: batches, options, the shared 50-calls-a-minute window.

    Batches are applied under the emulator's lock (``apply_due``, called wherever the emulator
    applies pending single updates), so reads see a batch's rows exactly when it completes.
    """

    def __init__(self, emulator: Any, options: dict[str, Any] | None = None) -> None:
        # `emulator`: the server.TargetEmulator this twin belongs to (not imported: the server
        # imports this module); its lock, clock, profiles and random draws are shared.
        self._emulator = emulator
        self.options = BulkOptions(**(options or {})).validated()
        self.batches: dict[str, BulkBatch] = {}
        self._calls: collections.deque[float] = collections.deque()
        self._calls_lock = threading.Lock()
        self._numbers = itertools.count(1)
        self.refused_by_rate = 0

    def configure(self, **options: Any) -> dict[str, Any]:
        self.options = replace(self.options, **options).validated()
        return asdict(self.options)

    def reset(self) -> None:
        with self._calls_lock:
            self._calls.clear()
        self.batches.clear()
        self.refused_by_rate = 0

    def take_call(self, now: float | None = None) -> bool:
        """One call of the shared 50-a-minute bucket (bulk, batchStatus, admin APIs); False when
        the last 60 seconds already hold the limit (the caller answers 503)."""
        now = time.time() if now is None else now
        with self._calls_lock:
            while self._calls and self._calls[0] <= now - 60.0:
                self._calls.popleft()
            if len(self._calls) >= self.options.calls_per_minute:
                self.refused_by_rate += 1
                return False
            self._calls.append(now)
            return True

    def calls_in_last_minute(self) -> list[float]:
        now = time.time()
        with self._calls_lock:
            return [t for t in self._calls if t > now - 60.0]

    def submit(self, *, version: str, client_code: str, body: bytes,
               authorization: str | None) -> BulkBatch:
        """Parse and queue one file (raises FileRefused); the caller holds no lock."""
        options = self.options
        identity_type, names, rows, failed = parse_file(
            body, max_rows=options.max_rows, max_bytes=options.max_file_bytes)
        batch_id = f"{client_code}-{int(time.time() * 1000)}-{next(self._numbers)}"
        batch = BulkBatch(batch_id, version, client_code, identity_type, names, rows, failed,
                          self._emulator._now() + options.delay, authorization)
        with self._emulator._lock:
            self.batches[batch_id] = batch
        return batch

    def batch(self, batch_id: str) -> BulkBatch | None:
        with self._emulator._lock:
            self._emulator._apply_due()
            return self.batches.get(batch_id)

    def apply_due(self, now: float) -> None:
        """Process the batches whose delay has passed (the caller holds the emulator's lock)."""
        for batch in self.batches.values():
            if batch.status == INCOMPLETE and batch.due_at <= now:
                self._process(batch, now)

    def _process(self, batch: BulkBatch, now: float) -> None:
        if self.options.stuck:
            batch.status = STUCK
            return
        emulator = self._emulator
        identity_type = IDENTITY_TYPES[batch.identity_type]
        creates = batch.version == "v2" and batch.identity_type == "thirdPartyId"
        counts = collections.Counter(consumedCount=batch.size, failedUpdates=batch.failed)
        for row in batch.rows:
            values = {name: value for name, value in zip(batch.names, row[1:]) if value}
            if not values:
                continue  # only empty values: skipped, nothing cleared
            key = (identity_type, row[0])
            if key not in emulator._profiles and not creates:
                counts["profilesNotFound"] += 1
                continue
            counts["successfulUpdates"] += 1
            with emulator._random_lock:
                lost = emulator._random.random() < self.options.loss_rate
            if lost:
                batch.lost.append(row[0])
                continue
            emulator._apply_now({"identity_type": identity_type, "identity": row[0],
                                 "client_code": batch.client_code, "attributes": values},
                                now, create=True)
        batch.counts = {name: counts[name] for name in (
            "consumedCount", "successfulUpdates", "profilesNotFound", "failedUpdates")}
        batch.status = COMPLETE

    def summary(self) -> list[dict[str, Any]]:
        """Every batch without its rows (the inspection route): ids, states, counts, lost ids."""
        with self._emulator._lock:
            self._emulator._apply_due()
            return [{"batchId": b.batch_id, "version": b.version, "clientCode": b.client_code,
                     "identityType": b.identity_type, "names": list(b.names),
                     "batchSize": b.size, "status": b.status, "counts": dict(b.counts),
                     "lost": list(b.lost), "authorization": b.authorization}
                    for b in self.batches.values()]


# --- the handler's side (called by server._Handler) ----------------------------------------------

def handle_upload(handler: Any, *, version: str, client_code: str) -> None:
    emulator = handler.server.emulator
    twin: BulkTwin = emulator.bulk
    body, _ = handler._read_body(twin.options.max_file_bytes)
    if body is None:
        return handler._send(400, refusal_answer("file too large").encode(), "application/xml")
    if not emulator._authorized(handler.headers.get("Authorization")):
        return handler._send(401, refusal_answer("authentication required").encode(),
                             "application/xml")
    if not twin.take_call():
        return handler._send(503, b"Service Unavailable", headers=(("Retry-After", "2"),))
    try:
        batch = twin.submit(version=version, client_code=client_code, body=body,
                            authorization=handler.headers.get("Authorization"))
    except FileRefused as refusal:
        return handler._send(400, refusal_answer(str(refusal)).encode(), "application/xml")
    status_url = (f"http://{emulator.edge_host}:{emulator.edge_port}/m2/{client_code}/profile/"
                  f"batchStatus?batchId={batch.batch_id}")
    handler._send(200, upload_answer(status_url).encode(), "application/xml")


def handle_status(handler: Any, *, query: str) -> None:
    emulator = handler.server.emulator
    twin: BulkTwin = emulator.bulk
    handler._drain_small_body()
    if not emulator._authorized(handler.headers.get("Authorization")):
        return handler._send(401, refusal_answer("authentication required").encode(),
                             "application/xml")
    if not twin.take_call():
        return handler._send(503, b"Service Unavailable", headers=(("Retry-After", "2"),))
    params = dict(parse_qsl(query))
    batch = twin.batch(params.get("batchId", ""))
    if batch is None:
        return handler._send(404, refusal_answer("unknown batchId").encode(), "application/xml")
    details = params.get("showDetails", "").lower() == "true"
    handler._send(200, status_answer(batch, details=details).encode(), "application/xml")
