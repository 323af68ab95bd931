"""The command of every DVC stage: check params.yaml, then run the stage's notebook with papermill.

    python -m showo_turbo.pipeline.stage distill@seg2 notebooks/03_distill.ipynb reports/03_distill_seg2.ipynb \\
        -p params_path params.yaml -p stage_name seg2

What the user sees through `dvc repro`:
- a good run: papermill's progress bar and nothing else (the kernel talks over IPC sockets in a
  temporary folder, so ipykernel has no unencrypted-TCP warning to print);
- bad params or a corrupt, foreign or missing input file (any `ShowoError`): one line on stderr,
  `stage <name>: <message> (report: <partial notebook>)`, and exit status 1 so that DVC stops;
- any other exception: its traceback, as papermill reports it (that is a bug to look at).
"""

from __future__ import annotations

import argparse
import ast
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ShowoError, one_line, project_error_names


class StageError(ShowoError):
    """A stage cannot start (unknown notebook parameter) or its notebook failed with a project error."""


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """Name -> default value of the notebook's cell tagged `parameters`."""
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def typed_parameters(notebook: str | Path, given: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs as the notebook's types (int, float, bool or str, from each default);
    a name the notebook does not declare is refused (papermill would only warn and ignore it)."""
    defaults = notebook_parameters(notebook)
    out = {}
    for name, value in given:
        if name not in defaults:
            raise StageError(f"{notebook}: no parameter {name!r}; it has {', '.join(defaults)}")
        kind = type(defaults[name])
        try:
            out[name] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise StageError(f"{notebook}: parameter {name!r} expects {kind.__name__}, got {value!r}") from None
    return out


def check_params(parameters: dict[str, Any]) -> None:
    """Validate the params file the notebook will read, before a kernel starts."""
    if "params_path" in parameters:
        from .params import load_params

        load_params(parameters["params_path"])


def _load_error_classes() -> None:
    """Import the modules that define the project's errors, so that `project_error_names` sees them all."""
    from ..model import showo, tokenization  # noqa: F401
    from ..training import distill, teacher  # noqa: F401
    from . import params, shards  # noqa: F401
    from ..worlds import WORLD_KINDS, world_module

    for kind in WORLD_KINDS:
        world_module(kind)


def execute(notebook: str | Path, report: str | Path, parameters: dict[str, Any], progress: bool = True) -> None:
    """Run `notebook` into `report` (written cell by cell, so a failed run leaves a partial report)."""
    import papermill
    from traitlets.config import Config

    Path(report).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="showo-kernel-") as sockets:
        # nbclient creates, owns and shuts down the kernel; the config moves it onto IPC sockets and
        # quiets the kernel's own log: jupyter_client interrupts a kernel before shutting it down, and
        # ipykernel logs that interrupt as an ERROR when it lands in a handler. Cell errors still come
        # back through the notebook (and papermill); a dead kernel still fails the stage.
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")},
                         "NotebookClient": {"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]}})
        papermill.execute_notebook(str(notebook), str(report), parameters=parameters, progress_bar=progress,
                                   log_output=False, config=config)


def run_stage(stage: str, notebook: str | Path, report: str | Path, given: Sequence[tuple[str, str]],
              progress: bool = True) -> None:
    """Check, then run one stage; a project error inside the notebook is raised as a StageError."""
    from papermill.exceptions import PapermillExecutionError

    parameters = typed_parameters(notebook, given)
    check_params(parameters)
    start = time.monotonic()
    try:
        execute(notebook, report, parameters, progress)
    except PapermillExecutionError as e:
        _load_error_classes()
        if e.ename in project_error_names():
            raise StageError(f"{one_line(e.evalue)} (report: {report})") from None
        raise
    drop_widget_state(report)
    record_minutes(parameters.get("metrics_path"), time.monotonic() - start)


def drop_widget_state(report: str | Path) -> None:
    """Remove the ipywidgets state a kernel saved into the executed notebook: it is megabytes of
    figure data that no viewer without that kernel can use (the explorer's artefact is its HTML page)."""
    import nbformat

    from .io import atomic_path

    nb = nbformat.read(str(report), as_version=4)
    if nb.metadata.pop("widgets", None) is not None:
        with atomic_path(report) as tmp:
            nbformat.write(nb, str(tmp))


def record_minutes(metrics_path: str | None, seconds: float) -> None:
    """Add the stage's wall time (`stage_minutes`, kernel start included) to the metrics file its
    notebook wrote, so that the evaluate stage can report minutes per stage (RESULTS.md)."""
    from .io import load_json, save_json

    if metrics_path and Path(metrics_path).is_file():
        save_json({**load_json(metrics_path), "stage_minutes": round(seconds / 60, 2)}, metrics_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", help="the stage's name, for messages (e.g. distill@seg2)")
    ap.add_argument("notebook")
    ap.add_argument("report", help="the executed copy (partial when the notebook fails)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # papermill's warnings, as its CLI shows them
    try:
        run_stage(args.stage, args.notebook, args.report, args.parameter, progress=not args.no_progress)
    except ShowoError as e:
        print(f"stage {args.stage}: {one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
