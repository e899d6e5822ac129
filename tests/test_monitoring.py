"""The monitoring store under real processes: concurrent writers, a writer killed mid-write,
malformed records, the S3 sink against moto's server; the recorder with a locked or missing
store; records that describe the image the model read; and the store's limits (feedback size,
image addresses read back from the database, the exported dataset's folder).

Run: .venv/bin/pytest tests/test_monitoring.py -p no:cacheprovider
(about 30 s of CPU time; wall time grows with the machine's load)
"""

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from monitoring_writer import expected_image, expected_record, writer_and_index
from PIL import Image

from text_recognizer import monitoring
from text_recognizer.monitoring import (
    MAX_FEEDBACK_CHARS,
    InvalidRecordError,
    PredictionRecord,
    Recorder,
    S3Store,
    SQLiteStore,
    UnknownRecordError,
    export_flagged_dataset,
    image_bytes,
    new_record,
    open_store,
    prediction_record,
)

WRITER = Path(__file__).with_name("monitoring_writer.py")
ROOT = Path(__file__).resolve().parents[1]


def start_writer(db: Path, writer: int, count: int, ids_file: Path, go: Path | None = None) -> subprocess.Popen:
    "A writer process (tests/monitoring_writer.py)."
    command = [sys.executable, str(WRITER), str(db), str(writer), str(count), str(ids_file)]
    return subprocess.Popen(command + (["--go", str(go)] if go else []), cwd=ROOT)


def committed_ids(ids_file: Path) -> list[str]:
    "The ids a writer reported as committed (a line cut short by a kill is left out)."
    lines = ids_file.read_text().split("\n")[:-1] if ids_file.exists() else []
    return [line for line in lines if len(line) == 36]


def check_every_record(store: SQLiteStore) -> int:
    "Every stored record equals the record its writer meant to write, and its image is intact."
    frame = store.records()
    assert frame["id"].is_unique
    for row in frame.to_dict("records"):
        writer, index = writer_and_index(row["text"])
        stored = store.get(row["id"])
        assert stored == expected_record(writer, index), f"record {writer}/{index} differs"
        image = expected_image(writer, index)
        if image is not None:
            assert store.image_bytes(stored.image_sha256) == image
    return len(frame)


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    db, go = tmp_path / "monitoring.db", tmp_path / "go"
    SQLiteStore(db).close()
    writers = [start_writer(db, w, 500, tmp_path / f"ids-{w}", go) for w in range(8)]
    deadline = time.monotonic() + 120  # start-up only: generous for a busy CI machine
    while not all((tmp_path / f"ids-{w}").exists() for w in range(8)):  # all imported and connected
        assert time.monotonic() < deadline and all(p.poll() is None for p in writers), "a writer did not start"
        time.sleep(0.02)
    go.touch()
    assert [p.wait(timeout=120) for p in writers] == [0] * 8
    store = SQLiteStore(db)
    assert store.integrity_check() == "ok"
    assert check_every_record(store) == 8 * 500
    for w in range(8):
        assert len(committed_ids(tmp_path / f"ids-{w}")) == 500
    assert sorted(store.records()["source"].value_counts().tolist()) == [500] * 8


def test_writer_killed_mid_write_loses_nothing_committed(tmp_path):
    db = tmp_path / "monitoring.db"
    SQLiteStore(db).close()
    rng = random.Random(7)  # noqa: S311
    reported = []
    for round_ in range(4):
        ids_file = tmp_path / f"ids-killed-{round_}"
        victim = start_writer(db, 100 + round_, 1_000_000, ids_file)
        bystander = start_writer(db, 200 + round_, 150, tmp_path / f"ids-bystander-{round_}")
        deadline = time.monotonic() + 120
        while len(committed_ids(ids_file)) < 20:  # writing in earnest
            assert time.monotonic() < deadline and victim.poll() is None, "the writer did not get going"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        assert bystander.wait(timeout=60) == 0  # a killed writer leaves no lock behind
        reported += committed_ids(ids_file)
    store = SQLiteStore(db)
    assert store.integrity_check() == "ok"
    for record_id in reported:  # everything a killed writer saw committed is there, intact
        record = store.get(record_id)
        assert record == expected_record(*writer_and_index(record.text))
    total = check_every_record(store)  # and nothing stored is half-written
    assert total >= len(reported) + 4 * 150
    store.log_prediction(expected_record(999, 1), expected_image(999, 1))  # the store still takes writes
    assert len(store.records()) == total + 1


def test_malformed_records_are_rejected_with_a_clear_error(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    good = expected_record(1, 0).to_dict()
    cases = {"confidence": 1.5, "polarity": "sideways", "width": -3, "height": 2.5, "time": "2026-01-01 10:00",
             "id": "not-a-uuid", "model_version": " ", "text": None, "entropy": -1.0, "flag": "bad",
             "image_sha256": "ABC", "latency_ms": "fast", "mean_intensity": True}
    for field, value in cases.items():
        with pytest.raises(InvalidRecordError) as error:
            store.log_prediction({**good, field: value})
        assert isinstance(error.value, ValueError) and error.value.field == field
        assert field in str(error.value) and "must be" in str(error.value) and repr(value)[:20] in str(error.value)
    with pytest.raises(InvalidRecordError, match="'entropy' must be a number"):
        PredictionRecord(**{**good, "entropy": float("nan")})  # NaN is refused (from_dict reads NaN cells as None)
    with pytest.raises(InvalidRecordError, match="'colour' must be absent"):
        store.log_prediction({**good, "colour": "red"})
    with pytest.raises(InvalidRecordError, match="'record' must be a PredictionRecord"):
        store.log_prediction(["not", "a", "record"])
    with pytest.raises(InvalidRecordError, match="'image_sha256' must be the sha256 of the image"):
        store.log_prediction(good, image=b"\x89PNG other bytes")
    assert len(store.records()) == 0 and not store.images_dir.exists()  # nothing half-stored
    record_id = store.log_prediction(good, expected_image(1, 0))
    with pytest.raises(InvalidRecordError, match="'id' must be new"):
        store.log_prediction(good)
    with pytest.raises(InvalidRecordError, match="'flag' must be one of"):
        store.add_feedback(record_id, "wrong")
    with pytest.raises(UnknownRecordError, match="log the prediction before its feedback"):
        store.add_feedback(str(uuid.uuid4()), "incorrect")


def test_threads_share_a_store_and_feedback_round_trips(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    image = np.full((32, 128), 240, np.uint8)
    ids = []
    threads = [threading.Thread(target=lambda: ids.extend(store.log_prediction(new_record(image, "x", "m@1", 0.5, 1.0), image)
                                                           for _ in range(50))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 200 and len(store.records()) == 200
    store.add_feedback(ids[0], "other", "blurry")
    store.add_feedback(ids[0], "incorrect", corrected_text="y")  # the latest flag wins
    flagged = store.flagged()
    assert flagged["id"].tolist() == [ids[0]] and flagged.loc[0, "flag"] == "incorrect" and flagged.loc[0, "comment"] is None
    assert len(list(store.images_dir.rglob("*"))) == 2  # one folder, one image: stored once by content


@pytest.fixture(scope="module")
def moto_s3(moto_env):
    "A bucket on this module's moto server (tests/conftest.py), its fake credentials in the environment; yields its name."
    with pytest.MonkeyPatch.context() as env:
        for key, value in moto_env.items():
            env.setenv(key, value)
        env.delenv("AWS_PROFILE", raising=False)
        monitoring.s3_client().create_bucket(Bucket="monitoring")
        yield "monitoring"


def test_s3_sink_round_trip(moto_s3):
    store = S3Store(f"s3://{moto_s3}/prod/v1")
    paper = np.full((40, 200), 230, np.uint8)
    first = new_record(paper, "hello", "m@1", 0.9, 0.2, latency_ms=5.0, source="lambda")
    assert store.log_prediction(first, paper) == first.id
    with S3Store(f"s3://{moto_s3}/prod/v1", batch_size=3) as batch:
        for i in range(4):
            batch.log_prediction(new_record(255 - paper, f"line {i}", "m@2", 0.4, 1.5, source="batch"))
    store.add_feedback(first.id, "other", "smudged")
    store.add_feedback(first.id, "incorrect", "it says hullo", corrected_text="hullo")
    client = monitoring.s3_client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=moto_s3)["Contents"]]
    record_keys = [k for k in keys if k.startswith("prod/v1/records/")]
    assert len(record_keys) == 3  # one object for the single record, two for the batches of 3 + 1
    day = first.time[:10]
    assert all(k.startswith(f"prod/v1/records/date={day}/") and k.endswith(".jsonl") for k in record_keys)
    assert f"prod/v1/images/{first.image_sha256[:2]}/{first.image_sha256}" in keys
    batch_object = client.get_object(Bucket=moto_s3, Key=sorted(record_keys)[-1])["Body"].read().decode()
    assert all(PredictionRecord.from_dict(json.loads(line)) for line in batch_object.splitlines())
    frame = store.records()
    assert len(frame) == 5 and frame["id"].is_unique
    got = store.get(first.id)
    assert (got.flag, got.comment, got.corrected_text) == ("incorrect", "it says hullo", "hullo")
    assert got.text == first.text and got.image_sha256 == first.image_sha256 and got.time == first.time
    assert store.flagged()["id"].tolist() == [first.id]
    assert store.image_bytes(first.image_sha256) == image_bytes(paper)
    assert len(store.records(since=day)) == 5 and len(store.records(since="2999-01-01")) == 0
    with pytest.raises(UnknownRecordError):
        store.get(str(uuid.uuid4()))


def test_s3_sink_concurrent_writers_and_factory(moto_s3, monkeypatch):
    url = f"s3://{moto_s3}/concurrent"
    written = []

    def write(n):
        store = S3Store(url)  # one client per thread, as each Lambda instance has its own
        written.extend(store.log_prediction(new_record(np.full((8, 8), 200, np.uint8), "t", "m@1")) for _ in range(n))

    threads = [threading.Thread(target=write, args=(15,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setenv(monitoring.MONITORING_S3_ENV_VAR, url)
    store = open_store()
    assert isinstance(store, S3Store) and sorted(store.records()["id"]) == sorted(written) and len(written) == 60


def test_store_factory_defaults_to_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv(monitoring.MONITORING_S3_ENV_VAR, raising=False)
    monkeypatch.delenv(monitoring.MONITORING_DB_ENV_VAR, raising=False)
    monkeypatch.setenv("TEXT_RECOGNIZER_HOME", str(tmp_path / "home"))
    store = open_store()
    assert isinstance(store, SQLiteStore) and store.path == (tmp_path / "home" / "monitoring" / "monitoring.db").resolve()
    monkeypatch.setenv(monitoring.MONITORING_DB_ENV_VAR, str(tmp_path / "elsewhere.db"))
    assert open_store().path == (tmp_path / "elsewhere.db").resolve()
    assert isinstance(open_store("s3://bucket/prefix", ), S3Store)
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        monitoring.parse_s3_url("s3:///nobucket")


def line_image(width: int = 200, height: int = 40) -> np.ndarray:
    "Dark strokes on light paper."
    image = np.full((height, width), 230, np.uint8)
    image[height // 3:2 * height // 3, 8:width - 8:7] = 20
    return image


def test_monitor_command(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    for i in range(30):
        store.log_prediction(new_record(255 - line_image(100 + i), "x" * i, "m@1", 0.5, 1.0, latency_ms=10.0))
    reference = tmp_path / "reference.csv"
    monitoring.reference_from_images([line_image(100 + i) for i in range(30)],
                                     ["x" * i for i in range(30)], [0.95] * 30, [0.1] * 30).to_csv(reference, index=False)
    command = [str(Path(sys.executable).with_name("text-recognizer")), "monitor", "--store", str(store.path)]
    result = subprocess.run(command + ["--reference", str(reference), "--fail-on-drift"], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert '"predictions": 30' in result.stdout and "drifted: mean_intensity, light_on_dark, confidence, entropy" in result.stdout
    assert monitoring.main(["--store", str(store.path), "--reference", str(reference)]) == 0  # reports, does not fail


def encoded(image: Image.Image, **save) -> bytes:
    "`image` saved as PNG (or the format in `save`), as bytes."
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def test_a_record_describes_the_image_the_model_read():
    from text_recognizer.images import load_image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers and the predictor turn it upright
    photo = encoded(Image.fromarray(line_image()).convert("RGB"), format="JPEG", exif=exif)
    record = prediction_record(photo, {"text": "hello", "model_version": "m@1", "confidence": 0.9}, "app")
    assert (record.width, record.height) == load_image(photo).size == (40, 200)
    ink = np.zeros((40, 200, 4), np.uint8)
    ink[..., 3] = np.where(line_image() < 128, 255, 0)  # black ink on a transparent background
    assert prediction_record(encoded(Image.fromarray(ink, "RGBA")), {}, "app").polarity == "dark-on-light"
    inverted = prediction_record(encoded(Image.fromarray(255 - line_image())), {"confidence": float("nan")}, "lambda")
    assert inverted.polarity == "light-on-dark" and inverted.confidence is None and inverted.model_version == "unknown"



def test_a_served_record_takes_the_predictors_facts_and_decodes_nothing_again(recognizer, monkeypatch):
    from text_recognizer.monitoring import records

    exif = Image.Exif()
    exif[0x0112] = 6
    photo = encoded(Image.fromarray(255 - line_image()).convert("RGB"), format="JPEG", exif=exif)
    decoded_alone = records.input_statistics(photo)
    details = recognizer.predict_with_details(photo)

    def refuse(*args, **kwargs):
        raise AssertionError("the record decoded the upload a second time")

    monkeypatch.setattr(records, "load_image", refuse)
    record = prediction_record(photo, details, "app")
    assert {name: getattr(record, name) for name in records.STATISTICS_FIELDS} == decoded_alone
    assert record.polarity == "light-on-dark" and (record.width, record.height) == (40, 200)
    with pytest.raises(AssertionError, match="second time"):  # without the predictor's facts it must decode
        prediction_record(photo, {"text": "hi"}, "app")

# --- The recorder: a locked or missing store never slows a prediction, and nothing is lost ---


def submit_while_locked(store: SQLiteStore, submit, count: int = 100) -> tuple[list[str], list[float]]:
    "Lock the store's file from another connection, `submit(record, data)` `count` records; their ids and seconds each."
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        ids, seconds, data = [], [], encoded(Image.fromarray(line_image()))
        for i in range(count):
            record = prediction_record(data, {"text": f"line {i}", "model_version": "m@1", "confidence": 0.9}, "app")
            start = time.perf_counter()
            submit(record, data)
            seconds.append(time.perf_counter() - start)
            ids.append(record.id)
        assert len(store.records()) == 0  # the lock held: nothing could be written yet
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    return ids, seconds


@pytest.mark.parametrize("capacity", [1000, 10])  # everything queued; or most of it spooled from the caller
def test_recorder_never_blocks_on_a_locked_store(tmp_path, capacity):
    store = SQLiteStore(tmp_path / "monitoring.db")
    recorder = Recorder(store, capacity=capacity)
    ids, seconds = submit_while_locked(store, recorder.submit)
    median = sorted(seconds)[len(seconds) // 2]  # a queued record takes microseconds, a spooled one an fsync
    assert max(seconds) < 0.25 and median < 0.05, f"slowest {max(seconds):.3f} s, median {median:.4f} s"
    recorder.close()
    assert sorted(store.records()["id"]) == sorted(ids) and store.integrity_check() == "ok"
    assert store.image_bytes(store.get(ids[0]).image_sha256) == encoded(Image.fromarray(line_image()))
    assert recorder.spool.pending() == 0 and list((tmp_path / "spool").glob("*.jsonl")) == []


class AwayStore(SQLiteStore):
    "A SQLite store whose writes fail while `away` is set, as an S3 endpoint that cannot be reached."

    away = True

    def log_prediction(self, record, image=None):
        if self.away:
            raise ConnectionError("endpoint unreachable")
        return super().log_prediction(record, image)

    def add_feedback(self, *args, **kwargs):
        if self.away:
            raise ConnectionError("endpoint unreachable")
        return super().add_feedback(*args, **kwargs)


def test_recorder_spools_while_the_store_is_away_and_the_next_recorder_replays(tmp_path):
    store = AwayStore(tmp_path / "monitoring.db")
    data = encoded(Image.fromarray(line_image()))
    records = [prediction_record(data, {"text": f"line {i}"}, "lambda") for i in range(30)]
    recorder = Recorder(store, retry_s=0.01)
    for record in records:
        recorder.submit(record, data)
    recorder.flag(records[0].id, "incorrect", "two letters", "the right text")
    with pytest.raises(InvalidRecordError, match="corrected_text"):
        recorder.flag(records[1].id, "incorrect", corrected_text="x" * (MAX_FEEDBACK_CHARS + 1))
    recorder.close(timeout_s=10)  # the store is still away: everything stays in the spool file
    assert len(store.records()) == 0
    spooled = [json.loads(line) for line in next((tmp_path / "spool").glob("*.jsonl")).read_text().splitlines()]
    assert len(spooled) == 31 and spooled[-1]["feedback"]["corrected_text"] == "the right text"
    store.away = False
    Recorder(store).close()  # a new recorder (a new process, after a crash) takes the spool over
    assert sorted(store.records()["id"]) == sorted(r.id for r in records)
    assert store.get(records[0].id).corrected_text == "the right text" and store.get(records[1].id).flag is None
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_recorder_never_raises_and_a_replayed_record_counts_once(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    record = new_record(line_image(), "hello", "m@1")
    store.log_prediction(record)
    with Recorder(store) as recorder:
        recorder.submit(record)  # already in the store (a replay after a crash): written once
        recorder.submit("not a record")  # a caller's bug: logged, never raised
        recorder.flag(str(uuid.uuid4()), "other")  # feedback on a record that was never stored: dropped
    assert len(store.records()) == 1


# --- The store's limits (issue 16, item 6) ---


def test_feedback_text_has_a_size_limit(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    record_id = store.log_prediction(new_record(line_image(), "hello", "m@1"))
    huge = "x" * 50_000_000  # a 50 MB "correction"
    for field in ("comment", "corrected_text"):
        with pytest.raises(InvalidRecordError, match=f"'{field}' must be a string of at most 10,000 characters") as error:
            store.add_feedback(record_id, "incorrect", **{field: huge})
        assert error.value.field == field and "50,000,000 characters" in str(error.value) and len(str(error.value)) < 300
    store.add_feedback(record_id, "incorrect", corrected_text="y" * MAX_FEEDBACK_CHARS)  # a long page is fine
    assert store.get(record_id).corrected_text == "y" * MAX_FEEDBACK_CHARS


def test_store_refuses_an_image_address_that_is_not_a_sha256(tmp_path):
    store = SQLiteStore(tmp_path / "a" / "b" / "store" / "monitoring.db")
    record = new_record(line_image(), "hello", "m@1")
    store.log_prediction(record, line_image())
    secret = tmp_path / "a" / "secret"  # images/ + ".." (the first two characters) + "../../secret" lands here
    secret.write_bytes(b"not yours")
    with sqlite3.connect(store.path) as connection:  # someone edits the database file
        connection.execute("UPDATE predictions SET image_sha256 = '../../secret' WHERE id = ?", (record.id,))
    tampered = store.records().loc[0, "image_sha256"]
    for read in (store.image_bytes, store.image):
        with pytest.raises(ValueError, match="64 lowercase hex digits"):
            read(tampered)
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        S3Store("s3://bucket/prefix", client=object()).image_bytes("../x")


def test_export_does_not_follow_an_images_symlink(tmp_path):
    store = SQLiteStore(tmp_path / "store" / "monitoring.db")
    record_id = store.log_prediction(new_record(line_image(), "hello", "m@1"), line_image())
    store.add_feedback(record_id, "incorrect", corrected_text="hullo")
    outside, folder = tmp_path / "outside", tmp_path / "dataset"
    outside.mkdir()
    folder.mkdir()
    (folder / "images").symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        export_flagged_dataset(store, folder)
    assert list(outside.iterdir()) == []
    (folder / "images").unlink()
    (folder / "images").mkdir()
    planted = folder / "images" / f"{store.get(record_id).image_sha256}.png"
    planted.symlink_to(outside / "planted.png")  # a file's name pointing out: replaced, not written through
    (folder / "labels.jsonl").symlink_to(outside / "labels.jsonl")
    assert len(export_flagged_dataset(store, folder)) == 1
    assert list(outside.iterdir()) == [] and not planted.is_symlink() and not (folder / "labels.jsonl").is_symlink()
