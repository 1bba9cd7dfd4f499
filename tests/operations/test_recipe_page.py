"""The docs' production recipe is the one the production smoke test runs, line for line.

tests/production/test_smoke.py runs RECIPE_PREPARE, RECIPE_SERVER and RECIPE_CLUSTER with every
variable of RECIPE_ENVIRONMENT set; this test keeps the commands and exports of "Running for real"
(docs/operations/running-for-real.md) and
exports equal to those lists, so an edit to either shows up here at once (the smoke test itself
runs only in CI's PostgreSQL pass).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.production.test_smoke import (
    RECIPE_CLUSTER, RECIPE_ENVIRONMENT, RECIPE_PREPARE, RECIPE_SERVER,
)

RECIPE_PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "running-for-real.md"


def _recipe_lines() -> list[str]:
    section = RECIPE_PAGE.read_text(encoding="utf-8")  # the page is the recipe
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            lines.append(re.sub(r"\s+#.*$", "", line).strip())
    return [line for line in lines if line]


def test_the_recipe_page_prepares_and_runs_exactly_what_the_smoke_test_does():
    lines = _recipe_lines()
    commands = [line for line in lines if line.startswith(("python manage.py", "gunicorn"))]
    assert commands == [*RECIPE_PREPARE, RECIPE_SERVER, RECIPE_CLUSTER]


def test_the_recipe_page_exports_exactly_the_variables_the_smoke_test_sets():
    exported = set()
    for line in _recipe_lines():
        if line.startswith("export "):
            words = shlex.split(line, comments=True)[1:]
            exported |= {word.split("=", 1)[0] for word in words}
    assert exported == RECIPE_ENVIRONMENT


def test_the_recipe_page_installs_the_server_extra():
    assert 'pip install -e ".[server]"' in _recipe_lines()
