"""Read acknowledged updates back from Target now — the job the "Verify sent updates" schedule
runs every minute.

    python manage.py verify_updates                    # checks that are due, all connections
    python manage.py verify_updates --connection acme --limit 50
    python manage.py verify_updates --user alice       # a person starts it: their rights apply
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from updates import selectors, verification
from updates.management.lookups import connection_by_code


class Command(BaseCommand):
    help = "Verify acknowledged profile updates against Target's profile read API (due checks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", metavar="CODE",
                            help="Only this connection (its client code).")
        parser.add_argument("--limit", type=int, metavar="N", help="Read at most N updates.")
        parser.add_argument("--user", metavar="USERNAME",
                            help="Who starts the run: refused unless they have a part in the "
                                 "workflow (submit or approve permission).")

    def handle(self, *args, connection: str | None, limit: int | None, user: str | None = None,
               **options) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        conn = connection_by_code(connection)
        by = None if user is None else selectors.person_named(user)
        if user is not None and by is None:
            raise CommandError(f"No user {user!r}.")
        try:
            run = verification.updates_verify_due(connection=conn, limit=limit, by=by)
        except ValidationError as error:  # the person may not start a run
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(
            f"Checked {run.checked}: verified {run.verified}, not applied {run.not_applied}, "
            f"could not verify {run.unverified}; newly scheduled {run.started}, "
            f"verification off {run.switched_off}; left for later (read rate) {run.throttled}.")
