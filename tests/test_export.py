"""Export and staging for real: TorchScript and ONNX files, parity, refusal, fresh processes, W&B offline.

The checkpoints are real Lightning checkpoints of the training command's own models (built by
`training.build` and saved by a Lightning Trainer); they are untrained, which keeps the tests
fast and leaves parity as meaningful as for a trained model.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from text_recognizer.export import (
    LineRecognizer,
    ParagraphRecognizer,
    ParityError,
    artifact_config,
    check_parity,
    export_checkpoint,
    export_recognizer,
    model_from_checkpoint,
    parity_batches,
    read_checkpoint,
    sha256_of,
    to_torchscript,
)
from text_recognizer.export import main as export_main
from text_recognizer.predictor import ParagraphTextRecognizer, decode_outputs, read_artifact_config

ONLY_TORCH = {**os.environ, "PYTHONPATH": ""}


def save_checkpoint(folder: Path, argv: list[str], names=("last.ckpt",)) -> Path:
    "Real Lightning checkpoints of the model a `text-recognizer train` command line would build."
    import lightning as L

    from text_recognizer.training import build, resolve_config

    config, _ = resolve_config([*argv, "--no-wandb"])
    torch.manual_seed(0)
    _, _, lit = build(config)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(lit)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in names:
        trainer.save_checkpoint(folder / "checkpoints" / name, weights_only=False)
    return folder / "checkpoints" / names[0]


@pytest.fixture(scope="module")
def line_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("run"), ["--recipe", "line_lstm", "--preset", "tiny"],
                           names=("epoch=000-step=5-cer=0.9000.ckpt", "epoch=001-step=9-cer=0.5000.ckpt", "last.ckpt"))


@pytest.fixture(scope="module")
def line_artifact(line_checkpoint, tmp_path_factory) -> Path:
    return export_checkpoint(line_checkpoint, tmp_path_factory.mktemp("artifacts") / "line", parity_images=6)


def test_the_same_weights_exported_twice_share_their_version(line_checkpoint, line_artifact, tmp_path):
    "The default version names the weights, not model.pt's bytes, which TorchScript does not write the same way twice."
    again = read_artifact_config(export_checkpoint(line_checkpoint, tmp_path / "again", parity_images=2))
    first = read_artifact_config(line_artifact)
    assert again["weights_sha256"] == first["weights_sha256"] and again["version"] == first["version"]
    other = torch.load(line_checkpoint, map_location="cpu", weights_only=True)
    name = next(k for k, v in other["state_dict"].items() if v.is_floating_point())
    other["state_dict"][name] = other["state_dict"][name] + 1e-3
    torch.save(other, tmp_path / "other.ckpt")
    changed = read_artifact_config(export_checkpoint(tmp_path / "other.ckpt", tmp_path / "changed", parity_images=2))
    assert changed["weights_sha256"] != first["weights_sha256"] and changed["version"] != first["version"]


def test_checkpoint_is_read_safely_and_rebuilt(line_checkpoint, tmp_path):
    model, spec = model_from_checkpoint(line_checkpoint)
    assert spec["model_class"] == "LineCNNLSTM" and spec["lit_class"] == "ctc" and not model.training
    state = torch.load(line_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(v, state[f"model.{k}"]) for k, v in model.state_dict().items())

    class Payload:  # anything outside tensors and plain values must be refused, never unpickled
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"state_dict": {}, "payload": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="weights_only"):
        read_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_artifact_is_complete_and_self_describing(line_artifact):
    assert sorted(p.name for p in line_artifact.iterdir()) == ["char_lm.tsv.gz", "config.json", "line_finder.onnx",
                                                               "line_finder.pt", "model.onnx", "model.pt"]
    # the reader, its finder and its language model, each with its sha256
    config = read_artifact_config(line_artifact)
    assert config["kind"] == "line_ctc" and config["vocabulary"][:4] == ["<B>", "<S>", "<E>", "<P>"]
    assert config["preprocessing"]["height"] == 40 and config["preprocessing"]["width"] == 640
    assert config["parity"]["passed"] and config["parity"]["images"] == 8  # a batch of 6, then 2 one by one
    assert config["parity"]["backends"] == ["eager", "torchscript", "onnx"]
    for name, info in config["files"].items():
        assert sha256_of(line_artifact / name) == info["sha256"]
    assert config["version"].endswith(config["weights_sha256"][:8])
    assert not [p for p in line_artifact.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    assert line_artifact.stat().st_mode & 0o777 == 0o755  # not mkdtemp's private 0700: containers must read it


def test_torchscript_loads_in_a_process_with_only_torch(line_artifact, line_checkpoint, tmp_path):
    x = torch.rand(3, 1, 40, 640)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        f"m = torch.jit.load({str(line_artifact / 'model.pt')!r})\n"
        f"indices, probabilities, entropy, log_probs = m(torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True))\n"
        f"torch.save(indices, {str(tmp_path / 'indices.pt')!r})\n"
        "mine = sorted(m for m in sys.modules if m.split('.')[0] in ('text_recognizer', 'lightning', 'onnxruntime'))\n"
        "assert not mine, mine\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=ONLY_TORCH)
    assert result.returncode == 0, result.stderr[-2000:]
    model, _ = model_from_checkpoint(line_checkpoint)
    with torch.no_grad():
        expected = LineRecognizer(model)(x)[0]
    assert torch.equal(torch.load(tmp_path / "indices.pt", weights_only=True), expected)


def test_onnx_runs_in_a_process_with_only_onnxruntime(line_artifact, tmp_path):
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(line_artifact / 'model.onnx')!r}, providers=['CPUExecutionProvider'])\n"
        "for batch, width in [(1, 640), (5, 640), (2, 320)]:\n"
        "    i, p, e, lp = s.run(None, {'image': np.zeros((batch, 1, 40, width), np.float32)})\n"
        "    assert i.shape == p.shape == e.shape == (batch, width // 4), i.shape\n"
        "    assert lp.shape == (batch, width // 4, 84) and np.allclose(np.exp(lp).sum(-1), 1, atol=1e-4)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=ONLY_TORCH)
    assert result.returncode == 0, result.stderr[-2000:]


def test_eager_torchscript_and_onnx_read_the_same_rendered_lines(line_artifact, line_checkpoint):
    model, _ = model_from_checkpoint(line_checkpoint)
    config = read_artifact_config(line_artifact)
    batches = parity_batches("line_ctc", config, count=10, seed=123)  # other images than the export's
    report = check_parity(LineRecognizer(model), line_artifact, batches)
    assert report["passed"] and report["images"] == 12 and report["max_probability_difference"] < 1e-4
    onnx, torchscript = (ParagraphTextRecognizer(line_artifact, backend=b) for b in ("onnx", "torchscript"))
    pytest.importorskip("text_recognizer.data.synthetic")
    from text_recognizer.data.synthetic import SyntheticParagraphDataset

    pages = [SyntheticParagraphDataset(3, seed=5, stream="test").sample(i)[0] for i in range(3)]
    assert onnx.predict_batch(pages) == torchscript.predict_batch(pages)


class BranchesOnInk(nn.Module):
    "Reverses its logits on inky images: a data-dependent branch the ONNX tracer freezes."

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        if bool(x.mean() > 0.5):
            logits = logits.flip(1)
        return logits


def test_export_refuses_to_write_when_parity_fails(line_checkpoint, line_artifact, tmp_path):
    model, _ = model_from_checkpoint(line_checkpoint)
    config = artifact_config("line_ctc", model, 40, 640)
    batches = [np.full((2, 1, 40, 640), 0.9, np.float32), np.zeros((2, 1, 40, 640), np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with pytest.raises(ParityError, match="nothing was written"):
            export_recognizer(LineRecognizer(BranchesOnInk(model)), tmp_path / "new", config, batches)
        assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
        # over an existing artifact: the old one stays, byte for byte
        existing = tmp_path / "existing"
        existing.mkdir()
        for name in ("config.json", "model.pt", "model.onnx"):
            (existing / name).write_bytes((line_artifact / name).read_bytes())
        before = {p.name: sha256_of(p) for p in existing.iterdir()}
        with pytest.raises(ParityError):
            export_recognizer(LineRecognizer(BranchesOnInk(model)), existing, config, batches)
    assert {p.name: sha256_of(p) for p in existing.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_parity_check_catches_tampered_onnx_weights(line_artifact, line_checkpoint, tmp_path):
    import onnx
    from onnx import numpy_helper

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    graph = onnx.load(str(line_artifact / "model.onnx"))
    biases = [t for t in graph.graph.initializer if list(t.dims) == [84]]  # the classifier's bias
    assert biases, [t.dims for t in graph.graph.initializer]
    bias = numpy_helper.to_array(biases[-1]).copy()
    bias[60] += 50.0  # one character beats everything everywhere
    biases[-1].CopyFrom(numpy_helper.from_array(bias, biases[-1].name))
    onnx.save(graph, str(tampered / "model.onnx"))
    model, _ = model_from_checkpoint(line_checkpoint)
    batches = parity_batches("line_ctc", read_artifact_config(line_artifact), count=3)
    report = check_parity(LineRecognizer(model), tampered, batches)
    assert not report["passed"] and len(report["mismatches"]) == 5
    assert all(m["onnx"] != m["eager"] for m in report["mismatches"])


def test_only_the_torchscript_deprecation_warning_is_silenced(line_checkpoint):
    model, _ = model_from_checkpoint(line_checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        to_torchscript(LineRecognizer(model), torch.zeros(1, 1, 40, 640))
        warnings.warn("something else", UserWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "torch.jit" in m and "deprecated" in m], messages
    assert "something else" in messages
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.script(nn.Identity())
    assert any("deprecated" in str(w.message) for w in caught)  # outside our calls, torch still warns


def test_greedy_ctc_decoding_inside_the_model():
    class Fixed(nn.Module):
        def forward(self, x):
            steps = torch.tensor([5, 5, 0, 5, 6, 6, 0, 0, 7])  # "aa" separated by a blank, then "b", "c"
            return torch.nn.functional.one_hot(steps, 8).T.float()[None].expand(x.shape[0], -1, -1) * 20

    indices, probabilities, entropy, _ = LineRecognizer(Fixed())(torch.zeros(2, 1, 40, 36))
    vocabulary = ["<B>", "<S>", "<E>", "<P>", "x", "a", "b", "c"]
    assert [r["text"] for r in decode_outputs(indices, probabilities, entropy, vocabulary)] == ["aabc", "aabc"]
    scripted, how = to_torchscript(LineRecognizer(Fixed()), torch.zeros(1, 1, 40, 36))
    assert how == "script" and torch.equal(scripted(torch.zeros(2, 1, 40, 36))[0], indices)


@pytest.mark.slow
def test_paragraph_transformer_exports_with_a_fixed_length_loop(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "run", ["--recipe", "paragraph_transformer", "--preset", "tiny"])
    folder = export_checkpoint(checkpoint, tmp_path / "paragraph", max_length=8, parity_images=2)
    config = read_artifact_config(folder)
    assert config["kind"] == "paragraph_transformer" and config["max_length"] == 8 and config["parity"]["passed"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.onnx", "model.pt"]
    model, _ = model_from_checkpoint(checkpoint)
    pages = torch.rand(2, 1, 576, 640)
    with torch.no_grad():
        tokens = ParagraphRecognizer(model, 8)(pages)[0]
        assert torch.equal(tokens, model.predict(pages)[:, :8])
    onnx, torchscript = (ParagraphTextRecognizer(folder, backend=b) for b in ("onnx", "torchscript"))
    page = (np.random.default_rng(0).random((300, 500)) * 255).astype(np.uint8)
    assert onnx.predict(page) == torchscript.predict(page)
    # without a short max_length, ONNX is skipped (the unrolled loop would take hours) and TorchScript stays
    folder = export_checkpoint(checkpoint, tmp_path / "full", parity_images=1)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pt"]
    assert ParagraphTextRecognizer(folder).backend_name == "torchscript"


def test_export_command_line(line_checkpoint, tmp_path, capsys):
    assert export_main([str(line_checkpoint), str(tmp_path / "cli"), "--parity-images", "2", "--no-onnx",
                        "--version", "1.2.3"]) == 0
    assert read_artifact_config(tmp_path / "cli")["version"] == "1.2.3" and "parity" in capsys.readouterr().out
    assert export_main([str(tmp_path / "missing.ckpt"), str(tmp_path / "none")]) == 1
    assert "no checkpoint" in capsys.readouterr().err and not (tmp_path / "none").exists()


# ---------------------------------------------------------------- staging


def test_best_checkpoint_by_every_source(line_checkpoint, tmp_path):
    from text_recognizer.registry import best_checkpoint

    run = line_checkpoint.parent.parent
    path, how = best_checkpoint(run)
    assert path.name == "epoch=001-step=9-cer=0.5000.ckpt" and how["score"] == 0.5
    assert best_checkpoint(run / "checkpoints")[0] == path
    assert best_checkpoint(line_checkpoint) == (line_checkpoint, {"how": "given"})
    moved = tmp_path / "moved-run"  # copied from another machine: summary.json holds a dead absolute path
    (moved / "checkpoints").mkdir(parents=True)
    for p in (run / "checkpoints").iterdir():
        (moved / "checkpoints" / p.name).write_bytes(p.read_bytes())
    (moved / "summary.json").write_text(json.dumps({"best_checkpoint": "/elsewhere/epoch=000-step=5-cer=0.9000.ckpt",
                                                    "monitor": "val/cer", "best_score": 0.9}))
    assert best_checkpoint(moved)[0] == moved / "checkpoints" / "epoch=000-step=5-cer=0.9000.ckpt"
    only_last = tmp_path / "only-last"
    (only_last / "checkpoints").mkdir(parents=True)
    (only_last / "checkpoints" / "last.ckpt").write_bytes(line_checkpoint.read_bytes())
    assert "last.ckpt" in best_checkpoint(only_last)[1]["how"]
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        best_checkpoint(tmp_path / "empty-run")


def test_stage_writes_card_config_and_an_offline_wandb_artifact(line_checkpoint, tmp_path, monkeypatch):
    from text_recognizer.registry import main as stage_main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / line_checkpoint.name).write_bytes(line_checkpoint.read_bytes())
    (run / "config.yaml").write_text("command: text-recognizer train --recipe line_lstm --preset tiny\n"
                                     "recipe: line_lstm\ndata_class: SyntheticLines\n")
    (run / "summary.json").write_text(json.dumps({"best_checkpoint": str(run / "checkpoints" / line_checkpoint.name),
                                                  "monitor": "val/cer", "best_score": 0.9,
                                                  "metrics": {"val/cer": 0.9, "test/cer": 0.91}}))
    (tmp_path / "metrics.json").write_text(json.dumps({"cer": {"per_font": {"Satisfy": 0.5, "Shadows Into Light": 0.4}}}))
    assert stage_main([str(run), "--out", str(tmp_path / "staged"), "--metrics", str(tmp_path / "metrics.json"),
                       "--data-description", "No data: untrained."]) == 0
    folder = tmp_path / "staged"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "char_lm.tsv.gz", "config.json", "line_finder.onnx",
                                                        "line_finder.pt", "model.onnx", "model.pt"]
    config = read_artifact_config(folder)
    assert config["training"]["command"] == "text-recognizer train --recipe line_lstm --preset tiny"
    assert config["metrics"]["test/cer"] == 0.91 and config["metrics"]["cer"]["per_font"]["Satisfy"] == 0.5
    assert config["data"]["description"] == "No data: untrained." and config["staging"]["command"].startswith(
        "text-recognizer stage")
    card = (folder / "MODEL_CARD.md").read_text()
    for words in ("## Intended use", "## Limitations", "| cer.per_font.Satisfy | 0.5 |", "No data: untrained.",
                  "text-recognizer train --recipe line_lstm --preset tiny  # train", config["version"]):
        assert words in card, words
    offline_runs = list((run / "wandb").glob("offline-run-*"))  # the W&B files go beside the run
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert ParagraphTextRecognizer(folder).version == config["version"]


def test_fetch_without_wandb_online_says_what_to_do(tmp_path, monkeypatch, capsys):
    from text_recognizer.registry import main as stage_main

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert stage_main(["--fetch", "me/text-recognizer/paragraph-text-recognizer:production",
                       "--out", str(tmp_path / "fetched")]) == 1
    assert "WANDB_API_KEY" in capsys.readouterr().err and not (tmp_path / "fetched").exists()


# --------------------------------------------------------------------------- checkpoints name registered classes only
def evil_checkpoint(folder: Path) -> tuple[Path, Path]:
    "Issue 16 item 1: a checkpoint whose model_spec names `os:system`, which would run `touch MARKER` if imported."
    marker = folder / "PWNED"
    spec = {"model_class": "os:system", "lit_class": "ctc", "data_config": f"touch {marker}", "model_args": {}}
    torch.save({"state_dict": {}, "hyper_parameters": {"model_spec": spec}}, folder / "evil.ckpt")
    return folder / "evil.ckpt", marker


@pytest.mark.parametrize("command", ["export", "stage", "load_checkpoint"])
def test_a_checkpoint_cannot_name_an_unregistered_class(tmp_path, command):
    checkpoint, marker = evil_checkpoint(tmp_path)
    out = str(tmp_path / "out")
    code = {"export": f"from text_recognizer.cli import main; sys.exit(main(['export', {str(checkpoint)!r}, {out!r}]))",
            "stage": f"from text_recognizer.cli import main; "
                     f"sys.exit(main(['stage', {str(checkpoint)!r}, '--out', {out!r}, '--no-wandb']))",
            "load_checkpoint": f"from text_recognizer.training import load_checkpoint; load_checkpoint({str(checkpoint)!r})"}
    result = subprocess.run([sys.executable, "-c", "import sys; " + code[command]], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    assert not marker.exists(), f"{command} ran the command inside the checkpoint"
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert "unknown model class 'os:system'" in result.stderr and "LineCNNLSTM" in result.stderr, result.stderr[-2000:]
