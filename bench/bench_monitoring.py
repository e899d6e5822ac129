"""Write throughput of the monitoring store (SQLite, WAL mode): one writer, then many writer processes;
then what Recorder.submit costs a request while the SQLite file is locked (queued, or spooled).

    .venv/bin/python bench/bench_monitoring.py                      # writes bench/results/monitoring.json
    .venv/bin/python bench/bench_monitoring.py --records 500 --per-writer 100 --out /tmp/monitoring.json  # quick

Each case writes into a fresh database in a temporary folder (--dir picks the disk). A "write" is one
`SQLiteStore.log_prediction` call: validation, the image file (when there is one) and one committed
transaction. Concurrent writers are separate processes (spawned, as gunicorn or several app
instances would be) that wait at a barrier, so start-up is not timed. The machine's load average is
recorded beside the figures: on a shared machine it explains a lot.
"""

import argparse
import io
import multiprocessing as mp
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, command_line, cpu_model, load_average, utc_now, write_json
from PIL import Image

sys.path.insert(0, str(ROOT))

from text_recognizer.monitoring import Recorder, SQLiteStore, new_record  # noqa: E402


def line_image(seed: int) -> bytes:
    "A small line-sized PNG (40 x 200), different for every seed."
    pixels = np.random.default_rng(seed).integers(180, 256, (40, 200), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_records(writer: int, count: int, with_images: bool):
    "Records (and their images) made before timing: the benchmark measures the store."
    items = []
    for i in range(count):
        image = line_image(writer * 1_000_000 + i) if with_images else None
        record = new_record(image if with_images else np.full((40, 200), 230, np.uint8), f"writer {writer} line {i}",
                            "bench@1", 0.9, 0.3, latency_ms=10.0, source="bench")
        if not with_images:
            record.image_sha256 = None
        items.append((record, image))
    return items


def write_all(store: SQLiteStore, items) -> tuple[float, float, list[float]]:
    "Write every item; return (start, end, per-write latencies in ms)."
    latencies = []
    start = time.time()
    for record, image in items:
        t0 = time.perf_counter()
        store.log_prediction(record, image)
        latencies.append((time.perf_counter() - t0) * 1000)
    return start, time.time(), latencies


def writer_process(db: str, writer: int, count: int, with_images: bool, synchronous: str, barrier, results):
    store = SQLiteStore(db, synchronous=synchronous)
    items = make_records(writer, count, with_images)
    barrier.wait()
    results.put(write_all(store, items))
    store.close()


def summarize(starts, ends, latencies, count) -> dict:
    seconds = max(ends) - min(starts)
    return dict(records=count, seconds=round(seconds, 3), writes_per_s=round(count / seconds, 1),
                latency_ms_p50=round(float(np.percentile(latencies, 50)), 3),
                latency_ms_p99=round(float(np.percentile(latencies, 99)), 3),
                latency_ms_max=round(float(np.max(latencies)), 3))


def single_writer(folder: Path, count: int, with_images: bool, synchronous: str) -> dict:
    store = SQLiteStore(folder / "single.db", synchronous=synchronous)
    items = make_records(0, count, with_images)
    start, end, latencies = write_all(store, items)
    assert len(store.records()) == count and store.integrity_check() == "ok"
    return summarize([start], [end], latencies, count)


def concurrent_writers(folder: Path, writers: int, per_writer: int, with_images: bool, synchronous: str) -> dict:
    db = folder / "concurrent.db"
    SQLiteStore(db, synchronous=synchronous).close()
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(writers), context.Queue()
    processes = [context.Process(target=writer_process, args=(str(db), w, per_writer, with_images, synchronous, barrier, results))
                 for w in range(writers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
        assert process.exitcode == 0
    store = SQLiteStore(db)
    assert len(store.records()) == writers * per_writer and store.integrity_check() == "ok"
    return dict(writers=writers, **summarize([o[0] for o in outcomes], [o[1] for o in outcomes],
                                             [x for o in outcomes for x in o[2]], writers * per_writer))


def recorder_while_locked(folder: Path, count: int, capacity: int) -> dict:
    "What a request pays to record while another connection holds the SQLite lock, and how long the catch-up takes."
    store = SQLiteStore(folder / "locked.db")
    items = make_records(0, count, with_images=True)
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    recorder, latencies = Recorder(store, capacity=capacity), []
    for record, image in items:
        t0 = time.perf_counter()
        recorder.submit(record, image)
        latencies.append((time.perf_counter() - t0) * 1000)
    locker.execute("ROLLBACK")
    locker.close()
    released = time.time()
    recorder.close()
    assert len(store.records()) == count and store.integrity_check() == "ok"
    return dict(capacity=capacity, catch_up_seconds=round(time.time() - released, 3),
                **summarize([released], [released + sum(latencies) / 1000], latencies, count))


def machine() -> dict:
    "What the figures were measured on."
    return dict(platform=platform.platform(), cpu=cpu_model(), cpu_count=os.cpu_count(), python=platform.python_version(),
                sqlite=sqlite3.sqlite_version, load_average_at_start=load_average())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records written by the single writer")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writer processes")
    parser.add_argument("--per-writer", type=int, default=500, help="records written by each concurrent writer")
    parser.add_argument("--dir", help="folder for the databases (default: a temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "monitoring.json"))
    args = parser.parse_args(argv)
    results = dict(benchmark="monitoring store writes", command=command_line("bench_monitoring.py", argv),
                   date=utc_now(), machine=machine(), cases={})
    cases = [("single writer, no image", "single", False, "NORMAL"),
             ("single writer, with image", "single", True, "NORMAL"),
             ("single writer, with image, synchronous=FULL", "single", True, "FULL"),
             (f"{args.writers} writer processes, no image", "concurrent", False, "NORMAL"),
             (f"{args.writers} writer processes, with image", "concurrent", True, "NORMAL"),
             ("Recorder.submit, store locked, all queued", "recorder", True, "NORMAL"),
             ("Recorder.submit, store locked, queue of 10 (the rest spooled)", "spooling", True, "NORMAL")]
    for name, kind, with_images, synchronous in cases:
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            if kind == "single":
                result = single_writer(Path(folder), args.records, with_images, synchronous)
            elif kind in ("recorder", "spooling"):
                result = recorder_while_locked(Path(folder), min(args.records, 500), 1000 if kind == "recorder" else 10)
            else:
                result = concurrent_writers(Path(folder), args.writers, args.per_writer, with_images, synchronous)
        results["cases"][name] = result
        print(f"{name:<46} {result['writes_per_s']:>8.0f} writes/s   p50 {result['latency_ms_p50']:.2f} ms   "
              f"p99 {result['latency_ms_p99']:.2f} ms   ({result['records']} records)", flush=True)
    results["machine"]["load_average_at_end"] = load_average()
    write_json(args.out, results, announce=False)
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
