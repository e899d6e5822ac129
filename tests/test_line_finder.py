"""The line finder on pages with known lines, blank, noisy and bordered pages, a crafted page, and its exports."""

import inspect
import sys
import time

import numpy as np
import pytest
from PIL import Image

from text_recognizer.line_finder import LINE_FINDER_DIR, find_lines, load_line_finder
from text_recognizer.line_finder_training import (
    _border,
    _specks,
    check_line_finder_parity,
    compose_page,
    export_line_finder,
    render_writers,
    scan_page,
)

pytestmark = pytest.mark.skipif(not (LINE_FINDER_DIR / "model_state.pt").is_file(),
                                reason="no trained line finder in text_recognizer/artifacts/line_finder")


@pytest.fixture(scope="module")
def finder():
    return load_line_finder()


@pytest.fixture(scope="module")
def writers():
    from text_recognizer.data.synthetic import HELD_OUT_FONTS
    return render_writers(4, lines_per_writer=6, fonts=HELD_OUT_FONTS, seed=2024, progress=False)


def known_page(writers, seed: int, lines: int, touching: bool = True, border: bool = False):
    "A page of `lines` lines by an unseen hand, and the center row of each line's core, top to bottom."
    rng = np.random.default_rng(seed)
    ink, label, _ = compose_page(rng, writers[seed % len(writers)], lines, touching=touching)
    pixels = (255 * (1 - 0.85 * ink)).astype(np.uint8)
    if border:
        pixels = np.minimum(pixels, (255 * (1 - _border(rng, *ink.shape))).astype(np.uint8))
        pixels[:, :25] = 20  # and a solid band down the left edge, like a real scan's
    centers = [float(np.flatnonzero((label == k).any(axis=1)).mean()) for k in range(1, lines + 1)]
    return Image.fromarray(pixels), centers


@pytest.mark.parametrize("seed", range(8))
def test_counts_and_order(finder, writers, seed):
    lines = 2 + seed
    page, centers = known_page(writers, seed, lines)
    found = find_lines(finder, page)
    assert len(found) == lines
    for line, center in zip(found, centers):  # the k-th box holds the k-th core
        x0, y0, x1, y1 = line["box"]
        assert y0 <= center <= y1 and 0 <= x0 < x1 <= page.size[0]
        assert line["crop"].size[0] == x1 - x0 and 0 < line["crop"].size[1] <= 1.5 * (y1 - y0) + 4  # deskewed, blank rows off
    assert [line["box"][1] for line in found] == sorted(line["box"][1] for line in found)


def test_light_ink_on_dark_paper(finder, writers):
    page, centers = known_page(writers, 3, 5)
    assert len(find_lines(finder, Image.fromarray(255 - np.asarray(page)))) == 5


@pytest.mark.parametrize("seed", range(3))
def test_dark_border_gives_no_extra_lines(finder, writers, seed):
    page, centers = known_page(writers, 10 + seed, 4, border=True)
    assert len(find_lines(finder, page)) == 4


@pytest.mark.parametrize("light", [False, True])
def test_blank_and_noisy_pages_have_no_lines(finder, light):
    rng = np.random.default_rng(1)
    pages = [np.full((300, 400), 240.0), 235 + rng.normal(0, 15, (576, 640)),
             230 - 200 * _specks(rng, 576, 640, 25, 2.5) + rng.normal(0, 8, (576, 640))]
    edged = np.full((576, 640), 230.0)
    edged[:, :30], edged[-20:] = 15, 40  # scanner bands down the left and along the bottom
    for pixels in pages + [edged]:
        pixels = np.clip(pixels, 0, 255).astype(np.uint8)
        assert find_lines(finder, Image.fromarray(255 - pixels if light else pixels)) == []


def test_scanned_blank_pages_have_no_lines(finder):
    "Paper tones, ruling, specks, scanner borders and either polarity, without writing."
    for seed in range(6):
        rng = np.random.default_rng(seed)
        assert find_lines(finder, Image.fromarray(scan_page(rng, np.zeros((400, 560), np.float32)))) == []


@pytest.mark.parametrize("pattern", ["stripes", "checkerboard", "noise"])
def test_crafted_pages_finish_fast(finder, pattern):
    "Issue 15: many tiny bands once made the projection profile recurse until RecursionError."
    rows, columns = np.indices((6000, 500))
    pixels = {"stripes": np.where(rows % 3 == 0, 0, 255),
              "checkerboard": np.where((rows + columns) % 2, 0, 255),
              "noise": np.random.default_rng(0).integers(0, 2, rows.shape) * 255}[pattern].astype(np.uint8)
    limit, depth = sys.getrecursionlimit(), len(inspect.stack(0))
    sys.setrecursionlimit(depth + 150)  # room for torch's calls; a recursion that the input drives would fail
    try:
        start = time.perf_counter()
        found = find_lines(finder, Image.fromarray(pixels))
        elapsed = time.perf_counter() - start
    finally:
        sys.setrecursionlimit(limit)
    assert isinstance(found, list) and elapsed < 30


def test_shipped_exports_match_the_weights(finder, writers):
    if not (LINE_FINDER_DIR / "model.onnx").is_file():
        pytest.skip("the line finder has not been exported")
    pages = [known_page(writers, seed, 3 + seed)[0] for seed in range(3)]
    report = check_line_finder_parity(finder, LINE_FINDER_DIR, pages)
    assert report["passed"], report


def test_export_parity(finder, writers, tmp_path):
    pages = [known_page(writers, seed, 4)[0] for seed in range(2)]
    report = export_line_finder(finder, tmp_path, pages)
    assert report["passed"] and report["max_probability_difference"] < 1e-3
    onnx, script = load_line_finder(tmp_path, "onnx"), load_line_finder(tmp_path, "torchscript")
    boxes = [line["box"] for line in find_lines(finder, pages[0])]
    assert [line["box"] for line in find_lines(onnx, pages[0])] == boxes
    assert [line["box"] for line in find_lines(script, pages[0])] == boxes
