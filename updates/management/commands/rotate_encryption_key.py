"""Re-encrypt every stored secret with the first key of PROFILEOPS_ENCRYPTION_KEYS.

Key rotation (docs/operations/secrets.md): put a new key first in PROFILEOPS_ENCRYPTION_KEYS and
keep the old one after it, restart, run this command, then remove the old key and restart again.
Values stored before encryption was introduced are encrypted too. Nothing secret is printed: only
how many values of which field were rewritten.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from updates import encryption


class Command(BaseCommand):
    help = ("Re-encrypt every stored secret (tokens, client secrets, webhook URLs) with the first "
            "key of PROFILEOPS_ENCRYPTION_KEYS.")

    def handle(self, *args, **options) -> None:
        try:
            counts = encryption.reencrypt_all()
        except encryption.KeyMissing as error:
            raise CommandError(str(error)) from None
        except encryption.Undecryptable as error:
            raise CommandError(f"{error} Nothing was changed.") from None
        for (model, field), n in counts.items():
            self.stdout.write(f"{model}.{field}: {n:,} value{'s' if n != 1 else ''} re-encrypted")
        self.stdout.write(self.style.SUCCESS(
            f"Done: {sum(counts.values()):,} secrets now use the first key. The other keys can "
            "be removed from PROFILEOPS_ENCRYPTION_KEYS."))
