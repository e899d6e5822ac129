"""Does slant correction before reading help? Measured on validation lines, as HTR systems' cursive normalisation.

    .venv/bin/python bench/slant_validation.py                    # the shipped reader, about 2 minutes
    .venv/bin/python bench/slant_validation.py --lines 10 --out /tmp/slant.json   # a quick check

Classic handwriting recognisers shear each line upright before reading it (deslanting). The slant is
estimated as Vinciarelli and Luettin (2001) do: for each candidate shear, the ink is sheared and every
column whose ink is one unbroken vertical run scores its length squared; the shear with the highest total
makes the most strokes vertical. Here the line is sheared by that estimate ("full") or by half of it
("half"), then read as usual; "as drawn" is the predictor as it ships.

Each way is measured on the sets bench/reader_validation.py decides on, never on the held-out bench: the six
validation hands writing held-back sentences (read greedily and with the reader's decoding, its language
model swapped for one counted without those sentences) and the training mix. Results go to
bench/results/slant_validation.json, with the estimated shears per hand and the milliseconds the
estimate and the shear add per line. Slant correction would belong in the predictor only if it lowered
the mean CER of the validation hands with the decoding.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, command_line, load_average, machine, utc_now, write_json
from PIL import Image

sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "slant_validation.json"
SHEARS = np.round(np.arange(-0.5, 1.001, 0.05), 2)  # tan of the slant: from 27 degrees left to 45 right


def estimate_shear(line: Image.Image, # grayscale line, dark ink on light paper
                   shears: np.ndarray = SHEARS) -> float:
    "The shear (pixels right per pixel up) that makes the most ink columns single unbroken runs, by length squared."
    from text_recognizer.segmentation import otsu_threshold

    pixels = np.asarray(line)
    rows, columns = np.nonzero(pixels <= min(otsu_threshold(pixels), 200))
    if rows.size < 20:  # a blank or nearly blank line: leave it
        return 0.0
    height, above = pixels.shape[0], (pixels.shape[0] - 1 - rows).astype(np.float64)
    scores = []
    for shear in shears:
        column = np.round(columns - shear * above).astype(np.int64)
        column -= column.min()
        count = np.bincount(column)
        top, bottom = np.full(count.size, height), np.full(count.size, -1)
        np.minimum.at(top, column, rows)
        np.maximum.at(bottom, column, rows)
        unbroken = (count > 0) & (bottom - top + 1 == count)
        scores.append(float((count[unbroken].astype(np.float64) ** 2).sum()))
    return float(shears[int(np.argmax(scores))])


def unshear(line: Image.Image, shear: float) -> Image.Image:
    "`line` sheared by `-shear` about its bottom row, widened so that no ink is cut, on white paper."
    width, height = line.size
    if shear == 0:
        return line
    shift = max(0.0, shear * (height - 1))
    return line.transform((width + int(np.ceil(abs(shear) * (height - 1))), height), Image.Transform.AFFINE,
                          (1.0, -shear, shear * (height - 1) - shift, 0.0, 1.0, 0.0), Image.BILINEAR, fillcolor=255)


def _check():
    "A slanted bar is made upright, and a blank line is left alone."
    bars = Image.new("L", (120, 40), 255)
    for y in range(40):  # a stroke leaning right: 0.4 pixels right per pixel up
        x = 40 + round(0.4 * (39 - y))
        bars.paste(0, (x, y, x + 3, y + 1))
    assert abs(estimate_shear(bars) - 0.4) < 0.051, estimate_shear(bars)
    upright = np.asarray(unshear(bars, estimate_shear(bars))) < 128
    assert (upright.any(axis=0)).sum() <= 5, "the bar should stand in a few columns once upright"
    assert estimate_shear(Image.new("L", (50, 20), 255)) == 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=str(ROOT / "text_recognizer" / "artifacts" / "paragraph_text_recognizer"))
    parser.add_argument("--lines", type=int, default=30, help="lines per validation hand (the training mix: 8 x)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    _check()
    measured_on = machine(load_average_at_start=load_average())
    from decoding_validation import held_back_lm
    from reader_validation import cer, new_text_hands, validation_sets

    from text_recognizer.predictor import ParagraphTextRecognizer
    from text_recognizer.segmentation import normalize_page

    sets = {"unseen hands, new text": new_text_hands(args.lines),
            "training mix": {"all": validation_sets(args.lines)["training mix"]["all"]}}
    clean = {name: {group: [(normalize_page(image.convert("L"))[0], text) for image, text in pairs]
                    for group, pairs in groups.items()} for name, groups in sets.items()}
    shears, started, count = {}, time.perf_counter(), 0
    for name, groups in clean.items():
        for group, pairs in groups.items():
            shears[(name, group)] = [estimate_shear(image) for image, _ in pairs]
            count += len(pairs)
    estimate_ms = 1000 * (time.perf_counter() - started) / count
    ways = {"as drawn": 0.0, "half": 0.5, "full": 1.0}
    rows, new_text_lm = [], None
    for decoding in ("greedy", "auto"):
        recognizer = ParagraphTextRecognizer(args.artifact, num_threads=1, decoding=decoding)
        if recognizer.decoder is not None and new_text_lm is None:  # counted once: fitting it takes a while
            new_text_lm = held_back_lm(recognizer.config["decoding"]["order"])
        for way, fraction in ways.items():
            row = {"decoding": recognizer.decoding, "deslant": way}
            for name, groups in clean.items():
                lm = None
                if recognizer.decoder is not None and name == "unseen hands, new text":
                    lm, recognizer.decoder.lm = recognizer.decoder.lm, new_text_lm
                per_group = {group: cer(recognizer, [(unshear(image, round(fraction * s, 3)), text)
                                                     for (image, text), s in zip(pairs, shears[(name, group)])])
                             for group, pairs in groups.items()}
                if lm is not None:
                    recognizer.decoder.lm = lm
                row[name] = float(np.mean(list(per_group.values())))
                if len(per_group) > 1:
                    row[f"{name} by family"] = per_group
            rows.append(row)
            print(f"{recognizer.decoding:8} {way:9}", *(f"{name} {row[name]:.2%}" for name in clean), flush=True)
    best = min((r for r in rows if r["decoding"] != "greedy"), key=lambda r: r["unseen hands, new text"])
    write_json(args.out, {
        "benchmark": "slant_validation: CER of the shipped reader on validation lines read as drawn and after "
                     "slant correction (Vinciarelli-Luettin shear estimate, applied in full or by half)",
        "date": utc_now(), "command": command_line("slant_validation.py", argv),
        "machine": {**measured_on, "load_average_at_end": load_average()},
        "model": {"artifact": args.artifact, "version": recognizer.version},
        "settings": {"lines_per_family": args.lines, "shears": [float(s) for s in SHEARS], "stream": "val"},
        "estimated_shear_by_hand": {group: round(float(np.median(values)), 3)
                                    for (name, group), values in shears.items() if name == "unseen hands, new text"},
        "estimate_ms_per_line": round(estimate_ms, 2),
        "results": rows,
        "decision": {"best": best["deslant"], "deslant_in_predictor": best["deslant"] != "as drawn",
                     "rule": "slant correction goes into the predictor only if it lowers the mean CER of the "
                             "validation hands writing new text with the reader's decoding"},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
