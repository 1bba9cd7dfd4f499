"""Run the local Adobe Target emulator (updates/emulator.py) until SIGINT or SIGTERM.

Prints exactly one line, `Target emulator listening on http://127.0.0.1:PORT`, so a parent
process (start_demo, tests, benchmarks) can start it with --port 0 and read the chosen port.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from updates.emulator import TargetEmulator


class Command(BaseCommand):
    help = "Serve the local Adobe Target emulator on 127.0.0.1 (demo, tests, benchmarks)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8765, help="0 picks a free port.")
        parser.add_argument("--host", default="127.0.0.1", help="A loopback address only.")
        parser.add_argument("--latency", type=float, default=0.0, help="Seconds added to every answer.")
        parser.add_argument("--error-rate", type=float, default=0.0, help="Share answered 503.")
        parser.add_argument("--timeout-rate", type=float, default=0.0,
                            help="Share applied, then left hanging for --hang-seconds.")
        parser.add_argument("--hang-seconds", type=float, default=30.0)
        parser.add_argument("--drop-rate", type=float, default=0.0,
                            help="Share closed without an answer (not applied).")
        parser.add_argument("--wrong-body-rate", type=float, default=0.0,
                            help="Share answered 200 without the acknowledgment (not applied).")
        parser.add_argument("--quota", type=int, default=None,
                            help="Requests per rolling window; over it: 429.")
        parser.add_argument("--quota-window", type=float, default=86400.0, help="Seconds.")
        parser.add_argument("--seed", type=int, default=None, help="Seed for the fault draws.")
        parser.add_argument("--no-keep-received", action="store_true",
                            help="Keep counters only (long benchmarks).")

    def handle(self, *args, **options):
        try:
            emulator = TargetEmulator(
                options["host"], options["port"],
                latency=options["latency"], error_rate=options["error_rate"],
                timeout_rate=options["timeout_rate"], hang_seconds=options["hang_seconds"],
                drop_rate=options["drop_rate"], wrong_body_rate=options["wrong_body_rate"],
                quota=options["quota"], quota_window_seconds=options["quota_window"],
                seed=options["seed"], keep_received=not options["no_keep_received"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            emulator.start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {emulator.host}:{options['port']}: {exc.strerror}")
        try:
            self.stdout.write(f"Target emulator listening on {emulator.base_url}")
            self.stdout.flush()
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
