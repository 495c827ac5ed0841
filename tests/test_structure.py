"""The shape of the package (STYLE.md 1, 2, 11), stated by folder so that a new module is
covered without editing a list: each folder imports only the folders below it, a stage never
imports another stage, the core is pure (no jax, no TFDS), the report never imports jax, and
there is no import circle anywhere. Only the command line turns the study's errors into exit
codes."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "study"
# Each folder of study/ and the folders it may import besides itself. `run` is the command
# line (study/run.py), above everything; `runtime` (study/runtime.py) is the process set-up
# that the command line and the tests call; `api` (study/api.py) is a trained model in Python.
ALLOWED = {
    "core": set(),
    "datasets": {"core"},
    "network": {"core"},
    "hands": {"core", "datasets"},
    "training": {"core", "datasets", "network"},
    "extraction": {"core", "datasets", "hands", "network"},
    "diagnostics": {"core", "datasets", "hands", "network", "training", "extraction"},
    "stages": {"core", "datasets", "hands", "network", "training", "extraction", "diagnostics"},
    "runtime": {"core", "extraction"},
    "run": {"core", "datasets", "hands", "network", "training", "extraction", "diagnostics", "stages", "runtime"},
    "api": {"core", "datasets", "hands", "network", "extraction"},
}
# Libraries that the pure core, and the report (which reads files only), never import.
HEAVY = {"jax", "flax", "optax", "tensorflow_datasets", "grain", "dm_pix", "sklearn", "array_record", "ai_edge_litert"}


def _module(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, object]:
    return {_module(p): p for p in PACKAGE.rglob("*.py")}


def imports(external: bool = False) -> dict[str, set[str]]:
    """Every study module -> the study modules it imports (at any depth of its code); with
    `external`, the top-level names of the other packages it imports instead."""
    graph: dict[str, set[str]] = {}
    mods = modules()
    for name, path in mods.items():
        found = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from pkg import submodule` imports the submodule; `from mod import name`, the module
                for a in node.names:
                    found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module)
        if external:
            graph[name] = {m.split(".")[0] for m in found if not m.startswith("study")}
        else:
            graph[name] = {m for m in found if m in mods and m != name}
    return graph


def _runtime_nodes(tree: ast.AST):
    """Every node of a module but those under `if TYPE_CHECKING:`, which name types for a reader
    and a type checker and import nothing when the program runs."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    return (n for n in ast.walk(tree) if id(n) not in skip)


def part(module: str) -> str:
    """The folder of study/ a module belongs to ("run" for the command line, "runtime" for its
    set-up, "" for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def stage(module: str) -> str | None:
    """The stage a module belongs to (a module or folder under study/stages), else None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "stages" else None


def test_every_module_lives_in_a_folder_of_its_role():
    for m in modules():
        assert part(m) in ALLOWED or m == "study", f"{m}: not in one of the folders {sorted(ALLOWED)}"


def test_each_folder_imports_only_the_folders_below_it():
    for m, deps in imports().items():
        if m == "study":
            continue
        for d in deps:
            assert part(d) == part(m) or part(d) in ALLOWED[part(m)], (
                f"{m} imports {d} ({part(m)} may import {sorted(ALLOWED[part(m)])})"
            )


def test_stages_never_import_each_other():
    for m, deps in imports().items():
        if stage(m):
            others = {d for d in deps if stage(d) and stage(d) != stage(m)}
            assert not others, f"stage {stage(m)} ({m}) imports another stage: {sorted(others)}"


def test_the_core_and_the_report_import_no_heavy_library():
    for m, deps in imports(external=True).items():
        if part(m) == "core" or stage(m) == "report":
            assert not deps & HEAVY, f"{m} imports {sorted(deps & HEAVY)}"


def test_only_the_command_line_turns_errors_into_exit_codes():
    """No module but study.run catches a broad exception (Exception, BaseException, a bare
    except, or the study's StudyError) or calls sys.exit: a bug inside a stage keeps its traceback."""
    broad = {"Exception", "BaseException", "StudyError"}
    for m, path in modules().items():
        if m == "study.run":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler):
                names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)} if node.type else {"(bare)"}
                reraises = any(
                    isinstance(n, ast.Raise)
                    and n.exc is None
                    or isinstance(n, ast.Raise)
                    and isinstance(n.exc, ast.Call)
                    for n in ast.walk(node)
                )
                assert not (names & (broad | {"(bare)"})) or reraises, f"{m}:{node.lineno} catches {sorted(names)}"
            if isinstance(node, ast.Attribute) and node.attr == "exit" and getattr(node.value, "id", "") == "sys":
                raise AssertionError(f"{m}:{node.lineno} calls sys.exit")


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


def test_every_stage_lives_in_stages_and_diagnostics_only_compute():
    """A command's stage calls (study.run.COMMANDS) are `run_*` functions of study/stages, and no
    module outside study/stages defines a `run_stage`: the diagnostics folder keeps the
    computations, its stages (separability, cues, gradcam) live beside the others."""
    from study.run import COMMANDS

    for command in COMMANDS.values():
        for step in command.steps:
            module, _, function = step.partition(":")
            assert module.startswith("study.stages."), f"{step}: a stage outside study/stages"
    for m, path in modules().items():
        if stage(m) is None:
            defined = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
            assert "run_stage" not in defined, f"{m} defines run_stage outside study/stages"
