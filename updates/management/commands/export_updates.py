"""manage.py export_updates --format csv|xlsx --output FILE|- [filters] [--layout all|import]

The admin's export from the command line, through the same service (exporting.py).

Filters (all optional, combined): --connection CODE, --status S, --created-by USERNAME (the
updates that user staged), --created-from / --created-to YYYY-MM-DD (inclusive, UTC days).
--layout import writes only identity_type, identity and one column per mapping source name of
one connection: a file to edit and import again.

Who acts: without --as-user, the server's operator (who can read the database anyway); with
--as-user that user's export right is checked like in the admin. (--user is the old spelling of
--as-user; it never filtered by creator — that is --created-by.)

--output - writes the file to standard output and the summary line to standard error.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from updates import exporting
from updates.management.lookups import connection_by_code
from updates.models import UpdateStatus


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Export profile updates (status, timestamps, attempts, acknowledgment) as CSV or XLSX."

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=sorted(exporting.FORMATS),
                            dest="file_format")
        parser.add_argument("--output", required=True, metavar="FILE",
                            help="The file to write, or - for standard output.")
        parser.add_argument("--connection", metavar="CODE", help="Only this connection's updates.")
        parser.add_argument("--status", choices=UpdateStatus.values,
                            help="Only updates in this state.")
        parser.add_argument("--created-by", metavar="USERNAME",
                            help="Only the updates this user staged (created).")
        parser.add_argument("--created-from", metavar="YYYY-MM-DD",
                            help="Only updates created on or after this day (UTC).")
        parser.add_argument("--created-to", metavar="YYYY-MM-DD",
                            help="Only updates created on or before this day (UTC).")
        parser.add_argument("--layout", choices=exporting.LAYOUTS, default="all",
                            help="all (default): every column; import: identity and one column "
                                 "per mapping source name of one connection, to re-import.")
        parser.add_argument("--as-user", "--user", metavar="USERNAME", dest="as_user",
                            help="Export as this user (their export permission is required). "
                                 "Not a filter: see --created-by.")

    def handle(self, *args, file_format, output, connection, status, created_by, created_from,
               created_to, layout, as_user, **options):
        target = connection_by_code(connection)
        by = exporting.COMMAND_LINE
        if as_user:
            by = self._user(as_user)
        filters = {"connection": target, "status": status, "layout": layout,
                   "created_by": self._user(created_by) if created_by else None,
                   "created_from": _day(created_from) if created_from else None,
                   "created_to": _day(created_to) if created_to else None}
        if output == "-":
            count = self._export(by, file_format, self._binary_stdout(), filters)
            self.stderr.write(f"Exported {_updates(count)} to standard output.")
            return
        path = Path(output)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as out:
                count = self._export(by, file_format, out, filters)
            os.replace(partial, path)  # never leave a half-written file under the real name
        except CommandError:
            partial.unlink(missing_ok=True)
            raise
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Cannot write {output}: {error.strerror or error}.") from None
        self.stdout.write(self.style.SUCCESS(f"Exported {_updates(count)} to {output}."))

    def _export(self, by, file_format, out, filters) -> int:
        try:
            return exporting.updates_export(by=by, file_format=file_format, out=out, **filters)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def _binary_stdout(self):
        # The file's bytes go where the command's output goes (call_command(stdout=...) too).
        stream = getattr(self.stdout, "_out", sys.stdout)
        buffer = getattr(stream, "buffer", None)
        if buffer is None:
            raise CommandError("Standard output cannot take binary data here; use --output FILE.")
        stream.flush()
        return buffer

    @staticmethod
    def _user(username: str):
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {username!r}.") from None


def _updates(count: int) -> str:
    return f"{count:,} update{'' if count == 1 else 's'}"
