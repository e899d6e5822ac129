"""The models' common interface, and their export to TorchScript and ONNX (layer 2).

Every model is built from a data config, with any of its presets, and keeps the output shape it
promises. The line models must survive TorchScript (scripted, saved and loaded) and ONNX (with a
dynamic batch and width, run by onnxruntime) with the same numbers; the paragraph model must
script with its greedy decoding. The export layer relies on all of this.
"""

import io
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch

from text_recognizer.metadata import END_INDEX, PAD_INDEX, START_INDEX, VOCABULARY
from text_recognizer.models.cnn import CNN
from text_recognizer.models.line_cnn import LineCNN, ctc_greedy_decode
from text_recognizer.models.line_rnn import LineCNNLSTM, LineCNNTransformer
from text_recognizer.models.mlp import MLP
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.models.resnet_transformer import ResnetTransformer
from text_recognizer.models.utils import CHARS_DATA_CONFIG, DIGITS_DATA_CONFIG, LINES_DATA_CONFIG, from_preset

CLASSIFIERS = [MLP, CNN, ResNetClassifier]
LINE_MODELS = [LineCNN, LineCNNLSTM, LineCNNTransformer]
SMALL_PARAGRAPHS = {"input_dims": (1, 64, 128), "output_dims": (10,), "mapping": VOCABULARY}


def presets(model_class):
    return ["default", *model_class.PRESETS]


def scripted_copy(model):
    "Script `model`, save it to bytes and load it back, as the export and the predictor do."
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


@pytest.mark.parametrize("model_class", CLASSIFIERS)
@pytest.mark.parametrize("config", [DIGITS_DATA_CONFIG, CHARS_DATA_CONFIG], ids=["digits", "chars"])
def test_classifiers_give_one_logit_per_class(model_class, config):
    for preset in presets(model_class):
        model = from_preset(model_class, config, preset).eval()
        assert model(torch.rand(3, 1, 28, 28)).shape == (3, len(config["mapping"])), preset


@pytest.mark.parametrize("model_class", LINE_MODELS)
def test_line_models_give_one_step_per_four_columns(model_class):
    for preset in presets(model_class):
        model = from_preset(model_class, LINES_DATA_CONFIG, preset).eval()
        assert model.downsample == 4
        for batch, width in [(1, 640), (2, 128), (3, 1200)]:
            assert model(torch.rand(batch, 1, 40, width)).shape == (batch, len(VOCABULARY), width // 4), preset


@pytest.mark.parametrize("model_class", [*CLASSIFIERS, *LINE_MODELS, ResnetTransformer])
def test_misspelt_hyperparameter_is_an_error(model_class):
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_a_hyperparameter'"):
        model_class(LINES_DATA_CONFIG, not_a_hyperparameter=1)
    with pytest.raises(ValueError, match="no preset 'huge'"):
        from_preset(model_class, LINES_DATA_CONFIG, "huge")


def test_resolved_hyperparameters_are_kept():
    model = LineCNNLSTM(LINES_DATA_CONFIG, lstm_dim=32)
    assert model.hparams == {**LineCNNLSTM.DEFAULTS, "lstm_dim": 32}


@pytest.mark.parametrize("model_class", [*CLASSIFIERS, *LINE_MODELS, ResnetTransformer])
def test_each_hyperparameter_has_a_default_and_a_line_of_help(model_class):
    "Issue 17: `--help` reads them from the signature and its docments comments."
    from text_recognizer.training.config import class_arguments

    arguments = class_arguments(model_class)
    assert set(arguments) == set(model_class.DEFAULTS) and all(a["help"] for a in arguments.values()), arguments


@pytest.mark.parametrize("model_class", LINE_MODELS)
def test_line_models_script_save_and_load(model_class):
    model = from_preset(model_class, LINES_DATA_CONFIG, "cpu").eval()
    loaded = scripted_copy(model)
    x = torch.rand(2, 1, 40, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_class", [LineCNN, LineCNNLSTM])
def test_line_models_export_to_onnx_with_dynamic_batch_and_width(model_class, tmp_path):
    model = model_class(LINES_DATA_CONFIG).eval()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about LSTM batch sizes
        torch.onnx.export(model, (torch.rand(2, 1, 40, 640),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch", 3: "width"}, "logits": {0: "batch", 2: "steps"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 40, 640), (3, 1, 40, 320), (2, 1, 40, 1024)]:
        x = torch.rand(*shape)
        (logits,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            expected = model(x).numpy()
        assert logits.shape == expected.shape == (shape[0], len(VOCABULARY), shape[3] // 4)
        np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-3)


def test_ctc_greedy_decode_scripts():
    scripted = torch.jit.script(ctc_greedy_decode)
    logits = torch.randn(4, len(VOCABULARY), 50)
    assert torch.equal(scripted(logits), ctc_greedy_decode(logits))


def test_resnet_transformer_scripts_with_greedy_decoding():
    torch.manual_seed(0)
    model = from_preset(ResnetTransformer, SMALL_PARAGRAPHS, "tiny").eval()
    loaded = scripted_copy(model)
    x = torch.rand(2, 1, 64, 128)
    predicted = model.predict(x)
    assert predicted.shape == (2, 10) and (predicted[:, 0] == START_INDEX).all()
    assert torch.equal(loaded.predict(x), predicted)
    y = torch.randint(4, len(VOCABULARY), (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, y), model(x, y), atol=1e-5, rtol=1e-4)


def test_resnet_transformer_pads_after_the_end_token():
    model = from_preset(ResnetTransformer, SMALL_PARAGRAPHS, "tiny").eval()
    with torch.no_grad():  # a model that writes nothing but <E>
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-10.0)
        model.classifier.bias[END_INDEX] = 10.0
    predicted = model.predict(torch.rand(1, 1, 64, 128))
    assert predicted.tolist() == [[START_INDEX, END_INDEX] + [PAD_INDEX] * 8]


def test_resnet_transformer_needs_the_special_tokens():
    with pytest.raises(ValueError, match="mapping lacks"):
        ResnetTransformer({**SMALL_PARAGRAPHS, "mapping": [str(d) for d in range(10)]})
