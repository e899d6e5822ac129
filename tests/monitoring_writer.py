"""A monitoring-store writer process for tests/test_monitoring.py.

    python tests/monitoring_writer.py DB WRITER COUNT IDS_FILE [--go GO_FILE]

Writes COUNT deterministic records (writer WRITER, indices 0..COUNT-1) into the SQLite store at
DB, one short transaction each, and appends each id to IDS_FILE once `log_prediction` returned,
that is once it is committed. With --go it first creates IDS_FILE and then waits for GO_FILE to
exist, so that many writers start writing at the same moment. `expected_record` rebuilds any
record from its (writer, index), so a checker can compare every stored field.
"""

import argparse
import io
import random
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from text_recognizer.monitoring import PredictionRecord, SQLiteStore, sha256_hex

NAMESPACE = uuid.UUID("6f1c1f8e-4a55-4d57-9d0e-3f1b2a9c0d11")
IMAGE_EVERY = 5  # every fifth record also stores an image


def expected_image(writer: int, index: int) -> bytes | None:
    "The PNG bytes logged with record (writer, index), or None."
    if index % IMAGE_EVERY:
        return None
    pixels = np.random.default_rng([writer, index]).integers(0, 256, (24, 48), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, format="PNG")
    return buffer.getvalue()


def expected_record(writer: int, index: int) -> PredictionRecord:
    "The record that writer `writer` logs as its `index`-th, the same every time."
    rng = random.Random(writer * 1_000_003 + index)  # noqa: S311 (test data)
    image = expected_image(writer, index)
    words = " ".join(rng.choice(["ink", "paper", "line", "word", "naïve", "ünïcode", "'quote'"]) for _ in range(rng.randint(1, 60)))
    return PredictionRecord(
        id=str(uuid.uuid5(NAMESPACE, f"{writer}/{index}")),
        time=f"2026-01-{1 + writer % 28:02d}T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}.{writer:06d}+00:00",
        text=f"w{writer} i{index}: {words}", model_version=f"model@{writer % 3}", width=rng.randint(1, 4000),
        height=rng.randint(1, 4000), aspect=rng.uniform(0.01, 100), mean_intensity=rng.random(),
        polarity=rng.choice(["dark-on-light", "light-on-dark"]), confidence=rng.random(), entropy=rng.uniform(0, 5),
        latency_ms=rng.uniform(0, 1000), source=f"writer-{writer}", image_sha256=sha256_hex(image) if image else None)


def writer_and_index(text: str) -> tuple[int, int]:
    "(writer, index) from the text of a record written here."
    head = text.split(":", 1)[0].split()
    return int(head[0][1:]), int(head[1][1:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("writer", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("ids_file")
    parser.add_argument("--go")
    args = parser.parse_args(argv)
    store = SQLiteStore(args.db)
    with open(args.ids_file, "a", buffering=1) as ids:  # line-buffered: one write() per committed id
        if args.go:
            while not Path(args.go).exists():
                time.sleep(0.005)
        for index in range(args.count):
            record = expected_record(args.writer, index)
            store.log_prediction(record, expected_image(args.writer, index))
            ids.write(record.id + "\n")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
