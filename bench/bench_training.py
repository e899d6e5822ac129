"""Training speed of every model on its DataModule, and how long the line model takes to reach 10% CER.

    python bench/bench_training.py                      # samples/s per model, a few minutes
    python bench/bench_training.py --line-cer           # also: wall time to val/cer <= 0.10 (long)
    python bench/bench_training.py --only LineCNN --steps 30
    python bench/bench_training.py --skip-throughput --record-run runs/RUN   # after `make train`: its CER over time

Throughput: each model trains for `--steps` optimizer steps on its DataModule (CPU, `--threads`
torch threads, the DataModule's default loader workers, validation off); samples/s is measured by
`callbacks.TrainingSpeed` after 3 warm-up batches, data loading included. The line-CER run is the
`line_ctc` recipe with frequent validation, stopped as soon as val/cer <= the target (or at the time
limit). Results go to bench/results/training.json with the command, the machine and the date.
"""

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, command_line, machine, write_json

RESULTS = ROOT / "bench" / "results" / "training.json"

# (DataModule, model, preset, batch size)
MODELS = [
    ("MNIST", "MLP", "cpu", 128),
    ("SyntheticCharacters", "CNN", "cpu", 128),
    ("SyntheticCharacters", "ResNetClassifier", "cpu", 128),
    ("SyntheticLines", "LineCNN", "cpu", 32),
    ("SyntheticLines", "LineCNNLSTM", "tiny", 32),
    ("SyntheticLines", "LineCNNTransformer", "tiny", 32),
    ("SyntheticParagraphs", "ResnetTransformer", "cpu", 8),
]


def machine_versions() -> dict:
    "What ran the benchmark: CPU model, cores, load (unrounded), library versions."
    import lightning

    return machine(load_average_at_start=list(os.getloadavg()), torch=torch.__version__,
                   lightning=lightning.__version__)


def base_config(training, data_class, model_class, preset, batch_size, output_dir, threads) -> dict:
    return training.merge(training.DEFAULT_CONFIG, {
        "data_class": data_class, "model_class": model_class, "preset": preset,
        "data_args": {"batch_size": batch_size}, "output_dir": str(output_dir), "threads": threads,
        "test": False, "wandb": {"enabled": False},
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False}})


def throughput(training, steps: int, threads: int, only: list[str] | None, scratch: Path) -> list[dict]:
    "Training samples/s of each model."
    rows = []
    for data_class, model_class, preset, batch_size in MODELS:
        if only and model_class not in only:
            continue
        config = base_config(training, data_class, model_class, preset, batch_size, scratch / model_class, threads)
        config["trainer"].update(max_steps=steps, max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0,
                                 log_every_n_steps=steps)
        started = time.time()
        summary = training.train(config)
        row = {"data": data_class, "model": model_class, "preset": preset, "batch_size": batch_size,
               "parameters": summary.get("parameters"), "steps": steps,
               "samples_per_s": round(summary["samples_per_s"], 1), "wall_s": round(time.time() - started, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def line_cer(training, target: float, max_minutes: float, threads: int, scratch: Path) -> dict:
    "Wall time for the line_ctc recipe to reach val/cer <= target."
    import lightning as L

    config, _ = training.resolve_config(["--recipe", "line_ctc"])
    config.update(output_dir=str(scratch / "line_cer"), threads=threads, test=False)
    config["wandb"]["enabled"] = False
    config["trainer"].update(accelerator="cpu", devices=1, val_check_interval=0.25, max_time={"minutes": max_minutes})
    curve, started = [], time.time()

    class StopAtTarget(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            cer = trainer.callback_metrics.get("val/cer")
            if trainer.sanity_checking or cer is None:
                return
            curve.append({"seconds": round(time.time() - started, 1), "step": trainer.global_step,
                          "val_cer": round(float(cer), 4)})
            print(f"  {curve[-1]}", flush=True)
            if float(cer) <= target:
                trainer.should_stop = True

    summary = training.train(config, command="bench/bench_training.py --line-cer", extra_callbacks=[StopAtTarget()])
    reached = next((point for point in curve if point["val_cer"] <= target), None)
    return {"recipe": "line_ctc", "target_cer": target, "reached": reached is not None,
            "seconds_to_target": reached["seconds"] if reached else None,
            "steps_to_target": reached["step"] if reached else None,
            "best_val_cer": min((p["val_cer"] for p in curve), default=None),
            "total_seconds": round(time.time() - started, 1), "samples_per_s": round(summary["samples_per_s"], 1),
            "max_minutes": max_minutes, "curve": curve}


def recorded_run(run_dir: Path, load: str | None = None, target: float = 0.10) -> dict:
    "The figures of a finished `text-recognizer train` run (e.g. `make train`): time, CER, the val/cer curve."
    import csv

    import yaml

    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    found = sorted((run_dir / "logs").glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)  # the CSV logger's
    metrics_csv = Path(summary["metrics_csv"]) if summary.get("metrics_csv") else found[-1] if found else None
    rows = list(csv.DictReader(metrics_csv.open())) if metrics_csv and metrics_csv.is_file() else []
    pace = summary["seconds"] / max(summary["global_step"], 1)  # wall seconds per step, validation included
    curve = [{"step": int(r["step"]), "val_cer": round(float(r["val/cer"]), 4),
              "seconds_estimated": round(int(r["step"]) * pace)} for r in rows if r.get("val/cer")]
    reached = next((point for point in curve if point["val_cer"] <= target), None)
    data_args, trainer = config.get("data_args", {}), config.get("trainer", {})
    planned = (math.ceil(data_args["num_train"] / data_args["batch_size"]) * trainer.get("max_epochs", 1)
               if data_args.get("num_train") and data_args.get("batch_size") else None)
    return {"command": config.get("command"), "recipe": config.get("recipe"), "seconds": summary["seconds"],
            "global_step": summary["global_step"], "samples_per_s": round(summary["samples_per_s"], 1),
            "best_val_cer": summary["best_score"], "test_cer": summary["test_metrics"].get("test/cer"),
            "planned_steps": planned, "val_cer_curve": curve,
            # runs before the summary fix counted the Timer twice; a run that made every planned step was not cut short
            "time_limit_reached": bool(summary.get("time_limit_reached")) and not (planned and summary["global_step"] >= planned),
            "target_cer": target, "reached": reached is not None,
            "seconds_to_target_estimated": reached["seconds_estimated"] if reached else None,
            "steps_to_target": reached["step"] if reached else None,
            "batch_size": data_args.get("batch_size"), "num_train": data_args.get("num_train"),
            "note": "seconds_estimated: the step of each validation times the run's average wall seconds per step",
            "load_average": load, "machine": machine_versions()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per model for throughput")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--only", nargs="*", help="model names to measure (default: all)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--line-cer", action="store_true", help="also time the line model to the target CER (long)")
    parser.add_argument("--target-cer", type=float, default=0.10)
    parser.add_argument("--max-minutes", type=float, default=60)
    parser.add_argument("--scratch", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--record-run", type=Path, help="also record a finished run's folder (e.g. of `make train`)")
    parser.add_argument("--record-load", help="the load average seen during that run (a note)")
    args = parser.parse_args(argv)
    args.scratch = args.scratch or Path(tempfile.mkdtemp(prefix="bench-training-"))

    os.environ.pop("TEXT_RECOGNIZER_SMOKE", None)  # real data sizes
    from text_recognizer import training

    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    run = {"command": command_line("bench_training.py", argv),
           "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_versions(),
           "threads": args.threads}
    if not args.skip_throughput:
        results["throughput"] = {**run, "steps": args.steps, "results": throughput(training, args.steps, args.threads,
                                                                                    args.only, args.scratch)}
    if args.line_cer:
        results["line_cer"] = {**run, **line_cer(training, args.target_cer, args.max_minutes, args.threads, args.scratch)}
    if args.record_run:
        results["make_train"] = recorded_run(args.record_run, args.record_load, args.target_cer)
    write_json(args.output, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
