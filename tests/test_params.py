"""params.yaml validation: every problem is one line naming the dotted key."""

import copy
from pathlib import Path

import pytest
import yaml

from showo_turbo.pipeline.params import ParamsError, load_params, parse_params, replace, to_dict

ROOT = Path(__file__).resolve().parents[1]


def base() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def error_of(data) -> str:
    with pytest.raises(ParamsError) as e:
        parse_params(data, "params.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def overlaid(overlay: str, onto: Path = ROOT / "params.yaml") -> dict:
    """`onto` (params.yaml) with params/<overlay>.yaml merged in (pipeline.presets), as a dict."""
    import shutil
    import tempfile

    from showo_turbo.pipeline.presets import apply_overlay
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(onto, Path(tmp) / "params.yaml")
        apply_overlay(ROOT / "params" / f"{overlay}.yaml", Path(tmp) / "params.yaml")
        return yaml.safe_load((Path(tmp) / "params.yaml").read_text())


def keys(d, prefix=""):
    if prefix == "distill.stages.":  # named stages: their own names, the same keys each
        d = {"<stage>": next(iter(d.values()))}
    return {prefix + str(k) for k in d} | {x for k, v in d.items() if isinstance(v, dict) for x in keys(v, f"{prefix}{k}.")}


def test_shipped_params_and_micro_preset_load_with_the_same_keys():
    """The micro preset is params.yaml + the dm overlay at test scale: the same keys."""
    default = to_dict(parse_params(overlaid("dm")))
    micro = load_params(ROOT / "params" / "micro.yaml")
    assert keys(default) == keys(to_dict(micro))
    assert micro.world.train_t2i < default["world"]["train_t2i"]
    assert len(micro.distill.stages) >= 2  # the micro pipeline exercises a stage that starts from a student


def test_the_default_pipeline_is_the_papers_method_and_the_dm_overlay_adds_an_arm():
    default = load_params(ROOT / "params.yaml")
    assert {st.method for st in default.distill.stages.values()} == {"consistency"} and not default.arms()
    assert "dm" not in to_dict(default.distill)
    with_dm = parse_params(overlaid("dm"))
    assert list(with_dm.distill.stages) == [*default.distill.stages, "dm"] and list(with_dm.arms()) == ["dm"]
    assert with_dm.distill.method("dm").mask_ratio == 0.6
    text = (ROOT / "params.yaml").read_text()
    assert text.splitlines()[0].startswith("# Pipeline parameters")  # the overlay keeps params.yaml's comments


def test_the_mixture_overlay_adds_its_arm_on_stochastic_trajectories():
    default = load_params(ROOT / "params.yaml")
    mix = parse_params(overlaid("mixture"))
    assert list(mix.distill.stages) == [*default.distill.stages, "mix"] and list(mix.arms()) == ["mix"]
    assert mix.distill.stages["mix"].init_dir == f"data/students/{mix.evaluate.student}"
    tp = mix.trajectories  # several teacher images per caption, as many trajectories as the default
    assert tp.decoding == "stochastic" and tp.samples_per_caption > 1
    assert tp.captions * tp.samples_per_caption == default.trajectories.captions
    assert mix.distill.method("mixture").draws > 1


def test_the_real_showo_presets_hold_the_official_settings_and_take_the_micro_overlay():
    """params/showo-256.yaml and showo-512.yaml (zhijie-group/Show-o-Turbo's values), alone and with the
    micro overlay the showo pipeline test runs: only folders and sizes change."""
    expected = {"showo-256": (256, 16, 1.75, ["seg4", "seg2", "seg1"], {2: 200, 4: 200, 8: 0, 16: 0}),
                "showo-512": (512, 32, 10.0, ["seg8", "seg4", "seg2", "seg1"], {2: 200, 4: 500, 8: 0, 16: 0, 32: 0})}
    for preset, (size, steps, cfg, stages, top_k) in expected.items():
        p = load_params(ROOT / "params" / f"{preset}.yaml")
        assert (p.world.kind, p.world.image_size, p.teacher.source) == ("showo", size, "showo")
        assert (p.trajectories.steps, p.trajectories.cfg_scale, p.trajectories.decoding) == (steps, cfg, "deterministic")
        assert list(p.distill.stages) == stages and p.distill.method("consistency").lr == 1e-5 and p.distill.warmup_steps == 0
        assert (p.distill.weight_image, p.distill.weight_lm, p.distill.weight_text, p.distill.ar_multiplier) == (1.0, 0.1, 0.5, 10.0)
        assert p.evaluate.student_top_k == top_k and p.evaluate.teacher_cfg_scale == cfg
        micro = parse_params(overlaid("showo-micro", ROOT / "params" / f"{preset}.yaml"))
        assert micro.world.image_size == 64 and micro.world.tokenizer_dir.startswith("inputs/official/")
        assert micro.trajectories.cfg_scale == cfg and list(micro.distill.stages) == [*stages, "dm"]


def test_a_real_world_input_outside_inputs_is_refused_by_key():
    data = yaml.safe_load((ROOT / "params" / "showo-256.yaml").read_text())
    data["world"]["t2i_eval"] = "/data/geneval/evaluation_metadata.jsonl"
    assert error_of(data).startswith("params.yaml: world.t2i_eval: must lie under inputs/")
    data = yaml.safe_load((ROOT / "params" / "showo-256.yaml").read_text())
    data["teacher"]["showo_dir"] = "../show-o"
    assert error_of(data).startswith("params.yaml: teacher.showo_dir: must lie under inputs/")


def test_curriculum_errors_name_the_stage():
    data = base()
    data["distill"]["stages"] = {"a": {"method": "consistency", "segments": 2, "init_dir": "data/teacher", "arm": None},
                                 "b": {"method": "consistency", "segments": 1, "init_dir": "data/students/c", "arm": None}}
    assert error_of(data) == ("params.yaml: distill.stages.b.init_dir: must be one of data/teacher, data/students/a "
                              "(the teacher or an earlier stage's student), got 'data/students/c'")
    data["distill"]["stages"] = {"a": {"method": "consistency", "segments": 99, "init_dir": "data/teacher", "arm": None}}
    assert error_of(data) == "params.yaml: distill.stages.a.segments: 99 segments do not fit trajectories.steps (16)"
    data["distill"]["stages"] = {"a b": {"method": "consistency", "segments": 2, "init_dir": "data/teacher", "arm": None}}
    assert "entry name 'a b'" in error_of(data)
    data["distill"]["stages"] = {"a": {"method": "consistency", "segments": 2, "arm": None}}
    assert error_of(data) == "params.yaml: distill.stages.a.init_dir: missing (every key must be given so that DVC tracks it)"


def test_stage_methods_and_the_arms_that_name_them():
    data = overlaid("dm")
    data["distill"]["stages"]["dm"]["method"] = "dmd"
    assert error_of(data) == "params.yaml: distill.stages.dm.method: unknown value 'dmd'; allowed: consistency, dm, mixture"
    data = overlaid("dm")
    data["evaluate"]["student"] = "dm"
    assert error_of(data) == ("params.yaml: evaluate.student: must be one of the distill.stages with method consistency "
                              "(seg4, seg2, seg1), got 'dm'")
    data = overlaid("dm")
    del data["distill"]["dm"]
    assert error_of(data) == "params.yaml: distill.dm: missing: stages with method dm need this section"
    data = overlaid("dm")
    data["distill"]["dm"]["mask_ratio"] = 1.5
    assert error_of(data) == "params.yaml: distill.dm.mask_ratio: must be <= 1.0, got 1.5"
    data = overlaid("dm")
    data["distill"]["stages"]["dm"]["arm"]["top_k"] = {1: 0}
    assert error_of(data).startswith("params.yaml: distill.stages.dm.arm.top_k: needs an entry for every step count")
    data = overlaid("dm")
    data["distill"]["stages"]["seg1"]["arm"] = {"top_k": {1: 0}, "temperature": 1.0}
    assert error_of(data).startswith("params.yaml: distill.stages.seg1.arm: must be null for evaluate.student")
    # a method's section is checked only where a stage uses it
    data = base()
    data["distill"]["dm"] = {"anything": 1}
    assert to_dict(parse_params(data))["distill"]["dm"] == {"anything": 1}


def test_round_trip():
    data = base()
    assert to_dict(parse_params(data)) == data


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: d["world"].update(colour_count=3), "params.yaml: world.colour_count: unknown key; allowed: kind, seed, "),
    (lambda d: d["world"].update(kind="coco"), "params.yaml: world.kind: must be one of shapes, showo, got 'coco'"),
    (lambda d: d.update(wrld={}), "params.yaml: wrld: unknown key; allowed: world"),
    (lambda d: d["world"].update(train_t2i=-5), "params.yaml: world.train_t2i: must be >= 1, got -5"),
    (lambda d: d["world"].update(eval_prompts_per_category=0), "world.eval_prompts_per_category: must be >= 1, got 0"),
    (lambda d: d["world"]["colours"].__setitem__(2, "teal"), "params.yaml: world.colours[2]: unknown colour 'teal'; allowed: red, green, blue"),
    (lambda d: d["world"]["shapes"].append("star"), "world.shapes[4]: unknown shape 'star'; allowed: circle, square"),
    (lambda d: d["world"].update(seed="zero"), "world.seed: expected an integer, got 'zero'"),
    (lambda d: d["world"].update(seed=True), "world.seed: expected an integer, got True"),
    (lambda d: d["world"].update(heldout_caption_fraction=0.9), "world.heldout_caption_fraction: must be <= 0.5, got 0.9"),
    (lambda d: d["world"].update(colours="red"), "world.colours: expected a non-empty list, got 'red'"),
    (lambda d: d["world"].update(colours=["red", "red"]), "world.colours: duplicate entries ['red']"),
    (lambda d: d["world"].pop("bootstrap"), "world.bootstrap: missing"),
    (lambda d: d["world"].update(patch_size=5), "world.patch_size: must divide image_size (32), got 5"),
    (lambda d: d["world"].update(object_sizes=[2, 9]), "world.object_sizes: objects of 9 patches do not fit a 8x8 grid"),
    (lambda d: d["world"].update(object_sizes=[4], max_objects=5), "world.max_objects: 5 objects of 4 patches"),
    (lambda d: d["teacher"]["train"].update(preset="huge"), "teacher.train.preset: unknown value 'huge'; allowed: micro, small"),
    (lambda d: d["teacher"].update(source="showo", showo_dir=""), "teacher.showo_dir: must name a local Show-o checkpoint folder"),
    (lambda d: d["teacher"]["eval"]["steps"].__setitem__(0, 0), "teacher.eval.steps[0]: must be >= 1, got 0"),
    (lambda d: d["teacher"]["train"].pop("lr"), "teacher.train.lr: missing"),
    (lambda d: d["teacher"]["eval"].update(precision="fp16"), "teacher.eval.precision: unknown value 'fp16'; allowed: auto, bf16, fp32"),
    (lambda d: d["evaluate"].update(student="seg9"), "evaluate.student: must be one of the distill.stages with method consistency (seg4, seg2, seg1)"),
    (lambda d: d["evaluate"]["student_top_k"].pop(8), "evaluate.student_top_k: needs an entry for every step count"),
    (lambda d: d["evaluate"]["student_top_k"].update({2: -1}), "evaluate.student_top_k.2: must be >= 0, got -1"),
    (lambda d: d["evaluate"]["student_top_k"].update({"two": 3}), "evaluate.student_top_k (a key): expected an integer, got 'two'"),
    (lambda d: d["evaluate"].update(steps=[]), "evaluate.steps: expected a non-empty list, got []"),
    (lambda d: d["teacher"].update(train=5), "teacher.train: expected a mapping, got 5"),
    (lambda d: d["trajectories"].update(cfg_scale=float("nan")), "trajectories.cfg_scale: must be a finite number, got nan"),
    (lambda d: d["distill"]["consistency"].update(lr=float("inf")), "distill.consistency.lr: must be a finite number, got inf"),
    (lambda d: d["distill"]["consistency"].update(stepz=3), "distill.consistency.stepz: unknown key; allowed: steps, batch_t2i, lr"),
    (lambda d: d["world"].update(heldout_caption_fraction=float("-inf")), "world.heldout_caption_fraction: must be a finite number"),
])
def test_bad_params_name_the_key(mutate, expect):
    data = copy.deepcopy(base())
    mutate(data)
    assert expect in error_of(data)


def test_bad_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world:\n  seed: [1\n")
    with pytest.raises(ParamsError, match=r"bad.yaml: not valid YAML at line \d"):
        load_params(bad)
    text = (ROOT / "params.yaml").read_text()
    assert "  cfg_scale: 2.0" in text
    bad.write_text(text.replace("  cfg_scale: 2.0", "  cfg_scale: .nan", 1))  # YAML's NaN spelling
    with pytest.raises(ParamsError, match="trajectories.cfg_scale: must be a finite number"):
        load_params(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="top level: expected a mapping"):
        load_params(bad)


def test_the_models_declare_no_values():
    """params.yaml is the only home of a value: no field of any section has a default."""
    from pydantic import BaseModel

    from showo_turbo.methods import METHODS, method_params_class
    from showo_turbo.pipeline import params as P
    from showo_turbo.worlds import WORLD_KINDS, params_class
    models = [v for v in vars(P).values() if isinstance(v, type) and issubclass(v, BaseModel) and v not in (BaseModel, P.Section)]
    models += [method_params_class(m) for m in METHODS] + [params_class(k) for k in WORLD_KINDS]
    assert len(models) >= 12
    for model in models:
        for name, f in model.model_fields.items():
            assert f.is_required(), f"{model.__name__}.{name} has a default"


def test_replace_validates_again():
    p = load_params(ROOT / "params.yaml")
    assert replace(p.trajectories, steps=8).steps == 8
    with pytest.raises(ParamsError, match="steps: must be >= 1, got 0"):
        replace(p.trajectories, steps=0)
    again = replace(p, trajectories=replace(p.trajectories, steps=8))
    assert again.world == p.world and again.trajectories.steps == 8


def test_the_params_check_runs_before_dvc_and_names_the_file(tmp_path):
    """scripts/repro.sh checks params.yaml before `dvc repro` (which deletes a stage's outputs before the
    stage could refuse a typo); an empty file or a typo is one line naming the file and the key."""
    import subprocess
    import sys

    lines = (ROOT / "scripts" / "repro.sh").read_text().splitlines()
    check = lines.index("python -m showo_turbo.pipeline.params params.yaml")
    assert check < next(i for i, line in enumerate(lines) if line.startswith("dvc repro"))
    empty, typo = tmp_path / "empty.yaml", tmp_path / "typo.yaml"
    empty.write_text("")
    typo.write_text((ROOT / "params.yaml").read_text().replace("  batch_mmu: 16 ", "  batch_mmu: sixteen ", 1))
    for path, message in ((empty, "top level: expected a mapping, got None"),
                          (typo, "distill.batch_mmu: expected an integer, got 'sixteen'")):
        run = subprocess.run([sys.executable, "-m", "showo_turbo.pipeline.params", str(path)], capture_output=True, text=True)
        assert run.returncode == 1 and run.stderr == f"showo_turbo.pipeline.params: {path}: {message}\n"
    ok = subprocess.run([sys.executable, "-m", "showo_turbo.pipeline.params", str(ROOT / "params.yaml")], capture_output=True)
    assert ok.returncode == 0 and ok.stderr == b""
