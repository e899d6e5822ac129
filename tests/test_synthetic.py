"""The synthetic handwriting renderer and its DataModules: determinism, labels, fonts, shapes."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from text_recognizer.data import synthetic
from text_recognizer.data.base import get_data_module_class, strip_special
from text_recognizer.data.synthetic import (
    BUNDLED_FAMILIES,
    BUNDLED_FONTS_DIR,
    CHARACTER_CLASSES,
    CURSIVE_FAMILIES,
    FONT_FAMILIES,
    FONTPKG_FAMILIES,
    HELD_OUT_FONTS,
    TRAIN_FONTS,
    VALIDATION_FONTS,
    FontError,
    SyntheticLineDataset,
    SyntheticParagraphDataset,
    count_ink_runs,
    faker_lines,
    load_fonts,
    normalize_text,
    prose_sentences,
    render_character,
    render_line,
    render_paragraph,
    sample_line_text,
)
from text_recognizer.data.transforms import line_transform
from text_recognizer.metadata import (
    CHARACTERS,
    LINE_IMAGE_HEIGHT,
    LINE_IMAGE_WIDTH,
    MAX_LINE_LENGTH,
    MAX_PARAGRAPH_LENGTH,
    MAX_PARAGRAPH_LINES,
    PARAGRAPH_IMAGE_SIZE,
    VOCABULARY,
    UnknownCharacterError,
    indices_to_text,
    text_to_indices,
)

TEXT = "Meet me at 7:45 (near #12) & bring 3/4 of it!"


def pixels(image) -> np.ndarray:
    return np.asarray(image)


# determinism


def test_same_seed_same_line_and_other_seed_other_line():
    a, b, c = (pixels(render_line(TEXT, seed=s)) for s in (7, 7, 8))
    assert np.array_equal(a, b)
    assert not (a.shape == c.shape and np.array_equal(a, c))


def test_same_seed_same_paragraph_and_character():
    lines = ["first line of text", "second line, 2 of 3", "and the third"]
    assert np.array_equal(pixels(render_paragraph(lines, seed=3)), pixels(render_paragraph(lines, seed=3)))
    assert np.array_equal(pixels(render_character("Q", seed=3)), pixels(render_character("Q", seed=3)))


def test_dataset_sample_depends_only_on_seed_and_index():
    first = SyntheticLineDataset(50, seed=11)
    second = SyntheticLineDataset(50, seed=11)
    for index in (0, 17, 49):  # in another order, from another instance
        image_a, text_a = first.sample(index)
        image_b, text_b = second.sample(index)
        assert text_a == text_b and np.array_equal(pixels(image_a), pixels(image_b))
    assert first.sample(1)[1] != first.sample(2)[1] or not np.array_equal(pixels(first.sample(1)[0]),
                                                                          pixels(first.sample(2)[0]))
    with pytest.raises(IndexError):
        first.sample(50)


def test_glyph_warp_is_deterministic_keeps_the_text_and_stays_inside_the_line():
    plain, warped = SyntheticLineDataset(12, seed=5), SyntheticLineDataset(12, seed=5, glyph_warp=0.15)
    again = SyntheticLineDataset(12, seed=5, glyph_warp=0.15)
    changed = 0
    for index in range(12):
        (image, text), (same_image, same_text) = warped.sample(index), again.sample(index)
        assert text == same_text == plain.sample(index)[1] and np.array_equal(pixels(image), pixels(same_image))
        assert image.size[1] == LINE_IMAGE_HEIGHT and image.size[0] <= LINE_IMAGE_WIDTH
        plain_image = plain.sample(index)[0]
        ink, plain_ink = (np.clip(np.median(a) - a, 0, None).sum() for a in (pixels(image), pixels(plain_image)))
        assert 0.5 < ink / plain_ink < 2.0  # the letters keep their ink: none lost, none smeared
        changed += not np.array_equal(pixels(image), pixels(plain_image))
    assert changed >= 6  # the share written along pen strokes is not warped; the rest is


# labels


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_sampled_line_texts_are_in_vocabulary_and_short_enough(split):
    rng = np.random.default_rng(0)
    texts = [sample_line_text(rng, split) for _ in range(1000)]
    for text in texts:
        text_to_indices(text)
        assert 0 < len(text) <= MAX_LINE_LENGTH and text == text.strip() and "  " not in text
    if split == "train":
        assert set("".join(texts)) == set(CHARACTERS) - {"\n"}


def test_paragraph_labels_round_trip_through_the_encoding():
    dataset = SyntheticParagraphDataset(6, seed=2)
    for index in range(len(dataset)):
        image, text = dataset.sample(index)
        lines = text.split("\n")
        assert 1 <= len(lines) <= MAX_PARAGRAPH_LINES and len(text) <= MAX_PARAGRAPH_LENGTH
        assert all(0 < len(line) <= MAX_LINE_LENGTH for line in lines)
        _, y = dataset[index]
        assert indices_to_text(strip_special(y[None])[0]) == text
        assert image.size[0] <= PARAGRAPH_IMAGE_SIZE[1] and image.size[1] <= PARAGRAPH_IMAGE_SIZE[0]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_normalize_text_always_lands_in_the_vocabulary(text):
    normalized = normalize_text(text)
    text_to_indices(normalized)
    assert "\n" not in normalized and normalize_text(normalized) == normalized


def test_normalize_text_maps_typography_rather_than_dropping_it():
    assert normalize_text("\u201cH\u00e9llo\u201d \u2014 it\u2019s \u00c6gir\u2026") == '"Hello" - it\'s AEgir...'


def test_text_outside_the_vocabulary_is_refused_not_mislabelled():
    with pytest.raises(UnknownCharacterError):
        render_line("50 \u20ac", seed=0)
    with pytest.raises(ValueError, match="newline"):
        render_line("two\nlines", seed=0)


def test_text_splits_are_disjoint():
    assert set(prose_sentences("train")).isdisjoint(prose_sentences("heldout"))
    assert set(faker_lines("train")).isdisjoint(faker_lines("heldout"))
    assert len(prose_sentences("heldout")) > 500


# images


def test_line_images_have_the_line_height_and_fit_the_width():
    dataset = SyntheticLineDataset(40, seed=5)
    for index in range(len(dataset)):
        image, _ = dataset.sample(index)
        assert image.mode == "L" and image.size[1] == LINE_IMAGE_HEIGHT and 0 < image.size[0] <= LINE_IMAGE_WIDTH


def test_polarity_dark_ink_on_light_paper_becomes_bright_ink_on_zero():
    image = render_line(TEXT, seed=1)
    assert np.median(pixels(image)) > 150  # mostly paper, and paper is light
    x = line_transform(image)
    assert x.shape == (1, LINE_IMAGE_HEIGHT, LINE_IMAGE_WIDTH) and x.median() < 0.3 and x.max() > 0.5


def test_most_paragraphs_split_by_projection_profile():
    dataset = SyntheticParagraphDataset(30, seed=9)
    agree = [count_ink_runs(image) == len(text.split("\n")) for image, text in map(dataset.sample, range(30))]
    assert np.mean(agree) >= 0.8


def test_every_family_draws_every_character():
    faces = load_fonts(FONT_FAMILIES)
    assert {face.family for face in faces} == set(FONT_FAMILIES)
    for char in CHARACTER_CLASSES[::7]:
        image = pixels(render_character(char, font=faces[0], augment=False))
        assert image.shape == (28, 28) and image.min() < 128


# fonts


def test_unknown_family_missing_file_and_broken_file_are_font_errors(tmp_path):
    with pytest.raises(FontError, match="not installed"):
        load_fonts("No Such Handwriting")
    with pytest.raises(FontError, match="not found"):
        load_fonts(tmp_path / "missing.ttf")
    broken = tmp_path / "broken.otf"
    broken.write_bytes(b"\x00\x01 definitely not a font")
    with pytest.raises(FontError, match="broken.otf"):
        load_fonts(broken)
    with pytest.raises(FontError, match="no font files"):
        load_fonts(tmp_path.joinpath("empty").mkdir() or tmp_path / "empty")


def test_a_folder_of_fonts_loads_and_renders(tmp_path):
    source = load_fonts("Indie Flower")[0].path
    shutil.copy(source, tmp_path / "mine.ttf")
    try:  # a WOFF copy too, when fontTools is here to write one
        from fontTools.ttLib import TTFont

        font = TTFont(source)
        font.flavor = "woff"
        font.save(tmp_path / "mine-web.woff")
        expected = 2
    except ImportError:
        expected = 1
    (tmp_path / "notes.txt").write_text("not a font, ignored")
    faces = load_fonts(tmp_path)
    assert len(faces) == expected
    image = render_line(TEXT, font=tmp_path, seed=0)
    assert image.size[1] == LINE_IMAGE_HEIGHT
    plain = [pixels(render_line("Hello", font=face, augment=False)) for face in faces]
    assert all(np.array_equal(plain[0], p) for p in plain)  # the WOFF draws exactly like the TTF


def test_held_out_and_validation_fonts_are_not_training_fonts():
    assert set(HELD_OUT_FONTS).isdisjoint(TRAIN_FONTS) and set(VALIDATION_FONTS).isdisjoint(TRAIN_FONTS)
    assert set(HELD_OUT_FONTS).isdisjoint(VALIDATION_FONTS) and len(VALIDATION_FONTS) >= 6
    assert set(HELD_OUT_FONTS) | set(VALIDATION_FONTS) | set(TRAIN_FONTS) == set(FONT_FAMILIES)
    assert {face.family for face in load_fonts(VALIDATION_FONTS)} == set(VALIDATION_FONTS)


# bundled fonts (setup/fetch_fonts.py)

FETCH_FONTS = Path(__file__).resolve().parents[1] / "setup" / "fetch_fonts.py"


def check_fonts(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FETCH_FONTS), "--check", "--dir", str(folder)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_bundled_fonts_are_training_fonts_with_licences_and_no_held_out_sibling():
    assert len(BUNDLED_FAMILIES) >= 120 and set(BUNDLED_FAMILIES) <= set(TRAIN_FONTS) | set(VALIDATION_FONTS)
    assert set(BUNDLED_FAMILIES).isdisjoint(FONTPKG_FAMILIES)
    assert not any(held in family for held in HELD_OUT_FONTS for family in BUNDLED_FAMILIES)
    assert {"Cookie", "Damion"} <= set(CURSIVE_FAMILIES) and "Patrick Hand" not in CURSIVE_FAMILIES
    for entry in BUNDLED_FAMILIES.values():
        assert entry["license"].startswith(("OFL", "Apache")), entry
        assert "License" in (BUNDLED_FONTS_DIR / entry["license_file"]).read_text()


def test_bundled_fonts_match_the_manifest_and_a_changed_or_missing_file_is_caught(tmp_path):
    folder = tmp_path / "fonts"
    shutil.copytree(BUNDLED_FONTS_DIR, folder)
    result = check_fonts(folder)
    assert result.returncode == 0, result.stderr
    assert f"{len(BUNDLED_FAMILIES)} bundled families, 0 problem(s)" in result.stdout
    entries = list(BUNDLED_FAMILIES.values())
    damaged = folder / entries[0]["file"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (folder / entries[1]["license_file"]).unlink()
    result = check_fonts(folder)
    assert result.returncode == 1
    assert f"{damaged} does not match its sha256" in result.stderr
    assert f"missing {folder / entries[1]['license_file']}" in result.stderr
    assert "no fonts.json" in check_fonts(tmp_path / "nothing-here").stderr


def test_every_bundled_family_writes_a_line_with_ink():
    for family in BUNDLED_FAMILIES:
        image = pixels(render_line("Handwriting 42?", font=family, augment=False))
        assert image.shape[0] == LINE_IMAGE_HEIGHT and image.min() < 100, family


def test_a_missing_bundled_font_file_says_how_to_restore_it(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic.fonts, "BUNDLED_FONTS_DIR", tmp_path)
    with pytest.raises(FontError, match="fetch_fonts.py"):
        synthetic.fonts._faces_of_family(next(iter(BUNDLED_FAMILIES)))


# The package: one import path for every public name the single module had

NAMES_BEFORE_THE_SPLIT = [
    "FONTPKG_FAMILIES", "BUNDLED_FONTS_DIR", "BUNDLED_FAMILIES", "FONT_FAMILIES", "HELD_OUT_FONTS",
    "TRAIN_FONTS", "FONT_SUFFIXES", "USES_RAQM", "NOMINAL_INK_HEIGHT", "NO_LIGATURES", "DRAWN_CHARACTERS",
    "HELD_OUT_TEXT_PERCENT", "TEXT_SPLITS", "MONTHS", "FAKER_LINE_FRACTION", "FAKER_SNIPPET_FRACTION",
    "CURSIVE_FAMILIES", "PARAGRAPH_MARGIN", "MIN_LINE_GAP", "CHARACTER_CLASSES", "FontError", "Face",
    "glyphs_of", "check_face", "load_fonts", "normalize_text", "text_split", "prose_sentences", "faker_lines",
    "sample_words", "take_words", "sample_line_text", "HandStyle", "sample_style", "word_width", "text_width",
    "render_line", "render_paragraph", "WidthLimit", "wrap_words", "render_character", "SyntheticLineDataset",
    "SyntheticParagraphDataset", "count_ink_runs", "SyntheticCharacterDataset", "main", "demo",
]


def test_every_public_name_of_the_old_module_is_importable_from_the_package():
    assert [name for name in NAMES_BEFORE_THE_SPLIT if not hasattr(synthetic, name)] == []
    assert set(NAMES_BEFORE_THE_SPLIT) <= set(synthetic.__all__)
    assert synthetic.render_line is synthetic.render.render_line


# Every line's pixels (what the line finder learns from)


def test_labelled_paragraph_is_the_same_page_with_each_line_known():
    lines = ["Dear Ada, the meeting", "is at 10:30 in room #4.", "Thanks - Grace"]
    page, boxes = render_paragraph(lines, seed=4, return_line_boxes=True)
    labelled = synthetic.render_labelled_paragraph(lines, seed=4)
    assert np.array_equal(pixels(labelled.image), pixels(page)) and labelled.text == "\n".join(lines)
    assert [(top, bottom) for top, bottom, _, _ in labelled.boxes] == boxes
    assert labelled.labels.shape == pixels(page).shape and set(np.unique(labelled.labels)) == {0, 1, 2, 3}
    for k, (top, bottom, left, right) in enumerate(labelled.boxes):
        rows, columns = np.nonzero(labelled.labels == k + 1)
        assert top <= rows.min() and rows.max() < bottom and left <= columns.min() and columns.max() < right


def test_labelled_paragraph_can_overlap_lines_and_shrinks_labels_with_the_page():
    touching = synthetic.render_labelled_paragraph(["Typography", "jumping gypsy"], seed=0, line_gap=(-10, -6))
    assert touching.boxes[1][0] < touching.boxes[0][1] and set(np.unique(touching.labels)) == {0, 1, 2}
    tall = synthetic.render_labelled_paragraph(["Tall lines"] * MAX_PARAGRAPH_LINES, font="Kalam", seed=0)
    assert tall.labels.shape == pixels(tall.image).shape and tall.image.size[1] <= PARAGRAPH_IMAGE_SIZE[0]
    assert tall.boxes[-1][1] <= tall.image.size[1] and tall.labels.max() == MAX_PARAGRAPH_LINES
    with pytest.raises(ValueError, match="line_gap"):
        synthetic.render_labelled_paragraph(["a", "b"], seed=0, line_gap=(5, 2))


def test_paragraph_dataset_labelled_sample_is_the_sample_with_its_lines():
    dataset = SyntheticParagraphDataset(6, seed=2, text_split="heldout", stream="test")
    for index in range(6):
        image, text, boxes = dataset.sample(index, return_line_boxes=True)
        labelled = dataset.labelled_sample(index)
        assert np.array_equal(pixels(labelled.image), pixels(image)) and labelled.text == text
        assert [(top, bottom) for top, bottom, _, _ in labelled.boxes] == boxes
        assert labelled.labels.max() == len(text.splitlines())


# DataModules


@pytest.mark.parametrize("name, x_shape, y_shape", [
    ("SyntheticLines", (4, 1, 40, 640), (4, MAX_LINE_LENGTH + 2)),
    ("SyntheticParagraphs", (2, 1, 576, 640), (2, MAX_PARAGRAPH_LENGTH + 2)),
    ("SyntheticCharacters", (4, 1, 28, 28), (4,)),
])
def test_data_module_batches_have_the_configured_shapes(name, x_shape, y_shape):
    module = get_data_module_class(name)(batch_size=x_shape[0], num_workers=0, num_train=x_shape[0],
                                         num_val=x_shape[0], num_test=x_shape[0])
    module.prepare_data()
    module.setup()
    config = module.config()
    assert config["mapping"] == VOCABULARY and tuple(config["input_dims"]) == x_shape[1:]
    for loader in (module.train_dataloader(), module.val_dataloader(), module.test_dataloader()):
        x, y = next(iter(loader))
        assert tuple(x.shape) == x_shape and tuple(y.shape) == y_shape
        assert x.dtype == torch.float32 and y.dtype == torch.long and 0 <= x.min() and x.max() <= 1
    if len(y_shape) == 2:
        assert tuple(y_shape[1:]) == tuple(config["output_dims"])


def test_heldout_test_split_uses_heldout_fonts_and_text():
    module = get_data_module_class("SyntheticLines")(num_workers=0, num_train=4, num_val=4, num_test=4,
                                                     test_split="heldout")
    module.setup()
    assert {face.family for face in module.data_test.faces} == set(HELD_OUT_FONTS)
    assert {face.family for face in module.data_train.faces} == set(TRAIN_FONTS)
    assert module.data_test.text_split == "heldout" and module.data_train.text_split == "train"
    with pytest.raises(ValueError, match="test_split"):
        get_data_module_class("SyntheticLines")(test_split="unseen")


def test_validation_batches_are_identical_across_epochs_and_workers():
    def val_images(num_workers):
        module = get_data_module_class("SyntheticLines")(batch_size=4, num_workers=num_workers, num_train=4,
                                                         num_val=8, num_test=4)
        module.setup()
        return torch.cat([x for x, _ in module.val_dataloader()])

    serial = val_images(0)
    assert torch.equal(serial, val_images(0))
    assert torch.equal(serial, val_images(2))


def test_cached_module_serves_the_rendered_samples():
    def module(cache):
        m = get_data_module_class("SyntheticLines")(batch_size=4, num_workers=0, num_train=4, num_val=4,
                                                    num_test=4, cache=cache)
        m.setup()
        return m

    plain, cached = module(False), module(True)
    for index in range(4):
        assert torch.allclose(cached.data_val[index][0], plain.data_val[index][0], atol=1e-6)
        assert torch.equal(cached.data_test[index][1], plain.data_test[index][1])


def test_text_pools_are_the_same_in_another_process():
    import hashlib
    import subprocess
    import sys
    import time

    def digest(lines):
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    time.sleep(1.1)  # another second: nothing may depend on the clock
    code = ("import hashlib; from text_recognizer.data.synthetic import faker_lines, prose_sentences; "
            "print(hashlib.sha256('\\n'.join(faker_lines('train')).encode()).hexdigest(), "
            "hashlib.sha256('\\n'.join(prose_sentences('heldout')).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [digest(faker_lines("train")), digest(prose_sentences("heldout"))]


def test_capitals_write_a_share_of_lines_in_block_capitals_and_leave_other_lines_alone():
    plain = SyntheticLineDataset(40, seed=6, stroke_fraction=0.35)
    shouting = SyntheticLineDataset(40, seed=6, stroke_fraction=0.35, capitals=0.5)
    assert [plain.sample(i)[1] for i in range(5)] == [SyntheticLineDataset(40, seed=6, stroke_fraction=0.35,
                                                                           capitals=0.0).sample(i)[1] for i in range(5)]
    texts = [shouting.sample(i)[1] for i in range(40)]
    upper = [t for t in texts if t == t.upper() and any(c.isalpha() for c in t)]
    assert 10 <= len(upper) <= 30 and texts == [shouting.sample(i)[1] for i in range(40)]  # about half, deterministic
    image, text = shouting.sample(texts.index(upper[0]))
    assert np.asarray(image).min() < 128  # written, with ink


def test_width_jitter_makes_lines_narrower_or_wider_and_leaves_texts_and_other_datasets_alone():
    plain = SyntheticLineDataset(12, seed=8, stroke_fraction=0.35)
    jittered = SyntheticLineDataset(12, seed=8, stroke_fraction=0.35, width_jitter=0.3)
    assert all(np.array_equal(np.asarray(plain.sample(i)[0]), np.asarray(SyntheticLineDataset(
        12, seed=8, stroke_fraction=0.35, width_jitter=0.0).sample(i)[0])) for i in range(3))  # no draw when 0
    ratios = [jittered.sample(i)[0].width / plain.sample(i)[0].width for i in range(12)]
    assert [jittered.sample(i)[1] for i in range(12)] == [plain.sample(i)[1] for i in range(12)]
    assert min(ratios) < 0.95 and max(ratios) > 1.05 and all(0.73 < r < 1.36 for r in ratios)
    assert np.array_equal(np.asarray(jittered.sample(4)[0]), np.asarray(jittered.sample(4)[0]))  # deterministic
    unaugmented = SyntheticLineDataset(3, seed=8, width_jitter=0.3, augment=False).sample(0)[0]
    assert unaugmented.size == SyntheticLineDataset(3, seed=8, augment=False).sample(0)[0].size  # plain lines: as drawn


def _check_font_line_switch(name: str, value: float, seed: int, count: int = 12) -> tuple:
    """What a switch that changes font-written lines only must keep: no draw at 0, the texts, determinism, pen-stroke
    and unaugmented lines as they were, no letter cut by the frame. Returns which of `count` lines it changed, and the texts."""
    def image(dataset, i):
        return np.asarray(dataset.sample(i)[0].convert("L"))

    plain, switched, off = (SyntheticLineDataset(count, seed=seed, stroke_fraction=0.35, **extra)
                            for extra in ({}, {name: value}, {name: 0.0}))
    assert all(np.array_equal(image(plain, i), image(off, i)) for i in range(3))  # no draw when 0
    texts = [plain.sample(i)[1] for i in range(count)]
    assert [switched.sample(i)[1] for i in range(count)] == texts
    assert np.array_equal(image(switched, 3), image(switched, 3))  # deterministic
    pens_off, pens_on = (SyntheticLineDataset(4, seed=seed, stroke_fraction=1.0, **{name: v}) for v in (0.0, value))
    assert all(np.array_equal(image(pens_off, i), image(pens_on, i)) for i in range(4))  # pens: untouched
    unaugmented = SyntheticLineDataset(3, seed=seed, augment=False, **{name: value})
    assert np.array_equal(image(unaugmented, 0), image(SyntheticLineDataset(3, seed=seed, augment=False), 0))
    for i in range(count):
        ink = 255 - image(switched, i).astype(np.float32)
        border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]) - np.median(ink)
        assert border.max() < 100, (name, i)  # no letter cut by the frame
    return [not np.array_equal(image(switched, i), image(plain, i)) for i in range(count)], texts


def test_letter_elastic_reshapes_letters_in_fonts_only_and_keeps_texts_and_ink_in_the_frame():
    changed, _ = _check_font_line_switch("letter_elastic", 3.0, seed=9, count=20)
    assert sum(changed) >= 10  # the font lines (about two in three)


def test_allographs_write_other_letter_forms_in_fonts_only_and_keep_texts_and_ink_in_the_frame():
    changed, texts = _check_font_line_switch("allographs", 1.0, seed=10)
    assert sum(changed) >= 6  # the font lines with an h, m, n or quote mark
    assert all(set(text) & set("hmn'\"") for text, was_changed in zip(texts, changed) if was_changed)


def test_garland_and_stroke_quotes_keep_every_training_faces_ink():
    from text_recognizer.data.synthetic.fonts import glyphs_of
    from text_recognizer.data.synthetic.style import garland, stroke_quote

    rng = np.random.default_rng(0)
    for face in load_fonts():
        for char in "hmn":
            bitmap = glyphs_of(face)[char][0]
            cup = garland(face, char)[0]
            assert cup.shape[0] == bitmap.shape[0] and abs(cup.sum() - bitmap.sum()) < 0.15 * bitmap.sum(), (face, char)
            assert cup[:, 0].max() < 0.5 and cup[:, -1].max() < 0.5, (face, char)  # nothing pushed off the glyph
        for char in "'\"":
            mark = stroke_quote(face, char, rng)[0]
            assert mark.max() > 0.9 and max(mark[0].max(), mark[-1].max(), mark[:, 0].max(), mark[:, -1].max()) < 0.5


def test_core_jitter_reproportions_font_lines_only_and_keeps_texts_and_ink_in_the_frame():
    changed, _ = _check_font_line_switch("core_jitter", 0.4, seed=12, count=10)
    assert sum(changed) >= 5  # the font lines


def test_core_scale_moves_the_x_height_and_keeps_ascenders_in_every_tenth_training_face():
    from dataclasses import replace

    from text_recognizer.data.synthetic.style import HandStyle, _compose, _warp

    def core_share(ink):  # the rows holding at least half the busiest row's ink, over all inked rows
        profile = ink.sum(axis=1)
        inked = np.flatnonzero(profile > 0.02 * profile.max())
        return (profile >= 0.5 * profile.max()).sum() / (inked[-1] - inked[0] + 1)

    for face in load_fonts()[::10]:
        style = HandStyle(face)
        layout = _compose("the old hobby shop held lots of dolls", style, np.random.default_rng(0), augment=False)
        inks = [_warp(layout, replace(style, core_scale=f), np.random.default_rng(0), augment=False)[0] for f in (0.6, 1.0, 1.6)]
        assert np.array_equal(inks[1], _warp(layout, style, np.random.default_rng(0), augment=False)[0])
        shares = [core_share(ink) for ink in inks]
        assert shares[0] < shares[1] < shares[2], (face, shares)
        for ink in inks:
            assert max(ink[0].max(), ink[-1].max()) < 0.05, face  # nothing cut off at the top or bottom
            assert 0.6 < ink.sum() / inks[1].sum() * inks[1].shape[1] / ink.shape[1] < 1.7, face  # ink kept, not lost
