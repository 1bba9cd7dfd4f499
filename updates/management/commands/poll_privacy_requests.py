"""Read the status of the privacy jobs filed with Adobe that are due — the job the "Follow
privacy requests at Adobe" schedule runs every hour (within PROFILEOPS_PRIVACY_POLLS_PER_DAY).

    python manage.py poll_privacy_requests           # the jobs that are due
    python manage.py poll_privacy_requests --all     # every open job now (a demo, a check)
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from updates import privacy


class Command(BaseCommand):
    help = "Read Adobe's status of the privacy jobs that are due."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--all", action="store_true",
                            help="Read every open job now, due or not (still within the cap).")

    def handle(self, *args, all: bool, **options) -> None:
        read = privacy.privacy_requests_poll(due_only=not all)
        self.stdout.write(f"Read {read} privacy jobs.")
