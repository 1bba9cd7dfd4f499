"""Run the emulator on its own: ``python -m target_emulator --port 0``.

Prints exactly one line, ``Target emulator listening on http://127.0.0.1:PORT``, then serves until
SIGINT or SIGTERM, so a parent process (the demo, tests, benchmarks) can start it with --port 0 and
read the chosen port.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .adobe_admin import AdobeAdmin
from .server import TargetEmulator


def add_options(parser: argparse.ArgumentParser) -> None:
    """The emulator's options, on any argparse parser (the demo's management command uses it)."""
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
    parser.add_argument("--faithful", action="store_true",
                        help="Behave as Adobe documents: no profile is created for an unknown "
                        "visitor, updates apply after --apply-delay.")
    parser.add_argument("--apply-delay", type=float, default=0.0,
                        help="Seconds before an acknowledged update shows in reads (--faithful).")
    parser.add_argument("--profiles", metavar="FILE.json", default=None,
                        help="Seed profiles: a JSON list of {identity, identity_type, "
                        "attributes, client}.")
    parser.add_argument("--drip-seconds", type=float, default=0.0,
                        help="Send every update and read answer one byte per this many seconds "
                        "(a hostile Target that drips).")
    parser.add_argument("--echo-headers", action="store_true",
                        help="Echo the request's headers (token included) in update and read "
                        "answers, as a debugging proxy might.")
    parser.add_argument("--bulk-delay", type=float, default=5.0,
                        help="Bulk API: seconds before an uploaded file is processed (batchStatus "
                        "says incomplete until then).")
    parser.add_argument("--bulk-loss-rate", type=float, default=0.0,
                        help="Bulk API: share of rows silently not kept (Target: up to 0.001).")
    parser.add_argument("--edge-host", default=None,
                        help="Loopback address of the listener serving batchStatus (default: "
                        "the same as --host, another port).")
    parser.add_argument("--adobe", action="store_true",
                        help="Also serve Adobe IMS and Target's Admin API (client ID "
                        "profileops-client, secret profileops-secret, tenant acme); the profile "
                        "APIs then require the profile token they hand out.")
    parser.add_argument("--profile-token-lifetime", type=float, default=7 * 86400.0,
                        help="With --adobe: seconds a profile token lives.")
    # The bearer token comes from the environment: a command-line argument is visible to
    # every user of the machine (ps).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m target_emulator",
        description="Serve the local Adobe Target emulator on 127.0.0.1 (demo, tests, benchmarks).")
    add_options(parser)
    return parser


def emulator_from_options(options: dict) -> TargetEmulator:
    """The emulator the parsed options describe (ValueError names a bad option)."""
    return TargetEmulator(
        options["host"], options["port"],
        latency=options["latency"], error_rate=options["error_rate"],
        timeout_rate=options["timeout_rate"], hang_seconds=options["hang_seconds"],
        drop_rate=options["drop_rate"], wrong_body_rate=options["wrong_body_rate"],
        quota=options["quota"], quota_window_seconds=options["quota_window"],
        seed=options["seed"], keep_received=not options["no_keep_received"],
        faithful=options.get("faithful", False), apply_delay=options.get("apply_delay", 0.0),
        token=os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None,
        profiles=load_profiles(options.get("profiles")),
        drip_seconds=options.get("drip_seconds", 0.0),
        echo_headers=options.get("echo_headers", False),
        bulk={"delay": options.get("bulk_delay", 5.0),
              "loss_rate": options.get("bulk_loss_rate", 0.0)},
        edge_host=options.get("edge_host"),
        adobe=AdobeAdmin(profile_token_lifetime=options.get("profile_token_lifetime", 7 * 86400.0))
        if options.get("adobe") else None,
    )


TOKEN_ENVIRONMENT_VARIABLE = "TARGET_EMULATOR_TOKEN"


def load_profiles(path: str | None) -> list[dict]:
    """The seed profiles in a JSON file (ValueError names what is wrong)."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            specs = json.load(handle)
    except OSError as exc:
        raise ValueError(f"--profiles: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--profiles: {path} is not JSON (line {exc.lineno})") from None
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise ValueError(f"--profiles: {path} must hold a JSON list of objects")
    return specs


def serve(emulator: TargetEmulator, *, write=print) -> None:
    """Start, announce the address, serve until SIGINT/SIGTERM, stop."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulator.start()
    try:
        # One line (scripts read it); the bulk API's edge host is in every upload's answer.
        write(f"Target emulator listening on {emulator.base_url}")
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    options = vars(build_parser().parse_args(argv))
    try:
        emulator = emulator_from_options(options)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        serve(emulator, write=lambda line: print(line, flush=True))
    except OSError as exc:
        print(f"error: cannot listen on {options['host']}:{options['port']}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
