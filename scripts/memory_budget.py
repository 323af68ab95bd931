"""GPU memory that one process needs to distill a student of a params file, computed from the model's
parameter count and the stage's sequence lengths (no device needed):

    python scripts/memory_budget.py params/showo-256.yaml params/showo-512.yaml

- weights, gradients and AdamW's two moments in fp32: 16 bytes per parameter (accelerate's bf16 mixed
  precision keeps fp32 master weights; the official run used 8-bit Adam, which would save 6 of them);
- activations kept for the backward pass, bf16, per layer and sequence of s tokens:
  s * h * (34 + 5 * a * s / h) bytes (Korthikanti et al. 2022, "Reducing Activation Recomputation in
  Large Transformer Models", section 4.1, without tensor or sequence parallelism), for hidden size h
  and a heads; a transformer block with a 4h MLP, as Phi-1.5's;
- the logits in fp32 and their gradient: 8 bytes per token and vocabulary entry.
A T2I row is `[<|t2i|> <|sot|> caption <|eot|>] <|soi|> image <|eoi|>`; an MMU row packs the image
prompt, the question (at most `world.caption_tokens` tokens, an assumption), the answer and two
Jacobi states of at most `world.answer_tokens` + 1 tokens each. Peak memory on a device also holds
the CUDA context and the allocator's slack: `scripts/bench_speed.py --device cuda` measures it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from showo_turbo.model.showo import ShowoModel, preset_config  # noqa: E402
from showo_turbo.pipeline.params import load_params  # noqa: E402

GB = 1e9


def budget(params_path: str) -> dict:
    p = load_params(params_path)
    preset = "showo-512" if p.world.image_size == 512 else "showo-256"
    with torch.device("meta"):
        model = ShowoModel(preset_config(preset))
    cfg = model.config
    n_params = sum(t.numel() for t in model.parameters())
    n_img = (p.world.image_size // 16) ** 2
    t2i_len = p.world.caption_tokens + 3 + n_img + 2
    answer = p.world.answer_tokens + 1
    mmu_len = (n_img + 4) + p.world.caption_tokens + 3 * answer
    method = p.distill.method(p.distill.stages[next(iter(p.distill.stages))].method)
    rows = {"t2i": (method.batch_t2i, t2i_len), "mmu": (p.distill.batch_mmu, mmu_len)}
    h, a, layers, vocab = cfg.hidden_size, cfg.num_heads, cfg.num_layers, cfg.vocab_size

    def activations(s: int) -> float:
        return layers * s * h * (34 + 5 * a * s / h) + 8 * s * vocab

    out = {"params file": params_path, "parameters": n_params, "weights+grads+AdamW GB": 16 * n_params / GB}
    for name, (batch, s) in rows.items():
        out[f"{name}: batch x tokens"] = f"{batch} x {s}"
        out[f"{name} activations GB"] = batch * activations(s) / GB
    out["total GB"] = out["weights+grads+AdamW GB"] + sum(out[f"{k} activations GB"] for k in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", nargs="+", help="params files (e.g. params/showo-256.yaml)")
    args = ap.parse_args(argv)
    for path in args.params:
        for key, value in budget(path).items():
            print(f"{key:28s} {value:,.1f}" if isinstance(value, float) else f"{key:28s} {value:,}" if isinstance(value, int)
                  else f"{key:28s} {value}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
