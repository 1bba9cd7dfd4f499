"""Build, upload and poll bulk files now — the job the "Send and poll bulk files" schedule runs
every minute (updates/bulk_sending.py, bulk_polling.py).

    python manage.py send_bulk                    # every connection
    python manage.py send_bulk --connection acme
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from updates import bulk_polling, bulk_sending
from updates.management.lookups import connection_by_code


class Command(BaseCommand):
    help = "Send the bulk route's due updates through Target's Bulk Profile Update API and poll " \
           "the accepted files' batchStatus."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", metavar="CODE",
                            help="Only this connection (its client code).")

    def handle(self, *args, connection: str | None, **options) -> None:
        conn = connection_by_code(connection)
        run = bulk_sending.bulk_send_due(connection=conn)
        polls = bulk_polling.bulk_poll_due()
        self.stdout.write(
            f"Bulk: {run.jobs} job(s) built with {run.rows} row(s) in {run.files_built} file(s); "
            f"{run.to_single} sent back to the single route, {run.not_approved} failed the "
            f"approval check; {run.uploads} upload(s): {run.accepted} accepted, {run.retried} to "
            f"retry, {run.refused} refused, {run.throttled} waiting for the call rate; "
            f"{polls} status poll(s).")
