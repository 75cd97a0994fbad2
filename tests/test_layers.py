"""The layers point one way: read every module's imports (ast, not importing anything) and check.

models/ and domain/ import nothing of services/, agents/, runtime, cli or
settings; no agent imports another (shared helpers excepted); no import cycle
among our modules. Imports inside ``if TYPE_CHECKING:`` are annotations, not
imports, and are left out; function-level imports count like module-level
ones (the rule is that none may exist to dodge a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "soulprint"
SKIP_DIRS = {"tests", "bench", ".venv", "build", "dist", ".git", "node_modules"}
# Agent modules every agent may use: they hold no stage.
AGENT_HELPERS = {"soulprint.agents.containment", "soulprint.agents.offload", "soulprint.agents.flow"}
UPPER = ("soulprint.services", "soulprint.agents", "soulprint.runtime", "soulprint.cli", "soulprint.settings")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        if rel[0] in SKIP_DIRS or any(p.startswith(".") for p in rel):
            continue
        out[_module_name(path)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports (``from pkg import mod`` resolves to the module)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                # "from pkg import mod" is an import of mod (the package is its parent,
                # initialised first in any case); "from mod import name" of mod.
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _violations(prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m.startswith(prefixes)
                  for t in targets if t.startswith(forbidden))


def test_the_graph_sees_our_modules():
    assert "soulprint.domain.facts" in GRAPH and "soulprint.models.llm" in GRAPH
    assert "soulprint.domain.prompts.facts" in GRAPH["soulprint.domain.facts"]


def test_models_and_domain_import_nothing_above_them():
    assert _violations(("soulprint.models", "soulprint.domain"), UPPER) == []


def test_models_import_nothing_but_models():
    assert _violations(("soulprint.models",), ("soulprint.domain", *UPPER)) == []


def _agent_violations() -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                  if m.startswith("soulprint.agents.") and m not in AGENT_HELPERS
                  for t in targets if t.startswith("soulprint.agents.") and t not in AGENT_HELPERS)


def test_no_agent_imports_another():
    assert _agent_violations() == []


def _cycles() -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    return out


def test_no_import_cycles():
    assert _cycles() == []
