"""RESULTS.md, metrics/headline.json and the README's headline table, written from the evaluate
stage's metrics: no figure in them is typed by hand.

    text = results_markdown(metrics)        # metrics/evaluate.json as a dict, with its `machine` record
    headline(metrics)                       # the few figures DVC shows as metrics (`dvc metrics show`, `dvc exp show`)
    python -m showo_turbo.evaluation.results --readme README.md   # the README's table, from metrics/evaluate.json
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from ..model.showo import hardware
from ..pipeline.errors import FileFormatError
from ..pipeline.io import atomic_path, load_json

README_BEGIN = "<!-- headline:begin (written by `python -m showo_turbo.evaluation.results --readme README.md`) -->"
README_END = "<!-- headline:end -->"


def machine(device: str, precision: str) -> dict:
    """Where the figures were measured: CPU model and cores, GPU, torch, the resolved precision, the date."""
    hw = hardware()
    return {"cpu": hw["cpu"] or platform.processor(), "cores": os.cpu_count(), "gpu": hw["gpu"] if device == "cuda" else None,
            "torch": hw["torch"], "precision": precision, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


def measured_on(m: dict) -> str:
    """Where and when, from evaluate.json's `machine` record (which runs before 2026-12-07 lack)."""
    if not m:
        return "by a run that kept no machine record"
    where = m.get("gpu") or f"{m['cpu']}, {m['cores']} cores"
    return f"on {m['date']}: {where}, torch {m['torch']}, {m['precision']}"


def upstream_minutes(metrics_dir: str | Path, stages: list[str]) -> dict[str, float | None]:
    """Each earlier stage's wall time, as its runner recorded it in its metrics file (`stage_minutes`;
    None where the file or the record is missing). `stages`: world, teacher, trajectories, distill@<name>."""
    out = {}
    for stage in stages:
        path = Path(metrics_dir) / (f"distill/{stage.split('@', 1)[1]}.json" if stage.startswith("distill@") else f"{stage}.json")
        out[stage] = load_json(path).get("stage_minutes") if path.is_file() else None
    return out


def _step_columns(t2i: dict) -> tuple[list[int], str]:
    """The step counts of the T2I rows, ascending, and their Markdown header cells."""
    steps = sorted({int(k.split("_")[1]) for rows in t2i.values() for k in rows})
    return steps, " | ".join(f"{t} step{'s' if t > 1 else ''}" for t in steps)


def _cell(row: dict, ref: dict | None) -> str:
    if "score" not in row:
        return f"{row['seconds_per_image']:.4f} s"
    out = f"{row['score']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    if ref is not None and ref.get("score"):
        out += f" {row['score'] / ref['score']:.2f}x, {ref['seconds_per_image'] / row['seconds_per_image']:.1f}x faster"
    return out


def results_markdown(metrics: dict) -> str:
    """The evaluate stage's tables as Markdown: T2I (every arm x step count: score, 95% interval, and
    for the students the score ratio and speed-up against teacher_cfg at its most steps) and MMU."""
    t2i, mmu, m = metrics["t2i"], metrics["mmu"], metrics.get("machine", {})
    steps, header = _step_columns(t2i)
    most = f"steps_{steps[-1]}"
    ref = t2i["teacher_cfg"][most]
    lines = ["# Results", "",
             f"Written from `metrics/evaluate.json`, measured {measured_on(m)}. Rerun with `bash scripts/repro.sh`.", "",
             "## Text to image", "",
             f"Score with its 95% interval; for the students, the score as a fraction of teacher_cfg at {steps[-1]} "
             "steps and the speed-up in seconds per image (batched).", "",
             f"| arm | {header} |", "|---" * (len(steps) + 1) + "|"]
    for arm, rows in t2i.items():
        cells = [_cell(rows[f"steps_{t}"], ref if arm.startswith("turbo") else None) if f"steps_{t}" in rows else ""
                 for t in steps]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "## Image understanding (held-out questions)", "",
              "| arm | accuracy | passes per token | passes per token (whole block) | tokens/s batched | tokens/s batch 1 |",
              "|---|---|---|---|---|---|"]
    for arm, r in mmu.items():
        lines.append(f"| {arm} | {r['accuracy']:.3f} | {r['forwards_per_token']:.3f} | {r['forwards_per_token_block']:.3f} | "
                     f"{r['tokens_per_second']:.1f} | {r['tokens_per_second_batch1']:.1f} |")
    kinds = sorted(k[len("forwards_per_token_"):] for k in next(iter(mmu.values()))
                   if k.startswith("forwards_per_token_") and k != "forwards_per_token_block")
    if kinds:
        ar = mmu.get("teacher_ar", {})
        lines += ["", "### Per question type", "",
                  "Batch-1 speed on the first questions of each type, against the teacher's AR on the same questions; "
                  "CIDEr-D where the items carry reference captions.", "",
                  "| arm | type | accuracy | CIDEr-D | passes per token | tokens/s batch 1 | vs teacher_ar |", "|---|---|---|---|---|---|---|"]
        for arm, r in mmu.items():
            for k in kinds:
                b1, ref = r.get(f"tokens_per_second_batch1_{k}"), ar.get(f"tokens_per_second_batch1_{k}")
                cider = r.get(f"cider_{k}")
                lines.append(f"| {arm} | {k} | {r[f'accuracy_{k}']:.3f} | {'' if cider is None else f'{cider:.3f}'} | "
                             f"{r[f'forwards_per_token_{k}']:.3f} | {'' if b1 is None else f'{b1:.1f}'} | "
                             f"{f'{b1 / ref:.2f}x' if b1 and ref else ''} |")
    minutes = metrics.get("minutes_per_stage")
    if minutes:
        known = [m for m in minutes.values() if m is not None]
        lines += ["", "## Minutes per stage", "",
                  "Wall time of each stage before this one in the run that produced its inputs (the evaluate stage's "
                  "own is `stage_minutes` in metrics/evaluate.json).", "",
                  "| " + " | ".join(minutes) + " | sum |", "|---" * (len(minutes) + 1) + "|",
                  "| " + " | ".join("" if m is None else f"{m:.1f}" for m in minutes.values()) + f" | {sum(known):.1f} |"]
    return "\n".join(lines) + "\n"


def readme_table(metrics: dict) -> str:
    """The README's headline: each arm's score at every step count (students without CFG), and the
    text decoders' passes per token and batch-1 speed against the teacher's AR."""
    t2i, mmu, m = metrics["t2i"], metrics["mmu"], metrics.get("machine", {})
    steps, header = _step_columns(t2i)
    lines = [f"| T2I score | {header} |", "|---" * (len(steps) + 1) + "|"]
    for arm, rows in t2i.items():
        cells = [f"{rows[f'steps_{t}']['score']:.3f}" if rows.get(f"steps_{t}", {}).get("score") is not None else "" for t in steps]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    ar = mmu["teacher_ar"]
    lines += ["", "| text (held-out questions) | accuracy | passes per token | tokens/s at batch 1, vs teacher AR |", "|---|---|---|---|"]
    for arm, r in mmu.items():
        lines.append(f"| {arm} | {r['accuracy']:.3f} | {r['forwards_per_token']:.3f} | "
                     f"{r['tokens_per_second_batch1'] / ar['tokens_per_second_batch1']:.2f}x |")
    lines += ["", f"Measured {measured_on(m)}."]
    return "\n".join(lines)


def write_readme_table(metrics: dict, readme: str | Path) -> Path:
    """Replace the block between README_BEGIN and README_END in `readme` with `readme_table(metrics)`."""
    readme = Path(readme)
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise FileFormatError(f"{readme}: no headline block ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    with atomic_path(readme) as tmp:
        tmp.write_text(f"{head}{README_BEGIN}\n{readme_table(metrics)}\n{README_END}{tail}")
    return readme


def headline(metrics: dict) -> dict:
    """The figures `dvc metrics show` and `dvc exp show` list, few enough for a terminal: teacher_cfg's
    score at the most steps, the curriculum student's (`turbo`) at every other step count, and its
    Jacobi passes per token and batch-1 text speed against the teacher's AR. The full record stays in
    metrics/evaluate.json."""
    t2i, mmu = metrics["t2i"], metrics["mmu"]
    steps = sorted(int(k.split("_")[1]) for k in t2i["teacher_cfg"])
    def score(arm: str, t: int) -> float | None:  # None: a world without a scorer
        s = t2i[arm][f"steps_{t}"].get("score")
        return None if s is None else round(s, 4)
    out = {f"teacher_cfg@{steps[-1]}": score("teacher_cfg", steps[-1]), **{f"turbo@{t}": score("turbo", t) for t in steps[:-1]}}
    out["passes/token"] = round(mmu["turbo_jacobi"]["forwards_per_token"], 3)
    out["text_speedup_b1"] = round(mmu["turbo_jacobi"]["tokens_per_second_batch1"] / mmu["teacher_ar"]["tokens_per_second_batch1"], 3)
    return out


def write_results(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(results_markdown(metrics))
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Write the README's headline table from the evaluate stage's metrics.")
    ap.add_argument("--metrics", default="metrics/evaluate.json")
    ap.add_argument("--readme", default="README.md")
    args = ap.parse_args(argv)
    write_readme_table(load_json(args.metrics), args.readme)
    return 0


if __name__ == "__main__":
    import sys

    from ..pipeline.errors import run_cli
    sys.exit(run_cli(main, "showo_turbo.evaluation.results"))
