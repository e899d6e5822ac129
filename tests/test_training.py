"""The training loop for real: every model on its DataModule, memorization, resume after a kill, W&B offline.

All runs are on the CPU in smoke mode (small synthetic data). Runs that must survive being killed go
through the real `text-recognizer train` command in a subprocess; the others call `training.train`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from text_recognizer import training
from text_recognizer.models.registry import MODEL_CLASSES, model_class

ROOT = Path(__file__).resolve().parents[1]
CLI = [str(Path(sys.executable).parent / "text-recognizer"), "train"]


@pytest.fixture(autouse=True)
def smoke_and_quiet(monkeypatch, tmp_path):
    "Smoke mode, one CPU thread (two processes per core would thrash), no W&B credentials, scratch home."
    monkeypatch.setenv("TEXT_RECOGNIZER_SMOKE", "1")
    for name in ("WANDB_API_KEY", "WANDB_MODE", "LOCAL_RANK", training.RUN_DIR_ENV, training.RESUME_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_for(data_class: str, model_class: str, output_dir: Path, preset: str | None = "cpu", **trainer) -> dict:
    "A run config: no W&B, no loader workers, small batches."
    config = training.merge(training.DEFAULT_CONFIG, {
        "data_class": data_class, "model_class": model_class, "preset": preset,
        "data_args": {"batch_size": 4, "num_workers": 0}, "output_dir": str(output_dir),
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
                    **trainer},
        "wandb": {"enabled": False}})
    return config


# --------------------------------------------------------------------------- every model on its data
FAST_LOOPS = [  # (DataModule, model, preset)
    ("MNIST", "MLP", "cpu"),
    ("SyntheticCharacters", "CNN", "cpu"),
    ("SyntheticCharacters", "ResNetClassifier", "cpu"),
    ("SyntheticLines", "LineCNN", "cpu"),
    ("SyntheticLines", "LineCNNLSTM", "tiny"),
    ("SyntheticLines", "LineCNNTransformer", "tiny"),
    ("SyntheticParagraphs", "ResnetTransformer", "tiny"),
]


@pytest.mark.parametrize(("data_class", "model_class", "preset"), FAST_LOOPS, ids=[f"{d}-{m}" for d, m, _ in FAST_LOOPS])
def test_fast_loop(tmp_path, data_class, model_class, preset):
    "One batch of training, validation and test goes through (Lightning's fast_dev_run)."
    summary = training.train(config_for(data_class, model_class, tmp_path, preset, fast_dev_run=True))
    assert summary["global_step"] == 1
    metric = "test/acc" if summary["monitor"] == "val/acc" else "test/cer"
    assert metric in summary["test_metrics"], summary["test_metrics"]
    assert torch.isfinite(torch.tensor(summary["test_metrics"]["test/loss"]))


class SlowClock:
    "Stands in for the `time` module of Lightning's Timer: each reading is `step` seconds after the last."

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


def test_a_run_that_finishes_within_max_time_is_not_reported_as_stopped_by_it(tmp_path, monkeypatch):
    "Testing the best checkpoint restores the Timer's saved time; the summary must not count it twice."
    import lightning.pytorch.callbacks.timer as timer_module

    clock = SlowClock(250.0)  # about 40 minutes of Timer time for the run: under max_time, but not counted twice
    monkeypatch.setattr(timer_module, "time", clock)
    config = config_for("SyntheticLines", "LineCNN", tmp_path, "cpu", max_epochs=2, max_time="00:01:00:00",
                        limit_train_batches=2, limit_val_batches=1, limit_test_batches=1)
    summary = training.train(config)
    assert summary["global_step"] == 4 and summary["test_metrics"]
    assert summary["time_limit_reached"] is False
    assert "stopped at the time limit" not in training.format_summary(summary)


# --------------------------------------------------------------------------- memorization
def memorize(tmp_path, data_class, model_class, preset, steps, batch_size, lr, **model_args) -> float:
    "Train on a single batch for `steps` steps; return the last training loss."
    config = config_for(data_class, model_class, tmp_path, preset, overfit_batches=1, max_steps=steps, max_epochs=-1,
                        check_val_every_n_epoch=10_000, log_every_n_steps=1, num_sanity_val_steps=0)
    config["data_args"]["batch_size"] = batch_size
    config["model_args"] = {"dropout": 0.0, **model_args}
    config["lit_args"] = {"optimizer": "adamw", "lr": lr}
    config["test"] = False
    summary = training.train(config)
    assert summary["global_step"] == steps
    return summary["metrics"]["train/loss"]


# The thresholds: a model or loss that cannot learn stays near its starting loss: CTC (mean per target
# character) starts near 20 and sits on the "all blank" plateau near 3; cross-entropy starts near
# log(84) = 4.4 per token. Seen here: the line CNN reaches 0.06 at step 80, the tiny ResNet-Transformer 0.09
# at step 120 (one CPU thread, seed 0).
LINE_STEPS, LINE_THRESHOLD = 100, 0.5
PARAGRAPH_STEPS, PARAGRAPH_THRESHOLD = 150, 0.5


def test_line_ctc_model_memorizes_a_batch(tmp_path):
    "The line CNN drives the CTC loss of one batch of 4 synthetic lines below LINE_THRESHOLD in LINE_STEPS steps."
    loss = memorize(tmp_path, "SyntheticLines", "LineCNN", None, LINE_STEPS, batch_size=4, lr=3e-3)
    print(f"CTC loss after {LINE_STEPS} steps: {loss:.3f}")
    assert loss < LINE_THRESHOLD


def test_paragraph_transformer_memorizes_a_batch(tmp_path):
    "The ResNet-Transformer (tiny) drives the teacher-forced loss of one paragraph below PARAGRAPH_THRESHOLD."
    loss = memorize(tmp_path, "SyntheticParagraphs", "ResnetTransformer", "tiny", PARAGRAPH_STEPS, batch_size=1, lr=3e-3)
    print(f"Transformer loss after {PARAGRAPH_STEPS} steps: {loss:.3f}")
    assert loss < PARAGRAPH_THRESHOLD


# --------------------------------------------------------------------------- resume after a kill
def line_command(output_dir: Path, *extra: str) -> list[str]:
    return CLI + ["--data-class", "SyntheticLines", "--model-class", "LineCNN", "--preset", "cpu", "--batch-size", "4",
                  "--num-workers", "0", "--limit-train-batches", "2", "--limit-val-batches", "1", "--no-test",
                  "--threads", "1", "--output-dir", str(output_dir), *extra]


def wait_for_checkpoint(path: Path, process: subprocess.Popen, timeout: float = 120) -> dict:
    "The checkpoint at `path` once it is complete (loadable), while `process` still runs."
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        if path.exists():
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001, S110 - still being written
                pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at {path} after {timeout} s")


def test_killed_run_resumes_where_it_stopped(tmp_path):
    "A run killed (SIGKILL, as a preempted machine) resumes from last.ckpt; the step counter continues."
    run_dir = tmp_path / "run"
    env = {**os.environ, "TEXT_RECOGNIZER_SMOKE": "1"}
    first = subprocess.Popen(line_command(run_dir, "--max-epochs", "10000", "--no-wandb"), env=env, cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        checkpoint = wait_for_checkpoint(run_dir / "checkpoints" / "last.ckpt", first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    stopped_at = checkpoint["global_step"]
    assert stopped_at >= 2 and first.returncode == -signal.SIGKILL

    # the same command with --resume last; W&B on (offline: no key in the environment)
    result = subprocess.run(line_command(run_dir, "--max-epochs", "10000", "--max-steps", str(stopped_at + 4),
                                         "--resume", "last", "--wandb"),
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["start_step"] == stopped_at and summary["global_step"] == stopped_at + 4
    assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in result.stdout
    # the offline W&B run is there, with the sync hint
    assert summary["wandb_mode"] == "offline" and Path(summary["wandb_run_dir"]).is_dir()
    assert f"wandb sync {summary['wandb_run_dir']}" in result.stdout
    assert list(Path(summary["wandb_run_dir"]).glob("run-*.wandb"))
    # the best checkpoint rebuilds its model from the checkpoint alone
    lit = training.load_checkpoint(summary["best_checkpoint"])
    x = torch.rand(2, 1, 40, 640)
    assert len(lit.decode(x)) == 2 and type(lit.model).__name__ == "LineCNN"


def test_resume_from_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code = training.main(["--recipe", "line_ctc", "--resume", str(tmp_path / "nope.ckpt"), "--no-wandb"])
    assert code == 2
    assert "no such checkpoint file" in capsys.readouterr().err


# --------------------------------------------------------------------------- the command line
def test_recipes_resolve_and_list(capsys):
    assert training.main(["--list-recipes"]) == 0
    listed = capsys.readouterr().out
    for name in training.RECIPES:
        assert name in listed
        config, _ = training.resolve_config(["--recipe", name])
        assert config["data_class"] and config["model_class"] in MODEL_CLASSES
    assert training.main(["--recipe", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_print_config_shows_the_layers(tmp_path, capsys):
    override = tmp_path / "override.json"
    override.write_text(json.dumps({"trainer": {"max_epochs": 2}, "lit_args": {"lr": 0.01}}))
    assert training.main(["--recipe", "line_ctc", "--config", str(override), "--lr", "0.02", "--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["max_epochs"] == 2 and config["lit_args"]["lr"] == 0.02
    assert config["model_class"] == "LineCNNLSTM"
    assert config["model_args"]["lstm_dim"] == 96 and config["lit_args"]["pct_start"] == 0.2  # resolved: preset, recipe


def test_help_lists_each_class_arguments(capsys):
    "Issue 17: a model's, DataModule's and Lightning module's own arguments, with defaults, from their signatures."
    with pytest.raises(SystemExit):
        training.main(["--model-class", "ResnetTransformer", "--help"])
    shown = capsys.readouterr().out
    words = " ".join(shown.split())  # argparse wraps the help to the terminal's width
    assert "ResnetTransformer arguments" in shown and "--model.tf_dim VALUE width of the Transformer" in words
    assert "(default: 256)" in words
    assert "--lit.lr VALUE" in shown and "the learning rate" in shown and "--data.batch_size VALUE" in shown
    config, _ = training.resolve_config(["--model-class", "ResnetTransformer", "--model.tf_dim", "64"])
    assert config["model_args"] == {"tf_dim": 64}


# --------------------------------------------------------------------------- the sweep
def test_sweep_config_is_valid_and_runnable(tmp_path):
    path = tmp_path / "sweep.yaml"
    assert training.main(["--write-sweep", str(path)]) == 0
    sweep = yaml.safe_load(path.read_text())
    assert training.check_sweep(sweep) == []
    assert sweep["metric"] == {"name": "val/cer", "goal": "minimize"} and "${args}" in sweep["command"]
    try:
        import sweeps  # W&B's own schema check, with the wandb[sweeps] extra
    except ImportError:
        sweeps = None
    if sweeps is not None:
        assert sweeps.schema_violations_from_proposed_config(sweep) == []
    # the flags the agent passes are accepted by the command, and reach the run config
    flags = [f"--{name}={spec['values'][-1] if 'values' in spec else spec['max']}" for name, spec in sweep["parameters"].items()]
    config, _ = training.resolve_config(["--recipe", "line_ctc", *flags])
    assert config["lit_args"]["lr"] == sweep["parameters"]["lit.lr"]["max"]
    assert config["model_args"]["conv_dims"] == [16, 32, 64, 128]


def test_a_broken_sweep_is_refused(tmp_path):
    broken = training.merge(training.LINE_SWEEP, {"parameters": {"model.widht": {"values": [1, 2]}}})
    with pytest.raises(ValueError, match="no hyperparameter 'widht'"):
        training.write_sweep(tmp_path / "sweep.yaml", broken)


# --------------------------------------------------------------------------- fine-tuning: --init-from
SHIPPED = ROOT / "text_recognizer" / "artifacts" / "paragraph_text_recognizer"


class FirstWeights(L.Callback):
    "Keeps a copy of the model's weights as training starts, before any step."

    def on_train_start(self, trainer, lit):
        self.weights = {key: value.detach().clone() for key, value in lit.model.state_dict().items()}


def test_init_from_a_checkpoint_loads_exactly_its_weights(tmp_path):
    "A new run (other seed, fresh optimizer, step 0) starts from the checkpoint's model tensors, all of them."
    first = config_for("SyntheticLines", "LineCNNLSTM", tmp_path / "first", "tiny", max_steps=2, limit_train_batches=2,
                       limit_val_batches=1, num_sanity_val_steps=0)
    first["test"] = False
    checkpoint = training.train(first)["last_checkpoint"]
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]

    second = config_for("SyntheticLines", "LineCNNLSTM", tmp_path / "second", "tiny", max_steps=1, limit_train_batches=1,
                        limit_val_batches=0, num_sanity_val_steps=0)
    second.update(test=False, seed=1, init_from=checkpoint)
    seen = FirstWeights()
    summary = training.train(second, extra_callbacks=[seen])
    assert summary["start_step"] == 0 and summary["init_from"] == checkpoint
    assert set(seen.weights) == {key[len("model."):] for key in source if key.startswith("model.")}
    assert all(torch.equal(value, source["model." + key]) for key, value in seen.weights.items())
    assert yaml.safe_load((tmp_path / "second" / "config.yaml").read_text())["init_from"] == checkpoint


def test_init_from_the_shipped_artifact_loads_the_torchscript_weights(tmp_path):
    "The staged folder's TorchScript tensors land in the eager model under their eager names."
    scripted = torch.jit.load(str(SHIPPED / "model.pt"), map_location="cpu").state_dict()
    config = config_for("SyntheticLines", "LineCNNLSTM", tmp_path, None, fast_dev_run=True)
    config.update(test=False, init_from=str(SHIPPED))
    seen = FirstWeights()
    training.train(config, extra_callbacks=[seen])
    assert len(seen.weights) == len(scripted)
    assert all(torch.equal(value, scripted["model." + key]) for key, value in seen.weights.items())


def test_init_from_a_mismatched_architecture_is_refused(tmp_path, capsys):
    base = ["--data-class", "SyntheticLines", "--model-class", "LineCNNLSTM", "--no-wandb", "--num-workers", "0",
            "--output-dir", str(tmp_path / "run")]
    assert training.main([*base, "--preset", "tiny", "--init-from", str(SHIPPED)]) == 2
    error = capsys.readouterr().err
    assert "the architecture does not match: the file holds a LineCNNLSTM" in error and "of another shape" in error
    assert training.main([*base, "--init-from", str(tmp_path / "nope.ckpt")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    from text_recognizer.models.utils import LINES_DATA_CONFIG, from_preset

    model = from_preset(model_class("LineCNN"), LINES_DATA_CONFIG)
    with pytest.raises(training.InitFromError, match=r"tensor\(s\) missing, \d+ unexpected"):
        training.load_init_weights(model, SHIPPED)


# --------------------------------------------------------------------------- model soups
def test_a_soup_of_fine_tunes_stages_and_trains_like_a_run(tmp_path):
    "`text-recognizer average` (the real command) writes the mean weights as a run that stage and --init-from take."
    def run(name: str, seed: int, init_from: str | None = None) -> str:
        config = config_for("SyntheticLines", "LineCNNLSTM", tmp_path / name, "tiny", max_steps=2, limit_train_batches=2,
                            limit_val_batches=1, num_sanity_val_steps=0)
        config.update(test=False, seed=seed, init_from=init_from)
        return training.train(config)["last_checkpoint"]

    start = run("start", 0)
    members = [run(f"fine{seed}", seed, init_from=start) for seed in (1, 2)]
    cli = [str(Path(sys.executable).parent / "text-recognizer"), "average"]
    done = subprocess.run([*cli, *members, "--output-dir", str(tmp_path / "soup")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    states = [torch.load(m, map_location="cpu", weights_only=True)["state_dict"] for m in members]
    mean = {k: (states[0][k] + states[1][k]) / 2 for k, v in states[0].items() if v.is_floating_point()}
    assert any(not torch.equal(states[0][k], states[1][k]) for k in mean)  # the members differ

    from text_recognizer.registry import stage

    staged = stage(tmp_path / "soup", tmp_path / "artifact", use_wandb=False, onnx=False)
    scripted = torch.jit.load(str(tmp_path / "artifact" / "model.pt"), map_location="cpu").state_dict()
    assert all(torch.allclose(scripted[k], v, atol=1e-6) for k, v in mean.items())
    config = json.loads((tmp_path / "artifact" / "config.json").read_text())
    assert config["training"]["command"].startswith("text-recognizer average ") and staged["chosen"]["how"] == "summary.json"
    assert [m["path"] for m in yaml.safe_load((tmp_path / "soup" / "config.yaml").read_text())["average_of"]] == members

    seen = FirstWeights()  # a soup is a starting point like any checkpoint
    again = config_for("SyntheticLines", "LineCNNLSTM", tmp_path / "again", "tiny", max_steps=1, limit_train_batches=1,
                       limit_val_batches=0, num_sanity_val_steps=0)
    again.update(test=False, init_from=str(tmp_path / "soup" / "checkpoints" / "average.ckpt"))
    training.train(again, extra_callbacks=[seen])
    assert all(torch.allclose(seen.weights[k[len("model."):]], v) for k, v in mean.items())

    other = config_for("SyntheticLines", "LineCNN", tmp_path / "other", "cpu", max_steps=1, limit_train_batches=1,
                       limit_val_batches=1, num_sanity_val_steps=0)
    other["test"] = False
    refused = subprocess.run([*cli, members[0], training.train(other)["last_checkpoint"], "--output-dir",
                              str(tmp_path / "bad")], capture_output=True, text=True)
    assert refused.returncode == 2 and "average one model only" in refused.stderr and not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- fine-tuning: feedback lines
def write_feedback(folder: Path, examples: list[tuple]) -> Path:
    "A folder like monitoring.export_flagged_dataset writes, from (PIL image, text) pairs."
    (folder / "images").mkdir(parents=True)
    rows = []
    for k, (image, text) in enumerate(examples):
        image.save(folder / "images" / f"{k}.png")
        rows.append(json.dumps({"image": f"images/{k}.png", "text": text}))
    (folder / "labels.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_feedback_lines_join_the_training_split_only(tmp_path):
    from text_recognizer.data.modules import SyntheticLines
    from text_recognizer.data.synthetic import render_line, render_paragraph
    from text_recognizer.metadata import indices_to_text

    texts = ["a corrected line", "another one"]
    folder = write_feedback(tmp_path / "lines", [(render_line(t, seed=k), t) for k, t in enumerate(texts)])
    sizes = dict(batch_size=4, num_workers=0, num_train=4, num_val=4, num_test=4)
    mixed, plain = SyntheticLines(**sizes, feedback_dir=folder, feedback_repeat=3), SyntheticLines(**sizes)
    for module in (mixed, plain):
        module.setup()
    assert len(mixed.data_train) == 4 + 2 * 3 and mixed.feedback_report["lines"] == 2
    read = [indices_to_text([i for i in mixed.data_train[k][1].tolist() if i > 3]) for k in range(4, 10)]
    assert read == texts * 3
    for split in ("data_val", "data_test"):
        assert len(getattr(mixed, split)) == 4
        assert torch.equal(getattr(mixed, split)[3][0], getattr(plain, split)[3][0])

    # pages are cut by the segmenter handed in; a page whose line count differs is skipped and reported
    pages = write_feedback(tmp_path / "pages", [(render_paragraph(["one", "two"], seed=0), "one\ntwo")] * 2)
    halves = SyntheticLines(**sizes, feedback_dir=pages, feedback_repeat=1,
                            feedback_segmenter=lambda image: [(0, 0, image.width, image.height // 2),
                                                              (0, image.height // 2, image.width, image.height)])
    assert halves.feedback_report["lines"] == 4 and halves.feedback_report["skipped"] == []
    whole = SyntheticLines(**sizes, feedback_dir=pages, feedback_segmenter=lambda image: [(0, 0, *image.size)])
    assert whole.feedback_report["used"] == 0 and len(whole.feedback_report["skipped"]) == 2


def test_bad_feedback_folders_are_clear_errors(tmp_path, capsys):
    from text_recognizer.data.modules import FeedbackDatasetError, SyntheticLines
    from text_recognizer.data.synthetic import render_line

    line = render_line("hello", seed=0)
    unreadable = write_feedback(tmp_path / "unreadable", [(line, "hello")])
    (unreadable / "images" / "0.png").write_bytes(b"not an image")
    missing_image = write_feedback(tmp_path / "missing-image", [(line, "hello")])
    (missing_image / "images" / "0.png").unlink()
    not_json = write_feedback(tmp_path / "not-json", [(line, "hello")])
    (not_json / "labels.jsonl").write_text("{'image': 'images/0.png'}\n")
    cases = [(tmp_path / "empty", {}, "labels.jsonl not found"),
             (write_feedback(tmp_path / "vocabulary", [(line, "héllo")]), {}, "not in the vocabulary"),
             (unreadable, {}, "cannot read the image"),
             (missing_image, {}, "cannot read the image"),
             (not_json, {}, 'each line must be {"image"'),
             (write_feedback(tmp_path / "page", [(line, "two\nlines")]), {}, "is a page; give a segmenter"),
             (missing_image, {"feedback_segmenter": "text_recognizer.nowhere:cut"}, "cannot load the segmenter")]
    for folder, kwargs, message in cases:
        with pytest.raises(FeedbackDatasetError, match=message):
            SyntheticLines(num_workers=0, feedback_dir=folder, **kwargs)
    # the command line says the same, and stops before training
    argv = ["--data-class", "SyntheticLines", "--model-class", "LineCNN", "--preset", "cpu", "--no-wandb",
            "--output-dir", str(tmp_path / "run"), "--data.feedback_dir", str(unreadable)]
    assert training.main(argv) == 2
    assert "cannot read the image" in capsys.readouterr().err


def test_last_checkpoint_holds_the_final_weights_even_when_the_last_validation_is_not_a_best_one(tmp_path):
    "Lightning rewrites last.ckpt only in a step that saved a best checkpoint; `fit` saves the final weights anyway."
    config = config_for("SyntheticLines", "LineCNNLSTM", tmp_path / "run", "tiny", max_steps=5, limit_train_batches=5,
                        val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0)
    config["test"] = False
    summary = training.train(config)
    last = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    assert summary["global_step"] == 5 and last["global_step"] == 5 and best["global_step"] < 5
