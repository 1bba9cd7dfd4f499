"""The benchmarks' processes start: production-like settings (DEBUG off) that pass Django's checks.

A new required secret (the encryption key, profileops.E018) once stopped `bench/run.py` and
`bench/day.py` at their first `migrate`; now it fails here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from bench.common import ROOT


def test_a_benchmark_child_process_passes_the_checks_with_debug_off(tmp_path):
    from bench.run import child_env

    env = child_env(f"sqlite:///{tmp_path / 'bench.sqlite3'}",
                    argparse.Namespace(concurrency=[], batch_size=None))
    assert env["DEBUG"] == "0"
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
