"""The quick start's first command: start_demo brings up web admin, qcluster and emulator
together on a fresh SQLite file, and stops all three on Ctrl+C."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, deadline: float) -> requests.Response:
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.mark.slow
def test_start_demo_serves_admin_and_emulator_then_stops_cleanly_on_ctrl_c(tmp_path):
    web_port, emulator_port = _free_port(), _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "DEBUG": "1"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "start_demo", "--port", str(web_port),
         "--emulator-port", str(emulator_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        login = _wait_for(f"http://127.0.0.1:{web_port}/admin/login/", deadline)
        assert login.status_code == 200 and "csrfmiddlewaretoken" in login.text
        emulator = _wait_for(f"http://127.0.0.1:{emulator_port}/_emulator/stats", deadline)
        assert emulator.status_code == 200

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert f"http://127.0.0.1:{web_port}/admin/" in output
    assert "operator" in output and "supervisor" in output and "admin" in output
    assert "ProfileOps stopped." in output
    assert proc.returncode == 0
    for port in (web_port, emulator_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served"
