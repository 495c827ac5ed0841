"""The shape of the package (STYLE.md 11): stages side by side above the store, the model and
the datasets, never importing one another, and no import circle anywhere."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "study"
# The stages: each reads its inputs through study.store and writes its own artefacts.
STAGES = {"study.features", "study.train", "study.evaluate", "study.report", "study.score", "study.datasets.prepare"}


def _module(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """Every study module -> the study modules it imports (at any depth of its code)."""
    graph: dict[str, set[str]] = {}
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from pkg import submodule` imports the submodule; `from mod import name`, the module
                for a in node.names:
                    found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_stages_never_import_each_other():
    graph = imports()
    for stage in STAGES:
        assert not graph[stage] & (STAGES - {stage}), (stage, graph[stage] & STAGES)


def test_no_import_circle():
    graph = imports()
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, " -> ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
