"""The package's layout, checked from its source: the folders are layers that import only the ones
below them, the core knows no particular world and no particular distillation method (both are
plug-ins, imported by name), no modules import each other (directly or around a loop), and every
DVC stage depends on every library file its notebook imports (so editing one reruns the stages that
use it)."""

import ast
import json
from pathlib import Path

import yaml

from showo_turbo.methods import METHODS
from showo_turbo.worlds import WORLD_KINDS

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "showo_turbo"
# The folders and the folders each may import (besides itself). pipeline/ is the plumbing under
# everything; its params validator and stage runner reach the plug-in registries (worlds/, methods/
# packages) by name at run time, and the runner imports the modules that define project errors.
LAYERS = {"pipeline": set(), "model": {"pipeline"}, "worlds": {"pipeline", "model"},
          "evaluation": {"pipeline", "model", "worlds", "methods"}, "training": {"pipeline", "model", "worlds", "evaluation", "methods"},
          "methods": {"pipeline", "model", "training"}}
PLUGINS = {*WORLD_KINDS.values(), *METHODS.values()}
# Edges across layers that are not downward, each with its reason.
ALLOWED = {("showo_turbo.evaluation.explorer", "showo_turbo.training.trajectories"): "the explorer reads the trajectory store",
           ("showo_turbo.pipeline.params", "showo_turbo.worlds"): "the world plug-ins' params, by kind",
           ("showo_turbo.pipeline.params", "showo_turbo.methods"): "the method plug-ins' params, by name"}


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


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_sees_the_known_edges():
    """The parser itself: relative, nested and `from . import x` imports all resolve."""
    assert "showo_turbo.methods.text" in GRAPH["showo_turbo.methods.dm"]
    assert "showo_turbo.evaluation.harness" in GRAPH["showo_turbo.training.distill"]  # an import inside a function
    assert "showo_turbo.worlds.shapes.scorer" in GRAPH["showo_turbo.worlds.shapes.world"]
    assert "showo_turbo.worlds" in GRAPH["showo_turbo.worlds.showo.world"]  # `from .. import WorldFileError`
    assert "showo_turbo.model.showo" in GRAPH["showo_turbo.model.sampling"]


def test_every_module_lives_in_a_layer_folder():
    loose = sorted(m for m in MODULES if folder(m) not in LAYERS and m != "showo_turbo")
    assert not loose, f"modules outside the layer folders: {loose}"


def test_each_folder_imports_only_the_layers_below_it():
    for m, deps in GRAPH.items():
        if m in ("showo_turbo", "showo_turbo.pipeline.stage"):
            continue  # the package's lazy loaders; the runner's error-name imports
        for d in deps:
            if folder(d) != folder(m) and (m, d) not in ALLOWED:
                assert folder(d) in LAYERS[folder(m)], f"{m} ({folder(m)}/) imports {d} ({folder(d)}/)"


def test_the_core_imports_no_world_and_no_method():
    """Outside a plug-in's own folder or file, nothing reaches a particular world or method: they
    are imported by name (worlds.world_module, methods.method_module)."""
    for name in MODULES:
        if any(name == p or name.startswith(p + ".") for p in PLUGINS) or name in ("showo_turbo.methods.text", "showo_turbo"):
            continue  # (the package top's lazy loaders of the Show-o world's tokenizers are a convenience)
        reached = closure({name}, GRAPH) - {name}
        plugins = sorted(m for m in reached if any(m == p or m.startswith(p + ".") for p in PLUGINS))
        assert not plugins, f"{name} imports {plugins} (directly or through another module)"


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
        notebook = ROOT / cmd[cmd.index("showo_turbo.pipeline.stage") + 2]
        deps = [d for d in stage["deps"] if isinstance(d, str)]
        # The runner itself, and what it validates with; its imports for error names change no output.
        used = closure(notebook_imports(notebook) | {"showo_turbo.pipeline.params"}, graph) | {"showo_turbo.pipeline.stage", "showo_turbo.pipeline.errors"}
        # a package's import runs its __init__ too
        used |= {".".join(m.split(".")[:i]) for m in used for i in range(1, m.count(".") + 1)}
        for m in sorted(used):
            rel = MODULES[m].relative_to(ROOT).as_posix()
            assert any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps), \
                f"dvc.yaml stage {name}: {rel} is imported by {notebook.name} but is not a dependency"
