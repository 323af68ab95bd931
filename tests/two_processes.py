"""Launching a distill stage in two processes (shared by the stages' DDP tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path


def distill_two_processes(cwd: Path, params: Path, stage: str, out: str) -> dict:
    """`accelerate launch` of one distill stage in 2 processes with configs/accelerate-ddp.yaml (DDP through
    accelerate's torchrun launcher; without a GPU the processes train on the CPU, gloo); its report as a dict."""
    bin_dir = Path(sys.executable).parent
    report = cwd / f"report_{out}.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    config = Path(__file__).resolve().parents[1] / "configs" / "accelerate-ddp.yaml"  # the README's multi-GPU config
    res = subprocess.run([bin_dir / "accelerate", "launch", "--config_file", str(config), "--num_processes", "2",
                          "-m", "showo_turbo.training.distill",
                          "--params", str(params), "--stage", stage, "--out", out, "--report", str(report)],
                         cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return json.loads(report.read_text())
