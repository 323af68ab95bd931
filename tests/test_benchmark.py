"""The evaluate stage's library: arms, stable metric keys, determinism, plot files."""

import copy

import pandas as pd
import pytest
import torch

from showo_turbo.evaluation.benchmark import (MMU_KEYS, T2IArm, arm_images, evaluate_arms, mmu_table, sample_images,
                                              t2i_arms, t2i_table, write_plot_files)
from showo_turbo.model.showo import ShowoModel
from showo_turbo.worlds.shapes.scenes import CATEGORIES
from showo_turbo.evaluation.harness import eval_prompts_subset
from showo_turbo.training.teacher import model_config_for


@pytest.fixture(scope="module")
def models(micro_world):
    torch.manual_seed(0)
    teacher = ShowoModel(model_config_for(micro_world, "micro")).eval()
    student, dm_student = copy.deepcopy(teacher), copy.deepcopy(teacher)
    with torch.no_grad():  # different models, as distilled students would be
        for p in [*student.parameters(), *dm_student.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    return teacher, student, dm_student


T2I_ARMS = ("teacher_cfg", "teacher_nocfg", "turbo", "turbo_dm")
MMU_ARMS = ("teacher_ar", "teacher_jacobi", "turbo_jacobi", "turbo_dm_jacobi")


@pytest.fixture(scope="module")
def ep(micro_params):
    return micro_params.evaluate.model_copy(update=dict(steps=(1, 2, 4), student_top_k={1: 0, 2: 3, 4: 0},
                                                        prompts_per_category=2))


def dm_arm(model, temperature=4.5):
    """A stage `dm` scored as an arm of its own, from a noisy start (the dm method's)."""
    return T2IArm("turbo_dm", model, 0.0, {1: None, 2: None, 4: None}, temperature, {"init_mask_ratio": 0.6})


@pytest.fixture(scope="module")
def metrics(models, micro_world, ep):
    teacher, student, dm_student = models
    return evaluate_arms(teacher, student, micro_world, ep, [dm_arm(dm_student)], progress=False)


def test_every_stable_key_is_there(metrics, ep):
    assert set(metrics["t2i"]) == set(T2I_ARMS) and set(metrics["mmu"]) == set(MMU_ARMS)
    for arm in T2I_ARMS:
        for t in ep.steps:
            row = metrics["t2i"][arm][f"steps_{t}"]
            for k in ("score", "ci_low", "ci_high", "seconds_per_image", "seconds_per_image_batch1", *CATEGORIES):
                assert isinstance(row[k], float), (arm, t, k)
            assert row["ci_low"] <= row["score"] <= row["ci_high"] and row["seconds_per_image"] > 0
            assert row["seconds_per_image_batch1"] > 0
            assert row["images"] == ep.prompts_per_category * len(CATEGORIES) * ep.images_per_prompt
    for arm in MMU_ARMS:
        assert all(isinstance(metrics["mmu"][arm][k], float) for k in MMU_KEYS)
    # AR counts one forward pass per generated token (the prefill yields the first), under both rules.
    mmu = metrics["mmu"]
    assert mmu["teacher_ar"]["forwards_per_token"] == mmu["teacher_ar"]["forwards_per_token_block"] == 1.0
    # Jacobi stopping at <|eot|> is exact (the teacher's answers are its AR answers) and never needs
    # more passes than waiting for the whole block to settle.
    assert mmu["teacher_jacobi"]["accuracy"] == mmu["teacher_ar"]["accuracy"]
    for arm in ("teacher_jacobi", "turbo_jacobi", "turbo_dm_jacobi"):
        assert 1.0 / ep.block_size <= mmu[arm]["forwards_per_token"] <= mmu[arm]["forwards_per_token_block"]
        assert mmu[arm]["tokens_per_second_batch1"] > 0


def test_scores_repeat_exactly(models, micro_world, ep, metrics):
    again = evaluate_arms(*models[:2], micro_world, ep, [dm_arm(models[2])], progress=False)
    for arm in T2I_ARMS:
        for key, row in metrics["t2i"][arm].items():
            timing = ("seconds_per_image", "seconds_per_image_batch1")
            assert {k: v for k, v in row.items() if k not in timing} == \
                   {k: v for k, v in again["t2i"][arm][key].items() if k not in timing}
    for arm in MMU_ARMS:
        for k in ("accuracy", "forwards_per_token", "forwards_per_token_block"):
            assert metrics["mmu"][arm][k] == again["mmu"][arm][k]
    # Scores of an untrained model are mostly 0, so compare the images themselves too.
    prompts = eval_prompts_subset(micro_world, 1)
    for arm in (t2i_arms(*models[:2], ep, [dm_arm(models[2])])[i] for i in (0, 3)):  # teacher_cfg, turbo_dm
        assert (arm_images(arm, micro_world, prompts, 2, ep) == arm_images(arm, micro_world, prompts, 2, ep)).all()


def test_without_other_arms_only_the_papers_are_there(models, micro_world, ep):
    m = evaluate_arms(*models[:2], micro_world, ep.model_copy(update=dict(steps=(1,), student_top_k={1: 0})), progress=False)
    assert set(m["t2i"]) == set(T2I_ARMS) - {"turbo_dm"} and set(m["mmu"]) == set(MMU_ARMS) - {"turbo_dm_jacobi"}
    assert "turbo_dm_steps_1" not in m["summary"] and "turbo_dm_forwards_ratio" not in m["summary"]["mmu"]


def test_turbo_dm_arm_samples_from_its_noisy_start(models, micro_world, ep):
    """The same model as turbo and as turbo_dm: only the sampler's start differs, and so do the images."""
    teacher = models[0]
    arms = {a.name: a for a in t2i_arms(teacher, teacher, ep, [dm_arm(teacher, 3.0)])}
    assert arms["turbo_dm"].sampler(4) == {"top_k": None, "temperature": 3.0, "init_mask_ratio": 0.6}
    prompts = eval_prompts_subset(micro_world, 1)
    assert not (arm_images(arms["turbo_dm"], micro_world, prompts, 1, ep) ==
                arm_images(arms["turbo"], micro_world, prompts, 1, ep)).all()


def test_turbo_arm_is_the_nocfg_sampler_on_the_student(models, micro_world, ep):
    """With the teacher in the student's place and top-k off, `turbo` must draw exactly the images of
    `teacher_nocfg` (same seeds, same sampler); top-k changes them."""
    teacher = models[0]
    arms = {a.name: a for a in t2i_arms(teacher, teacher, ep)}
    prompts = eval_prompts_subset(micro_world, 1)
    same = arm_images(arms["turbo"], micro_world, prompts, 4, ep)
    assert (same == arm_images(arms["teacher_nocfg"], micro_world, prompts, 4, ep)).all()
    assert not (arm_images(arms["turbo"], micro_world, prompts, 2, ep) ==
                arm_images(arms["teacher_nocfg"], micro_world, prompts, 2, ep)).all()  # top-k 3 at 2 steps
    assert len(same) == len(prompts) * ep.images_per_prompt
    half = len(prompts)
    assert not (same[:half] == same[half:]).all()  # each image of a prompt has its own seed


def test_tables_and_plot_files(metrics, ep, tmp_path):
    t2i = t2i_table(metrics)
    assert len(t2i) == len(T2I_ARMS) * len(ep.steps)
    assert t2i.loc[("turbo", 2), "score"] == metrics["t2i"]["turbo"]["steps_2"]["score"]
    assert list(mmu_table(metrics).index) == list(MMU_ARMS)
    score, seconds = write_plot_files(metrics, tmp_path)
    df = pd.read_csv(score)
    assert list(df.columns) == ["steps", *T2I_ARMS] and list(df["steps"]) == list(ep.steps)
    assert df.loc[df.steps == 4, "teacher_cfg"].item() == metrics["t2i"]["teacher_cfg"]["steps_4"]["score"]
    assert pd.read_csv(seconds)["turbo"].gt(0).all()
    s = metrics["summary"]
    ref = metrics["t2i"]["teacher_cfg"]["steps_4"]
    assert s["teacher_cfg_reference"] == {"steps": 4, "score": ref["score"]}
    for arm in ("turbo", "turbo_dm"):
        row = metrics["t2i"][arm]["steps_2"]
        assert s[f"{arm}_steps_2"]["speedup_vs_reference"] == pytest.approx(ref["seconds_per_image"] / row["seconds_per_image"])
        if ref["score"]:
            assert s[f"{arm}_steps_2"]["score_ratio_to_reference"] == pytest.approx(row["score"] / ref["score"])
    assert set(s["mmu"]) == {"turbo_forwards_ratio", "turbo_accuracy_minus_teacher_ar", "turbo_dm_forwards_ratio",
                             "turbo_dm_accuracy_minus_teacher_ar"}


def test_sample_grid_rows(models, micro_world, ep):
    images, captions = sample_images(*models[:2], micro_world, ep, [dm_arm(models[2])])
    assert len(images) == len(captions) == len(ep.steps) * 3 * len(CATEGORIES)
    assert captions[0].startswith("teacher_cfg 1:") and captions[len(CATEGORIES)].startswith("turbo 1:")
    assert captions[2 * len(CATEGORIES)].startswith("turbo_dm 1:")


def test_student_arms_come_from_the_stages_with_an_arm(micro_params):
    """params/micro.yaml's dm stage has an `arm:`; its start is the dm method's noisy start."""
    from showo_turbo.evaluation.benchmark import student_arms
    arms = student_arms(micro_params, lambda stage: f"model of {stage}")
    assert [(a.name, a.model, a.cfg_scale, a.start) for a in arms] == [
        ("turbo_dm", "model of dm", 0.0, {"init_mask_ratio": micro_params.distill.method("dm").mask_ratio})]
    arm = micro_params.distill.stages["dm"].arm
    assert arms[0].top_k == {t: k or None for t, k in arm.top_k.items()} and arms[0].temperature == arm.temperature


def test_cider_equals_a_hand_computed_value():
    """CIDEr-D of two images with one reference each, computed by hand: n-grams found in one image's
    references only have idf log 2, 'a' (in both) idf 0; no 4-grams. Image A, "A red SQUARE!" against
    "a red circle": cosines 1/2, 1/2, 0, 0 -> 10 * 1/4 = 2.5; image B, exact: 1, 1, 1, 0 -> 7.5; mean 5.0.
    Case and punctuation do not count."""
    from showo_turbo.evaluation.harness import cider

    assert cider(["A red SQUARE!", "a blue square"], [["a red circle"], ["a blue square"]]) == pytest.approx(5.0)
    assert cider(["a red circle", "a blue square"], [["a red circle"], ["a blue square"]]) == pytest.approx(7.5)
