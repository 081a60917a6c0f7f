"""wmlib's imports form no circle: every import of a wmlib module by another (at the top of a file or
inside a function) is an arrow, and a walk over the arrows must never come back to where it began."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "wmlib"


def _module_name(path: Path) -> str:
    parts = ["wmlib", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(name: str) -> str | None:
    """The wmlib module (or package) ``name`` refers to, or None outside wmlib."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The wmlib modules ``module`` imports anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else node.module)
            targets = [f"{base}.{a.name}" for a in node.names]   # a submodule, or a name in base
        for t in targets:
            hit = _resolve(t)
            if hit and hit != module:
                out.add(hit)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in ``graph`` as the path that walks it (first node repeated at the end), or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = "done"
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_read_from_function_bodies_too():
    assert "wmlib.device" in imports_of("wmlib.cache")
    assert "wmlib.grid" in imports_of("wmlib.plan")
    assert "wmlib.schemes.adi" in imports_of("wmlib.papers.adi2018")


def test_wmlib_has_no_import_cycle():
    cycle = find_cycle({m: imports_of(m) for m in MODULES})
    assert cycle is None, "import circle: " + " → ".join(cycle)
