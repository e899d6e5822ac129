"""The monitoring store under real processes: concurrent writers, a writer killed mid-write,
malformed records, the S3 sink against moto's server, and gradio's flagging callback.

Run: .venv/bin/pytest tests/test_monitoring.py -p no:cacheprovider
(about 30 s of CPU time; wall time grows with the machine's load)
"""

import json
import os
import random
import signal
import socket
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
    FLAGS,
    InvalidRecordError,
    PredictionRecord,
    S3Store,
    SQLiteStore,
    UnknownRecordError,
    flagging_callback,
    image_bytes,
    new_record,
    open_store,
    sha256_hex,
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
def moto_s3():
    "moto's S3 server on 127.0.0.1 with fake credentials in the environment; yields a bucket name."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")  # fake: moto accepts anything
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_PROFILE", raising=False)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        monitoring.s3_client().create_bucket(Bucket="monitoring")
        yield "monitoring"
    server.terminate()
    server.wait(timeout=10)


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


def test_gradio_flagging_callback_writes_into_the_store(tmp_path):
    gr = pytest.importorskip("gradio")
    store = SQLiteStore(tmp_path / "monitoring.db")
    callback = flagging_callback(store, model_version="m@1")
    assert isinstance(callback, gr.flagging.FlaggingCallback)
    demo = gr.Interface(lambda image: "hello", gr.Image(type="pil", label="handwriting"), gr.Textbox(label="prediction"),
                        flagging_mode="manual", flagging_options=["Incorrect", "Offensive", "Unreadable"],
                        flagging_callback=callback, flagging_dir=str(tmp_path / "flags"))
    assert demo.flagging_callback is callback and len(callback.components) == 2  # gradio called setup
    image = np.full((40, 160), 235, np.uint8)
    upload = tmp_path / "upload.png"
    Image.fromarray(image).save(upload)
    logged = new_record(upload, "hello", "m@1", 0.7, 0.9)
    store.log_prediction(logged, upload)
    file_data = {"path": str(upload), "url": None, "orig_name": "upload.png", "meta": {"_type": "gradio.FileData"}}
    assert callback.flag([file_data, "hello"], flag_option="Incorrect") == 1  # found by the image's sha256
    assert store.get(logged.id).flag == "incorrect"
    other = tmp_path / "other.png"
    Image.fromarray(255 - image).save(other)
    assert callback.flag([{"path": str(other)}, "olleh"], flag_option="Unreadable", username="ana") == 2
    made = store.get(store.latest_for_image(sha256_hex(other.read_bytes())))  # a record made from the flag
    assert (made.flag, made.comment, made.text, made.polarity, made.model_version) == ("other", "Unreadable", "olleh", "light-on-dark", "m@1")
    assert sorted(store.flagged()["flag"]) == ["incorrect", "other"] and set(store.flagged()["flag"]) <= set(FLAGS)
    with pytest.raises(ValueError, match="nothing to flag"):
        callback.flag([None, "text only"], flag_option="Incorrect")


def test_monitor_command(tmp_path):
    store = SQLiteStore(tmp_path / "monitoring.db")
    for i in range(30):
        store.log_prediction(new_record(np.full((40, 100 + i), 30, np.uint8), "x" * i, "m@1", 0.5, 1.0, latency_ms=10.0))
    reference = tmp_path / "reference.csv"
    monitoring.reference_from_images([np.full((40, 100 + i), 230, np.uint8) for i in range(30)],
                                     ["x" * i for i in range(30)], [0.95] * 30, [0.1] * 30).to_csv(reference, index=False)
    command = [str(Path(sys.executable).with_name("text-recognizer")), "monitor", "--store", str(store.path)]
    result = subprocess.run(command + ["--reference", str(reference), "--fail-on-drift"], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "Agg"}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert '"predictions": 30' in result.stdout and "drifted: mean_intensity, light_on_dark, confidence, entropy" in result.stdout
    assert monitoring.main(["--store", str(store.path), "--reference", str(reference)]) == 0  # reports, does not fail
