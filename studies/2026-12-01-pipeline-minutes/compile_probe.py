"""Does torch.compile make a training step of the shipped teacher faster on this CPU? (issue 15)

One process, one model, one optimizer: a step shaped like a default consistency step (a T2I batch of
32 sequences of the world's length, image-code logits; a text batch of 16 causal sequences of 128
tokens, full-vocabulary logits; backward; AdamW), timed eagerly, then through `torch.compile`, then
eagerly again, so that both are measured side by side in one run. The batches are random token ids:
the cost of a step does not depend on their values. Then the same for a sampling pass (no gradient,
image-code logits of T2I sequences) at batch 128 (64 prompts with CFG, the sweeps' batch) and at
batch 2 (one prompt with CFG, the batch-1 latency of the paper). Prints seconds and the ratios.

    python studies/2026-12-01-pipeline-minutes/compile_probe.py [--mode default|max-autotune] [--steps 8]
"""

from __future__ import annotations

import argparse
import time

import torch

from showo_turbo.model import additive, load_model, omni_attention_mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="teacher/shapes-base/model.safetensors")
    ap.add_argument("--mode", default="default", help="torch.compile mode (default, max-autotune, ...)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per measurement (after 3 warm-up steps)")
    args = ap.parse_args()

    torch.manual_seed(0)
    m = load_model(args.teacher).train()
    cfg = m.config
    t2i = torch.randint(0, cfg.vocab_size, (32, cfg.t2i_length))
    t2i_mask = omni_attention_mask(t2i, cfg)
    text = torch.randint(0, cfg.vocab_size, (16, 128))
    text_mask = additive(torch.ones(128, 128, dtype=torch.bool).tril().expand(16, 128, 128))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5)

    def step(model) -> None:
        loss = -(model.image_logits(t2i, t2i_mask).float().log_softmax(-1).mean()
                 + model(text, text_mask).float().log_softmax(-1).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def seconds_per_step(model) -> float:
        for _ in range(3):
            step(model)
        t = time.perf_counter()
        for _ in range(args.steps):
            step(model)
        return (time.perf_counter() - t) / args.steps

    mode = None if args.mode == "default" else args.mode
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}", flush=True)
    eager = seconds_per_step(m)
    print(f"eager            {eager:.3f} s/step", flush=True)
    t0 = time.perf_counter()
    compiled_model = torch.compile(m, dynamic=False, mode=mode)
    step(compiled_model)
    print(f"compile + first step {time.perf_counter() - t0:.1f} s", flush=True)
    compiled = seconds_per_step(compiled_model)
    print(f"compiled ({args.mode}) {compiled:.3f} s/step", flush=True)
    eager_again = seconds_per_step(m)
    print(f"eager again      {eager_again:.3f} s/step", flush=True)
    print(f"training: compiled over eager (mean of both eager runs) {(eager + eager_again) / 2 / compiled:.2f}x", flush=True)

    m.eval()
    for rows in (128, 2):
        ids = torch.randint(0, cfg.vocab_size, (rows, cfg.t2i_length))
        mask = omni_attention_mask(ids, cfg)
        compiled_pass = torch.compile(m.image_logits, dynamic=False, mode=mode)

        def seconds_per_pass(f, n: int = 20) -> float:
            with torch.no_grad():
                for _ in range(3):
                    f(ids, mask)
                t = time.perf_counter()
                for _ in range(n):
                    f(ids, mask)
            return (time.perf_counter() - t) / n

        e1 = seconds_per_pass(m.image_logits)
        c = seconds_per_pass(compiled_pass)
        e2 = seconds_per_pass(m.image_logits)
        print(f"sampling pass, batch {rows}: eager {e1 * 1e3:.1f} / {e2 * 1e3:.1f} ms, compiled {c * 1e3:.1f} ms, "
              f"{(e1 + e2) / 2 / c:.2f}x", flush=True)


if __name__ == "__main__":
    main()
