"""Decoding stays within the memory budget: a fresh process reads each kind of large valid image and its
peak resident memory above the idle process is measured (issue 16, item 2)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from text_recognizer.images import MAX_IMAGE_BYTES, BadImageError, load_image

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 512  # a request may take this much memory above the idle process

CHILD = r"""
import importlib, json, os, sys
module_name, function_name, path = sys.argv[1:4]
function = getattr(importlib.import_module(module_name), function_name)
data = open(path, "rb").read()
def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
function(open(sys.argv[4], "rb").read()) if len(sys.argv) > 4 else None  # warm up on a small image
idle = resident_mb()
try:
    open("/proc/self/clear_refs", "w").write("5")  # restart the high-water mark here
except OSError:
    pass
result = function(data)
peak = [int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({"idle_mb": idle, "peak_mb": peak, "above_idle_mb": peak - idle, "size": list(getattr(result, "size", ()))}))
"""


def peak_above_idle(path: Path, warm_up: Path, function: str = "text_recognizer.images:load_image") -> dict:
    "Peak resident memory (MB) above the idle process while a fresh process runs `function` on the file's bytes."
    module_name, function_name = function.split(":")
    out = subprocess.run([sys.executable, "-c", CHILD, module_name, function_name, str(path), str(warm_up)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    assert path.stat().st_size <= MAX_IMAGE_BYTES, (path, path.stat().st_size)  # inside the limits
    return path


def _page(size: tuple[int, int], mode: str = "L") -> Image.Image:
    "A large page: light paper with dark bars as lines of 'ink', in `mode`."
    image = Image.new("L", size, 235)
    for top in range(size[1] // 10, size[1] * 9 // 10, size[1] // 12):
        image.paste(30, (size[0] // 10, top, size[0] * 9 // 10, top + size[1] // 40))
    if mode == "F":
        return image.point(lambda v: v / 255.0, "F")
    if mode == "I;16":
        return Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    return image.convert(mode)


@pytest.fixture(scope="module")
def large_images(tmp_path_factory) -> dict:
    "Large valid images, each within the file and side limits: name -> path."
    folder = tmp_path_factory.mktemp("large")
    side = (8000, 8000)
    return {
        "float32 TIFF 8000x8000": _save(_page(side, "F"), folder / "float.tif", compression="tiff_adobe_deflate"),
        "16-bit PNG 8000x8000": _save(_page(side, "I;16"), folder / "deep.png"),
        "RGBA PNG 8000x8000": _save(_page(side, "RGBA"), folder / "rgba.png"),
        "RGB JPEG 8000x8000": _save(_page(side, "RGB"), folder / "photo.jpg", quality=80),
        "gray PNG 8000x8000": _save(_page(side), folder / "gray.png"),
        "normal page PNG": _save(_page((2480, 3508)), folder / "page.png"),
        "small warm-up": _save(_page((200, 100)), folder / "small.png"),
    }


@pytest.mark.parametrize("name", ["float32 TIFF 8000x8000", "16-bit PNG 8000x8000", "RGBA PNG 8000x8000",
                                  "RGB JPEG 8000x8000", "gray PNG 8000x8000", "normal page PNG"])
def test_decoding_a_large_image_stays_within_the_memory_budget(large_images, name):
    measured = peak_above_idle(large_images[name], large_images["small warm-up"])
    print(name, measured)
    assert measured["above_idle_mb"] <= BUDGET_MB, (name, measured)
    assert max(measured["size"]) <= 4000  # shrunk to the working size while decoding


def test_large_images_decode_to_the_same_page_shrunk(large_images):
    gray = load_image(large_images["gray PNG 8000x8000"])
    for name in ["float32 TIFF 8000x8000", "16-bit PNG 8000x8000", "RGBA PNG 8000x8000"]:
        assert np.abs(np.asarray(load_image(large_images[name]), int) - np.asarray(gray, int)).max() <= 1, name
    assert gray.size == (4000, 4000) and load_image(large_images["normal page PNG"]).size == (2480, 3508)


def test_non_finite_float_images_are_refused():
    with pytest.raises(BadImageError, match="NaN or infinite"):
        load_image(Image.fromarray(np.full((50, 50), np.inf, np.float32)))


def test_what_cannot_fit_the_decoding_budget_is_refused_before_decoding(monkeypatch):
    import io

    import text_recognizer.images as images

    buffer = io.BytesIO()
    Image.new("RGB", (1000, 800), "white").save(buffer, "PNG")
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 1_000_000)  # 1000 x 800 x 4 bytes = 3.2 MB
    with pytest.raises(BadImageError, match="needs 3 MB decoded, more than the 1 MB allowed"):
        load_image(buffer.getvalue())


def test_a_big_sideways_photo_is_shrunk_and_turned_upright(tmp_path):
    photo = Image.new("RGB", (6000, 3000), "white")
    photo.paste((0, 0, 0), (0, 0, 6000, 300))  # a dark band along the stored top edge
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = _save(photo, tmp_path / "sideways.jpg", exif=exif, quality=70)
    upright = np.asarray(load_image(path))
    assert upright.shape == (3000, 1500)  # 18 MP: halved while decoding, then turned: 1500 wide, 3000 tall
    assert upright[:, -100:].mean() < 40 and upright[:, :100].mean() > 200  # the band is now on the right
