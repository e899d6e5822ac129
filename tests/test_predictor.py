"""The predictor on every kind of input and every kind of bad input, with a real exported model.

Until a trained model is staged, the artifact is an untrained line model exported for real
(`export.export_untrained_example`): it reads gibberish, but every step of the predictor runs,
and two equal inputs must still read the same.
"""

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont, ImageOps

from text_recognizer.images import MAX_IMAGE_BYTES
from text_recognizer.predictor import (
    ArtifactError,
    BadImageError,
    ParagraphTextRecognizer,
    load_image,
    normalize_page,
    prepare_image,
    segment_lines,
)

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    from text_recognizer.export import export_untrained_example

    return export_untrained_example(tmp_path_factory.mktemp("artifact") / "untrained")


@pytest.fixture(scope="module")
def recognizer(artifact) -> ParagraphTextRecognizer:
    return ParagraphTextRecognizer(artifact)


def draw_text(text: str, size: int = 28) -> Image.Image:
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    _, _, right, bottom = probe.multiline_textbbox((0, 0), text, font=font, spacing=16)
    image = Image.new("L", (right + 40, bottom + 40), 255)
    ImageDraw.Draw(image).multiline_text((20, 20), text, font=font, fill=0, spacing=16)
    return image


PAGE = draw_text("The quick brown fox\njumps over the lazy dog,\n42 quietly: 'gypsy'!")


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    "A tiny PNG whose header claims width x height pixels (how a decompression bomb starts)."
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- every input type


def page_inputs(tmp_path: Path) -> dict:
    rgb = PAGE.convert("RGB")
    rgba = PAGE.convert("RGBA")
    (tmp_path / "page.png").write_bytes(encoded(PAGE))
    sixteen_bit = Image.fromarray(np.asarray(PAGE).astype(np.uint16) * 257)  # mode I;16 (or I)
    return {
        "path": tmp_path / "page.png",
        "str path": str(tmp_path / "page.png"),
        "bytes": encoded(PAGE),
        "bytearray": bytearray(encoded(PAGE)),
        "memoryview": memoryview(encoded(PAGE)),
        "PIL L": PAGE,
        "PIL RGB": rgb,
        "PIL RGBA": rgba,
        "PIL P": PAGE.convert("P"),
        "PIL LA": PAGE.convert("LA"),
        "PIL I;16": sixteen_bit,
        "lazy PIL": Image.open(tmp_path / "page.png"),
        "array uint8": np.asarray(PAGE),
        "array (H, W, 1)": np.asarray(PAGE)[..., None],
        "array RGB": np.asarray(rgb),
        "array RGBA": np.asarray(rgba),
        "array float [0, 1]": np.asarray(PAGE) / 255.0,
        "array uint16": np.asarray(PAGE).astype(np.uint16) * 257,
        "array bool": np.asarray(PAGE) > 127,
    }


def test_every_input_type_reads_the_same(recognizer, tmp_path):
    reference = np.asarray(PAGE).astype(int)
    expected = recognizer.predict(PAGE)
    for name, value in page_inputs(tmp_path).items():
        image = load_image(value)
        assert image.mode == "L" and image.size == PAGE.size, name
        tolerance = 255 if name == "array bool" else 1  # booleans keep only black and white
        assert np.abs(np.asarray(image).astype(int) - reference).max() <= tolerance, name
        if name != "array bool":
            assert recognizer.predict(value) == expected, name


def test_alpha_is_laid_on_white_paper():
    ink_on_nothing = Image.new("RGBA", (60, 30), (0, 0, 0, 0))
    ink_on_nothing.paste((10, 10, 10, 255), (10, 10, 30, 20))
    pixels = np.asarray(load_image(encoded(ink_on_nothing)))
    assert pixels[0, 0] == 255 and pixels[15, 15] == 10


def test_exif_rotated_photo_is_turned_upright(recognizer):
    stored_sideways = PAGE.transpose(Image.Transpose.ROTATE_90)  # what the phone wrote ...
    exif = stored_sideways.getexif()
    exif[0x0112] = 6  # ... and the tag that says "rotate 90 degrees clockwise to view"
    data = encoded(stored_sideways, exif=exif)
    assert Image.open(io.BytesIO(data)).size == (PAGE.height, PAGE.width)
    upright = load_image(data)
    assert upright.size == PAGE.size and np.array_equal(np.asarray(upright), np.asarray(PAGE))
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == PAGE.size
    assert recognizer.predict(data) == recognizer.predict(PAGE)
    assert len(recognizer.predict_with_details(data)["lines"]) == 3


@pytest.mark.parametrize("ink, paper", [(255, 0), (230, 40), (200, 90)])
def test_inverted_polarity_is_detected_and_fixed(recognizer, ink, paper):
    dark_on_light = np.asarray(PAGE).astype(np.float32) / 255  # 0 ink .. 1 paper
    light_on_dark = Image.fromarray((ink + (paper - ink) * dark_on_light).astype(np.uint8))
    details = recognizer.predict_with_details(light_on_dark)
    assert details["inverted"] is True
    assert recognizer.predict_with_details(PAGE)["inverted"] is False
    assert len(details["lines"]) == 3
    if (ink, paper) == (255, 0):  # the exact negative: the model sees exactly the same arrays
        ours, _, _ = prepare_image(light_on_dark)
        theirs, _, _ = prepare_image(PAGE)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
        assert details["text"] == recognizer.predict(PAGE)


def test_grey_paper_is_not_mistaken_for_inverted():
    grey = Image.fromarray((110 * np.asarray(PAGE).astype(np.float32) / 255 + 10).astype(np.uint8))  # ink 10, paper 120
    page, inverted = normalize_page(load_image(grey))
    assert not inverted and np.median(np.asarray(page)) == 255 and len(segment_lines(page)) == 3


def test_blank_page_reads_as_empty(recognizer):
    for blank in (Image.new("L", (400, 300), 255), Image.new("L", (400, 300), 0), Image.new("L", (400, 300), 128)):
        details = recognizer.predict_with_details(blank)
        assert details["text"] == "" and details["lines"] == [] and 0 <= details["confidence"] <= 1


def test_details_are_complete_and_json_safe(recognizer, artifact):
    details = recognizer.predict_with_details(PAGE)
    assert {"text", "confidence", "entropy", "latency_ms", "model_version", "backend", "lines"} <= set(details)
    config = json.loads((artifact / "config.json").read_text())
    assert details["model_version"] == config["version"] and details["backend"] == "onnx"
    assert 0 <= details["confidence"] <= 1 and details["entropy"] >= 0 and details["latency_ms"] > 0
    assert all(set(line) >= {"text", "confidence", "box"} for line in details["lines"])
    assert json.loads(json.dumps(details)) == details


def test_batch_reads_like_one_by_one(recognizer):
    pages = [PAGE, draw_text("One line only"), Image.new("L", (100, 80), 255), PAGE.convert("RGB")]
    assert recognizer.predict_batch(pages) == [recognizer.predict(p) for p in pages]


def test_crowded_lines_are_read_again_wider():
    "With the shipped reader: a line squeezed to half its width is widened and read again; a roomy line is read once."
    from text_recognizer.data.synthetic import render_line, stretch_width
    from text_recognizer.evaluation import edit_distance
    from text_recognizer.predictor import WIDENING

    reader = ParagraphTextRecognizer(num_threads=1, decoding="greedy")
    assert reader.widening == WIDENING  # the shipped artifact's config.json carries the setting export writes
    text = "the quick brown fox jumps over the lazy dog"
    line = render_line(text, font="Satisfy", seed=0, augment=False)
    squeezed = stretch_width(line, 0.5)
    widened = [row["widened"] for row in reader.predict_with_details(squeezed)["lines"]]
    assert widened and all(factor > 1.0 for factor in widened)
    assert [row["widened"] for row in reader.predict_with_details(line)["lines"]] == [1.0]
    wide_reading = reader.predict(squeezed)
    reader.widening = None  # off: every line read once, as drawn
    assert [row["widened"] for row in reader.predict_with_details(squeezed)["lines"]] == [1.0] * len(widened)
    assert edit_distance(wide_reading, text) <= edit_distance(reader.predict(squeezed), text)


def test_both_backends_read_the_same(artifact):
    onnx = ParagraphTextRecognizer(artifact, backend="onnx", num_threads=1)
    torchscript = ParagraphTextRecognizer(artifact, backend="torchscript", num_threads=1)
    for image in (PAGE, draw_text("Hello world, 1234")):
        assert onnx.predict(image) == torchscript.predict(image)
        assert abs(onnx.predict_with_details(image)["confidence"]
                   - torchscript.predict_with_details(image)["confidence"]) < 1e-4


# ---------------------------------------------------------------- segmentation on synthetic handwriting


@pytest.mark.parametrize("fonts", ["train", "heldout"])
def test_segmentation_finds_every_rendered_line(fonts):
    synthetic = pytest.importorskip("text_recognizer.data.synthetic")
    paragraphs = synthetic.SyntheticParagraphDataset(
        25, seed=11, stream="test", fonts=synthetic.HELD_OUT_FONTS if fonts == "heldout" else None)
    miscounted = []
    for index in range(len(paragraphs)):
        image, text, rendered = paragraphs.sample(index, return_line_boxes=True)
        found = segment_lines(normalize_page(load_image(image))[0])
        assert len(rendered) == text.count("\n") + 1
        if len(found) != len(rendered):
            miscounted.append((index, found, rendered))
            continue
        for box, (top, bottom) in zip(found, rendered):
            assert top <= (box[1] + box[3]) / 2 <= bottom, (index, box, (top, bottom))
            # 0.75: a crop reaches BAND_REACH core heights beyond the line's core and ends halfway to the next
            # line's core, so long descenders can be cut; the lowest share today is 0.84 (held-out page 17,
            # "price of meat. Something very deep"; it was 0.73 with the half-size finder and a reach of 1.0)
            assert min(box[3], bottom) - max(box[1], top) >= 0.75 * (bottom - top), (index, box, (top, bottom))
    # at most 1 page in 25 (the finder counts 99.6-99.8% of held-out pages exactly, bench/results/line_finder.json);
    # known miss: training fonts, page 0, the descenders of "though you're" found as a line of their own
    assert len(miscounted) <= 1, miscounted


def test_segmentation_of_inverted_rendered_paragraph():
    synthetic = pytest.importorskip("text_recognizer.data.synthetic")
    image, text = synthetic.SyntheticParagraphDataset(3, seed=2, stream="test").sample(1)
    page, inverted = normalize_page(load_image(ImageOps.invert(image)))
    assert inverted and len(segment_lines(page)) == text.count("\n") + 1


def test_segmentation_ignores_specks_and_splits_touching_lines():
    dirty = PAGE.copy()
    dirty.paste(0, (3, PAGE.height - 7, 7, PAGE.height - 3))
    assert len(segment_lines(dirty)) == 3
    noisy = np.asarray(PAGE).astype(np.int16) + np.random.default_rng(0).normal(0, 25, PAGE.size[::-1]).astype(np.int16)
    assert len(segment_lines(normalize_page(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))[0])) == 3
    upper, lower = np.asarray(draw_text("A first line here\nLying by the fjord")), np.asarray(draw_text("Typing quietly\nand a last line"))
    touching = np.full((upper.shape[0] + lower.shape[0] - 48, max(upper.shape[1], lower.shape[1])), 255, np.uint8)
    touching[: upper.shape[0], : upper.shape[1]] = upper
    touching[-lower.shape[0]:, : lower.shape[1]] = np.minimum(touching[-lower.shape[0]:, : lower.shape[1]], lower)
    assert len(segment_lines(Image.fromarray(touching))) == 4


# ---------------------------------------------------------------- every kind of bad input


def bad_inputs(tmp_path: Path) -> dict:
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "huge.png").write_bytes(b"\x89PNG" + bytes(MAX_IMAGE_BYTES))
    (tmp_path / "folder.png").mkdir()
    png, jpeg = encoded(PAGE), encoded(PAGE.convert("RGB"), "JPEG")
    return {  # name: (input, words the message must contain)
        "pdf file": (tmp_path / "notes.pdf", "not an image"),
        "text bytes": (b"hello, I am not an image", "not an image"),
        "empty file": (tmp_path / "empty.png", "empty"),
        "empty bytes": (b"", "empty"),
        "truncated png": (png[: len(png) // 2], "truncated"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated"),
        "png without pixels": (png_claiming(500, 400), "truncated"),
        "too small": (encoded(Image.new("L", (5, 300), 255)), "too small"),
        "too wide": (encoded(Image.new("1", (9000, 20), 1)), "larger than"),
        "bomb (Pillow warns)": (png_claiming(12_000, 12_000), "decompression bomb"),
        "bomb (Pillow raises)": (png_claiming(60_000, 60_000), "decompression bomb"),
        "huge file": (tmp_path / "huge.png", "MB"),
        "huge bytes": (b"\xff\xd8" + bytes(MAX_IMAGE_BYTES), "MB"),
        "missing file": (tmp_path / "nowhere.png", "no image file"),
        "folder": (tmp_path / "folder.png", "folder"),
        "None": (None, "cannot read an image"),
        "int": (42, "cannot read an image"),
        "list": ([[0, 255], [255, 0]], "cannot read an image"),
        "array channels first": (np.zeros((3, 64, 64), np.uint8), "channels last"),
        "array 4-d": (np.zeros((1, 1, 64, 64), np.uint8), "not an image"),
        "array empty": (np.zeros((0, 64), np.uint8), "empty"),
        "array NaN": (np.full((64, 64), np.nan), "NaN"),
        "array strings": (np.full((64, 64), "a"), "dtype"),
        "PIL too small": (Image.new("L", (3, 3)), "too small"),
    }


def test_every_bad_input_gets_one_clear_error(recognizer, tmp_path):
    for name, (value, words) in bad_inputs(tmp_path).items():
        with pytest.raises(BadImageError) as caught:
            load_image(value)
        assert words in str(caught.value), (name, str(caught.value))
        with pytest.raises(BadImageError):
            recognizer.predict(value)
    assert issubclass(BadImageError, ValueError)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's own note about random bytes, then our error
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048),
       prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]))
def test_random_bytes_never_crash_the_loader(data, prefix):
    try:
        image = load_image(prefix + data)
    except BadImageError as error:
        assert str(error)  # a message, whatever went wrong
    else:
        assert image.mode == "L" and min(image.size) >= 8


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=1, max_value=99))
def test_any_truncation_of_a_real_image_is_refused_or_read_whole(cut):
    data = encoded(PAGE.convert("RGB"), "JPEG")
    shortened = data[: len(data) * cut // 100]
    with pytest.raises(BadImageError):
        load_image(shortened)


# ---------------------------------------------------------------- the artifact folder


def test_missing_or_incomplete_artifact_says_how_to_stage(tmp_path, artifact):
    with pytest.raises(ArtifactError, match="text-recognizer stage"):
        ParagraphTextRecognizer(tmp_path / "nothing")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text((artifact / "config.json").read_text())
    with pytest.raises(ArtifactError, match="no model file"):
        ParagraphTextRecognizer(tmp_path / "config-only")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ParagraphTextRecognizer(tmp_path / "broken")
    (tmp_path / "strange").mkdir()
    (tmp_path / "strange" / "config.json").write_text(json.dumps({"kind": "crystal_ball"}))
    with pytest.raises(ArtifactError, match="incomplete"):
        ParagraphTextRecognizer(tmp_path / "strange")
    only_torchscript = tmp_path / "torchscript-only"
    only_torchscript.mkdir()
    for name in ("config.json", "model.pt"):
        (only_torchscript / name).write_bytes((artifact / name).read_bytes())
    with pytest.raises(ArtifactError, match="line_finder.pt is missing"):  # the reader without its line finder
        ParagraphTextRecognizer(only_torchscript)
    (only_torchscript / "line_finder.pt").write_bytes((artifact / "line_finder.pt").read_bytes())
    with pytest.raises(ArtifactError, match="char_lm.tsv.gz is missing"):  # ... and without its language model
        ParagraphTextRecognizer(only_torchscript)
    assert ParagraphTextRecognizer(only_torchscript, decoding="greedy").decoding == "greedy"  # which greedy needs not
    (only_torchscript / "char_lm.tsv.gz").write_bytes((artifact / "char_lm.tsv.gz").read_bytes())
    assert ParagraphTextRecognizer(only_torchscript).backend_name == "torchscript"
    with pytest.raises(ArtifactError, match="model.onnx"):
        ParagraphTextRecognizer(only_torchscript, backend="onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        ParagraphTextRecognizer(artifact, backend="tensorflow")
    config = json.loads((only_torchscript / "config.json").read_text())  # a hand-edited setting, refused at load
    config["preprocessing"]["widen"] = {"pixels_per_character": "nine", "most": 1.6}
    (only_torchscript / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="preprocessing.widen.*re-stage"):
        ParagraphTextRecognizer(only_torchscript)


def test_a_swapped_or_altered_model_file_is_refused_with_its_name(tmp_path, artifact):
    for backend, name in [("onnx", "model.onnx"), ("torchscript", "model.pt")]:
        swapped = tmp_path / f"swapped-{backend}"
        swapped.mkdir()
        for other in ("config.json", "model.pt", "model.onnx"):
            (swapped / other).write_bytes((artifact / other).read_bytes())
        altered = bytearray((swapped / name).read_bytes())
        altered[len(altered) // 2] ^= 0xFF  # same size, other bytes: a swapped model of the same shape
        (swapped / name).write_bytes(bytes(altered))
        with pytest.raises(ArtifactError, match=f"{name} does not match the sha256") as caught:
            ParagraphTextRecognizer(swapped, backend=backend)
        assert "re-export" in str(caught.value) and str(swapped / name) in str(caught.value)
    (swapped / "model.pt").write_bytes(b"not even a model")  # another size altogether
    with pytest.raises(ArtifactError, match="model.pt does not match the sha256"):
        ParagraphTextRecognizer(swapped, backend="torchscript")
    config = json.loads((artifact / "config.json").read_text())
    del config["files"]
    (swapped / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="lists no sha256 for model.onnx"):
        ParagraphTextRecognizer(swapped, backend="onnx")


def test_preparing_a_huge_page_stays_within_the_memory_budget(tmp_path):
    "The request path up to the model (decode, normalize, find lines, line arrays) in a fresh process."
    from test_images import BUDGET_MB, _page, _save, peak_above_idle

    huge = _save(_page((8000, 8000), "F"), tmp_path / "float.tif", compression="tiff_adobe_deflate")
    small = _save(_page((200, 100)), tmp_path / "small.png")
    measured = peak_above_idle(huge, small, "text_recognizer.predictor:prepare_image")
    assert measured["above_idle_mb"] <= BUDGET_MB, measured


def test_serving_imports_neither_torch_nor_training_code(artifact, tmp_path):
    PAGE.save(tmp_path / "page.png")
    code = (
        "import sys; from text_recognizer.predictor import ParagraphTextRecognizer; "
        f"r = ParagraphTextRecognizer({str(artifact)!r}); print(repr(r.predict({str(tmp_path / 'page.png')!r}))); "
        "heavy = sorted(m for m in ('torch', 'lightning', 'wandb', 'text_recognizer.training', "
        "'text_recognizer.lit_models', 'text_recognizer.data.base') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


# ---------------------------------------------------------------- the command line, in a real process


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "text-recognizer"), "predict", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_text_json_and_clear_errors(artifact, tmp_path):
    PAGE.save(tmp_path / "page.png")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.7 not an image")
    result = run_cli(str(tmp_path / "page.png"), "--artifact", str(artifact))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip("\n") == ParagraphTextRecognizer(artifact).predict(PAGE).strip("\n")

    result = run_cli(str(tmp_path / "page.png"), str(tmp_path / "notes.pdf"), "--json", "--backend", "torchscript",
                     "--artifact", str(artifact))
    assert result.returncode == 1
    record = json.loads(result.stdout.splitlines()[0])
    assert record["file"].endswith("page.png") and record["backend"] == "torchscript" and len(record["lines"]) == 3
    boxes = [line["box"] for line in record["lines"]]  # each line's box and text, top to bottom
    assert all(len(box) == 4 and box[0] < box[2] and box[1] < box[3] for box in boxes), boxes
    assert [box[1] for box in boxes] == sorted(box[1] for box in boxes) and all("text" in line for line in record["lines"])
    assert "notes.pdf: not an image" in result.stderr and "Traceback" not in result.stderr
    Image.new("L", (300, 200), 255).save(tmp_path / "empty.png")
    result = run_cli(str(tmp_path / "empty.png"), "--json", "--artifact", str(artifact))
    assert result.returncode == 0, result.stderr
    assert {k: json.loads(result.stdout)[k] for k in ("text", "lines")} == {"text": "", "lines": []}

    result = run_cli(str(tmp_path / "page.png"), "--artifact", str(tmp_path / "no-model-here"))
    assert result.returncode == 2 and "text-recognizer stage" in result.stderr and "Traceback" not in result.stderr
