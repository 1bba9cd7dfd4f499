"""Start the whole application on its embedded defaults: web admin, qcluster, Target emulator.

Used by `./dev start`. Migrates, seeds the demo data (idempotent), starts the three processes,
prints the URL and the demo passwords, and stops everything cleanly on Ctrl+C.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from demo.seeding import seed_demo


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
            raise CommandError("start_demo is the embedded demo mode; see README 'Running for real'.")
        for p, what in ((port, "web admin"), (emulator_port, "emulator")):
            if not _port_free(p):
                raise CommandError(f"Port {p} for the {what} is in use; pass --port/--emulator-port.")

        call_command("migrate", interactive=False, verbosity=0)
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        seed = seed_demo(emulator_url=emulator_url)

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = {
            "emulator": subprocess.Popen(manage + ["target_emulator", "--port", str(emulator_port)]),
            "qcluster": subprocess.Popen(manage + ["qcluster"]),
            "web": subprocess.Popen(manage + ["runserver", f"127.0.0.1:{port}", "--noreload"]),
        }
        url = f"http://127.0.0.1:{port}/admin/"
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"ProfileOps is starting at {url}"))
        self.stdout.write("Demo users (passwords are new on every start; embedded demo mode only):")
        for username, password in seed.passwords.items():
            self.stdout.write(f"  {username:<11} {password}")
        self.stdout.write(f"Target emulator: {emulator_url}/  (what it received: {emulator_url}/_emulator/received)")
        self.stdout.write("The scheduler sends approved updates every minute. Press Ctrl+C to stop.\n")

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
            self.stdout.write("ProfileOps stopped.")
