"""Inference benchmark of a staged recognizer: accuracy on held-out handwriting, latency, cold start, Tesseract.

What it measures, on images the model never saw (held-out fonts and held-out text of the synthetic
renderer):

- character error rate (CER, corpus level: total edits / total characters) on lines, per font, and
  on paragraphs, through the full predictor (validation, polarity, line finding, model);
- latency p50/p95 in milliseconds, for the eager model, TorchScript and ONNX Runtime: per line (model
  only, batch 1 and batched) and per paragraph (everything, one at a time and batched), with 1 and
  2 CPU threads (a paragraph's time includes the line finder, which runs on the same backend and
  threads as the reader; goal: p50 <= 100 ms on 1 thread); the line finder's file sizes;
- cold start per backend: a fresh process that imports, loads the artifact and reads one paragraph;
- with --tesseract, Tesseract 5 on the same images: CER and seconds per image, in the same run.

Results go to bench/results/inference.json with the machine, the date and the command. With
--metrics-out, the accuracy and latency summaries are also written as a metrics file that
`text-recognizer stage RUN --metrics FILE` puts into the model card.

    python bench/bench_inference.py                       # the shipped artifact
    python bench/bench_inference.py --artifact DIR --tesseract --metrics-out metrics.json
    python bench/bench_inference.py --untrained --quick   # a dry run with an untrained model
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, command_line, utc_now, write_json

sys.path.insert(0, str(ROOT))

from text_recognizer.evaluation import character_error_rate  # noqa: E402
from text_recognizer.predictor import (  # noqa: E402
    DEFAULT_ARTIFACT_DIR,
    ParagraphTextRecognizer,
    line_to_array,
    load_image,
    normalize_page,
    read_artifact_config,
)

# ---------------------------------------------------------------- data


def held_out_samples(lines_per_font: int, paragraphs: int, seed: int) -> dict:
    "Held-out lines per font (held-out fonts, and training fonts with held-out text) and held-out paragraphs."
    from text_recognizer.data.synthetic import (
        HELD_OUT_FONTS,
        TRAIN_FONTS,
        SyntheticLineDataset,
        SyntheticParagraphDataset,
    )

    lines = {}
    for font in HELD_OUT_FONTS:
        dataset = SyntheticLineDataset(lines_per_font, seed=seed, fonts=(font,), text_split="heldout", stream="heldout")
        lines[font] = [dataset.sample(i) for i in range(len(dataset))]
    dataset = SyntheticLineDataset(lines_per_font, seed=seed, fonts=TRAIN_FONTS, text_split="heldout", stream="test")
    lines["training fonts, held-out text"] = [dataset.sample(i) for i in range(len(dataset))]
    pages = {
        "held-out fonts": SyntheticParagraphDataset(paragraphs, seed=seed, text_split="heldout", stream="heldout"),
        "training fonts, held-out text": SyntheticParagraphDataset(paragraphs, seed=seed, fonts=TRAIN_FONTS,
                                                                   text_split="heldout", stream="test"),
    }
    return {"lines": lines, "paragraphs": {k: [d.sample(i) for i in range(len(d))] for k, d in pages.items()}}


def corpus_cer(predictions: list[str], truths: list[str]) -> float:
    "Total character edits over total characters."
    edits = sum(character_error_rate(p, t) * max(1, len(t)) for p, t in zip(predictions, truths))
    return edits / max(1, sum(len(t) for t in truths))


# ---------------------------------------------------------------- backends


class EagerBackend:
    "The artifact's weights in the eager (Python) model: rebuilt from config.json's model spec."

    name = "eager"

    def __init__(self, artifact_dir: Path, num_threads: int | None = None):
        import torch

        from text_recognizer.export import LineRecognizer, ParagraphRecognizer, model_class
        from text_recognizer.predictor import silence_torchscript_deprecation

        config = read_artifact_config(artifact_dir)
        description = config["model"]  # class name and hyperparameters, as export wrote them
        height, width = config["preprocessing"]["height"], config["preprocessing"]["width"]
        data_config = {"input_dims": (1, height, width), "mapping": config["vocabulary"],
                       "output_dims": (config.get("max_length") or 66,)}
        model = model_class(description["class"])(data_config, **description["hyperparameters"])
        wrapper = LineRecognizer(model) if config["kind"] == "line_ctc" else ParagraphRecognizer(model, config["max_length"])
        with silence_torchscript_deprecation():
            state = torch.jit.load(str(artifact_dir / "model.pt")).state_dict()
        wrapper.load_state_dict(state)
        self.module, self.torch = wrapper.eval(), torch
        if num_threads:
            torch.set_num_threads(num_threads)

    def __call__(self, x: np.ndarray) -> tuple:
        with self.torch.inference_mode():
            return tuple(t.numpy() for t in self.module(self.torch.from_numpy(np.ascontiguousarray(x))))


def recognizer(artifact_dir: Path, backend: str, threads: int) -> ParagraphTextRecognizer:
    "A ParagraphTextRecognizer on `backend` ('eager' swaps the eager model in) with `threads` CPU threads."
    if backend == "eager":
        result = ParagraphTextRecognizer(artifact_dir, backend="torchscript", num_threads=threads)
        result.model, result.backend_name = EagerBackend(artifact_dir, threads), "eager"
        return result
    result = ParagraphTextRecognizer(artifact_dir, backend=backend, num_threads=threads)
    if backend == "torchscript":
        import torch

        torch.set_num_threads(threads)
    return result


def percentiles(milliseconds: list[float]) -> dict:
    return {"p50": round(float(np.percentile(milliseconds, 50)), 2), "p95": round(float(np.percentile(milliseconds, 95)), 2),
            "n": len(milliseconds)}


def timed(function, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


# ---------------------------------------------------------------- measurements


def measure_latency(artifact_dir: Path, backends: list[str], samples: dict, repeats: int, batch: int) -> dict:
    "Latency per line (model only) and per paragraph (everything), batch 1 and batched, 1 and 2 threads."
    config = read_artifact_config(artifact_dir)
    size = {k: config["preprocessing"][k] for k in ("height", "width")}
    line_images = [image for rows in samples["lines"].values() for image, _ in rows]
    line_arrays = [line_to_array(normalize_page(load_image(im))[0], **size) for im in line_images]
    pages = [image for rows in samples["paragraphs"].values() for image, _ in rows]
    results = {}
    for backend in backends:
        for threads in (1, 2):
            key = f"{backend}, {threads} thread{'s' if threads > 1 else ''}"
            model = recognizer(artifact_dir, backend, threads)
            results[key] = _latency_of(model, config["kind"], line_arrays, pages, repeats, batch)
            print(f"  {key}: " + ", ".join(f"{k} p50 {v['p50']} ms" for k, v in results[key].items()), flush=True)
    return results


def _latency_of(model, kind: str, line_arrays: list, pages: list, repeats: int, batch: int) -> dict:
    "The latency figures of one recognizer."
    entry = {}
    if kind == "line_ctc":
        one = iter(line_arrays * (repeats + 10))
        entry["line_model_batch_1"] = percentiles(timed(lambda: model.model(next(one)[None]), repeats))
        stacked = np.stack((line_arrays * batch)[:batch])
        per_line = [t / batch for t in timed(lambda: model.model(stacked), max(3, repeats // 4))]
        entry[f"line_model_batch_{batch}_per_line"] = percentiles(per_line)
    page_cycle = iter(pages * (repeats + 10))
    entry["paragraph_batch_1"] = percentiles(timed(lambda: model.predict(next(page_cycle)), repeats))
    group = (pages * batch)[:min(batch, 8)]
    per_page = [t / len(group) for t in timed(lambda: model.predict_batch(group), max(3, repeats // 4), 1)]
    entry[f"paragraph_batch_{len(group)}_per_paragraph"] = percentiles(per_page)
    return entry


COLD_START = """
import sys, time
started = time.perf_counter()
from text_recognizer.predictor import ParagraphTextRecognizer
sys.path.insert(0, {bench!r})
backend = {backend!r}
if backend == "eager":
    from bench_inference import recognizer
    model = recognizer(__import__("pathlib").Path({artifact!r}), "eager", 0 or None)
else:
    model = ParagraphTextRecognizer({artifact!r}, backend=backend)
loaded = time.perf_counter()
model.predict({image!r})
done = time.perf_counter()
print(loaded - started, done - loaded, done - started)
"""


def measure_cold_start(artifact_dir: Path, backends: list[str], image_path: Path, runs: int) -> dict:
    "A fresh process per run: import, load the artifact, read one paragraph (median of `runs`)."
    results = {}
    for backend in backends:
        code = COLD_START.format(bench=str(Path(__file__).parent), backend=backend, artifact=str(artifact_dir),
                                 image=str(image_path))
        walls, inside, loads = [], [], []
        for _ in range(runs):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                                 cwd=ROOT, timeout=600)
            walls.append(time.perf_counter() - started)
            if out.returncode != 0:
                raise RuntimeError(f"cold start of {backend} failed:\n{out.stderr[-2000:]}")
            load, _, total = (float(v) for v in out.stdout.split()[-3:])
            loads.append(load)
            inside.append(total)
        results[backend] = {"process_wall_s": round(float(np.median(walls)), 3),
                            "import_load_predict_s": round(float(np.median(inside)), 3),
                            "import_load_s": round(float(np.median(loads)), 3), "runs": runs}
        print(f"  cold start {backend}: {results[backend]}", flush=True)
    return results


def measure_accuracy(model: ParagraphTextRecognizer, samples: dict) -> dict:
    "CER of the predictor on held-out lines per font and held-out paragraphs."
    lines = {}
    for font, rows in samples["lines"].items():
        predictions = model.predict_batch([image for image, _ in rows])
        lines[font] = round(corpus_cer(predictions, [text for _, text in rows]), 4)
    paragraphs = {}
    for name, rows in samples["paragraphs"].items():
        predictions = model.predict_batch([image for image, _ in rows])
        paragraphs[name] = round(corpus_cer(predictions, [text for _, text in rows]), 4)
    return {"lines_per_font": lines, "paragraphs": paragraphs}


def normalize_tesseract(text: str) -> str:
    "Tesseract's output in our label format: lines stripped, empty lines dropped, joined by newlines."
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def measure_tesseract(samples: dict) -> dict:
    "Tesseract 5 (LSTM engine, English) on the same images: CER and seconds per image."
    import pytesseract

    version = str(pytesseract.get_tesseract_version())
    results = {"version": version, "lines_per_font": {}, "paragraphs": {}, "seconds_per_image": {}}
    for group, psm in (("lines", 7), ("paragraphs", 6)):
        seconds = []
        for name, rows in samples[group].items():
            predictions = []
            for image, _ in rows:
                started = time.perf_counter()
                predictions.append(normalize_tesseract(pytesseract.image_to_string(image, lang="eng",
                                                                                   config=f"--oem 1 --psm {psm}")))
                seconds.append(time.perf_counter() - started)
            key = "lines_per_font" if group == "lines" else "paragraphs"
            results[key][name] = round(corpus_cer(predictions, [text for _, text in rows]), 4)
        results["seconds_per_image"][group] = round(float(np.mean(seconds)), 4)
    print(f"  tesseract: {results}", flush=True)
    return results


# ---------------------------------------------------------------- the run


def machine() -> dict:
    import onnxruntime
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default=str(DEFAULT_ARTIFACT_DIR), help="the staged artifact folder")
    parser.add_argument("--untrained", action="store_true", help="benchmark an untrained model (a dry run)")
    parser.add_argument("--untrained-preset", default="default",
                        help="LineCNNLSTM preset of the untrained model (default: the line_lstm recipe's size)")
    parser.add_argument("--lines-per-font", type=int, default=100, help="held-out lines per font group")
    parser.add_argument("--paragraphs", type=int, default=50, help="held-out paragraphs per font group")
    parser.add_argument("--repeats", type=int, default=40, help="timed calls per latency figure")
    parser.add_argument("--batch", type=int, default=16, help="lines per batched call")
    parser.add_argument("--cold-start-runs", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["eager", "torchscript", "onnx"])
    parser.add_argument("--tesseract", action="store_true", help="also run Tesseract 5 on the same images")
    parser.add_argument("--quick", action="store_true", help="small numbers everywhere (a smoke run)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "inference.json"))
    parser.add_argument("--metrics-out", help="also write accuracy and latency as a metrics file for `stage --metrics`")
    args = parser.parse_args(argv)
    if args.quick:
        args.lines_per_font, args.paragraphs, args.repeats, args.cold_start_runs = 8, 4, 8, 1

    scratch = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    artifact_dir = Path(args.artifact)
    if args.untrained:
        from text_recognizer.export import export_untrained_example

        artifact_dir = export_untrained_example(scratch / "untrained", preset=args.untrained_preset)
    config = read_artifact_config(artifact_dir)
    backends = [b for b in args.backends if b != "onnx" or (artifact_dir / "model.onnx").is_file()]
    print(f"artifact {artifact_dir} ({config['kind']}, version {config['version']}), backends {backends}", flush=True)

    samples = held_out_samples(args.lines_per_font, args.paragraphs, args.seed)
    first_page = next(iter(samples["paragraphs"].values()))[0][0]
    first_page.save(scratch / "page.png")

    fastest = "onnx" if "onnx" in backends else "torchscript"
    started = time.perf_counter()
    accuracy = measure_accuracy(recognizer(artifact_dir, fastest, 2), samples)
    print(f"  accuracy ({fastest}): {accuracy}", flush=True)
    latency = measure_latency(artifact_dir, backends, samples, args.repeats, args.batch)
    cold = measure_cold_start(artifact_dir, backends, scratch / "page.png", args.cold_start_runs)
    tesseract = measure_tesseract(samples) if args.tesseract else None

    results = {
        "command": command_line("bench_inference.py", argv),
        "date": utc_now(),
        "machine": machine(),
        "artifact": {"dir": str(artifact_dir), "version": config["version"], "kind": config["kind"],
                     "untrained": args.untrained, "megabytes": round(sum(p.stat().st_size for p in artifact_dir.iterdir()) / 1e6, 2)},
        "data": {"lines_per_font": args.lines_per_font, "paragraphs_per_group": args.paragraphs, "seed": args.seed,
                 "note": "synthetic handwriting with held-out text; 'held-out fonts' were never used in training"},
        "cer": {"model": accuracy, **({"tesseract": tesseract} if tesseract else {})},
        "latency_ms": latency,
        "line_finder_bytes": {p.name: p.stat().st_size for p in sorted(artifact_dir.glob("line_finder.*"))}
        or "none in the artifact: the predictor used the finder shipped in text_recognizer/artifacts/line_finder",
        "cold_start_s": cold,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, results)
    if args.metrics_out:
        one_thread = latency.get(f"{fastest}, 1 thread", {})
        metrics = {"cer": {"lines_per_font": accuracy["lines_per_font"], "paragraphs": accuracy["paragraphs"]},
                   "latency_ms": {f"paragraph_p50_{fastest}_1_thread": one_thread.get("paragraph_batch_1", {}).get("p50")},
                   "cold_start_s": {b: v["import_load_predict_s"] for b, v in cold.items()},
                   **({"tesseract_cer": {"lines_per_font": tesseract["lines_per_font"],
                                         "paragraphs": tesseract["paragraphs"]}} if tesseract else {}),
                   "measured_by": results["command"]}
        Path(args.metrics_out).write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"wrote {args.metrics_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
