"""The architecture tree (docs/reference/architecture.md) matches the code, and the production app's imports stay tidy.

- Every module of updates/ and updates/admin/ is named in the tree (package __init__ files and
  migrations are not modules to describe), and every .py file the tree names exists.
- Nothing under updates/ imports target_emulator or demo — not even inside a function — so a
  production install does not need them.
- updates' modules import each other without a cycle. Only imports that run when a module is
  loaded count (module level, class bodies, module-level if/try); an import inside a function
  runs when it is called, after every module is loaded, and is left out.
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
    return {str(p.relative_to(ROOT)) for folder in (UPDATES, UPDATES / "admin")
            for p in folder.glob("*.py") if p.name != "__init__.py"}


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


def _import_graph() -> dict[str, set[str]]:
    """Which of updates' modules each one imports when it is loaded. `from pkg import mod`
    leads to pkg.mod (a submodule), `from mod import name` to mod."""
    modules = {_module_name(p): p for p in UPDATES.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for base, names in _imports(path, in_functions=False):
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
    assert find_cycle(graph) == []
