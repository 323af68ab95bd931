"""The pipeline on the real Show-o world at micro scale (params/showo-256.yaml with the overlay
params/showo-micro.yaml): small stand-ins of the official folders (tests/official_folders.py) under
inputs/ in a scratch copy, `dvc repro` through world ->
teacher (the official checkpoint's loader) -> trajectories -> distillation -> evaluation with the
GenEval export -> explorer, and nbval over the executed reports."""

import json
import sys
from pathlib import Path

import pytest

from showo_turbo.pipeline.params import load_params
from showo_turbo.pipeline.scratch import make_scratch_copy
from test_pipeline import BIN, run  # the same subprocess runner (one thread, the venv on PATH)

pytestmark = pytest.mark.slow  # a browser or a whole pipeline (minutes)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    dest = make_scratch_copy(tmp_path_factory.mktemp("showo-micro") / "repo", preset="showo-256", src=ROOT,
                             overlays=["showo-micro"])
    run([sys.executable, "tests/official_folders.py", "inputs/official"], dest)
    res = run([BIN / "dvc", "repro"], dest)
    (dest.parent / "repro.log").write_text(res.stdout + res.stderr)
    return dest


def test_every_stage_ran_on_the_real_world(repo):
    out = (repo.parent / "repro.log").read_text()
    for stage in ("world", "teacher", "trajectories", "distill@seg4", "distill@seg2", "distill@seg1", "distill@dm",
                  "evaluate", "explore"):
        assert f"Running stage '{stage}'" in out
    assert "Traceback" not in out
    assert json.loads((repo / "data" / "world" / "world.json").read_text())["format"] == "showo-turbo/showo-world/1"
    assert json.loads((repo / "data" / "teacher" / "card.json").read_text())["source"] == "showo"
    m = json.loads((repo / "metrics" / "trajectories.json").read_text())
    ps = load_params(repo / "params.yaml")
    assert m["t2i"]["rows"] == ps.trajectories.captions and m["mmu"]["rows"] == ps.trajectories.mmu_questions


def test_the_evaluation_reports_speed_and_mmu_and_exports_geneval_without_a_score(repo):
    ep = load_params(repo / "params.yaml").evaluate
    m = json.loads((repo / "metrics" / "evaluate.json").read_text())
    prompts = [json.loads(line) for line in (repo / "inputs" / "official" / "prompts" / "evaluation_metadata.jsonl").read_text().splitlines()]
    for arm in ("teacher_cfg", "teacher_nocfg", "turbo", "turbo_dm"):
        for t in ep.steps:
            row = m["t2i"][arm][f"steps_{t}"]
            assert "score" not in row and row["seconds_per_image"] > 0  # no scorer ran: no score is written
            folder = repo / "data" / "evaluate" / "export" / arm / f"steps_{t}"
            assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}" for i in range(len(prompts))]
            for i, line in enumerate(prompts):
                assert json.loads((folder / f"{i:05d}" / "metadata.jsonl").read_text()) == line
                assert len(list((folder / f"{i:05d}" / "samples").glob("*.png"))) == ep.images_per_prompt
    for arm in ("teacher_ar", "teacher_jacobi", "turbo_jacobi", "turbo_dm_jacobi"):
        assert 0 <= m["mmu"][arm]["accuracy"] <= 1 and m["mmu"][arm]["tokens_per_second_batch1"] > 0
    assert (repo / "reports" / "05_explore.html").is_file()


def test_the_reports_rerun_under_nbval(repo):
    reports = sorted(str(p.relative_to(repo)) for p in (repo / "reports").glob("*.ipynb"))
    assert len(reports) == 9
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *reports], repo)


def test_editing_an_input_file_reruns_the_world(repo):
    """inputs/ is a dependency: an edited prompt file makes `dvc status` list `world` and `teacher` with
    inputs/ as a changed dependency. (Earlier tests reran the reports, which rewrote some outputs.)"""
    def changed_deps(status: str) -> dict[str, list[str]]:
        """`dvc status` as stage -> the dependencies it lists as changed."""
        out, stage, section = {}, None, None
        for line in status.splitlines():
            if not line.startswith("\t"):
                stage = line.rstrip(":")
            elif not line.startswith("\t\t"):
                section = line.strip()
            elif section == "changed deps:":
                out.setdefault(stage, []).append(line.split()[-1])
        return out

    assert not any("inputs" in deps for deps in changed_deps(run([BIN / "dvc", "status"], repo).stdout).values())
    prompts = repo / "inputs" / "official" / "prompts" / "captions.txt"
    original = prompts.read_text()
    try:
        prompts.write_text(original + "a caption added after the run\n")
        status = run([BIN / "dvc", "status"], repo).stdout
        changed = changed_deps(status)
        assert "inputs" in changed.get("world", []) and "inputs" in changed.get("teacher", []), status
    finally:
        prompts.write_text(original)
