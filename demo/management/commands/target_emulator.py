"""Run the local Adobe Target emulator (the `target_emulator` package) until SIGINT or SIGTERM.

The same as `python -m target_emulator`, kept as a management command for the demo. Prints exactly
one line, `Target emulator listening on http://127.0.0.1:PORT`, so a parent process (start_demo,
tests, benchmarks) can start it with --port 0 and read the chosen port.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from target_emulator.__main__ import add_options, emulator_from_options, serve


class Command(BaseCommand):
    help = "Serve the local Adobe Target emulator on 127.0.0.1 (demo, tests, benchmarks)."

    def add_arguments(self, parser):
        add_options(parser)

    def handle(self, *args, **options):
        try:
            emulator = emulator_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            serve(emulator, write=write)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {emulator.host}:{options['port']}: {exc.strerror}")
