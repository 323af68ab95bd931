"""The real Show-o world on small stand-ins of the official folders (tests/official_folders.py):
built and loaded through the world registry, its files checked line by line, the official teacher
loaded from its folder with the world's sizes, and the method run on it end to end at library
level: trajectories, a consistency stage, the evaluation's arms and the GenEval export."""

import json
from showo_turbo.pipeline.params import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from official_folders import GENEVAL, write_all
from showo_turbo.pipeline.params import ParamsError, StageEntry, load_params, to_dict, validate_section
from showo_turbo.worlds import WorldFileError, build_world, load_world, params_class
from showo_turbo.worlds.showo import ShowoWorld
from showo_turbo.worlds.showo.files import load_images

IMAGE_SIZE, CAPTION_TOKENS = 64, 32


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("official"), IMAGE_SIZE, CAPTION_TOKENS)


def world_params(folders, **over):
    data = {"kind": "showo", "tokenizer_dir": str(folders["tokenizer_dir"]), "magvit_dir": str(folders["magvit_dir"]),
            "image_size": IMAGE_SIZE, "t2i_train": str(folders["t2i_train"]), "t2i_eval": str(folders["t2i_eval"]),
            "mmu_train": str(folders["mmu_train"]), "mmu_eval": str(folders["mmu_eval"]), "caption_tokens": CAPTION_TOKENS,
            "answer_tokens": 4, "encode_batch": 4, "device": "cpu", "bootstrap": 10, **over}
    return validate_section(params_class("showo"), data, "world.")


@pytest.fixture(scope="module")
def world(folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("showo_world")
    build_world(world_params(folders), root)
    return load_world(root)


def test_the_world_holds_the_files_in_token_form(world, folders):
    assert isinstance(world, ShowoWorld)
    lay, text = world.layout, world.text
    assert lay.text_size == text.text_size and lay.codebook_size == 8192 and world.vq.grid_shape == (4, 4)
    assert text.sot_id == text.eot_id == text.token_id("<|endoftext|>")
    # captions: distinct, in file order, right-padded with [PAD]
    t = world.t2i_train()
    caps = [text.decode(t["caption"][i, :int(t["caption_len"][i])].tolist()) for i in range(len(t["caption"]))]
    assert caps == ["a photo of a dog", "two green triangles", "a red circle left of a blue square",
                    "a photo of a bench and a bicycle"]
    assert (t["caption"][0, int(t["caption_len"][0]):] == lay.pad_id).all()
    # MMU: the images' MAGVIT-v2 codes and Show-o's question form
    m = world.mmu_train()
    rows = [json.loads(line) for line in folders["mmu_train"].read_text().splitlines()]
    paths = [str(folders["mmu_train"].parent / r["image"]) for r in rows]
    assert torch.equal(m["codes"].long(), torch.from_numpy(world.vq.encode(load_images(paths, IMAGE_SIZE))))
    q = text.decode(m["question"][0, :int(m["question_len"][0])].tolist())
    assert q == "USER: \nis there a cat in the image? ASSISTANT:"
    # evaluation sets: GenEval's lines verbatim, questions with their images
    prompts, refs = world.eval_t2i()
    assert [p.metadata for p in prompts] == GENEVAL and refs == [None] * 3
    assert world.categories == ("single_object", "two_object", "colors")
    questions, images = world.eval_mmu()
    assert len(questions) == 6 and [q.kind for q in questions] == ["pope", "pope", "caption"] * 2
    assert {q.answer for q in questions if q.kind == "pope"} == {"yes", "no"}
    caption = next(q for q in questions if q.kind == "caption")  # its answer is its first reference
    assert caption.references == ("random coloured noise", "a square of coloured static", "noise")
    assert caption.answer == "random coloured noise"
    assert world.images_of(images).shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert world.scorer() is None
    assert world.token_names([lay.code_offset + 7, lay.mask_id]) == ["<img:7>", "<|mask|>"]


def test_the_registry_knows_a_folder_by_its_format(world, tmp_path):
    assert isinstance(load_world(world.root), ShowoWorld)
    (tmp_path / "world.json").write_text(json.dumps({"format": "someone-else/1"}))
    with pytest.raises(WorldFileError, match="format 'someone-else/1' is no known world's; known: .*shapes.*showo"):
        load_world(tmp_path)
    with pytest.raises(WorldFileError, match="unknown world kind 'coco'"):
        params_class("coco")


def test_long_captions_are_cut_and_counted(folders, tmp_path):
    w = build_world(world_params(folders, caption_tokens=3), tmp_path / "w")
    assert w.summary["counts"]["captions_cut"] == 4 and (w.t2i_train()["caption_len"] <= 3).all()


def test_bad_files_are_named_with_their_line(folders, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GENEVAL[0]) + "\n" + json.dumps({"tag": "colors", "prompt": "a red dog"}) + "\n")
    with pytest.raises(WorldFileError, match=r"bad.jsonl:2: needs GenEval's 'include' list"):
        build_world(world_params(folders, t2i_eval=str(bad)), tmp_path / "w")
    bad.write_text('{"image": "nowhere.png", "question": "q?", "answer": "no"}\n')
    with pytest.raises(WorldFileError, match=r"bad.jsonl:1: image .*nowhere.png not found"):
        build_world(world_params(folders, mmu_eval=str(bad)), tmp_path / "w")
    bad.write_text('{"image": "%s", "question": "q?", "references": ["a dog", ""]}\n' % folders["t2i_train"])
    with pytest.raises(WorldFileError, match=r"bad.jsonl:1: 'references' must be a list of non-empty strings"):
        build_world(world_params(folders, mmu_eval=str(bad)), tmp_path / "w")
    bad.write_text("{not json\n")
    with pytest.raises(WorldFileError, match=r"bad.jsonl:1: not a JSON line"):
        build_world(world_params(folders, mmu_train=str(bad)), tmp_path / "w")
    with pytest.raises(WorldFileError, match="missing.txt: not found"):
        build_world(world_params(folders, t2i_train=str(tmp_path / "missing.txt")), tmp_path / "w")
    with pytest.raises(ParamsError, match="world.magvit_dir: must name a local file or folder"):
        world_params(folders, magvit_dir="")
    with pytest.raises(ParamsError, match="world.image_size: must be a multiple of 16"):
        world_params(folders, image_size=72)


def test_a_changed_tokenizer_folder_is_refused(folders, tmp_path):
    import shutil

    from official_folders import write_magvit_folder

    magvit = shutil.copytree(folders["magvit_dir"], tmp_path / "magvit")
    build_world(world_params(folders, magvit_dir=str(magvit)), tmp_path / "w")
    write_magvit_folder(magvit, seed=1)  # other weights, same names
    with pytest.raises(WorldFileError, match="the tokenizer folders changed"):
        load_world(tmp_path / "w")


def test_the_official_teacher_loads_with_the_worlds_sizes(world, folders, tmp_path):
    from showo_turbo.training.teacher import TeacherMismatchError, obtain_teacher

    tp = replace(load_params("params/micro.yaml").teacher, source="showo", showo_dir=str(folders["showo_dir"]),
                 showo_llm_dir=str(folders["tokenizer_dir"]))
    model, card = obtain_teacher(tp, world, tmp_path / "teacher", tmp_path / "ckpt")
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_layers, cfg.max_caption_tokens, cfg.num_image_tokens) == (32, 2, CAPTION_TOKENS, 16)
    assert card["source"] == "showo" and (tmp_path / "teacher" / "model.safetensors").is_file()
    conf = json.loads((folders["showo_dir"] / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**conf, "num_vq_tokens": 256}))
    (other / "pytorch_model.safetensors").write_bytes((folders["showo_dir"] / "pytorch_model.safetensors").read_bytes())
    with pytest.raises(TeacherMismatchError, match="do not fit the world's tokenizers"):
        obtain_teacher(replace(tp, showo_dir=str(other)), world, tmp_path / "t2", tmp_path / "c2")


@pytest.mark.slow
def test_the_method_runs_on_the_real_world_and_exports_geneval(world, folders, tmp_path, monkeypatch):
    """Trajectories -> a consistency stage -> the evaluation's arms with the GenEval export."""
    from showo_turbo.evaluation.benchmark import evaluate_arms
    from showo_turbo.training.distill import distill_stage
    from showo_turbo.model.showo import load_model
    from showo_turbo.training.teacher import obtain_teacher
    from showo_turbo.training.trajectories import collect_mmu, collect_t2i

    params = load_params("params/micro.yaml")
    tp = replace(params.teacher, source="showo", showo_dir=str(folders["showo_dir"]),
                 showo_llm_dir=str(folders["tokenizer_dir"]))
    monkeypatch.chdir(tmp_path)
    teacher, _ = obtain_teacher(tp, world, "data/teacher", "data/teacher_checkpoint")
    traj = replace(params.trajectories, captions=4, mmu_questions=6, steps=4, batch_size=4, shard_rows=4, block_size=4)
    collect_t2i(teacher, world, traj, Path("data/trajectories/t2i"), progress=False)
    collect_mmu(teacher, world, traj, Path("data/trajectories/mmu"), progress=False)
    stage = StageEntry(method="consistency", segments=1, init_dir="data/teacher", arm=None)
    dp = replace(params.distill, consistency=replace(params.distill.method("consistency"), steps=2, batch_t2i=2), batch_mmu=2)
    progress = distill_stage(stage, dp, "data/trajectories", "data/students/s", cpu=True, progress=False)
    assert progress["step"] == 2
    student = load_model("data/students/s/model.safetensors")
    ep = replace(params.evaluate, steps=(1, 2), images_per_prompt=2, prompts_per_category=1, timing_batch=2,
                 timing_repeats=1, block_size=4, precision="fp32")
    metrics = evaluate_arms(teacher, student, world, ep, progress=False, export_dir="geneval")
    row = metrics["t2i"]["turbo"]["steps_2"]
    assert "score" not in row and row["images"] == 6 and row["seconds_per_image"] > 0  # nothing scored here
    assert "score_ratio_to_reference" not in metrics["summary"]["turbo_steps_2"]
    assert 0 <= metrics["mmu"]["teacher_ar"]["accuracy"] <= 1
    for arm, r in metrics["mmu"].items():  # captioning items: CIDEr-D and the speed figures per kind
        assert r["cider_caption"] >= 0 and "cider_pope" not in r, arm
        assert r["forwards_per_token_caption"] > 0 and r["tokens_per_second_batch1_caption"] > 0, arm
    # GenEval's layout: one folder per prompt, its metadata line, images_per_prompt PNGs
    out = Path("geneval/turbo/steps_2")
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001", "00002"]
    for i, line in enumerate(GENEVAL):
        assert json.loads((out / f"{i:05d}" / "metadata.jsonl").read_text()) == line
        pngs = sorted((out / f"{i:05d}" / "samples").iterdir())
        assert [p.name for p in pngs] == ["0000.png", "0001.png"]
        assert np.asarray(Image.open(pngs[0])).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert to_dict(world.params)["kind"] == "showo"
