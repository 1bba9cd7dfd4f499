"""The docs site (mkdocs.yml, docs/) builds, and what it says about the code stays true.

- `mkdocs build --strict` passes: every page is in the nav, and a link to a missing page or to a
  missing heading (an anchor) is a warning that strict turns into a failed build — shown here
  by breaking one on purpose.
- The configuration page documents every setting of `updates.conf.KNOBS` by its environment
  name, `PROFILEOPS_<NAME>`, and names no `PROFILEOPS_` setting that neither conf nor
  profileops/settings.py reads.
- The README stays a front door (at most 200 lines) whose links to docs/ resolve.
- Every test the docs and the README cite (`tests/….py`, `::test_…`) exists.
The workflow table, the architecture tree and the production recipe are compared with the code
by tests/services/test_workflow.py, tests/test_architecture.py and tests/operations/.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from updates.conf import KNOBS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "operations" / "configuration.md"


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_docs_site_builds_with_every_link_and_anchor_resolved(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "operations" / "configuration" / "index.html").is_file()


@pytest.mark.parametrize("link", ["reference/workflow.md#no-such-heading", "no-such-page.md"])
def test_a_broken_link_or_anchor_fails_the_build(tmp_path, link):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "index.md", "a", encoding="utf-8") as index:
        index.write(f"\nA [broken link]({link}).\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert link.split("#")[-1] in result.stdout + result.stderr


def test_the_readme_is_a_front_door_whose_links_lead_somewhere():
    """README.md is outside the site, so mkdocs does not check it: its links are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "./dev start" in text and "./dev test" in text
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not t.startswith(("http://", "https://", "#"))]
    assert targets and {t for t in targets if not (ROOT / t).exists()} == set()


def test_every_page_in_docs_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert {p for p in pages if f": {p}" not in nav} == set()


# --- the settings table against updates.conf.KNOBS -------------------------------------------

def documented_settings() -> set[str]:
    """The PROFILEOPS_ names in the first column of the configuration page's tables."""
    names: set[str] = set()
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`(PROFILEOPS_[A-Z0-9_]+)`", line.split(" | ")[0]))
    return names


def settings_module_names() -> set[str]:
    """The PROFILEOPS_ variables profileops/settings.py reads itself (not through conf)."""
    source = (ROOT / "profileops" / "settings.py").read_text(encoding="utf-8")
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"PROFILEOPS_[A-Z0-9_]+", node.value)}


def test_every_setting_of_conf_is_on_the_configuration_page():
    assert {f"PROFILEOPS_{name}" for name in KNOBS} - documented_settings() == set()


def test_the_configuration_page_documents_no_setting_that_nothing_reads():
    known = {f"PROFILEOPS_{name}" for name in KNOBS} | settings_module_names()
    assert documented_settings() - known == set()


def test_the_configuration_page_states_each_settings_default():
    """A row for one setting whose default is one plain value states conf's default."""
    wrong = []
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        match = re.fullmatch(r"`PROFILEOPS_([A-Z0-9_]+)`", cells[0]) if len(cells) == 3 else None
        if not match or match.group(1) not in KNOBS:
            continue
        knob = KNOBS[match.group(1)]
        stated = re.fullmatch(r"`([^`]*)`(?: \(.*\))?", cells[1])
        if knob.kind in (int, float) and stated:
            if float(stated.group(1)) != knob.default:
                wrong.append((match.group(1), stated.group(1), knob.default))
        elif knob.kind is tuple and stated:
            if tuple(float(v) for v in stated.group(1).split(",")) != knob.default:
                wrong.append((match.group(1), stated.group(1), knob.default))
    assert wrong == []


# --- test citations --------------------------------------------------------------------------

def cited_tests() -> list[tuple[str, str, str]]:
    """(page, test file, test name or "") for every citation in the README and docs/.

    `tests/x.py::test_a`, `…::test_b` (the same file as the citation before it) and
    `::test_c` (likewise) are the forms the pages use."""
    cited = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        last = ""
        for match in re.finditer(
                r"(tests/[\w/]+\.py)?(?:(?:…|\.\.\.)?::(test_\w+))?", text):
            path, name = match.group(1), match.group(2)
            if path:
                last = path
            if path or name:
                cited.append((str(page.relative_to(ROOT)), path or last, name or ""))
    return cited


def test_every_test_the_docs_cite_exists():
    missing = []
    for page, path, name in cited_tests():
        file = ROOT / path
        if not file.is_file():
            missing.append((page, path))
        elif name and not re.search(rf"def {name}\b", file.read_text(encoding="utf-8")):
            missing.append((page, f"{path}::{name}"))
    assert missing == []
