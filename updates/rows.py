"""Plain INSERTs of many rows for the sender's bookkeeping: the values bulk_create would write.

The sender writes three rows per update — the claim's audit row, the SendAttempt, the outcome's
audit row. Through `bulk_create` each is a model instance, and each value goes through the SQL
compiler's per-value checks for expressions: over half of the main thread's CPU in a profile of
5,000 sends (docs/benchmarks.md), where it competes with the sender threads for the interpreter
lock. Here the
statement is built once per table and every value is prepared as bulk_create prepares it (the
field's own `get_db_prep_save`; the field's default for a field not given), then sent with one
`executemany`. No model instances, so no signals (bulk_create sends none either) and no ids
read back — the callers never use them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.db import connections, models, router


# Fields whose get_db_prep_save returns a str value unchanged (to_python of a str is the str).
_PLAIN_TEXT = (models.CharField, models.TextField)


@lru_cache(maxsize=None)
def _columns(model: type[models.Model]) -> tuple[tuple[models.Field, ...], str]:
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key)
    return fields, model._meta.db_table


def _integer(field: models.Field) -> bool:
    """An integer column (a foreign key to an integer key included): get_db_prep_save of an int
    is the int."""
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    return isinstance(field, models.IntegerField)


@lru_cache(maxsize=None)
def _shortcuts(model: type[models.Model]) -> tuple[tuple[models.Field, str, bool, bool, bool],
                                                   ...]:
    """Per field: (field, attname, a str passes as is, None passes as is, an int passes as
    is). The same values as get_db_prep_save gives, without its calls for the values that are
    most of the row."""
    return tuple((f, f.attname, type(f) in _PLAIN_TEXT, not isinstance(f, models.JSONField),
                  _integer(f)) for f in _columns(model)[0])


def insert_rows(model: type[models.Model], rows: Iterable[Mapping[str, Any]]) -> int:
    """INSERT one row per mapping of attribute name (``update_id`` for a foreign key) to value;
    returns how many. Call inside the caller's transaction, like bulk_create."""
    fields, table = _columns(model)
    connection = connections[router.db_for_write(model)]
    shortcuts = _shortcuts(model)
    # A batch's rows mostly share one timestamp: prepare each distinct datetime once.
    prepared_datetimes: dict[tuple[str, dt.datetime], Any] = {}
    prepared = []
    for row in rows:
        values = []
        for field, attname, plain_text, plain_none, plain_int in shortcuts:
            value = row[attname] if attname in row else field.get_default()
            if (value is None and plain_none or plain_text and type(value) is str
                    or plain_int and type(value) is int):
                values.append(value)
            elif type(value) is dt.datetime:
                key = (attname, value)
                if key not in prepared_datetimes:
                    prepared_datetimes[key] = field.get_db_prep_save(value, connection)
                values.append(prepared_datetimes[key])
            else:
                values.append(field.get_db_prep_save(value, connection))
        prepared.append(values)
    if not prepared:
        return 0
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)
    return len(prepared)
