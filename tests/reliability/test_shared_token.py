"""Two processes need Target's profile token at the same moments, across several compressed
token lifetimes: they share one token at a time and only one of them ever mints a new one
(credentials.py: the CredentialState row's lock), never while a token is still valid.

The emulator (with IMS and the Admin API, target_emulator/adobe_admin.py) runs in this test
process; its profile tokens live 1.5 s, its IMS tokens 2.5 s. Each process asks for the token
every 20 ms for four seconds, from a common start (the start gate), and prints a fingerprint of each token it
got (never the token).
"""

from __future__ import annotations

import sys

from tests.conftest import make_connection, use_adobe_credentials
from tests.reliability.conftest import (AT_THE_GATE, MANAGE, open_gate_when_ready, reliability,
                                        start_gate, subprocess_env)
from target_emulator import AdobeAdmin

pytestmark = reliability[1:]  # transactional and serialized, but quick: not `slow`

ASK = """
import hashlib, time
from updates import credentials
from updates.models import TargetConnection
""" + AT_THE_GATE + """
until = time.time() + 4
while time.time() < until:
    conn = TargetConnection.objects.get(client_code="shared")
    token = credentials.profile_token(conn)
    print("token", hashlib.sha256(token.encode()).hexdigest()[:12], flush=True)
    time.sleep(0.02)
"""


def test_two_processes_share_each_token_and_only_one_mints_it(processes, emulator_factory):
    emulator = emulator_factory(adobe=AdobeAdmin(profile_token_lifetime=1.5, ims_lifetime=2.5))
    use_adobe_credentials(make_connection("shared"), emulator)
    started = [processes.start(name, [sys.executable, MANAGE, "shell", "-c", ASK],
                               subprocess_env(start_gate(processes)))
               for name in ("web", "worker")]
    open_gate_when_ready(processes, started)
    processes.wait_all_ok(started, timeout=120)
    seen = {p.name: [line.split()[1] for line in (processes.directory / f"{p.name}.out")
                     .read_text().split("\n") if line.startswith("token ")] for p in started}
    adobe = emulator.adobe.counts
    assert all(len(lines) > 50 for lines in seen.values()), seen  # both asked all along
    assert adobe.posts_while_valid == 0
    distinct = set(seen["web"]) | set(seen["worker"])
    assert adobe.token_posts == len(distinct)  # one mint per token, whoever needed it first
    assert adobe.token_posts >= 2  # the lifetimes really ran out during the run
    assert set(seen["web"]) & set(seen["worker"])  # they used the same tokens
