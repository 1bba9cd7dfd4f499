"""Start the whole application on its embedded defaults: web admin, qcluster, Target emulator.

Used by `./dev start`. Migrates, seeds the demo data (idempotent), starts the three processes,
prints the URL and the demo passwords, and stops everything cleanly on Ctrl+C.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from demo.seeding import (
    DEMO_APPLY_DELAY_SECONDS, DEMO_VERIFY_SCHEDULE_MINUTES, demo_profiles_json, seed_demo,
)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Run web admin + qcluster + local Target emulator together (embedded demo mode)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="Web admin port (127.0.0.1).")
        parser.add_argument("--emulator-port", type=int, default=8765)

    def handle(self, *args, port: int, emulator_port: int, **options):
        if not settings.DEBUG:
            raise CommandError("start_demo is the embedded demo mode; see 'Running for real' "
                               "(docs/operations/running-for-real.md).")
        for p, what in ((port, "web admin"), (emulator_port, "emulator")):
            if not _port_free(p):
                raise CommandError(f"Port {p} for the {what} is in use; pass --port/--emulator-port.")

        call_command("migrate", interactive=False, verbosity=0)
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        seed = seed_demo(emulator_url=emulator_url, adobe=True)  # the emulator runs with --adobe

        _verify_every_minute()

        # The emulator behaves as Target does (faithful mode) and knows the demo's visitors.
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="profileops-demo-",
                                         delete=False, encoding="utf-8") as profiles:
            profiles.write(demo_profiles_json())
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        env = {**os.environ, "PROFILEOPS_VERIFY_SCHEDULE_MINUTES": DEMO_VERIFY_SCHEDULE_MINUTES,
               "PROFILEOPS_VERIFY_FIRST_CHECK_SECONDS": "0",  # the demo's schedule alone
               # Forgetting a visitor files at the emulator's Privacy Service.
               "PROFILEOPS_PRIVACY_SERVICE_URL": f"{emulator_url}/data/core/privacy"}
        children = {
            "emulator": subprocess.Popen(manage + [
                "target_emulator", "--port", str(emulator_port), "--faithful",
                "--apply-delay", str(DEMO_APPLY_DELAY_SECONDS), "--profiles", profiles.name,
                "--adobe"]),
            "qcluster": subprocess.Popen(manage + ["qcluster"], env=env),
            "web": subprocess.Popen(manage + ["runserver", f"127.0.0.1:{port}", "--noreload"],
                                    env=env),
        }
        url = f"http://127.0.0.1:{port}/admin/"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"ProfileOps is starting at {url}"))
        self.stdout.write("Demo users (passwords are new on every start; embedded demo mode only):")
        for username, password in seed.passwords.items():
            self.stdout.write(f"  {username:<11} {password}")
        self.stdout.write(f"Target emulator: {emulator_url}/  (what it received: "
                          f"{emulator_url}/_emulator/received.html)")
        self.stdout.write("The scheduler sends approved updates every minute and reads them back "
                          f"after {DEMO_VERIFY_SCHEDULE_MINUTES} minutes (verified / not applied); "
                          "Target applies an update "
                          f"{DEMO_APPLY_DELAY_SECONDS} s after acknowledging it. Press Ctrl+C to stop.\n")

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in children.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with code {proc.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in children.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in children.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            try:
                os.unlink(profiles.name)
            except OSError:
                pass
            self.stdout.write("ProfileOps stopped.")


def _verify_every_minute() -> None:
    """Demo only: the verification schedule runs every minute (production: every five)."""
    from django_q.models import Schedule

    Schedule.objects.filter(func="updates.tasks.verify_sent_updates").update(minutes=1)
