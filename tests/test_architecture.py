"""The architecture tree (docs/reference/architecture.md) matches the code, and the production app's imports stay tidy.

- Every module of updates/, updates/admin/ and updates/notebook/ is named in the tree (package __init__ files and
  migrations are not modules to describe), and every .py file the tree names exists.
- Nothing under updates/ imports target_emulator or demo — not even inside a function — so a
  production install does not need them.
- Permission codenames are written in updates/permissions.py only; "the content is what was
  approved" is answered by ProfileUpdate.matches_approval only.
- Only updates/audit.py builds or writes AuditEvent rows (it checks each action against
  AuditEvent.Action).
- No function in updates/ or profileops/ (migrations aside) is longer than 60 lines.
- profileops/notebook.py only sets the notebook face up (its rooms are in updates/notebook/).
- updates' and profileops' modules import each other without a cycle, counting every import:
  one inside a function (a "lazy" import) hides a circle rather than breaking it, so it counts
  as much as one at module level.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPDATES = ROOT / "updates"
TREE_MARKER = "<!-- architecture-tree -->"


ARCHITECTURE_PAGE = ROOT / "docs" / "reference" / "architecture.md"


def docs_tree() -> set[str]:
    """The paths (relative to the repository) that the architecture page's tree names."""
    block = ARCHITECTURE_PAGE.read_text(encoding="utf-8").split(TREE_MARKER)[1]
    named: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, path) of the open folders
    for line in block.splitlines():
        if not line.strip() or line.startswith("```"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        entry = re.split(r"\s{2,}", line.strip())[0]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        parent = folders[-1][1] if folders else ""
        for name in entry.split(", "):
            path = parent + name
            if name.endswith("/"):
                folders.append((indent, path))
            named.add(path)
    return named


def updates_modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in (UPDATES, UPDATES / "admin", UPDATES / "notebook")
            for p in folder.glob("*.py") if p.name != "__init__.py"}


NOTEBOOK_SETUP = {"setup", "_quiet_console", "run", "close", "as_user", "connect"}


def test_profileops_notebook_holds_the_setup_only():
    """The notebook is a face inside the app: sessions, results and the ORM thread live in
    updates/notebook/; profileops/notebook.py defines the setup and re-exports the rest."""
    tree = ast.parse((ROOT / "profileops" / "notebook.py").read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    assert defined == NOTEBOOK_SETUP


def test_every_module_of_updates_is_in_the_docs_tree():
    assert updates_modules() - docs_tree() == set()


def test_every_module_the_docs_tree_names_exists():
    named = docs_tree()
    assert {p for p in named if p.endswith(".py") and not (ROOT / p).is_file()} == set()
    assert {p for p in named if p.endswith("/") and not (ROOT / p).is_dir()} == set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, in_functions: bool) -> list[tuple[str, list[str]]]:
    """What the module imports: (module, names) per statement — `import x` is (x, [])."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((base, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            if in_functions or not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda)):
                visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def test_nothing_in_updates_imports_the_emulator_or_the_demo():
    offenders = {
        str(path.relative_to(ROOT)): sorted(base for base, _ in _imports(path, in_functions=True)
                                            if base.split(".")[0] in ("target_emulator", "demo"))
        for path in UPDATES.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


PROFILEOPS = ROOT / "profileops"


def _import_graph() -> dict[str, set[str]]:
    """Which of updates' and profileops' modules each one imports, at module level or inside a
    function. `from pkg import mod` leads to pkg.mod (a submodule), `from mod import name` to
    mod."""
    modules = {_module_name(p): p for folder in (UPDATES, PROFILEOPS)
               for p in folder.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for base, names in _imports(path, in_functions=True):
            submodules = {f"{base}.{n}" for n in names} & modules.keys()
            imported |= submodules or ({base} & modules.keys())
        graph[name] = imported - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (a → b → … → a), or [] when there is none."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            if cycle := walk(nxt, path + [node]):
                return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        if cycle := walk(start, []):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_updates_modules_import_each_other_without_a_cycle():
    graph = _import_graph()
    assert "updates.workflow" in graph["updates.claims"]  # the graph sees relative imports
    assert "profileops.notebook" in graph  # and profileops, which imports updates
    assert find_cycle(graph) == []


def test_the_import_graph_counts_imports_inside_functions(tmp_path, monkeypatch):
    """A lazy import (inside a function or a method) is an edge like any other: the circle
    health ↔ metrics ran through one in ProbeMiddleware's /metrics probe."""
    package = tmp_path / "updates"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text(
        "thing = 1\n\nclass Probe:\n    def __call__(self):\n"
        "        from .a import thing\n        return thing\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "UPDATES", package)
    monkeypatch.setitem(globals(), "PROFILEOPS", tmp_path / "profileops")
    assert find_cycle(_import_graph()) == ["updates.a", "updates.b", "updates.a"]


def test_only_the_model_compares_content_with_its_approval():
    """"The content is what was approved" has one home, ProfileUpdate.matches_approval: no other
    module compares `approved_hash` with anything."""
    offenders = []
    for folder in (UPDATES, PROFILEOPS):
        for path in folder.rglob("*.py"):
            if "migrations" in path.parts or path == UPDATES / "models.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Compare) and any(
                        isinstance(side, ast.Attribute) and side.attr == "approved_hash"
                        for side in [node.left, *node.comparators]):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_permission_codenames_are_written_only_in_permissions_py():
    """Every "updates.<action>_<model>" codename the code checks is a constant of
    updates/permissions.py; services, admin, template tags and the notebook import it."""
    codename = re.compile(r"updates\.[a-z]+_[a-z_]+")
    offenders = []
    for folder in (UPDATES, PROFILEOPS):
        for path in folder.rglob("*.py"):
            if "migrations" in path.parts or path == UPDATES / "permissions.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                        and codename.fullmatch(node.value)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert offenders == []


MAX_FUNCTION_LINES = 60


def test_no_function_in_updates_or_profileops_is_longer_than_60_lines():
    """A longer function is split into named steps (docstring and comments count as lines)."""
    offenders = []
    for folder in (UPDATES, PROFILEOPS):
        for path in folder.rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                         f"({length} lines)")
    assert offenders == []


_AUDIT_WRITES = {"create", "bulk_create", "get_or_create", "update_or_create"}


def _audit_constructions(source: str) -> list[int]:
    """Lines of `source` that build or write an AuditEvent row: AuditEvent(...),
    AuditEvent.objects.create/bulk_create/… or rows.insert_rows(AuditEvent, …)."""
    def is_model(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "AuditEvent"
                or isinstance(node, ast.Attribute) and node.attr == "AuditEvent")

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (is_model(func)
                or isinstance(func, ast.Attribute) and func.attr in _AUDIT_WRITES
                and isinstance(func.value, ast.Attribute) and func.value.attr == "objects"
                and is_model(func.value.value)
                or isinstance(func, ast.Attribute) and func.attr == "insert_rows"
                and node.args and is_model(node.args[0])):
            found.append(node.lineno)
    return found


def test_the_audit_construction_finder_finds_each_form():
    source = ("a = AuditEvent(action='x')\nAuditEvent.objects.create(action='x')\n"
              "models.AuditEvent.objects.bulk_create([])\nrows.insert_rows(AuditEvent, [])\n"
              "AuditEvent.objects.filter(action='x')\nAuditEvent.Action('staged')\n")
    assert _audit_constructions(source) == [1, 2, 3, 4]


def test_only_the_audit_module_builds_audit_rows():
    """Every audit row is written through updates/audit.py, which checks its action against
    AuditEvent.Action (the timeline's words): no other module constructs an AuditEvent."""
    offenders = []
    for folder in (UPDATES, PROFILEOPS):
        for path in folder.rglob("*.py"):
            if "migrations" in path.parts or path == UPDATES / "audit.py":
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}"
                          for line in _audit_constructions(path.read_text())]
    assert offenders == []
