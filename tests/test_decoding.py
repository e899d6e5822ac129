"""Beam search with the character language model, in the shipped artifact and the predictor (nbs/42b_decoding.ipynb)."""

import json
import shutil

import numpy as np
import pytest

from text_recognizer.decoding import LM_DIR, LM_FILE, CharLM, ctc_beam_search, load_lm
from text_recognizer.evaluation import edit_distance
from text_recognizer.predictor import DEFAULT_ARTIFACT_DIR, ArtifactError, ParagraphTextRecognizer, main
from text_recognizer.utils import sha256_of

shipped = pytest.mark.skipif(not (DEFAULT_ARTIFACT_DIR / "config.json").is_file(), reason="no shipped model")


@pytest.fixture(scope="module")
def heldout_lines():
    "24 lines of held-out text in the held-out fonts and pen families: hands the reader never saw."
    from text_recognizer.data.synthetic import SyntheticLineDataset

    dataset = SyntheticLineDataset(24, seed=5, text_split="heldout", stream="heldout", stroke_fraction=0.35)
    return [dataset.sample(i) for i in range(24)]


def cer(texts, truths) -> float:
    return sum(edit_distance(t.replace("\n", " "), truth) for t, truth in zip(texts, truths)) / sum(map(len, truths))


@shipped
def test_the_language_model_reads_unseen_hands_better_than_greedy(heldout_lines):
    images, truths = [image for image, _ in heldout_lines], [text for _, text in heldout_lines]
    beam = ParagraphTextRecognizer(num_threads=1)
    greedy = ParagraphTextRecognizer(num_threads=1, decoding="greedy")
    assert (beam.decoding, greedy.decoding) == ("beam+lm", "greedy")
    beam_cer, greedy_cer = cer(beam.predict_batch(images), truths), cer(greedy.predict_batch(images), truths)
    print(f"held-out lines: greedy {greedy_cer:.2%}, beam with the language model {beam_cer:.2%}")
    assert beam_cer < greedy_cer


@shipped
def test_both_backends_read_the_same_with_the_language_model(heldout_lines):
    images = [image for image, _ in heldout_lines[:8]]
    onnx = ParagraphTextRecognizer(backend="onnx", num_threads=1).predict_batch(images)
    torchscript = ParagraphTextRecognizer(backend="torchscript", num_threads=1).predict_batch(images)
    assert onnx == torchscript


@shipped
def test_the_shipped_artifact_carries_the_shipped_language_model():
    config = json.loads((DEFAULT_ARTIFACT_DIR / "config.json").read_text())
    about = json.loads((LM_DIR / "about.json").read_text())
    assert config["decoding"]["language_model"] == LM_FILE and config["decoding"]["settings"] == about["settings"]
    assert sha256_of(DEFAULT_ARTIFACT_DIR / LM_FILE) == sha256_of(LM_DIR / LM_FILE) == config["files"][LM_FILE]["sha256"]
    assert config["outputs"]["names"] == ["indices", "probabilities", "entropy", "log_probs"]


@shipped
def test_a_changed_or_corrupt_language_model_is_refused_with_advice(tmp_path):
    copy = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    (copy / LM_FILE).write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        ParagraphTextRecognizer(copy)
    config = json.loads((copy / "config.json").read_text())  # a corrupt file whose config was edited to match
    config["files"][LM_FILE] = {"sha256": sha256_of(copy / LM_FILE), "bytes": (copy / LM_FILE).stat().st_size}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="not a saved character language model.*re-stage"):
        ParagraphTextRecognizer(copy)
    assert ParagraphTextRecognizer(copy, decoding="greedy").predict(np.full((40, 200), 255, np.uint8)) == ""
    with pytest.raises(ValueError, match="decoding must be one of"):
        ParagraphTextRecognizer(copy, decoding="psychic")


@shipped
def test_the_command_line_can_read_greedily(tmp_path, capsys, heldout_lines):
    image, _ = heldout_lines[0]
    image.save(tmp_path / "line.png")
    assert main([str(tmp_path / "line.png"), "--json", "--decoding", "greedy"]) == 0
    assert json.loads(capsys.readouterr().out)["decoding"] == "greedy"
    assert main([str(tmp_path / "line.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decoding"] == "beam+lm"


def test_beam_search_edge_cases():
    vocabulary = ["<B>", "<S>", "<E>", "<P>", "a", "b", "\n"]
    assert ctc_beam_search(np.zeros((0, 7)), vocabulary) == ""  # no steps at all
    sure_blank = np.log(np.full((5, 7), 1e-9) + np.eye(7)[[0] * 5])
    assert ctc_beam_search(sure_blank, vocabulary) == ""
    uniform = np.log(np.full((30, 7), 1 / 7))  # nothing is sure: no special token is ever written
    text = ctc_beam_search(uniform, vocabulary, lm=CharLM.fit(["ab ab"], order=3), alpha=0.5)
    assert set(text) <= {"a", "b", "\n"}
    lm = CharLM.fit(["ab ab"], order=3)
    assert np.isfinite(lm.log_prob("ab", "\n")) and lm.log_prob("ab", "\n") < lm.log_prob("ab", " ")  # unknown: a share


def test_the_shipped_language_model_loads_and_prefers_english():
    lm = load_lm(LM_DIR / LM_FILE)
    about = json.loads((LM_DIR / "about.json").read_text())
    assert lm.order == about["order"] == 7 and len(lm.alphabet) == 79 and len(lm.contexts) == about["contexts"]
    for good, bad in [("under the", "uuder the"), ("leaders", "leoders"), ("MERCHANTABILITY", "MERCHAll 74832JTy"),
                      ("on 12/03/1999", "on 12/O3/1999")]:
        assert lm.score(good) > lm.score(bad), (good, bad)
