"""Forget one visitor: cancel its open updates, purge every stored value and identity, keep
its keyed hash on the suppression list, and file the delete with Adobe's Privacy Service.

    python manage.py forget_visitor --connection acme --identity-type mbox3rdPartyId \\
        --identity customer-42 --regulation gdpr --by dpo

The identity is read from --identity, or from standard input with --identity - (so that it
stays out of the shell's history). The user named by --by must hold the "forget visitors"
right. The output names the privacy request and its counts, never the identity.
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from updates import forgetting
from updates.management.lookups import connection_by_code
from updates.models import IdentityType, PrivacyRequest


class Command(BaseCommand):
    help = "Forget a visitor here and at Target (Adobe Privacy Service)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", metavar="CODE", required=True)
        parser.add_argument("--identity-type", required=True, choices=IdentityType.values)
        parser.add_argument("--identity", required=True, help="The identity, or - for stdin.")
        parser.add_argument("--regulation", required=True,
                            choices=PrivacyRequest.Regulation.values)
        parser.add_argument("--by", metavar="USERNAME", required=True,
                            help="Who asks (must hold the right to forget visitors).")
        parser.add_argument("--local-only", action="store_true",
                            help="Purge here only; file Adobe's part later from the admin.")

    def handle(self, *args, connection: str, identity_type: str, identity: str,
               regulation: str, by: str, local_only: bool, **options) -> None:
        conn = connection_by_code(connection)
        user = get_user_model().objects.filter(username=by).first()
        if user is None:
            raise CommandError(f"No user {by!r}.")
        if identity == "-":
            identity = sys.stdin.readline().rstrip("\r\n")
        try:
            request = forgetting.visitor_forget(
                connection=conn, identity_type=identity_type, identity=identity,
                regulation=regulation, by=user, file_at_target=not local_only)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        counts = ", ".join(f"{n} {table}" for table, n in request.purge_counts.items() if n)
        self.stdout.write(
            f"Privacy request #{request.pk}: {request.get_state_display()}. Cancelled "
            f"{request.cancelled_updates} open updates; purged {counts or 'nothing stored'}.")
        if request.note:
            self.stdout.write(request.note)
