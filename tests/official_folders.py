"""Small stand-ins for the official folders a researcher has locally, written in their formats:
phi-1_5's tokenizer files (a tiny byte-level BPE) with a Phi config.json, a reduced MAGVIT-v2
(random weights, official names), a tiny Show-o checkpoint (random weights, `showo.*` names), and
the prompt and question files (GenEval's JSONL, a caption list, MMU JSONL with PNG images).

Used by the tests; `python tests/official_folders.py OUT` writes them all into OUT (a real-style
micro world for trying the pipeline by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ENDOFTEXT = "<|endoftext|>"
CORPUS = ["USER: what colour is the circle? ASSISTANT: red", "a red circle left of a blue square",
          "two green triangles", "how many squares are there? ASSISTANT: 3", "a photo of a dog", "yes", "no",
          "is there a cat in the image?", "a photo of a bench and a bicycle"] * 10
ADDED = ["      ", "     "]  # phi-1_5 ends its vocabulary with added whitespace runs (50257-50294)
# Reduced for the CPU: fewer channels and blocks, the same 16x downsampling and 13-bit LFQ.
MAGVIT_SMALL = {"channels": 32, "encoder_res_blocks": [1, 1, 1, 1, 1], "decoder_res_blocks": [1, 1, 1, 1, 1]}
PHI_TINY = {"model_type": "phi", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "max_position_embeddings": 256, "partial_rotary_factor": 0.5,
            "rope_theta": 10000.0, "layer_norm_eps": 1e-5}
GENEVAL = [  # lines in GenEval's evaluation_metadata.jsonl format
    {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"},
    {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "bicycle", "count": 1}],
     "prompt": "a photo of a bench and a bicycle"},
    {"tag": "colors", "include": [{"class": "circle", "count": 1, "color": "red"}], "prompt": "a photo of a red circle"},
]


def write_phi_folder(folder: Path, with_config: bool = True) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=[ENDOFTEXT],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.model.save(str(folder))  # vocab.json + merges.txt
    n = tk.get_vocab_size()
    specials = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "unk_token": ENDOFTEXT}
    (folder / "added_tokens.json").write_text(json.dumps({t: n + i for i, t in enumerate(ADDED)}))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CodeGenTokenizer", "model_max_length": 2048,
                                                              "add_prefix_space": False, **specials}))
    if with_config:
        (folder / "config.json").write_text(json.dumps(PHI_TINY))
    return folder


def write_magvit_folder(folder: Path, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    from showo_turbo.worlds.showo.magvit import MAGVITv2, MagvitConfig

    torch.manual_seed(seed)
    model = MAGVITv2(MagvitConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in MAGVIT_SMALL.items()}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "MAGVITv2", **MAGVIT_SMALL}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "pytorch_model.safetensors"))
    return folder


def write_showo_folder(folder: Path, phi_folder: Path, image_size: int, caption_tokens: int, seed: int = 0) -> Path:
    """A tiny Show-o (random weights) on the tokenizer of `phi_folder`, saved as Show-o saves it."""
    import torch
    from safetensors.torch import save_file

    from showo_turbo.model.showo import ShowoModel, official_showo_config
    from showo_turbo.worlds.showo.phi_tokenizer import load_phi_tokenizer

    tok = load_phi_tokenizer(phi_folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "_class_name": "Showo", "llm_model_path": "microsoft/phi-1_5", "llm_vocab_size": tok.text_size,
        "codebook_size": 8192, "num_vq_tokens": (image_size // 16) ** 2, "num_new_special_tokens": 10, "w_clip_vit": False}))
    cfg = official_showo_config(folder, phi_folder, caption_tokens, tok.sot_id, tok.eot_id)
    torch.manual_seed(seed)
    model = ShowoModel(cfg)
    state = {f"showo.{k}": v.contiguous() for k, v in model.showo.state_dict().items()}
    save_file(state, str(folder / "pytorch_model.safetensors"))
    return folder


def write_prompt_files(folder: Path, image_size: int, mmu_items: int = 12, seed: int = 0) -> dict[str, Path]:
    """GenEval-format prompts, a caption list, and MMU train / eval JSONL with PNG images (yes/no
    questions in POPE's form, and captioning items with reference captions)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "evaluation_metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GENEVAL))
    captions = ["a photo of a dog", "two green triangles", "a red circle left of a blue square",
                "a photo of a bench and a bicycle", "a photo of a dog"]  # one repeated: read once
    (folder / "captions.txt").write_text("\n".join(captions) + "\n")
    (folder / "images").mkdir(exist_ok=True)
    rows = []
    for i in range(mmu_items):
        path = folder / "images" / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (image_size + 8 * (i % 3), image_size, 3), dtype=np.uint8)).save(path)
        if i % 3 == 2:  # a captioning item: reference captions, scored by CIDEr-D
            rows.append({"image": f"images/{path.name}", "question": "describe the image briefly.", "kind": "caption",
                         "references": ["random coloured noise", "a square of coloured static", "noise"]})
        else:
            rows.append({"image": f"images/{path.name}", "question": "is there a cat in the image?",
                         "answer": "yes" if i % 2 else "no", "kind": "pope"})
    half = mmu_items // 2
    (folder / "mmu_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:half]))
    (folder / "mmu_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[half:]))
    return {"t2i_train": folder / "captions.txt", "t2i_eval": folder / "evaluation_metadata.jsonl",
            "mmu_train": folder / "mmu_train.jsonl", "mmu_eval": folder / "mmu_eval.jsonl"}


def write_all(root: Path, image_size: int = 64, caption_tokens: int = 32) -> dict[str, Path]:
    """Every folder and file of a real-style micro world under `root`."""
    phi = write_phi_folder(root / "phi-1_5")
    out = {"tokenizer_dir": phi, "magvit_dir": write_magvit_folder(root / "magvitv2"),
           "showo_dir": write_showo_folder(root / "show-o", phi, image_size, caption_tokens)}
    return {**out, **write_prompt_files(root / "prompts", image_size)}


if __name__ == "__main__":
    for k, v in write_all(Path(sys.argv[1])).items():
        print(f"{k}: {v}")
