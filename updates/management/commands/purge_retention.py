"""Purge the customer data past each connection's retention now — the job the "Purge customer
data past its retention" schedule runs every hour.

    python manage.py purge_retention                       # every connection, until done
    python manage.py purge_retention --connection acme --chunk-size 200 --max-chunks 10
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from updates import retention
from updates.management.lookups import connection_by_code


class Command(BaseCommand):
    help = "Replace identities and values past their retention with keyed hashes, in chunks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", metavar="CODE", help="Only this connection.")
        parser.add_argument("--chunk-size", type=int, metavar="N",
                            help="Rows per transaction (default PROFILEOPS_RETENTION_CHUNK_SIZE).")
        parser.add_argument("--max-chunks", type=int, metavar="N", help="Stop after N chunks.")
        parser.add_argument("--time-budget", type=float, metavar="SECONDS", default=None,
                            help="Start no chunk after this long (default: no limit).")

    def handle(self, *args, connection: str | None, chunk_size: int | None,
               max_chunks: int | None, time_budget: float | None, **options) -> None:
        for name, value in (("--chunk-size", chunk_size), ("--max-chunks", max_chunks)):
            if value is not None and value < 1:
                raise CommandError(f"{name} must be at least 1.")
        conn = connection_by_code(connection)
        runs = retention.retention_purge(
            connection=conn, chunk_size=chunk_size, max_chunks=max_chunks,
            time_budget=float("inf") if time_budget is None else time_budget)
        for run in runs:
            counts = ", ".join(f"{n} {table}" for table, n in run.counts.items()) or "nothing due"
            more = "" if run.complete else " (more is due: run again)"
            self.stdout.write(f"{run.connection.client_code}: {counts} in {run.chunks} "
                              f"chunks{more}.")
