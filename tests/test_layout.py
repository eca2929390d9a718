"""The shape of the code: imports point one way, the package imports lazily, files stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("searchengine", "indexer")
HEAVY = ("torch", "faiss", "open_clip", "sqlalchemy", "av", "PIL", "pillow_heif", "alembic", "torchaudio")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the engine's packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def runtime_nodes(tree: ast.AST):
    """Every node that can run: all of them but the bodies of `if TYPE_CHECKING:` (hints only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Engine modules `name` imports anywhere in its file (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {t for t in targets if t in modules and t != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle_even_through_local_imports():
    graph = import_graph()
    assert "searchengine.index" in graph and graph["searchengine.cli"]  # the walk sees the code
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_modules_import_nothing_from_training():
    for name, targets in import_graph().items():
        if not name.startswith(("searchengine.training", "searchengine.cli")):
            assert not [t for t in targets if t.startswith("searchengine.training")], name


def test_importing_the_package_and_the_cli_loads_no_heavy_library():
    code = ("import sys, searchengine, searchengine.cli; searchengine.Kind; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_resolve_lazily():
    import searchengine

    for name in searchengine.__all__:
        assert getattr(searchengine, name) is not None
    assert searchengine.open_index.__module__ == "searchengine.index"


def test_every_source_file_stays_under_400_lines():
    files = [*(ROOT / "searchengine").rglob("*.py"), *(ROOT / "indexer").rglob("*.py"),
             *(ROOT / "tests").glob("*.py"), *(ROOT / "scripts").rglob("*.py")]
    long = {str(f.relative_to(ROOT)): n for f in files if (n := len(f.read_text().splitlines())) > 400}
    assert not long
