"""How a line reader is kept or dropped: CER on validation lines, never on the held-out bench (bench/quality.py).

    .venv/bin/python bench/reader_validation.py NEW_ARTIFACT                 # against the shipped reader, ~4 minutes
    .venv/bin/python bench/reader_validation.py A B --lines 10 --out /tmp/rv.json   # any readers, a quick check

Each artifact (an export's folder; `text-recognizer export CHECKPOINT FOLDER` makes one) reads three sets,
greedily and with its own decoding ("auto": beam search with the language model where it has one):
- "unseen hands": `--lines` lines in each of the six `data.synthetic.VALIDATION_FONTS`, families kept out of
  training *and* out of the held-out bench; the mean over the six is the figure that decides;
- "training mix": 8 x `--lines` lines of the `line_lstm` recipe's mix (training fonts and pens, scans);
- "block capitals": 4 x `--lines` lines of that mix, all in capitals;
- for the record, not the rule: 3 x `--lines` lines in the training fonts (no scans, no pens) as drawn, and the
  same lines squeezed to 0.7 and stretched to 1.4 times their width (`stretch_width`): narrow and wide hands.
All text is the validation stream's (held-back sentences); no image is one the readers trained on.

The rule, written before the figures: the candidate (the last artifact named; the first is the reader it
would replace, the shipped one by default) is kept when its mean CER over the unseen hands, with its
decoding, is lower, and neither other set is worse by more than half a point. Results go to
bench/results/reader_validation.json.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from common import ROOT, command_line, load_average, machine, utc_now, write_json

sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "reader_validation.json"
SHIPPED = ROOT / "text_recognizer" / "artifacts" / "paragraph_text_recognizer"


def recipe_mix() -> dict:
    "The `line_lstm` recipe's pens, scans and per-letter warp (block capitals and widths are sets of their own)."
    from text_recognizer.training.config import RECIPES

    return {k: RECIPES["line_lstm"]["data_args"][k] for k in ("stroke_fraction", "scan_fraction", "glyph_warp")}


def validation_sets(lines: int) -> dict:
    "{set name: {group: [(image, text), ...]}}; every group's samples from its own seed, on the val stream."
    from text_recognizer.data.synthetic import VALIDATION_FONTS, SyntheticLineDataset, stretch_width

    def samples(count, seed, **options):
        dataset = SyntheticLineDataset(count, seed=seed, stream="val", **options)
        return [dataset.sample(i) for i in range(count)]

    plain, mix = samples(3 * lines, 41), recipe_mix()
    return {"unseen hands": {font: samples(lines, 31 + k, fonts=[font]) for k, font in enumerate(VALIDATION_FONTS)},
            "training mix": {"all": samples(8 * lines, 21, **mix)},
            "block capitals": {"all": samples(4 * lines, 22, capitals=1.0, **mix)},
            **{f"width x{factor}": {"all": [(stretch_width(image, factor), text) for image, text in plain]}
               for factor in (1.0, 0.7, 1.4)}}


def cer(recognizer, pairs: list) -> float:
    "Corpus CER of `recognizer` on (image, text) pairs, both sides normalized as bench/quality.py does."
    from quality import clean

    from text_recognizer.evaluation import edit_distance

    readings = recognizer.predict_batch([image for image, _ in pairs])
    truths = [clean(text, "line") for _, text in pairs]
    return sum(edit_distance(clean(r, "line"), t) for r, t in zip(readings, truths)) / sum(map(len, truths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", help="artifact folders; one alone is compared with the shipped reader")
    parser.add_argument("--lines", type=int, default=30, help="lines per validation family (the other sets scale)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    measured_on = machine(load_average_at_start=load_average())
    from text_recognizer.predictor import ParagraphTextRecognizer

    folders = ([str(SHIPPED)] if len(args.artifacts) == 1 else []) + args.artifacts
    sets, rows = validation_sets(args.lines), []
    for folder in folders:
        for decoding in ("greedy", "auto"):
            recognizer = ParagraphTextRecognizer(folder, num_threads=1, decoding=decoding)
            row = {"artifact": folder, "version": recognizer.version, "decoding": recognizer.decoding}
            for name, groups in sets.items():
                per_group = {group: cer(recognizer, pairs) for group, pairs in groups.items()}
                row[name] = float(np.mean(list(per_group.values())))
                if len(per_group) > 1:
                    row[f"{name} by family"] = per_group
            rows.append(row)
            print(f"{recognizer.version[:30]:30} {recognizer.decoding:8}",
                  *(f"{name} {row[name]:.2%}" for name in sets), flush=True)
    old, new = (next(r for r in rows if r["artifact"] == f and r["decoding"] != "greedy") for f in (folders[0], folders[-1]))
    keep = (new["unseen hands"] < old["unseen hands"]
            and all(new[name] <= old[name] + 0.005 for name in ("training mix", "block capitals")))
    print(f"{'keep' if keep else 'drop'} {new['version']} (against {old['version']}, with each one's decoding)")
    write_json(args.out, {
        "benchmark": "reader_validation: line readers' CER on validation lines (unseen validation hands, the "
                     "training mix, block capitals), greedy and with each reader's decoding",
        "date": utc_now(), "command": command_line("reader_validation.py", argv),
        "machine": {**measured_on, "load_average_at_end": load_average()},
        "settings": {"lines_per_family": args.lines, "mix": recipe_mix(), "stream": "val"},
        "results": rows, "decision": {"candidate": new["version"], "against": old["version"], "keep": keep,
                                      "rule": "lower mean unseen-hands CER with its decoding, and no other set "
                                              "worse by more than 0.5 points"},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
