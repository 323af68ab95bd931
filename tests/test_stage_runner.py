"""What a user sees when something is wrong: `dvc repro` at micro scale in a scratch copy with bad
params and damaged files, each ending in one line that names the key or the file; the command
lines the same way; the stage runner's own checks."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import showo_turbo
from showo_turbo.pipeline.errors import ShowoError, project_error_names
from showo_turbo.pipeline.scratch import make_scratch_copy
from showo_turbo.pipeline.stage import StageError, typed_parameters

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}  # micro models: one thread is faster
# Lines DVC and papermill's progress bar write on their own; the rest of the output is the project's.
DVC_LINES = ("Running stage ", "> ", "ERROR: failed to reproduce", "Stage '", "Updating lock file", "Verifying ",
             "To track the changes", "git add", "To enable auto staging", "dvc config", "Use `dvc push`", "Executing:")


def project_lines(output: str) -> list[str]:
    """The output's lines (tqdm's carriage returns split too) that DVC and progress bars did not write."""
    lines = [part.strip() for line in output.splitlines() for part in line.split("\r")]
    return [line for line in lines if line and not line.startswith(DVC_LINES)]


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / "dvc", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def expect_one_line_error(res: subprocess.CompletedProcess, *names: str) -> str:
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    mine = project_lines(out)
    assert 1 <= len(mine) <= 3, mine
    assert all(n in " ".join(mine) for n in names), (names, mine)
    return " ".join(mine)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A micro scratch copy with its world, teacher and trajectories made (the stages the damaged files belong to)."""
    dest = make_scratch_copy(tmp_path_factory.mktemp("errors") / "repo", preset="micro", src=ROOT)
    res = dvc(dest, "repro", "trajectories")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("old,new,names", [
    ("    steps: 6 ", "    stepz: 6 ", ("params.yaml", "distill.consistency.stepz: unknown key", "allowed: steps, batch_t2i, lr")),
    ("  captions: 48", "  captions: -3", ("params.yaml", "trajectories.captions: must be >= 1, got -3")),
    ("  cfg_scale: 2.0", "  cfg_scale: .nan", ("params.yaml", "trajectories.cfg_scale: must be a finite number")),
])
def test_bad_params_stop_dvc_repro_with_one_line(scratch, old, new, names):
    params = scratch / "params.yaml"
    original = params.read_text()
    assert original.count(old) == 1
    try:
        params.write_text(original.replace(old, new))
        line = expect_one_line_error(dvc(scratch, "repro"), *names)
        assert line.startswith("stage ")  # the stage that refused to start
    finally:
        params.write_text(original)


def _restore(scratch: Path, path: str) -> None:
    res = dvc(scratch, "checkout", "--force", path)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_a_flipped_byte_in_a_trajectory_shard_stops_dvc_repro_with_one_line(scratch):
    shard = sorted((scratch / "data" / "trajectories" / "t2i").glob("shard-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    try:
        line = expect_one_line_error(dvc(scratch, "repro", "trajectories"), shard.name, "checksum mismatch", "delete",
                                     "reports/02_trajectories.ipynb")
        assert line.startswith("stage trajectories: ")
    finally:
        _restore(scratch, "data/trajectories")


@pytest.mark.slow
def test_a_truncated_teacher_checkpoint_stops_dvc_repro_with_one_line(scratch):
    weights = scratch / "data" / "teacher_checkpoint" / "checkpoint" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 3)
    try:
        line = expect_one_line_error(dvc(scratch, "repro", "teacher"), "teacher_checkpoint/checkpoint/model.safetensors",
                                     "not a readable safetensors file", "reports/01_teacher.ipynb")
        assert line.startswith("stage teacher: ")
    finally:
        _restore(scratch, "data/teacher_checkpoint")


@pytest.mark.slow  # its scratch repo runs the pipeline up to the trajectories
def test_the_distill_command_line_prints_one_line_for_a_project_error(scratch, tmp_path):
    bad = tmp_path / "params.yaml"
    text = (scratch / "params.yaml").read_text()
    old = "\n    batch_t2i: 8            # trajectory states per step and process\n    lr: 0.0001"
    assert text.count(old) == 1  # distill.consistency.lr (distill.dm has an lr of its own)
    bad.write_text(text.replace(old, old.replace("lr: 0.0001", "lr: .inf")))
    res = subprocess.run([sys.executable, "-m", "showo_turbo.training.distill", "--params", str(bad), "--stage", "seg2",
                          "--out", str(tmp_path / "out")], cwd=scratch, env=ENV, capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [f"showo_turbo.training.distill: {bad}: distill.consistency.lr: must be a finite number, got inf"]


def test_the_runner_refuses_a_parameter_the_notebook_does_not_declare():
    nb = ROOT / "notebooks" / "03_distill.ipynb"
    assert typed_parameters(nb, [("stage_name", "seg2")]) == {"stage_name": "seg2"}
    assert typed_parameters(ROOT / "notebooks" / "05_explore.ipynb", [("examples", "4")]) == {"examples": 4}
    with pytest.raises(StageError, match="03_distill.ipynb: no parameter 'stage'; it has params_path, stage_name"):
        typed_parameters(nb, [("stage", "seg2")])
    with pytest.raises(StageError, match="parameter 'examples' expects int, got 'four'"):
        typed_parameters(ROOT / "notebooks" / "05_explore.ipynb", [("examples", "four")])


@pytest.mark.slow  # two interpreters importing the whole package
def test_the_runner_knows_every_project_error():
    """A failed notebook reports only the exception's class name; the runner must know them all,
    including classes added to modules it does not import itself."""
    def names(code: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", code + "; from showo_turbo.pipeline.errors import project_error_names;"
                              " print(' '.join(sorted(project_error_names())))"], capture_output=True, text=True,
                             check=True, env=ENV).stdout
        return set(out.split())

    modules = [m.name for m in pkgutil.walk_packages(showo_turbo.__path__, "showo_turbo.")]
    everything = names("import importlib; [importlib.import_module(m) for m in %r]" % modules)
    runner = names("from showo_turbo.pipeline.stage import _load_error_classes; _load_error_classes()")
    assert runner == everything
    assert {"ParamsError", "ShardError", "CheckpointError", "WorldFileError", "TeacherMismatchError",
            "TokenizerFileError", "FileFormatError", "StageError"} <= everything
    assert issubclass(StageError, ShowoError) and "ShowoError" in project_error_names()
