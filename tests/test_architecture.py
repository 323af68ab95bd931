"""The package's layout, checked from its source: the method core knows no particular world, no
modules import each other (directly or around a loop), and every DVC stage depends on every
library file its notebook imports (so editing one reruns the stages that use it)."""

import ast
import json
from pathlib import Path

import yaml

from showo_turbo.worlds import WORLD_KINDS

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "showo_turbo"
# The method: model, samplers, trajectories, distillation, evaluation harness, and what they stand on.
CORE = ("model", "sampling", "trajectories", "consistency", "distribution_matching", "distill", "evaluate", "benchmark",
        "teacher", "params", "io", "errors", "shards", "sample_store", "tokenization", "display", "magvit", "phi_tokenizer", "worlds")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Every showo_turbo module `tree` imports, at module level or inside functions."""
    here = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("showo_turbo")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("showo_turbo"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in out if m in MODULES}


GRAPH = {m: imports_of(ast.parse(p.read_text()), m, p.name == "__init__.py") - {m} for m, p in MODULES.items()}


def closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return seen


def test_the_graph_sees_the_known_edges():
    """The parser itself: relative, nested and `from . import x` imports all resolve."""
    assert "showo_turbo.consistency" in GRAPH["showo_turbo.distribution_matching"]
    assert "showo_turbo.evaluate" in GRAPH["showo_turbo.distill"]  # an import inside a function
    assert "showo_turbo.worlds.shapes.scorer" in GRAPH["showo_turbo.worlds.shapes.world"]
    assert "showo_turbo.worlds" in GRAPH["showo_turbo.worlds.shapes.world"]  # `from .. import WorldFileError`


def test_the_method_core_imports_no_world():
    for core in CORE:
        name = f"showo_turbo.{core}"
        assert name in MODULES, f"{name} is listed as core but does not exist"
        reached = closure({name}, GRAPH)
        worlds = sorted(m for m in reached if m.startswith("showo_turbo.worlds."))
        assert not worlds, f"{name} imports {worlds} (directly or through another module)"


def test_no_two_modules_import_each_other():
    """No import cycle of any length (Tarjan's strongly connected components)."""
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def notebook_imports(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    out = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            out |= imports_of(ast.parse("\n".join(line for line in src.splitlines() if not line.startswith(("%", "!")))),
                              "showo_turbo", True)
    return out


def test_every_stage_depends_on_the_library_files_its_notebook_imports():
    # A world plug-in is imported by name at run time (worlds.world_module): every kind counts.
    graph = {**GRAPH, "showo_turbo.worlds": GRAPH["showo_turbo.worlds"] | set(WORLD_KINDS.values())}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        cmd = stage["cmd"].split()
        notebook = ROOT / cmd[cmd.index("showo_turbo.stage") + 2]
        deps = [d for d in stage["deps"] if isinstance(d, str)]
        # The runner itself, and what it validates with; its imports for error names change no output.
        used = closure(notebook_imports(notebook) | {"showo_turbo.params"}, graph) | {"showo_turbo.stage", "showo_turbo.errors"}
        # a package's import runs its __init__ too
        used |= {".".join(m.split(".")[:i]) for m in used for i in range(1, m.count(".") + 1)}
        for m in sorted(used):
            rel = MODULES[m].relative_to(ROOT).as_posix()
            assert any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps), \
                f"dvc.yaml stage {name}: {rel} is imported by {notebook.name} but is not a dependency"
