"""Character and word error rates of the shipped model and of Tesseract 5 on the same held-out handwriting.

    .venv/bin/python bench/quality.py                          # 200 lines + 50 paragraphs per font group
    .venv/bin/python bench/quality.py --lines 100 --paragraphs 20
    .venv/bin/python bench/quality.py --quick --out /tmp/quality.json   # a handful of images, seconds

The images are synthetic handwriting rendered by the project's renderer (deterministic: `--seed`) from
held-out text (`text_split="heldout"`: sentences never used in training) in three font groups: each
font of `HELD_OUT_FONTS` on its own (handwriting never seen in training), and all the training fonts
together ("training fonts", the same held-out text: how much of the error is the unseen handwriting).
Every image is read by the shipped model (`ParagraphTextRecognizer`, `--artifact`, `--backend`) and by
Tesseract 5 (`tesseract -l eng --psm 7` for a line, `--psm 6` for a paragraph, through pytesseract),
one image at a time, both limited to `--threads` CPU threads (1 by default: one core each).

Both outputs are cleaned the same way before scoring: typography mapped into the project's vocabulary
(`normalize_text`), empty lines dropped, a line image's text joined onto one line. CER is the
character edit distance (`predictor.edit_distance`) summed over a group divided by the
characters of the truth (newlines count as characters in paragraphs); WER is the same over words.
Seconds per image are wall-clock: for Tesseract that includes pytesseract writing the image and
starting the `tesseract` process, which is how it is used. CPU seconds per image (this process plus
the Tesseract process) are recorded beside them: on a shared machine they are the steadier figure. Results go to bench/results/quality.json
with the machine, the date and the command.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from common import ROOT, command_line, load_average, machine, utc_now, write_json

sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "quality.json"
TESSERACT_PSM = {"line": 7, "paragraph": 6}  # 7: one text line; 6: one uniform block of text


## Scoring

def clean(text: str, kind: str) -> str:
    "A reader's output in the vocabulary: lines normalized, empty ones dropped; a line image's text on one line."
    from text_recognizer.data.synthetic import normalize_text

    lines = [normalize_text(line) for line in text.splitlines()]
    return (" " if kind == "line" else "\n").join(line for line in lines if line)


def score(predictions: list[str], truths: list[str], seconds: list[float], cpu: list[float]) -> dict:
    "Corpus CER and WER of `predictions` against `truths`, and the wall and CPU seconds per image."
    from text_recognizer.predictor import edit_distance

    char_edits = sum(edit_distance(p, t) for p, t in zip(predictions, truths))
    characters = sum(max(1, len(t)) for t in truths)
    word_edits = sum(edit_distance(p.split(), t.split()) for p, t in zip(predictions, truths))
    words = sum(max(1, len(t.split())) for t in truths)
    return {"cer": round(char_edits / characters, 4), "wer": round(word_edits / words, 4),
            "char_edits": char_edits, "word_edits": word_edits, "exact": sum(p == t for p, t in zip(predictions, truths)),
            "seconds_per_image": round(statistics.fmean(seconds), 4), "seconds_p50": round(statistics.median(seconds), 4),
            "seconds_total": round(sum(seconds), 2), "cpu_seconds_per_image": round(statistics.fmean(cpu), 4)}


## The images

def font_groups() -> list[dict]:
    "Each held-out font alone, then the training fonts together."
    from text_recognizer.data.synthetic import HELD_OUT_FONTS, TRAIN_FONTS

    return ([{"group": font, "fonts": [font], "seen_in_training": False} for font in HELD_OUT_FONTS]
            + [{"group": "training fonts", "fonts": list(TRAIN_FONTS), "seen_in_training": True}])


def samples(kind: str, fonts: list[str], count: int, seed: int) -> list[tuple]:
    "`count` (PIL image, text) pairs of held-out text in `fonts`, the same for the same seed."
    from text_recognizer.data.synthetic import SyntheticLineDataset, SyntheticParagraphDataset

    dataset_class = SyntheticLineDataset if kind == "line" else SyntheticParagraphDataset
    dataset = dataset_class(count, seed=seed, fonts=fonts, text_split="heldout", stream="heldout")
    return [dataset.sample(i) for i in range(count)]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200, help="line images per font group")
    parser.add_argument("--paragraphs", type=int, default=50, help="paragraph images per font group")
    parser.add_argument("--quick", action="store_true", help="3 lines and 1 paragraph per group: a check, not a result")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for our model and for Tesseract")
    parser.add_argument("--artifact", help="artifact folder (default: $TEXT_RECOGNIZER_ARTIFACT or the shipped model)")
    parser.add_argument("--backend", choices=["onnx", "torchscript"], help="default: the predictor's choice")
    parser.add_argument("--no-tesseract", action="store_true", help="measure the shipped model only")
    parser.add_argument("--examples", type=int, default=2, help="(truth, ours, tesseract) examples kept per group")
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
    print(f"{recognizer!r} vs Tesseract {tesseract['version'] if tesseract else '(not measured)'}, "
          f"{args.threads} thread(s) each", flush=True)
    rows, examples, warm = [], [], set()  # warm: (reader, kind) pairs that have read one image already
    for group in font_groups():
        for kind, count in (("line", args.lines), ("paragraph", args.paragraphs)):
            if count == 0:
                continue
            pairs = samples(kind, group["fonts"], count, args.seed)
            images, truths = [image for image, _ in pairs], [text for _, text in pairs]
            ours, ours_seconds, ours_cpu = read_all(recognizer.predict, images, kind, f"ours {group['group']} {kind}s",
                                                    ("ours", kind) not in warm)
            row = {**group, "kind": kind, "count": count, "characters": sum(max(1, len(t)) for t in truths),
                   "words": sum(max(1, len(t.split())) for t in truths), "ours": score(ours, truths, ours_seconds, ours_cpu)}
            theirs = None
            if tesseract:
                theirs, seconds, cpu = read_all(tesseract_reader(kind), images, kind, f"tesseract {group['group']} {kind}s",
                                                ("tesseract", kind) not in warm)
                row["tesseract"] = score(theirs, truths, seconds, cpu)
            rows.append(row)
            warm |= {("ours", kind), ("tesseract", kind)}
            examples += [{"group": group["group"], "kind": kind, "truth": truths[i], "ours": ours[i],
                          "tesseract": theirs[i] if theirs else None} for i in range(min(args.examples, count))]
            line = (f"{group['group']:<20} {kind:<9} n={count:<4} ours CER {row['ours']['cer']:6.1%} "
                    f"WER {row['ours']['wer']:6.1%} {row['ours']['seconds_per_image'] * 1000:6.0f} ms/image "
                    f"({row['ours']['cpu_seconds_per_image'] * 1000:.0f} ms CPU)")
            if tesseract:
                t = row["tesseract"]
                line += (f" | tesseract CER {t['cer']:6.1%} WER {t['wer']:6.1%} {t['seconds_per_image'] * 1000:6.0f} ms/image "
                         f"({t['cpu_seconds_per_image'] * 1000:.0f} ms CPU)")
            print(line, flush=True)
    report = {
        "benchmark": "quality: CER/WER of the shipped model and Tesseract 5 on held-out synthetic handwriting",
        "date": utc_now(),
        "command": command_line("quality.py", argv),
        "machine": {**measured_on, "load_average_at_end": load_average()},
        "model": {"version": recognizer.version, "kind": recognizer.kind, "backend": recognizer.backend_name,
                  "artifact": str(recognizer.artifact_dir.relative_to(ROOT) if recognizer.artifact_dir.is_relative_to(ROOT)
                                  else recognizer.artifact_dir)},
        "tesseract": tesseract,
        "settings": {"seed": args.seed, "lines_per_group": args.lines, "paragraphs_per_group": args.paragraphs,
                     "threads": args.threads, "text_split": "heldout", "stream": "heldout", "quick": args.quick},
        "results": rows,
        "examples": examples,
    }
    write_json(args.out, report)
    if args.card_metrics:
        write_json(args.card_metrics, card_metrics(rows, report["command"]))
    return 0


def card_metrics(rows: list[dict], command: str) -> dict:
    "Our CER per held-out font and kind (and on the training fonts, held-out text), flat, for the model card."
    metrics = {}
    for row in rows:
        prefix = "heldout_text_cer" if row["seen_in_training"] else "heldout_cer"
        metrics[f"{prefix}/{row['kind']}/{row['group'].replace(' ', '_')}"] = row["ours"]["cer"]
    return {**metrics, "quality_command": command}


if __name__ == "__main__":
    sys.exit(main())
