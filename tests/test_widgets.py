"""The trajectory explorer, driven headlessly: sliders and dropdowns change the figures to that step's data."""

import numpy as np
import pytest
import torch

from showo_turbo.evaluation import explorer as Wd
from showo_turbo.evaluation.harness import mmu_prompts
from showo_turbo.model.showo import ShowoModel
from showo_turbo.model.sampling import _block_stats, jacobi_generate
from showo_turbo.training.teacher import model_config_for


@pytest.fixture(scope="module")
def models(micro_world):
    torch.manual_seed(0)
    cfg = model_config_for(micro_world, "micro")
    return ShowoModel(cfg).eval(), ShowoModel(cfg).eval()


@pytest.fixture(scope="module")
def captions(micro_world):
    prompts, _ = micro_world.eval_t2i()
    return [p.text for p in prompts[:3]]


@pytest.fixture(scope="module")
def t2i_source(models, micro_world):
    teacher, student = models
    prompts = Wd.prompt_lookup(micro_world)
    calls = []

    def traces_for(caption):
        calls.append(caption)
        return [Wd.sampled_t2i_trace(teacher, micro_world, caption, 6, "teacher", cfg_scale=2.0, prompt=prompts[caption]),
                Wd.sampled_t2i_trace(student, micro_world, caption, 2, "student", prompt=prompts[caption])]
    return traces_for, calls


def grey_patches(frame: np.ndarray, patch: int) -> int:
    cells = frame[::patch, ::patch]
    return int((cells == np.array(Wd.MASK_RGB)).all(-1).sum())


def test_t2i_trace_states(t2i_source, captions, micro_world):
    teacher, student = t2i_source[0](captions[0])
    assert (teacher.steps, student.steps) == (6, 2)
    p = micro_world.spec.patch_size
    for tr in (teacher, student):
        assert grey_patches(tr.frames[0], p) == tr.commit.size          # everything masked before step 0
        assert grey_patches(tr.frames[-1], p) == 0                      # the final image is complete
        for k in range(tr.steps + 1):  # masked before step k <=> committed at step k or later
            assert grey_patches(tr.frames[k], p) == int((tr.commit >= k).sum())
        assert ((tr.confidence > 0) & (tr.confidence <= 1)).all()       # the full distribution was kept
        assert isinstance(tr.verdict, bool)


def test_t2i_explorer_follows_slider_and_prompt(t2i_source, captions):
    traces_for, calls = t2i_source
    ex = Wd.T2IExplorer(traces_for, captions)
    assert len(ex.sliders) == len(ex.figures) == 2
    teacher = ex.rows.traces[0]
    for k in (0, 3, 6):
        ex.sliders[0].value = k
        img, commit, conf = ex.figures[0].data
        assert np.array_equal(np.asarray(img.z), teacher.frames[k])
        shown = ~np.isnan(np.asarray(commit.z, dtype=float))
        assert shown.sum() == (teacher.commit < k).sum()                # tokens committed before step k
        assert f"step {k}/6" in ex.figures[0].layout.title.text
    ex.sliders[1].value = 1
    assert np.array_equal(np.asarray(ex.figures[1].data[0].z), ex.rows.traces[1].frames[1])
    ex.prompt.value = captions[2]
    assert calls[-1] == captions[2] and captions[2] in ex.figures[0].layout.title.text
    assert ex.sliders[0].value == 6                                     # a new prompt opens at the final image


def jacobi_run(model, world, n_prompts=6, block=4):
    questions, scenes = world.eval_mmu()
    prompts = mmu_prompts(world, questions[:n_prompts], scenes[:n_prompts], model.config)
    return prompts, jacobi_generate(model, prompts, max_new_tokens=8, block_size=block, return_trajectories=True)


def test_jacobi_marks_agree_with_the_decoder_statistics(models, micro_world):
    teacher, _ = models
    prompts, r = jacobi_run(teacher, micro_world)
    fast = stationary = 0
    for b, traj in enumerate(r.trajectories):
        for row in range(len(prompts)):
            if not r.stats["iterations"][b][row]:
                continue
            states = Wd._block_states(traj, row)
            assert len(states) == r.stats["iterations"][b][row]          # guess .. first fixed-point state
            marks = Wd.jacobi_marks(states)
            its, ff, st = _block_stats(traj[:, row:row + 1])
            fast += int(marks["fast_forwarded"].sum())
            stationary += int(marks["stationary"].sum())
            assert (marks["fast_forwarded"].sum(), marks["stationary"].sum()) == (int(ff[0]), int(st[0]))
            assert marks["fixed"][-1].all()
    assert fast == r.stats["fast_forwarded"] and stationary == r.stats["stationary"]


def test_jacobi_explorer_follows_slider_question_and_block(models, micro_world):
    teacher, student = models
    questions, scenes = micro_world.eval_mmu()
    prompts = mmu_prompts(micro_world, questions[:3], scenes[:3], teacher.config)
    def traces_for(i):
        return {label: Wd.sampled_jacobi_traces(m, micro_world, prompts[i], label, 8, 4)
                for label, m in (("teacher", teacher), ("student", student))}
    ex = Wd.JacobiExplorer(traces_for, [q.question for q in questions[:3]])
    assert len(ex.figures) == 2
    tr = ex.rows.traces[0]
    ex.sliders[0].value = 0
    z = np.asarray(ex.figures[0].data[0].z, dtype=float)
    assert not np.isnan(z[0]).any() and np.isnan(z[1:]).all()            # only the guess shown
    ex.sliders[0].value = tr.passes
    assert not np.isnan(np.asarray(ex.figures[0].data[0].z, dtype=float)).any()
    assert [t.rstrip("»•") for t in ex.figures[0].data[0].text[-1]] == tr.names[-1]  # the fixed point's tokens
    ex.question.value = 2
    assert questions[2].question in ex.figures[0].layout.title.text
    if len(ex.block.options) > 1:
        ex.block.value = ex.block.options[1]
        assert f"block {ex.block.options[1]}" in ex.figures[0].layout.title.text


def test_static_export_has_a_slider_step_per_state(t2i_source, captions, models, micro_world, tmp_path):
    teacher_tr, student_tr = t2i_source[0](captions[1])
    fig = Wd.t2i_export_figure(teacher_tr)
    steps = fig.layout.sliders[0].steps
    assert len(steps) == teacher_tr.steps + 1
    for k in (0, 4):
        assert np.array_equal(np.asarray(steps[k].args[0]["z"][0]), teacher_tr.frames[k])
    prompts = mmu_prompts(micro_world, *[x[:1] for x in micro_world.eval_mmu()], models[0].config)
    jac = Wd.sampled_jacobi_traces(models[0], micro_world, prompts[0], "teacher", 8, 4)
    path = Wd.export_html([teacher_tr, student_tr], jac, tmp_path / "explore.html")
    page = path.read_text()
    assert page.count("plotly.js v") == 1 and page.count("Plotly.newPlot(") == 2 + len(jac)  # plotly.js inlined once
