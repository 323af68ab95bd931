"""The pipeline at micro scale, in a scratch copy: `dvc repro`, its metrics, and nbval over the notebooks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from showo_turbo.scratch import make_scratch_copy
from showo_turbo.shapes import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # pipeline order


def run(cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory):
    dest = make_scratch_copy(tmp_path_factory.mktemp("micro") / "repo", preset="micro", src=ROOT)
    run([BIN / "dvc", "repro"], dest)
    return dest


def test_scratch_copy_uses_the_micro_params(micro_repo):
    assert (micro_repo / "params.yaml").read_text() == (ROOT / "params" / "micro.yaml").read_text()


def test_dvc_repro_writes_world_metrics(micro_repo):
    m = json.loads((micro_repo / "metrics" / "world.json").read_text())["shapes_eval"]
    for arm in ("ground_truth", "reconstructed", "mismatched", "blank"):
        assert set(CATEGORIES) | {"score", "ci_low", "ci_high"} <= set(m[arm])
    assert m["ground_truth"]["score"] >= 0.99 and m["reconstructed"]["score"] >= 0.97
    assert m["mismatched"]["score"] <= 0.2 and m["blank"]["score"] == 0
    assert (micro_repo / "reports" / "00_world.ipynb").is_file()
    assert (micro_repo / "data" / "world" / "samples.png").is_file()


def test_dvc_sees_the_pipeline_up_to_date_and_lists_metrics(micro_repo):
    status = run([BIN / "dvc", "status"], micro_repo).stdout
    assert "up to date" in status
    shown = run([BIN / "dvc", "metrics", "show", "--json"], micro_repo).stdout
    assert "ground_truth" in shown


def test_dvc_tracks_param_changes(micro_repo):
    params = micro_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("bootstrap: 200", "bootstrap: 100"))
        out = run([BIN / "dvc", "status"], micro_repo).stdout
        assert "params.yaml" in out and "modified:" in out and "world" in out
    finally:
        params.write_text(original)


def test_notebooks_run_under_nbval(micro_repo):
    assert NOTEBOOKS, "no notebooks found"
    nbs = [str(Path("notebooks") / nb.name) for nb in NOTEBOOKS]
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *nbs], micro_repo)
