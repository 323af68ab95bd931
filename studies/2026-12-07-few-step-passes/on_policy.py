"""On-policy completion training (DAgger for a few-step sampler), a prototype: the student rolls out
its own few-step sampler (the evaluate stage's: multinomial, Gumbel re-masking temperature 20) for k
passes; the teacher with CFG finishes each state s_k with its remaining steps of a 16-step run; the
student learns, at s_k's masked positions, the teacher's completion (cross-entropy to its codes, or
to its distributions with `--targets soft`).
Rounds: draw states and completions with the current student, train on them, score, repeat.
Images only (no text terms): a probe of the idea, not a pipeline stage. Run A of the study:
`--rounds 6 --captions 1024 --train-steps 100` (argmax completions); run B: `--rounds 4 --captions
2048 --train-steps 64 --completion multinomial`; both stopped early, the scores falling.
Run C keeps the idea but with soft targets (`--targets soft`: the teacher's top-16 distribution at
the step of its completion that committed each position, as the consistency loss uses) and the
curriculum's one-segment consistency loss on trajectory-store states beside it (`--mix-store
data/trajectories`); runs E / F: the same at lr 3e-4, 2,048 rows and 200 steps per round, F being
the control without the on-policy term (`--onpolicy-weight 0`).

    python studies/2026-12-07-few-step-passes/on_policy.py --student data/students/seg1/model.safetensors \
        --teacher data/teacher/model.safetensors --out /tmp/onpolicy --rounds 3

The hand-off runs (`handoff.py`) measured what the teacher makes of the student's states: seg1's
first 1 / 2 / 3 passes of 4, finished by the teacher, score 0.565 / 0.507 / 0.417 (seg1 alone: 0.418).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from showo_turbo.consistency import image_targets, soft_cross_entropy
from showo_turbo.evaluate import t2i_sweep
from showo_turbo.model import autocast, image_state_ids, load_model, save_model, t2i_sequences
from showo_turbo.sampling import t2i_generate
from showo_turbo.teacher import eval_prompts_subset
from showo_turbo.trajectories import load_store
from showo_turbo.worlds import load_world

sys.path.insert(0, str(Path(__file__).parent))
import handoff  # noqa: E402  resume_step: the same hand-off rule as the diagnostics


def collect(student, teacher, caps, lens, passes, student_steps, temperature, completion, g, batch=64):
    """(student states s_k, teacher completions x, the teacher's top-16 distribution [N, 16] at the step
    of its completion that committed each position: probs, index) for every row, k cycling through `passes`."""
    N = student.config.num_image_tokens
    states, targets, probs, index = [], [], [], []
    for i, b in enumerate(range(0, len(caps), batch)):
        c, l = caps[b:b + batch], lens[b:b + batch]
        k = passes[i % len(passes)]
        with autocast("auto"):
            r = t2i_generate(student, c, l, steps=student_steps, temperature=temperature, generator=g, return_trajectory=True)
            s = r.trajectory.states[k]
            start = handoff.resume_step(int((s < 0).sum(-1).max()), 16, N)
            argmax = completion == "argmax"
            x = t2i_generate(teacher, c, l, steps=16, cfg_scale=2.0, sample="argmax" if argmax else "multinomial",
                             temperature=0.0 if argmax else temperature, generator=g, init_codes=s, start_step=start,
                             return_trajectory=True)
        tr = x.trajectory
        at = (tr.commit_step - start).clamp(min=0)                     # [B, N]: index into the resumed steps
        pick = at.view(1, *at.shape, 1).expand(1, -1, -1, tr.top_probs.shape[-1])
        probs.append(tr.top_probs.float().gather(0, pick)[0])
        index.append(tr.top_indices.long().gather(0, pick)[0])
        states.append(s)
        targets.append(x.codes)
    return torch.cat(states), torch.cat(targets), torch.cat(probs), torch.cat(index)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default="data/world")
    ap.add_argument("--student", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--captions", type=int, default=1024, help="training rows per round")
    ap.add_argument("--train-steps", type=int, default=100, help="optimizer steps per round")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--student-steps", type=int, default=4)
    ap.add_argument("--passes", default="1,2,3", help="student passes before the hand-off (one per batch, cycled)")
    ap.add_argument("--completion", default="argmax", choices=("argmax", "multinomial"),
                    help="teacher completion: argmax codes in confidence order (deterministic) or sampled at the temperature")
    ap.add_argument("--targets", default="codes", choices=("codes", "soft"),
                    help="codes: cross-entropy to the completion; soft: to the teacher's distribution at each position's commit step")
    ap.add_argument("--mix-store", default="", help="a trajectories folder: add the curriculum's image consistency loss "
                                                     "(one segment) on its states at every step")
    ap.add_argument("--onpolicy-weight", type=float, default=1.0, help="0 with --mix-store: the control (curriculum loss only)")
    ap.add_argument("--temperature", type=float, default=20.0)
    ap.add_argument("--eval-steps", default="2,4")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world(args.world)
    student, teacher = load_model(args.student), load_model(args.teacher).eval()
    cfg = student.config
    train = world.t2i_train()
    prompts = eval_prompts_subset(world, 50)
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    passes = [int(p) for p in args.passes.split(",")]
    steps_eval = [int(s) for s in args.eval_steps.split(",")]

    def score(tag):
        student.eval()
        r = t2i_sweep(student, world, prompts, steps_eval, [0.0], bootstrap=1000, seed=0, progress=False,
                      precision="auto", temperature=args.temperature, images_per_prompt=2)
        row = {"round": tag, **{f"steps_{t}": [round(r[f"steps_{t}.cfg_0"][k], 4) for k in ("score", "ci_low", "ci_high")]
                                for t in steps_eval}}
        print(json.dumps(row), flush=True)
        with open(out / "scores.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    store = load_store(Path(args.mix_store) / "t2i", "t2i") if args.mix_store else None
    score(0)
    for rnd in range(1, args.rounds + 1):
        t0 = time.time()
        rows = torch.randint(0, len(train["caption"]), (args.captions,), generator=g)
        caps, lens = train["caption"][rows].long(), train["caption_len"][rows].long()
        student.eval()
        states, targets, probs, index = collect(student, teacher, caps, lens, passes, args.student_steps, args.temperature,
                                  args.completion, g)
        t1 = time.time()
        student.train()
        losses = []
        for step in range(args.train_steps):
            pick = torch.randint(0, len(rows), (args.batch,), generator=g)
            s, x = states[pick], targets[pick]
            ids = t2i_sequences(caps[pick], lens[pick], image_state_ids(s, cfg), cfg)
            masked = s < 0
            logits = student.image_logits(ids)[masked]
            if args.targets == "soft":
                loss = soft_cross_entropy(logits, probs[pick][masked], index[pick][masked]).mean()
            else:
                loss = F.cross_entropy(logits.float(), x[masked])
            loss = args.onpolicy_weight * loss
            if store is not None:  # the curriculum's own states and targets beside the on-policy ones
                r = torch.randint(0, len(store["codes"]), (args.batch,), generator=g)
                t = torch.randint(0, store["probs"].shape[1], (args.batch,), generator=g)
                st, m, p, i = image_targets(store, r, t, 1)
                ids = t2i_sequences(store["caption"][r].long(), store["caption_len"][r].long(), image_state_ids(st, cfg), cfg)
                loss = loss + (soft_cross_entropy(student.image_logits(ids), p, i) * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        print(f"round {rnd}: collect {t1 - t0:.0f} s, train {time.time() - t1:.0f} s, "
              f"loss {sum(losses[:10]) / 10:.3f} -> {sum(losses[-10:]) / 10:.3f}", flush=True)
        save_model(student, out / "model.safetensors")
        score(rnd)


if __name__ == "__main__":
    main()
