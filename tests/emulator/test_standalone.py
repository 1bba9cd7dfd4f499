"""The emulator is a package of its own: plain Python that runs without Django or the app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

BASE_DIR = Path(__file__).resolve().parents[2]


def test_importing_the_emulator_loads_neither_django_nor_the_app():
    code = ("import sys, target_emulator; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'updates', 'demo'}))")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_python_dash_m_serves_on_a_free_port_and_acknowledges_an_update():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    process = subprocess.Popen([sys.executable, "-m", "target_emulator", "--port", "0"],
                               cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("Target emulator listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1]
        answer = requests.get(f"{base}/m2/demo/profile/update",
                              params={"mbox3rdPartyId": "c-1", "profile.tier": "gold"}, timeout=5)
        assert answer.status_code == 200
        assert answer.text == "trueRequest successfully submitted"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_a_bad_option_is_refused_with_the_reason():
    result = subprocess.run([sys.executable, "-m", "target_emulator", "--error-rate", "2"],
                            cwd=BASE_DIR, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "error" in result.stderr.lower() and "rate" in result.stderr.lower()
