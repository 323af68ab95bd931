"""The pipeline at micro scale, in a scratch copy: `dvc repro`, its metrics, and nbval over the notebooks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from showo_turbo.methods import METHODS
from showo_turbo.pipeline.params import DistillParams, load_params
from showo_turbo.pipeline.scratch import make_scratch_copy
from showo_turbo.worlds.shapes.scenes import CATEGORIES

pytestmark = pytest.mark.slow  # a whole micro pipeline (minutes)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # pipeline order


def run(cmd, cwd):
    # one thread: the micro models' small ops lose more to thread hand-offs than they gain
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory):
    dest = make_scratch_copy(tmp_path_factory.mktemp("micro") / "repo", preset="micro", src=ROOT)
    res = run([BIN / "dvc", "repro"], dest)
    (dest.parent / "repro.log").write_text(res.stdout + res.stderr)  # beside the repo, not in it
    return dest


def test_a_good_dvc_repro_prints_no_warnings(micro_repo):
    """Stage names, progress bars and results only: papermill parses every parameters cell, the
    kernel runs over IPC, nothing shows a traceback."""
    out = (micro_repo.parent / "repro.log").read_text()
    assert "Running stage 'distill@dm'" in out and "Running stage 'explore'" in out
    for noise in ("Unable to parse", "unknown parameter", "without encryption", "Traceback", "[IPKernelApp]",
                  "Could not destroy zmq context"):
        assert noise not in out, f"{noise!r} in the output of a good run:\n{out[-3000:]}"


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
    shown = json.loads(run([BIN / "dvc", "metrics", "show", "--json"], micro_repo).stdout)
    files = {f for rev in shown.values() for f in rev["data"]}
    assert files == {"metrics/headline.json"}  # the stages' full records are outs, not DVC metrics


def test_dvc_tracks_param_changes(micro_repo):
    params = micro_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("bootstrap: 200", "bootstrap: 100"))
        out = run([BIN / "dvc", "status"], micro_repo).stdout
        assert "params.yaml" in out and "modified:" in out and "world" in out
        # A distill stage depends on its method's section only: a dm edit leaves the curriculum as it is,
        # and a consistency edit the dm stage (which follows only when its init_dir's student changes).
        for edit, changed, unchanged in ((("distill", "dm", "aux_lr"), {"distill@dm"}, {"distill@seg2", "distill@seg1"}),
                                         (("distill", "consistency", "lr"), {"distill@seg2", "distill@seg1"}, {"distill@dm"})):
            data = yaml.safe_load(original)
            data[edit[0]][edit[1]][edit[2]] *= 2
            params.write_text(yaml.safe_dump(data, sort_keys=False))
            stages = set(json.loads(run([BIN / "dvc", "status", "--json"], micro_repo).stdout))
            assert changed <= stages and not unchanged & stages, (edit, stages)
    finally:
        params.write_text(original)


def test_distill_stages_depend_on_every_shared_key():
    """dvc.yaml lists the distill keys one by one (so that a method's section reaches only its stages):
    every shared key of DistillParams must be there, the method sections through `distill.${item.method}`."""
    listed = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["distill"]["do"]["params"]
    shared = {f"distill.{name}" for name in DistillParams.model_fields} - {f"distill.{m}" for m in (*METHODS, "stages")}
    entry = {f"distill.stages.${{key}}.{k}" for k in ("method", "segments", "init_dir")}  # its arm's sampler aside
    assert set(listed) == shared | entry | {"distill.${item.method}", "teacher.eval"}


def test_dvc_repro_writes_trajectory_stores(micro_repo):
    from showo_turbo.pipeline.shards import ShardReader
    tp = load_params(micro_repo / "params.yaml").trajectories
    m = json.loads((micro_repo / "metrics" / "trajectories.json").read_text())
    t2i = ShardReader(micro_repo / "data" / "trajectories" / "t2i", "t2i")
    mmu = ShardReader(micro_repo / "data" / "trajectories" / "mmu", "mmu")
    assert m["t2i"]["rows"] == t2i.manifest["counts"]["rows"] == tp.captions * tp.samples_per_caption
    assert m["mmu"]["rows"] == mmu.manifest["counts"]["rows"] == tp.mmu_questions
    assert 1 <= m["mmu"]["iterations_per_block"] <= tp.block_size + 1 and m["mmu"]["forwards_per_token"] > 0
    assert t2i.params["trajectories"]["steps"] == tp.steps and len(list(t2i)) == t2i.manifest["counts"]["shards"]


def test_dvc_repro_runs_the_curriculum(micro_repo):
    import torch

    from showo_turbo.model.showo import load_model
    all_stages = load_params(micro_repo / "params.yaml").distill.stages
    stages = [name for name, st in all_stages.items() if st.method == "consistency"]
    dm = [name for name, st in all_stages.items() if st.method == "dm"]
    assert len(stages) >= 2 and dm
    weights = []
    for name in stages + dm:
        m = json.loads((micro_repo / "metrics" / "distill" / f"{name}.json").read_text())
        keys = ("t2i.steps_2.score", "t2i.steps_4.score", "mmu.accuracy", "mmu.forwards_per_token",
                "teacher.forwards_per_token", "train.minutes") + (("t2i.steps_1.score",) if name in dm else ())
        for key in keys:
            section, *rest = key.split(".")
            value = m[section]
            for part in rest:
                value = value[part]
            assert isinstance(value, float), key
        assert (micro_repo / "reports" / f"03_distill_{name}.ipynb").is_file()
        weights.append(load_model(micro_repo / "data" / "students" / name / "model.safetensors").state_dict())
    teacher = load_model(micro_repo / "data" / "teacher" / "model.safetensors").state_dict()
    for before, after in zip([teacher, *weights], weights[:len(stages)]):  # each stage trained on from the previous one
        assert any(not torch.equal(before[k], after[k]) for k in after)
    assert (micro_repo / "data" / "students" / dm[0] / "checkpoint" / "aux.safetensors").is_file()
    assert any(not torch.equal(teacher[k], weights[-1][k]) for k in teacher)  # the dm student trained too


def test_dvc_repro_runs_the_evaluation_and_the_explorer(micro_repo):
    from showo_turbo.evaluation.benchmark import MMU_KEYS
    params = load_params(micro_repo / "params.yaml")
    ep = params.evaluate
    m = json.loads((micro_repo / "metrics" / "evaluate.json").read_text())
    # the paper's arms, and one of its own for every stage with an `arm:` (the micro preset's dm stage)
    T2I_ARMS = ["teacher_cfg", "teacher_nocfg", "turbo", *(f"turbo_{s}" for s in params.arms())]
    MMU_ARMS = ["teacher_ar", "teacher_jacobi", "turbo_jacobi", *(f"turbo_{s}_jacobi" for s in params.arms())]
    assert "turbo_dm" in T2I_ARMS and set(m["t2i"]) == set(T2I_ARMS) and set(m["mmu"]) == set(MMU_ARMS)
    for arm in T2I_ARMS:
        for t in ep.steps:
            row = m["t2i"][arm][f"steps_{t}"]
            assert all(isinstance(row[k], float) for k in ("score", "ci_low", "ci_high", "seconds_per_image", *CATEGORIES))
    for arm in MMU_ARMS:
        assert all(isinstance(m["mmu"][arm][k], float) for k in MMU_KEYS)
    # one teacher sweep: the teacher arms took the teacher stage's samples at the step counts it
    # swept (same layout in the micro params) and drew the others; a student's are always drawn
    swept = load_params(micro_repo / "params.yaml").teacher.eval.steps
    for t in ep.steps:
        assert m["t2i"]["teacher_cfg"][f"steps_{t}"]["reused_samples"] is (t in swept)
        assert m["t2i"]["teacher_nocfg"][f"steps_{t}"]["reused_samples"] is (t in swept)
        assert m["t2i"]["turbo"][f"steps_{t}"]["reused_samples"] is False
    plots = json.loads(run([BIN / "dvc", "plots", "show", "--json"], micro_repo).stdout)
    assert {"score vs steps", "seconds per image vs steps"} <= set(plots["data"])
    assert (micro_repo / "data" / "evaluate" / "samples.png").is_file()
    page = micro_repo / "reports" / "05_explore.html"
    assert page.is_file() and "Plotly.newPlot(" in page.read_text()


def test_reports_show_their_charts_offline(micro_repo, browser):
    """An executed report converted to HTML (as a code host or `jupyter nbconvert` shows it) draws its
    charts with no kernel and no network: they are PNGs inside the page, and each one decodes to a
    picture that is not blank. The explorer's report keeps no widget state (its page is the artefact)."""
    import io

    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By

    browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    out = micro_repo.parent / "html"
    # evaluate: score and seconds vs steps + the sample grid; distill: the loss curves; teacher: score vs steps + samples
    for report, charts in (("04_evaluate", 3), ("03_distill_seg1", 1), ("01_teacher", 2)):
        run([BIN / "jupyter", "nbconvert", "--to", "html", f"reports/{report}.ipynb", "--output-dir", str(out)], micro_repo)
        browser.get((out / f"{report}.html").as_uri())
        images = [i for i in browser.find_elements(By.TAG_NAME, "img") if i.get_attribute("src").startswith("data:image/png")]
        assert len(images) >= charts, (report, len(images))
        for img in images:
            assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 50, report
            browser.execute_script("arguments[0].scrollIntoView()", img)
            picture = np.asarray(Image.open(io.BytesIO(img.screenshot_as_png)).convert("L"), dtype=float)
            assert picture.std() > 10, f"{report}: a blank chart"
    explore = micro_repo / "reports" / "05_explore.ipynb"
    assert "widget-state" not in explore.read_text() and explore.stat().st_size < 5 * 2**20


def test_results_md_is_the_metrics(micro_repo):
    """RESULTS.md, written by the evaluate stage, holds every arm's figures exactly as evaluate.json has
    them (read back from the Markdown cells, not regenerated), and where they were measured."""
    m = json.loads((micro_repo / "metrics" / "evaluate.json").read_text())
    text = (micro_repo / "RESULTS.md").read_text()
    main, per_type = text.split("### Per question type", 1)
    rows = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip(" |").split(" | ")[1:]]
            for line in main.splitlines() if line.startswith("| ") and not line.startswith("| arm")}
    steps = sorted(int(k.split("_")[1]) for k in m["t2i"]["teacher_cfg"])
    ref = m["t2i"]["teacher_cfg"][f"steps_{steps[-1]}"]
    for arm, by_steps in m["t2i"].items():
        for i, t in enumerate(steps):
            r = by_steps[f"steps_{t}"]
            cell = rows[arm][i]
            assert cell.startswith(f"{r['score']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"), (arm, t, cell)
            if arm.startswith("turbo") and ref["score"]:
                assert f"{r['score'] / ref['score']:.2f}x" in cell
    for arm, r in m["mmu"].items():
        assert rows[arm] == [f"{r['accuracy']:.3f}", f"{r['forwards_per_token']:.3f}", f"{r['forwards_per_token_block']:.3f}",
                             f"{r['tokens_per_second']:.1f}", f"{r['tokens_per_second_batch1']:.1f}"]
    assert m["machine"]["cpu"] in text and m["machine"]["date"] in text
    # per question type (Shapes: count, colour, relation, describe): accuracy, passes per token, batch-1 speed vs AR
    typed = {tuple(c.strip() for c in line.strip(" |").split(" | ")[:2]): [c.strip() for c in line.strip(" |").split(" | ")[2:]]
             for line in per_type.split("## Minutes")[0].splitlines() if line.startswith("| ") and not line.startswith("| arm")}
    ar = m["mmu"]["teacher_ar"]
    for arm, r in m["mmu"].items():
        for kind in ("count", "colour", "relation", "describe"):
            b1 = r[f"tokens_per_second_batch1_{kind}"]
            assert typed[(arm, kind)] == [f"{r[f'accuracy_{kind}']:.3f}", "", f"{r[f'forwards_per_token_{kind}']:.3f}",
                                          f"{b1:.1f}", f"{b1 / ar[f'tokens_per_second_batch1_{kind}']:.2f}x"], (arm, kind)
    # minutes per stage: each earlier stage's runner-recorded wall time, as its own metrics file has it
    stages = ["world", "teacher", "trajectories", *(f"distill@{n}" for n in load_params(micro_repo / "params.yaml").distill.stages)]
    per_stage = m["minutes_per_stage"]
    assert list(per_stage) == stages
    for stage, minutes in per_stage.items():
        name = f"distill/{stage[8:]}" if stage.startswith("distill@") else stage
        recorded = json.loads((micro_repo / "metrics" / f"{name}.json").read_text())["stage_minutes"]
        assert minutes == recorded and minutes > 0, (stage, minutes, recorded)
    lines = text.splitlines()
    header = lines.index("| " + " | ".join(stages) + " | sum |")
    assert lines[header + 2] == "| " + " | ".join(f"{v:.1f}" for v in per_stage.values()) + f" | {sum(per_stage.values()):.1f} |"
    assert m["stage_minutes"] > 0  # the evaluate stage's own, recorded by its runner after the notebook


def test_readme_explorer_snippet_runs_as_written(micro_repo):
    """The README's `jupyter lab` snippet, run at the root of a finished (micro) run, builds the explorer."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exploring trajectories", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    # the last statement is the widget a notebook cell displays: keep it in a name, then check it
    assert code.count("\nex.T2IExplorer(") == 1, code
    body = code.replace("\nex.T2IExplorer(", "\nexplorer = ex.T2IExplorer(")
    body += "\nassert type(explorer).__name__ == 'T2IExplorer' and len(explorer.figures) == 2, explorer.figures\n"
    (micro_repo.parent / "snippet.py").write_text(body)
    run([BIN / "python", micro_repo.parent / "snippet.py"], micro_repo)


def test_dvc_metrics_show_fits_a_terminal(micro_repo):
    """The one DVC metric is metrics/headline.json, a few figures equal to evaluate.json's; the full
    records stay in their files (outs kept in git), so `dvc metrics show` rows fit 200 columns."""
    shown = run([BIN / "dvc", "metrics", "show"], micro_repo).stdout
    assert "metrics/headline.json" in shown and max(map(len, shown.splitlines())) <= 200, shown
    h = json.loads((micro_repo / "metrics" / "headline.json").read_text())
    m = json.loads((micro_repo / "metrics" / "evaluate.json").read_text())
    steps = sorted(int(k.split("_")[1]) for k in m["t2i"]["turbo"])
    assert h[f"teacher_cfg@{steps[-1]}"] == round(m["t2i"]["teacher_cfg"][f"steps_{steps[-1]}"]["score"], 4)
    assert all(h[f"turbo@{t}"] == round(m["t2i"]["turbo"][f"steps_{t}"]["score"], 4) for t in steps[:-1])
    assert h["passes/token"] == round(m["mmu"]["turbo_jacobi"]["forwards_per_token"], 3)


def test_notebooks_run_under_nbval(micro_repo):
    """Late in this module: the notebooks rerun in the repo and rewrite its outputs (without the runner's
    stage_minutes), which the tests above read as the pipeline wrote them."""
    assert NOTEBOOKS, "no notebooks found"
    nbs = [str(Path("notebooks") / nb.name) for nb in NOTEBOOKS]
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", *nbs], micro_repo)


def test_dvc_exp_run_with_a_changed_param(micro_repo):
    """Last in this module: it leaves the experiment's params in the scratch workspace."""
    run([BIN / "dvc", "exp", "run", "-S", "evaluate.images_per_prompt=1"], micro_repo)
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], micro_repo).stdout)
    text = json.dumps(shown)
    assert '"images_per_prompt": 1' in text
    m = json.loads((micro_repo / "metrics" / "evaluate.json").read_text())
    assert m["t2i"]["turbo"]["steps_1"]["images"] == 6 * load_params(micro_repo / "params.yaml").evaluate.prompts_per_category
