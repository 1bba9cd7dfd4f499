"""manage.py export_updates --format csv|xlsx --output FILE [--connection CODE] [--status S]

The admin's export from the command line, through the same service (exporting.py). Without
--user it acts for the server's operator (who can read the database anyway); with --user that
user's export right is checked like in the admin.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from updates import exporting
from updates.models import TargetConnection, UpdateStatus


class Command(BaseCommand):
    help = "Export profile updates (status, timestamps, attempts, acknowledgment) as CSV or XLSX."

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=sorted(exporting.FORMATS),
                            dest="file_format")
        parser.add_argument("--output", required=True, metavar="FILE")
        parser.add_argument("--connection", metavar="CODE", help="Only this connection's updates.")
        parser.add_argument("--status", choices=UpdateStatus.values,
                            help="Only updates in this state.")
        parser.add_argument("--user", metavar="USERNAME",
                            help="Export as this user (their export permission is required).")

    def handle(self, *args, file_format, output, connection, status, user, **options):
        target = None
        if connection:
            try:
                target = TargetConnection.objects.get(client_code=connection)
            except TargetConnection.DoesNotExist:
                raise CommandError(f"No connection with client code {connection!r}.") from None
        by = exporting.COMMAND_LINE
        if user:
            try:
                by = get_user_model().objects.get(username=user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user {user!r}.") from None
        path = Path(output)
        partial = path.with_name(path.name + ".partial")
        try:
            with open(partial, "wb") as out:
                count = exporting.updates_export(by=by, file_format=file_format, out=out,
                                                 connection=target, status=status)
            os.replace(partial, path)  # never leave a half-written file under the real name
        except ValidationError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(" ".join(error.messages)) from None
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Cannot write {output}: {error.strerror or error}.") from None
        self.stdout.write(self.style.SUCCESS(f"Exported {count:,} updates to {output}."))
