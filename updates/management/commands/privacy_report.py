"""The evidence of erasure, without personal data: one privacy request's report, or a month's
report per connection.

    python manage.py privacy_report --request 12
    python manage.py privacy_report --month 2026-12 [--connection acme]
"""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError, CommandParser

from updates import lifecycle_reports
from updates.management.lookups import connection_by_code
from updates.models import PrivacyRequest


class Command(BaseCommand):
    help = "Print the erasure report of a privacy request, or of a month per connection."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--request", type=int, metavar="ID")
        group.add_argument("--month", metavar="YYYY-MM")
        parser.add_argument("--connection", metavar="CODE", help="With --month: only this one.")

    def handle(self, *args, request: int | None, month: str | None, connection: str | None,
               **options) -> None:
        if request is not None:
            found = PrivacyRequest.objects.filter(pk=request).first()
            if found is None:
                raise CommandError(f"No privacy request #{request}.")
            self.stdout.write(lifecycle_reports.request_report(found), ending="")
            return
        matched = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
        if not matched or not 1 <= int(matched[2]) <= 12:
            raise CommandError("--month is YYYY-MM, e.g. 2026-12.")
        year, number = int(matched[1]), int(matched[2])
        if connection:
            conns = [connection_by_code(connection)]
        else:
            conns = lifecycle_reports.connections_with_activity(year=year, month=number)
        for conn in conns:
            self.stdout.write(lifecycle_reports.monthly_report(conn, year=year, month=number))
        if not conns:
            self.stdout.write("No erasures that month.")
