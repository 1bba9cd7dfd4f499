"""Read the status of the privacy jobs filed with Adobe that are due — the job the "Follow
privacy requests at Adobe" schedule runs every hour (within PROFILEOPS_PRIVACY_POLLS_PER_DAY).

    python manage.py poll_privacy_requests
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from updates import privacy


class Command(BaseCommand):
    help = "Read Adobe's status of the privacy jobs that are due."

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"Read {privacy.privacy_requests_poll()} privacy jobs.")
