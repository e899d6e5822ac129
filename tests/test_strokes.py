"""The pen-stroke renderer (data.synthetic.strokes) and degrade_scan (data.synthetic.scan).

Deterministic by seed; ink for every character a family claims; never a blank where a family lacks a
glyph (the fallback family draws it, or the renderer refuses); no ink cut off at the image's edge;
degrade_scan keeps size and mode and is deterministic.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from text_recognizer.data.synthetic import HELD_OUT_FONTS, TRAIN_FONTS, FontError, load_fonts
from text_recognizer.data.synthetic import strokes as strokes_module
from text_recognizer.data.synthetic.scan import SCAN_EFFECTS, degrade_scan
from text_recognizer.data.synthetic.strokes import (
    DEBIAN_HANDWRITING_FONTS,
    FALLBACK_STROKE_FAMILY,
    HELD_OUT_HANDWRITING_FONTS,
    HELD_OUT_STROKE_FAMILIES,
    STROKE_FAMILIES,
    TRAIN_HANDWRITING_FONTS,
    TRAIN_STROKE_FAMILIES,
    StrokeFontError,
    StrokeGlyph,
    StrokeStyle,
    _place,
    coverage,
    debian_training_fonts,
    glyph,
    render_stroke_line,
    render_stroke_paragraph,
    stroke_font,
)
from text_recognizer.metadata import CHARACTERS, LINE_IMAGE_HEIGHT, LINE_IMAGE_WIDTH, PARAGRAPH_IMAGE_SIZE

DRAWN = [c for c in CHARACTERS if c not in " \n"]
TEXT = "Quickly, Jim gave 17 boxes (of 42) to Wendy's mother?"
# the heaviest pen, pressure and blots a writer can have, on white paper without noise: ink is easy to find
HEAVY = dict(pen=2.8, pressure=0.4, blots=1.0, glyph_scale=0.08, glyph_shear=0.08, point_jitter=0.8, slant=0.35,
             slant_drift=0.08, baseline_drift=1.5, letter_spacing=-1.0, letter_jitter=0.6)


def ink_mask(image: Image.Image) -> np.ndarray:
    return np.asarray(image) < 200


@pytest.mark.parametrize("family", STROKE_FAMILIES)
def test_deterministic_by_seed(family):
    assert render_stroke_line(TEXT, family, seed=5).tobytes() == render_stroke_line(TEXT, family, seed=5).tobytes()
    assert render_stroke_line(TEXT, family, seed=5).tobytes() != render_stroke_line(TEXT, family, seed=6).tobytes()
    lines = ["Dear Sir,", TEXT, "Yours, J."]
    first, boxes = render_stroke_paragraph(lines, family, seed=2, return_line_boxes=True)
    again, boxes_again = render_stroke_paragraph(lines, family, seed=2, return_line_boxes=True)
    assert first.tobytes() == again.tobytes() and boxes == boxes_again


@pytest.mark.parametrize("family", STROKE_FAMILIES)
def test_ink_for_every_character_a_family_claims(family):
    assert coverage(family) == {"family": family, "covered": len(DRAWN), "of": len(DRAWN), "missing": ""}
    blank = [c for c in DRAWN if not ink_mask(render_stroke_line(c, family, augment=False)).any()]
    assert blank == [], f"{family} draws no ink for {blank}"


def test_every_letter_of_a_text_leaves_points():
    text = "".join(DRAWN)
    for family in STROKE_FAMILIES:
        points, owner, _ = _place(text, StrokeStyle(family), np.random.default_rng(0), augment=False)
        assert len(np.unique(owner)) == len(text) and len(points) > len(text)


def test_a_missing_glyph_is_drawn_by_the_fallback_or_refused(monkeypatch):
    font = dict(stroke_font("scripts"))
    font["#"] = StrokeGlyph(0, 0, ())  # scripts "lacks" '#'
    real = strokes_module.stroke_font
    monkeypatch.setattr(strokes_module, "stroke_font", lambda family: font if family == "scripts" else real(family))
    strokes_module._glyph_points.cache_clear()
    try:
        assert coverage("scripts")["missing"] == "#"
        assert glyph("#", "scripts") is real(FALLBACK_STROKE_FAMILY)["#"]
        assert ink_mask(render_stroke_line("#", "scripts", augment=False)).any()
        points, owner, _ = _place("a#b", StrokeStyle("scripts"), np.random.default_rng(0), augment=False)
        assert len(np.unique(owner)) == 3  # the '#' is there, in the fallback's shape
        fallback = dict(real(FALLBACK_STROKE_FAMILY))
        fallback["#"] = StrokeGlyph(0, 0, ())
        monkeypatch.setattr(strokes_module, "stroke_font",
                            lambda family: {"scripts": font, FALLBACK_STROKE_FAMILY: fallback}.get(family) or real(family))
        strokes_module._glyph_points.cache_clear()
        with pytest.raises(StrokeFontError, match="can draw '#'"):
            render_stroke_line("a#b", "scripts", seed=0)
    finally:
        strokes_module._glyph_points.cache_clear()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="newline"):
        render_stroke_line("two\nlines", seed=0)
    with pytest.raises(ValueError, match="vocabulary"):
        render_stroke_line("caf\u00e9", seed=0)
    with pytest.raises(StrokeFontError, match="hershey-fonts-data"):
        render_stroke_line("hello", "no-such-family", seed=0)


def assert_inside(image: Image.Image):
    "No ink on the outermost rows and columns: nothing was cut off at an edge."
    mask = ink_mask(image)
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=[c for c in CHARACTERS if c != "\n"], min_size=1, max_size=80).filter(str.strip),
       family=st.sampled_from(STROKE_FAMILIES), seed=st.integers(0, 2**16))
def test_no_glyph_outside_the_image(text, family, seed):
    style = StrokeStyle(family, **HEAVY)
    image = render_stroke_line(text, seed=seed, style=style)
    assert image.mode == "L" and image.height == LINE_IMAGE_HEIGHT and 1 <= image.width <= LINE_IMAGE_WIDTH
    assert_inside(image)
    page = render_stroke_paragraph([text[:60]] * 3, seed=seed, style=style)
    assert page.height <= PARAGRAPH_IMAGE_SIZE[0] and page.width <= PARAGRAPH_IMAGE_SIZE[1]
    assert_inside(page)


def test_held_out_families_are_never_trained_on():
    assert len(HELD_OUT_STROKE_FAMILIES) >= 2 and set(HELD_OUT_STROKE_FAMILIES).isdisjoint(TRAIN_STROKE_FAMILIES)
    assert len(HELD_OUT_HANDWRITING_FONTS) >= 2 and set(HELD_OUT_HANDWRITING_FONTS).isdisjoint(TRAIN_HANDWRITING_FONTS)
    assert len(HELD_OUT_STROKE_FAMILIES + HELD_OUT_HANDWRITING_FONTS + tuple(HELD_OUT_FONTS)) >= 8
    assert set(HELD_OUT_FONTS).isdisjoint(TRAIN_FONTS)
    assert all(path.is_file() for path in DEBIAN_HANDWRITING_FONTS.values()), "run setup/system-packages.sh"


def test_debian_training_fonts_are_real_hands_or_say_what_to_install(monkeypatch):
    files = debian_training_fonts()
    faces = load_fonts(files)  # each one draws every character of the vocabulary (else a FontError)
    assert len(files) == len(TRAIN_HANDWRITING_FONTS) >= 6 and len({face.path for face in faces}) == len(files)
    assert not {str(DEBIAN_HANDWRITING_FONTS[f]) for f in HELD_OUT_HANDWRITING_FONTS} & set(files)
    monkeypatch.setitem(DEBIAN_HANDWRITING_FONTS, "Kiloji", DEBIAN_HANDWRITING_FONTS["Kiloji"].with_name("gone.ttf"))
    with pytest.raises(FontError, match="Kiloji are not installed.*make system-packages"):
        debian_training_fonts()


@pytest.mark.parametrize("kind", ["line", "page", "rgb"])
def test_degrade_scan_keeps_size_and_mode_and_is_deterministic(kind):
    image = (render_stroke_paragraph(["Dear Sir,", TEXT], seed=1) if kind == "page"
             else render_stroke_line(TEXT, seed=1))
    image = image.convert("RGB") if kind == "rgb" else image
    for seed in range(12):
        degraded = degrade_scan(image, np.random.default_rng(seed))
        assert degraded.size == image.size and degraded.mode == "L"
        assert degraded.tobytes() == degrade_scan(image, np.random.default_rng(seed)).tobytes()
    every = degrade_scan(image, np.random.default_rng(0), effects=dict.fromkeys(SCAN_EFFECTS, 1.0))
    assert every.size == image.size and every.mode == "L"
