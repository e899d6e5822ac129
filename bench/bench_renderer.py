"""How fast the synthetic handwriting renderer makes training data, and how that compares with training.

    python bench/bench_renderer.py                  # lines, paragraphs, characters; about a minute
    python bench/bench_renderer.py --count 500 --workers 2 --no-model

What is measured, each best of `--repeats` runs after a warm-up (the glyph caches filled):

- `render`: `dataset.sample(i)` in one process: text, style, composition, warp, ink and paper (PIL image);
- `item`: `dataset[i]` in one process: the above plus the transform to the model's tensor and the label encoding;
- `loader_<n>_workers`: a DataLoader with n worker processes and batch size 32, the way training reads it;
- for lines, `model_train_step`: how many lines per second one training step of the project's LineCNN ("cpu" preset) consumes
  on this CPU (forward, CTC loss, backward, optimizer step, on a fixed batch), to compare with the loader.

Rates are wall-clock samples per second; `cpu_rate` divides by the process's own CPU time instead, which is
less sensitive to other programs sharing the machine (the load average is recorded next to every result).
The summary's `projected_2_idle_cores` is twice the one-process CPU rate: what two loader workers make when
they have two cores to themselves (a projection, labelled as such, for machines as shared as ours).
Results go to bench/results/renderer.json with the command, the machine and the date.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from common import ROOT, command_line, git_commit, machine, utc_now, write_json

RESULTS = ROOT / "bench" / "results" / "renderer.json"


def machine_versions() -> dict:
    "What ran the benchmark: CPU model, cores, versions, commit."
    import numpy
    import PIL

    return machine(torch=torch.__version__, numpy=numpy.__version__, pillow=PIL.__version__, git_commit=git_commit())


def timed(function, count: int, repeats: int) -> dict:
    "Best-of-`repeats` rate of calling `function(i)` for `count` consecutive indices."
    best = None
    for repeat in range(repeats):
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            function(repeat * count + i)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = {"rate": round(count / wall, 1), "cpu_rate": round(count / max(cpu, 1e-9), 1),
                  "count": count, "load_average": round(load, 2)}
        if best is None or result["rate"] > best["rate"]:
            best = result
    return best


def loader_rate(dataset, workers: int, batch_size: int, batches: int) -> dict:
    "Samples per second through a DataLoader with `workers` processes, after its first batch."
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=False, generator=torch.Generator().manual_seed(0))
    load = os.getloadavg()[0]
    iterator = iter(loader)
    next(iterator)  # workers started, caches warm
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(iterator)[0])
    return {"rate": round(seen / (time.perf_counter() - start), 1), "count": seen, "batch_size": batch_size,
            "load_average": round(load, 2)}


def model_rate(batch_size: int = 32, steps: int = 10) -> dict:
    "Lines per second consumed by training steps of the project's LineCNN with CTC loss on this CPU."
    from text_recognizer.data.synthetic import SyntheticLineDataset
    from text_recognizer.metadata import LINE_IMAGE_HEIGHT, LINE_IMAGE_WIDTH, MAX_LINE_LENGTH, VOCABULARY
    from text_recognizer.models.line_cnn import LineCNN

    config = {"input_dims": (1, LINE_IMAGE_HEIGHT, LINE_IMAGE_WIDTH), "output_dims": (MAX_LINE_LENGTH + 2,),
              "mapping": list(VOCABULARY)}
    model = LineCNN(config, **LineCNN.PRESETS["cpu"])  # the preset the CPU training recipes use
    dataset = SyntheticLineDataset(batch_size, seed=0)
    x = torch.stack([dataset[i][0] for i in range(batch_size)])
    y = torch.stack([dataset[i][1] for i in range(batch_size)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    targets = [row[(row > 3)] for row in y]  # characters only, without <S> <E> <P> (and <B>)
    lengths = torch.tensor([len(t) for t in targets])

    def step():
        logits = model(x)  # (B, C, T)
        log_probs = logits.log_softmax(1).permute(2, 0, 1)
        loss = ctc(log_probs, torch.cat(targets), torch.full((batch_size,), log_probs.shape[0]), lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"rate": round(batch_size * steps / (time.perf_counter() - start), 1), "batch_size": batch_size,
            "steps": steps, "torch_threads": torch.get_num_threads(), "load_average": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="lines per timed run (paragraphs: a tenth)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="DataLoader worker counts to try")
    parser.add_argument("--kinds", nargs="*", default=["lines", "paragraphs", "characters"])
    parser.add_argument("--no-model", action="store_true", help="skip the LineCNN consumption rate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from text_recognizer.data.synthetic import (
        SyntheticCharacterDataset,
        SyntheticLineDataset,
        SyntheticParagraphDataset,
    )

    kinds = {"lines": (SyntheticLineDataset, 1), "paragraphs": (SyntheticParagraphDataset, 10),
             "characters": (SyntheticCharacterDataset, 1)}
    torch.set_num_threads(1)  # as in a loader worker: one process, one core
    results = {}
    for kind in args.kinds:
        dataset_class, divisor = kinds[kind]
        count = max(10, args.count // divisor)
        dataset = dataset_class(count * (args.repeats + 1) + 10_000, seed=0)
        for i in range(min(200, count)):  # warm-up: fonts, glyph caches, text pools
            dataset[dataset.num_samples - 1 - i]
        entry = {"render": timed(dataset.sample, count, args.repeats),
                 "item": timed(dataset.__getitem__, count, args.repeats)}
        for workers in args.workers:
            batch_size = 8 if kind == "paragraphs" else 32
            entry[f"loader_{workers}_workers"] = loader_rate(dataset, workers, batch_size,
                                                             batches=max(4, count // batch_size))
        results[kind] = entry
        print(kind, json.dumps(entry))
    torch.set_num_threads(os.cpu_count() or 1)
    if "lines" in args.kinds and not args.no_model:
        try:
            results["lines"]["model_train_step"] = model_rate()
        except Exception as error:  # the model is someone else's layer: report, do not fail the benchmark
            results["lines"]["model_train_step"] = {"error": f"{type(error).__name__}: {error}"}
        print("model", json.dumps(results["lines"]["model_train_step"]))
    summary = {}
    for kind, entry in results.items():
        summary[kind] = {
            "per_second_one_process_wall": entry["item"]["rate"],
            "per_cpu_second_one_process": entry["item"]["cpu_rate"],
            "per_second_2_workers_wall": entry.get("loader_2_workers", {}).get("rate"),
            # what two loader workers make on two otherwise idle cores: each renders at its CPU rate
            "projected_2_idle_cores": round(2 * entry["item"]["cpu_rate"], 1),
        }
    if "model_train_step" in results.get("lines", {}):
        summary["lines"]["model_train_step_consumes_per_second"] = results["lines"]["model_train_step"].get("rate")
    record = {
        "benchmark": "renderer",
        "command": command_line("bench_renderer.py", argv),
        "date": utc_now(),
        "machine": machine_versions(),
        "note": "samples/s; best of repeats; rate = wall clock, cpu_rate = per CPU-second of the process; "
                "the machine is shared, see load_average",
        "summary": summary,
        "results": results,
    }
    write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
