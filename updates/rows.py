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

An import's updates need their ids (for their content authors): `insert_rows_returning_pks`
reads them with RETURNING, as bulk_create does — on PostgreSQL from one INSERT … SELECT FROM
UNNEST of one array per column (bulk_create's form too: thousands of rows × 28 columns as
separate parameters are slow to bind and to plan), on SQLite from multi-row INSERTs of as many
rows as a statement takes parameters.
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


def _prepared(model: type[models.Model], rows: Iterable[Mapping[str, Any]],
              connection) -> list[list[Any]]:
    """Each row's values in column order, as bulk_create would send them."""
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
    return prepared


def _insert_sql(model: type[models.Model], connection, rows: int = 1) -> str:
    fields, table = _columns(model)
    quote = connection.ops.quote_name
    one = f"({', '.join(['%s'] * len(fields))})"
    return (f"INSERT INTO {quote(table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([one] * rows)}")


def insert_rows(model: type[models.Model], rows: Iterable[Mapping[str, Any]], *,
                as_arrays: bool = False) -> int:
    """INSERT one row per mapping of attribute name (``update_id`` for a foreign key) to value;
    returns how many. Call inside the caller's transaction, like bulk_create. `as_arrays`: on
    PostgreSQL one INSERT … SELECT FROM UNNEST for them all (thousands of rows at once, as an
    import writes them) instead of executemany."""
    connection = connections[router.db_for_write(model)]
    prepared = _prepared(model, rows, connection)
    if not prepared:
        return 0
    with connection.cursor() as cursor:
        if as_arrays and connection.vendor == "postgresql":
            cursor.execute(_unnest_sql(model, connection), [list(c) for c in zip(*prepared)])
        else:
            cursor.executemany(_insert_sql(model, connection), prepared)
    return len(prepared)


def _max_parameters(connection) -> int:
    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 65535  # PostgreSQL's wire protocol: a 16-bit count


def insert_rows_returning_pks(model: type[models.Model],
                              rows: Iterable[Mapping[str, Any]]) -> list[int]:
    """As insert_rows, and the new rows' primary keys (RETURNING, as bulk_create reads them;
    in no promised order — SQLite promises none)."""
    connection = connections[router.db_for_write(model)]
    prepared = _prepared(model, rows, connection)
    if not prepared:
        return []
    pk = connection.ops.quote_name(model._meta.pk.column)
    if connection.vendor == "postgresql":
        statements = [(f"{_unnest_sql(model, connection)} RETURNING {pk}",
                       [list(column) for column in zip(*prepared)])]
    else:
        per_statement = max(1, _max_parameters(connection) // len(_columns(model)[0]))
        statements = [
            (f"{_insert_sql(model, connection, len(batch))} RETURNING {pk}",
             [value for values in batch for value in values])
            for start in range(0, len(prepared), per_statement)
            for batch in [prepared[start:start + per_statement]]]
    pks: list[int] = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
            pks.extend(row[0] for row in cursor.fetchall())
    return pks


def _unnest_sql(model: type[models.Model], connection) -> str:
    """INSERT … SELECT * FROM UNNEST(%s::type[], …): one array parameter per column, typed
    as bulk_create types them (without a length: no truncation)."""
    fields, table = _columns(model)
    quote = connection.ops.quote_name
    arrays = ", ".join(f"(%s)::{f.db_type(connection).split('(')[0]}[]" for f in fields)
    return (f"INSERT INTO {quote(table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"SELECT * FROM UNNEST({arrays})")
