from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo.seeding import seed_demo


class Command(BaseCommand):
    help = "Create the demo users, a connection to the local emulator, mappings and updates (embedded mode only)."

    def add_arguments(self, parser):
        parser.add_argument("--emulator-url", default="http://127.0.0.1:8765")

    def handle(self, *args, emulator_url, **options):
        if not settings.DEBUG:
            raise CommandError("Demo data and demo passwords are for the embedded mode (DEBUG on) only.")
        seed = seed_demo(emulator_url=emulator_url)
        for username, password in seed.passwords.items():
            self.stdout.write(f"  {username:<11} password: {password}")
        self.stdout.write(f"Demo connection {seed.connection.client_code!r} → {emulator_url}; "
                          f"{seed.created_updates} demo updates created.")
