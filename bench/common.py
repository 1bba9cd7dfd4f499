"""What the benchmark processes share: Django set-up, output, timing, memory and fast inserts.

A benchmark module is a process of its own (started by bench/run.py with DATABASE_URL set). It
logs progress to stderr and ends with one `BENCH-RESULT {json}` line on stdout, which run.py
collects.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "

# Attributes of a typical call-centre update: three mapped values, one of them free text.
ATTRIBUTES = {
    "loanStatus": "funded",
    "loyaltyTier": "gold",
    "callNote": "Customer called about the loan; offer accepted, follow up in 30 days.",
}


# The secrets a production-like process (DEBUG off) must have set, or Django's checks stop it
# (SECRET_KEY; profileops.E018 and E022): fixed values, for benchmark databases only.
PRODUCTION_SECRETS = {
    "SECRET_KEY": "profileops-benchmark-only",
    "PROFILEOPS_HASH_KEY": "profileops-benchmark-only-hash-key-0123456789",
    "PROFILEOPS_ENCRYPTION_KEYS": "YmVuY2htYXJrLW9ubHktbm90LWEtc2VjcmV0LWtleSE=",
}


def setup_django() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "profileops.settings")
    import django

    django.setup()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def median_ms(fn: Callable[[], Any], *, runs: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall time and median CPU time of this process (all threads) of `fn`, in
    milliseconds, over `runs` calls after `warmup` untimed ones.

    On a busy machine the wall time includes waiting for a core; the CPU time does not (but it
    leaves out the database server's own CPU on PostgreSQL).
    """
    for _ in range(warmup):
        fn()
    walls, cpus = timings_ms(fn, runs=runs)
    return statistics.median(walls), statistics.median(cpus)


def timings_ms(fn: Callable[[], Any], *, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each of `runs` calls of `fn`."""
    walls, cpus = [], []
    for _ in range(runs):
        began, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - began) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return walls, cpus


def vendor() -> str:
    from django.db import connection

    return connection.vendor


# --- set-up data -------------------------------------------------------------------------------

def make_user(username: str, *, superuser: bool = False):
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": superuser})
    user.set_unusable_password()
    user.save()
    return user


def make_connection(code: str, *, base_url: str = "", quota_limit: int = 1_000_000):
    from updates.models import TargetConnection

    return TargetConnection.objects.create(
        label=f"Bench {code}", client_code=code, base_url=base_url, quota_limit=quota_limit)


def create_approved(*, connection, user, count: int, prefix: str, batch: int = 5000) -> None:
    """`count` approved updates, as the workflow would leave them (approval hash included)."""
    from django.utils import timezone

    from updates.models import ProfileUpdate, UpdateStatus, content_hash

    now = timezone.now()
    for start in range(0, count, batch):
        rows = []
        for i in range(start, min(count, start + batch)):
            identity = f"{prefix}-{i:09d}"
            rows.append(ProfileUpdate(
                connection=connection, identity_type="mbox3rdPartyId", identity=identity,
                attributes=ATTRIBUTES, status=UpdateStatus.APPROVED, reason="benchmark",
                created_by=user, created_at=now, last_edited_by=user, last_edited_at=now,
                submitted_at=now, decided_by=user, decided_at=now,
                approved_hash=content_hash("mbox3rdPartyId", identity, ATTRIBUTES),
            ))
        ProfileUpdate.objects.bulk_create(rows)


# --- fast inserts for the million-row histories (set-up only, never measured) ------------------

def fast_insert(model, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                *, chunk: int = 50_000) -> int:
    """Insert raw rows: PostgreSQL COPY, SQLite executemany in big batches. Returns the count.

    Values are Python values; datetimes must be aware (UTC). Columns are database column names.
    """
    from django.db import connection, transaction

    table = model._meta.db_table
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            sql = (f"INSERT INTO {connection.ops.quote_name(table)} ({quoted}) "
                   f"VALUES ({', '.join(['%s'] * len(columns))})")
            batch: list[Sequence[Any]] = []
            for row in rows:
                batch.append([_sqlite_value(v) for v in row])
                if len(batch) >= chunk:
                    cursor.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
                count += len(batch)
    return count


def _sqlite_value(value: Any) -> Any:
    # What Django's SQLite backend stores: naive UTC text for datetimes, ISO dates.
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def reset_sequences(*models) -> None:
    """After inserting explicit ids, move the id sequences past them (PostgreSQL)."""
    from django.core.management.color import no_style
    from django.db import connection

    statements = connection.ops.sequence_reset_sql(no_style(), list(models))
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def analyze() -> None:
    """On PostgreSQL, VACUUM ANALYZE: what autovacuum does soon after a bulk load. Without it
    the planner has no statistics and, with no visibility map yet, the dashboard's capped
    counts read the table instead of the status index (about 200 ms instead of 60 ms)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")
