"""Data-parallel training with the same command: two CPU processes talking over gloo, as on two GPUs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_ddp_run_finishes(tmp_path):
    "`--strategy ddp --devices 2 --accelerator cpu` trains a few steps in 2 processes, both finish, rank 0 checkpoints."
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE", "LOCAL_RANK")}
    env.update(TEXT_RECOGNIZER_SMOKE="1", OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).parent / "text-recognizer"), "train", "--data-class", "SyntheticLines",
               "--model-class", "LineCNN", "--preset", "cpu", "--batch-size", "4", "--num-workers", "0",
               "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu", "--max-epochs", "1",
               "--limit-train-batches", "3", "--limit-val-batches", "1", "--limit-test-batches", "1",
               "--no-wandb", "--output-dir", str(run_dir)]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "rank 0/2 finished at step 3" in output and "rank 1/2 finished at step 3" in output, output[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 3
    checkpoint = torch.load(Path(summary["last_checkpoint"]), map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert "test/cer" in summary["test_metrics"]
