"""manage.py import_updates FILE --connection CODE --user USERNAME [--submit] [--supersede]

The admin's import from the command line, through the same service (importing.py): check every
row, then save all of them in one transaction or nothing. A bad file prints each problem
(row, column, reason) and exits with status 1.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import ngettext

from updates import importing
from updates.management.lookups import connection_by_code
from updates.models import ImportJob


class Command(BaseCommand):
    help = "Import profile updates from a CSV or XLSX file (all rows or none)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV (UTF-8) or XLSX file, one update per row.")
        parser.add_argument("--connection", required=True, metavar="CODE",
                            help="Client code of the Target connection.")
        parser.add_argument("--user", required=True, metavar="USERNAME",
                            help="Who imports: the drafts are theirs, and their rights apply.")
        parser.add_argument("--submit", action="store_true",
                            help="Submit the imported updates for approval at once.")
        parser.add_argument("--supersede", action="store_true",
                            help="Cancel open updates that set an attribute a row sets (audited "
                                 "as superseded) instead of refusing those rows.")

    def handle(self, *args, file, connection, user, submit, supersede=False, **options):
        path = Path(file)
        try:  # streamed from disk by the service, never held whole in memory
            with path.open("rb"):
                pass
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror or error}.") from None
        target = connection_by_code(connection)
        try:
            by = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {user!r}.") from None

        started = time.monotonic()
        try:
            job = importing.import_job_create(
                connection=target, file_name=path.name, file_path=path, by=by, submit=submit,
                supersede=supersede, background=False,
                progress=lambda n: self.stdout.write(f"  read {n:,} rows …"))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        if job.status == ImportJob.Status.INVALID:
            self._fail(job)
        rows = ngettext("row", "rows", job.total_rows)
        self.stdout.write(f"Checked {job.total_rows:,} {rows}: all valid. "
                          f"Importing (job #{job.pk}) …")

        every = max(1000, job.total_rows // 10)
        job = importing.import_job_run(
            job=job, progress_every=every, file_path=path,
            progress=lambda done, total: self.stdout.write(f"  checked {done:,} of {total:,} rows"))
        if job.status != ImportJob.Status.DONE:
            self._fail(job)
        kind = "pending approval" if job.submit_after_import else "drafts"
        self.stdout.write(self.style.SUCCESS(
            f"Imported {job.created_updates:,} {ngettext('update', 'updates', job.created_updates)}"
            f" as {kind} for {target.label} "
            f"(import #{job.pk}) in {time.monotonic() - started:.1f} s."))

    def _fail(self, job: ImportJob) -> None:
        for error in job.errors:
            where = "file" if error["row"] is None else f"row {error['row']}"
            if error["column"]:
                where += f", column {error['column']}"
            self.stderr.write(f"{where}: {error['message']}")
        omitted = job.error_count - len(job.errors)
        if omitted > 0:
            self.stderr.write(f"… and {omitted:,} more problems not listed.")
        raise CommandError(f"Nothing was imported: {job.error_count:,} problem"
                           f"{'s' if job.error_count != 1 else ''} in {job.file_name} "
                           f"(import #{job.pk}, {job.get_status_display().lower()}).")
