"""ProfileOps benchmarks — not tests: they measure, print figures and ratios, and never fail a build.

Run them all with one command (see docs/benchmarks.md):

    .venv/bin/python bench/run.py [--quick] [--database sqlite|postgres|both]

`bench/run.py` creates a scratch database per benchmark, starts the Target emulator as its own
process and runs every benchmark module (`python -m bench.<name>`) in a fresh subprocess with
DATABASE_URL pointing at the scratch database, so each one starts from clean settings and its
peak memory is its own.
"""
