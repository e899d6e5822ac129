"""Line finder benchmark: exact line counts on held-out touching pages, against the projection profile.

On synthetic pages written in the held-out fonts (`text_recognizer.data.synthetic.HELD_OUT_FONTS`, never
used to train the finder or the reader), whose lines touch or overlap (ascenders into descenders):

- the fraction of pages whose number of lines is exact, for the learned line finder
  (`text_recognizer.line_finder.find_lines`) and for the projection profile (`segmentation.segment_lines`),
  on clean touching pages, on the same kind of pages "scanned" (paper tone, specks, ruling,
  scanner borders, either polarity; `line_finder_training.scan_page`), and on paragraphs as the
  project's renderer draws them (`render_paragraph`: lines 4 or more rows apart, held-out text too);
- the finder's p50 time per page on 1 CPU thread (the page shrunk, the network, the crops) and the
  projection profile's, and the size of the finder's weights and exports;
- with --cer, the flat paragraph CER (lines joined by spaces) of the shipped line reader on crops from
  the finder and on crops from the projection profile, and its line CER on the same lines read one by one.

Results go to bench/results/line_finder.json with the machine, the date and the command.

    python bench/bench_line_finder.py                 # 500 pages of each kind, --cer on 100 of them
    python bench/bench_line_finder.py --pages 50 --cer-pages 20   # quick
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, command_line, git_commit, load_average, machine, utc_now, write_json
from PIL import Image

sys.path.insert(0, str(ROOT))

from text_recognizer.data.synthetic import HELD_OUT_FONTS  # noqa: E402
from text_recognizer.evaluation import edit_distance  # noqa: E402
from text_recognizer.line_finder import LINE_FINDER_DIR, LINE_FINDER_FILES, find_lines, load_line_finder  # noqa: E402
from text_recognizer.line_finder_training import compose_page, render_writers, scan_page  # noqa: E402
from text_recognizer.segmentation import normalize_page, segment_lines  # noqa: E402


def held_out_pages(count: int, seed: int, scanned: bool) -> list:
    "`count` pages of 2 to 10 touching lines by held-out writers: (page, line texts)."
    writers = render_writers(max(8, count // 6), lines_per_writer=10, fonts=HELD_OUT_FONTS, seed=seed, progress=False)
    rng, pages = np.random.default_rng(seed), []
    for i in range(count):
        ink, _, texts = compose_page(rng, writers[i % len(writers)], int(rng.integers(2, 11)), touching=True)
        pixels = scan_page(rng, ink) if scanned else np.clip(255 * (1 - 0.9 * ink) + rng.normal(0, 4, ink.shape), 0, 255)
        pages.append((Image.fromarray(pixels.astype(np.uint8)), texts))
    return pages, writers


def renderer_paragraphs(count: int, seed: int) -> list:
    "`count` paragraphs of 2 to 10 lines as the project's renderer draws them (lines apart), in held-out fonts."
    from text_recognizer.data.synthetic import render_paragraph, sample_line_text
    rng, pages = np.random.default_rng(seed), []
    for _ in range(count):
        texts = [sample_line_text(rng, "heldout") for _ in range(int(rng.integers(2, 11)))]
        pages.append((render_paragraph(texts, font=HELD_OUT_FONTS, rng=rng), texts))
    return pages


def timed(function, *args):
    "The result of `function(*args)` and the seconds it took."
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def count_lines(pages: list, finder) -> dict:
    "Exact-count rates and p50 times of the finder and the projection profile on `pages`."
    found, profile, finder_seconds, profile_seconds, crashes = [], [], [], [], []
    for page, texts in pages:
        lines, seconds = timed(find_lines, finder, page)
        found.append(len(lines) == len(texts))
        finder_seconds.append(seconds)
        try:
            boxes, seconds = timed(lambda p: segment_lines(normalize_page(p)[0]), page)
        except Exception as error:  # the projection profile has crashed on some pages: a miss, and recorded
            crashes.append({"page": len(profile), "error": f"{type(error).__name__}: {error}"[:200]})
            boxes, seconds = None, float("nan")
        profile.append(boxes is not None and len(boxes) == len(texts))
        profile_seconds.append(seconds)
    misses = [{"page": i, "lines": len(t)} for i, ((_, t), ok) in enumerate(zip(pages, found)) if not ok]
    return {"pages": len(pages), "finder_exact": float(np.mean(found)), "projection_exact": float(np.mean(profile)),
            "finder_p50_ms": 1000 * statistics.median(finder_seconds),
            "projection_p50_ms": 1000 * float(np.nanmedian(profile_seconds)), "projection_crashes": crashes,
            "finder_misses": misses[:20]}


def flat_cer(pages: list, writers: list, finder) -> dict:
    "Flat paragraph CER of the shipped reader on the finder's and the projection's crops, and its line CER."
    from text_recognizer.predictor import ParagraphTextRecognizer, line_to_array
    reader = ParagraphTextRecognizer(num_threads=1)
    size = {k: reader.config["preprocessing"][k] for k in ("height", "width", "mean", "std")}

    def read(crops):
        return [row["text"] for row in reader.read_arrays([line_to_array(crop, **size) for crop in crops])] if crops else []

    edits = {"finder": 0, "projection": 0}
    characters = 0
    for page, texts in pages:
        truth = " ".join(texts)
        characters += len(truth)
        normalized = normalize_page(page)[0]
        finder_text = " ".join(t for t in read([line["crop"] for line in find_lines(finder, normalized)]) if t.strip())
        edits["finder"] += edit_distance(finder_text, truth)
        try:  # the reader on the projection profile's boxes (the predictor itself now cuts with the finder)
            boxes = segment_lines(normalized)
            projection_text = " ".join(t for t in read([normalized.crop(box) for box in boxes]) if t.strip())
        except Exception:  # the projection profile crashes on some pages (see count_lines): nothing read
            projection_text = ""
        edits["projection"] += edit_distance(projection_text, truth)
    line_edits = line_characters = 0
    for writer in writers:
        for ink, text in zip(writer.inks, writer.texts):
            line_edits += edit_distance(read([Image.fromarray(255 - ink)])[0], text)
            line_characters += len(text)
    return {"pages": len(pages), "paragraph_cer_finder": edits["finder"] / characters,
            "paragraph_cer_projection": edits["projection"] / characters,
            "line_cer_same_fonts": line_edits / line_characters}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500, help="held-out pages of each kind")
    parser.add_argument("--cer-pages", type=int, default=100, help="pages read for the CER (0: skip)")
    parser.add_argument("--seed", type=int, default=31337)
    parser.add_argument("--finder", default=str(LINE_FINDER_DIR), help="a folder with the finder's model_state.pt")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "line_finder.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    finder = load_line_finder(args.finder)
    clean, writers = held_out_pages(args.pages, args.seed, scanned=False)
    scanned, _ = held_out_pages(args.pages, args.seed + 1, scanned=True)
    results = {"touching": count_lines(clean, finder), "touching_scanned": count_lines(scanned, finder),
               "renderer_paragraphs": count_lines(renderer_paragraphs(args.pages, args.seed + 2), finder)}
    print({kind: {k: v for k, v in r.items() if k != "finder_misses"} for kind, r in results.items()})
    if args.cer_pages:
        results["cer"] = flat_cer(clean[: args.cer_pages], writers, finder)
        print(results["cer"])
    folder = Path(args.finder)
    sizes = {name: (folder / name).stat().st_size for name in LINE_FINDER_FILES.values() if (folder / name).is_file()}
    write_json(args.out, {"command": command_line("bench_line_finder.py", argv), "date": utc_now(),
                          "commit": git_commit(), "machine": machine(load_average=load_average(), threads=1),
                          "finder": str(folder), "held_out_fonts": list(HELD_OUT_FONTS), "weights_bytes": sizes, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
