"""Two processes stage the same visitors at the same moment: for each visitor exactly one update
is staged and the other process is refused with the conflict (open_changes.py: the visitor lock
serializes the two transactions, so the second sees what the first committed).

Each process walks the same visitors in the same order from a common start (the start gate of
tests/reliability/conftest.py), so they race on every visitor; a second pair races editing drafts
of other visitors onto the same visitors.
Staging and editing also lock the connection's mapping rows (to check content against them),
which would serialize the two processes by itself; the processes here check against unlocked
mappings, so what keeps one update per visitor is the visitor lock alone. (Without both locks
the two processes staged the same visitor twice in most runs: RACE_WITHOUT_VISITOR_LOCK=1 shows it.)
"""

from __future__ import annotations

import os
import sys

from tests.conftest import make_connection, make_mapping, make_user
from tests.reliability.conftest import (AT_THE_GATE, MANAGE, open_gate_when_ready, reliability,
                                        start_gate, subprocess_env)
from updates.models import AuditEvent, ProfileUpdate

pytestmark = reliability[1:]  # transactional and serialized, but quick: not `slow`

VISITORS = 60

STAGE = """
import os
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from updates import mappings, workflow
from updates.models import ProfileUpdate, TargetConnection
unlocked = mappings.active_mappings
mappings.active_mappings = lambda connection, *, lock=False: unlocked(connection)
if os.environ.get("NO_VISITOR_LOCK"):  # to see the race the lock prevents
    from updates import open_changes
    open_changes.lock_visitors = lambda *args, **kwargs: None
by = User.objects.get(username=os.environ["STAGER"])
conn = TargetConnection.objects.get(client_code="race")
mode = os.environ["MODE"]
mine = {}
if mode == "edit":
    for i in range(int(os.environ["VISITORS"])):
        mine[i] = workflow.update_stage(
            connection=conn, identity_type="mbox3rdPartyId",
            identity=f"{os.environ['STAGER']}-{i}", attributes={"loanStatus": "funded"}, by=by)
# AT_THE_GATE
for i in range(int(os.environ["VISITORS"])):
    try:
        if mode == "stage":
            workflow.update_stage(connection=conn, identity_type="mbox3rdPartyId",
                                  identity=f"race-{i}", attributes={"loanStatus": "funded"}, by=by)
        else:
            workflow.update_edit(update=mine[i], by=by, identity=f"race-{i}")
        print("ok", i, flush=True)
    except ValidationError as error:
        print("refused", i, getattr(error, "code", None), flush=True)
""".replace("# AT_THE_GATE\n", AT_THE_GATE)


def _race(processes, mode: str, stagers: list[str]) -> dict[str, list[str]]:
    extra = {"NO_VISITOR_LOCK": "1"} if os.environ.get("RACE_WITHOUT_VISITOR_LOCK") else {}
    started = [processes.start(f"{mode}-{name}", [sys.executable, MANAGE, "shell", "-c", STAGE],
                               subprocess_env({"STAGER": name, "MODE": mode,
                                               **start_gate(processes),
                                               "VISITORS": str(VISITORS), **extra}))
               for name in stagers]
    open_gate_when_ready(processes, started)
    processes.wait_all_ok(started, timeout=180)
    return {p.name: (processes.directory / f"{p.name}.out").read_text().split("\n")
            for p in started}


def _check(outputs: dict[str, list[str]]) -> None:
    lines = [line for out in outputs.values() for line in out if line.startswith(("ok", "refused"))]
    assert len(lines) == 2 * VISITORS, outputs
    oks = sorted(int(line.split()[1]) for line in lines if line.startswith("ok "))
    refusals = [line.split() for line in lines if line.startswith("refused")]
    assert oks == list(range(VISITORS)), outputs  # exactly one per visitor
    assert sorted(int(i) for _, i, _ in refusals) == list(range(VISITORS))
    assert {code for _, _, code in refusals} == {"open_conflict"}
    for i in range(VISITORS):
        assert ProfileUpdate.objects.filter(identity=f"race-{i}").count() == 1


def test_two_processes_staging_the_same_visitors_one_succeeds_per_visitor(processes):
    conn = make_connection("race")
    make_mapping(conn, "loan_status", "loanStatus")
    for name in ("stager-a", "stager-b"):
        make_user(name, "Operators")
    _check(_race(processes, "stage", ["stager-a", "stager-b"]))
    assert AuditEvent.objects.filter(action="staged").count() == VISITORS


def test_two_processes_editing_drafts_onto_the_same_visitors_one_succeeds_per_visitor(processes):
    conn = make_connection("race")
    make_mapping(conn, "loan_status", "loanStatus")
    for name in ("editor-a", "editor-b"):
        make_user(name, "Operators")
    _check(_race(processes, "edit", ["editor-a", "editor-b"]))
