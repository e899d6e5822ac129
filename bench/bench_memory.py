"""Peak memory of one request per class of image: a fresh process per request, its resident memory measured.

Each request class is a valid image inside the limits (10 MB file, 8000 pixels a side): a normal scanned
page of ten handwritten lines (so finding and reading the lines is part of the request), and 8000 x 8000 pages in every kind of pixel that costs memory to decode (8-bit gray, RGB JPEG,
RGBA, 16-bit, 32-bit integer, 32-bit float). For each, a fresh Python process loads the recognizer,
reads a small page once (so imports, model and caches are in place: the *idle* process), then reads the
request's bytes with `ParagraphTextRecognizer.predict`. The peak resident memory above the idle process
(Linux `VmHWM`, reset with `/proc/self/clear_refs` after warming up) is what one request costs; the
budget (DESIGN.md) is 512 MB. Seconds are the request's wall time on this machine.

Results go to bench/results/memory.json with the machine, the date and the command.

    python bench/bench_memory.py                 # the shipped artifact, ONNX Runtime
    python bench/bench_memory.py --backend torchscript --artifact DIR
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, command_line, git_commit, machine, utc_now, write_json
from PIL import Image

BUDGET_MB = 512
SIDE = (8000, 8000)

CHILD = r"""
import json, os, sys, time
from text_recognizer.predictor import ParagraphTextRecognizer
artifact, backend, path, warm_up = sys.argv[1:5]
recognizer = ParagraphTextRecognizer(artifact or None, backend=backend or None)
recognizer.predict(open(warm_up, "rb").read())
data = open(path, "rb").read()
idle = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
try:
    open("/proc/self/clear_refs", "w").write("5")
    reset = True
except OSError:
    reset = False
started = time.perf_counter()
text = recognizer.predict(data)
seconds = time.perf_counter() - started
peak = [int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(json.dumps({"idle_mb": round(idle, 1), "peak_mb": round(peak, 1), "above_idle_mb": round(peak - idle, 1),
                  "seconds": round(seconds, 2), "lines_read": text.count("\n") + bool(text), "hwm_reset": reset}))
"""


def page(size: tuple[int, int]) -> Image.Image:
    "A page of `size`: light paper with ten lines of handwriting (held-out fonts) filling most of it."
    from text_recognizer.data.synthetic import HELD_OUT_FONTS, render_paragraph, sample_line_text

    rng = np.random.default_rng(0)
    writing = render_paragraph([sample_line_text(rng, "heldout") for _ in range(10)], font=HELD_OUT_FONTS, rng=rng)
    scale = min(0.8 * size[0] / writing.width, 0.8 * size[1] / writing.height)
    writing = writing.resize((round(writing.width * scale), round(writing.height * scale)), Image.Resampling.BILINEAR)
    pixels = np.full(size[::-1], 235, np.uint8)
    left, top = size[0] // 10, size[1] // 10
    region = pixels[top: top + writing.height, left: left + writing.width]
    ink = np.asarray(writing)
    np.minimum(region, np.where(ink < 180, ink, 255).astype(np.uint8), out=region)  # the ink on this page's flat paper
    # (flat paper keeps the 8000 x 8000 32-bit TIFFs under the 10 MB upload limit)
    return Image.fromarray(pixels)


def request_files(folder: Path) -> dict:
    "One file per request class (name -> path), each within the upload limits."
    gray = page(SIDE)
    deep = np.asarray(gray).astype(np.uint16) * 257
    classes = {
        "normal page PNG 2480x3508": (page((2480, 3508)), "page.png", {}),
        "gray PNG 8000x8000": (gray, "gray.png", {}),
        "RGB JPEG 8000x8000": (gray.convert("RGB"), "photo.jpg", {"quality": 80}),
        "RGBA PNG 8000x8000": (gray.convert("RGBA"), "rgba.png", {}),
        "16-bit PNG 8000x8000": (Image.fromarray(deep), "deep.png", {}),
        "32-bit integer TIFF 8000x8000": (Image.fromarray(deep.astype(np.int32)), "int.tif",
                                          {"compression": "tiff_adobe_deflate"}),
        "float32 TIFF 8000x8000": (gray.point(lambda v: v / 255.0, "F"), "float.tif",
                                   {"compression": "tiff_adobe_deflate"}),
    }
    files = {}
    for name, (image, file_name, options) in classes.items():
        image.save(folder / file_name, **options)
        files[name] = folder / file_name
    return files


def measure(path: Path, warm_up: Path, artifact: str, backend: str) -> dict:
    "One request in a fresh process: its peak resident memory above the idle process, and its seconds."
    out = subprocess.run([sys.executable, "-c", CHILD, artifact, backend, str(path), str(warm_up)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default="", help="artifact folder (default: the shipped model)")
    parser.add_argument("--backend", default="", choices=["", "onnx", "torchscript"], help="default: ONNX when available")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "memory.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        files = request_files(Path(scratch))
        warm_up = Path(scratch) / "warm.png"
        page((400, 200)).save(warm_up)
        requests = {}
        for name, path in files.items():
            requests[name] = {"file_bytes": path.stat().st_size, **measure(path, warm_up, args.artifact, args.backend)}
            print(f"{name:>32}: {requests[name]}", flush=True)
    worst = max((r.get("above_idle_mb", float("inf")) for r in requests.values()), default=0.0)
    write_json(args.out, {
        "benchmark": "memory per request (fresh process, peak resident memory above the idle process)",
        "date": utc_now(), "commit": git_commit(), "command": command_line("bench_memory.py", argv),
        "machine": machine(), "budget_mb": BUDGET_MB, "artifact": args.artifact or "shipped",
        "backend": args.backend or "default", "requests": requests, "worst_above_idle_mb": worst,
        "longest_request_s": max((r.get("seconds", 0.0) for r in requests.values()), default=0.0),
        "within_budget": worst <= BUDGET_MB,
    })
    return 0 if worst <= BUDGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
