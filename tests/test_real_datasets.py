"""The real-dataset loaders (download, EMNIST, IAM, MNIST) run end to end, offline: files fabricated
in the real formats are served from a loopback HTTP server, and every path goes through the real code."""

import dataclasses
import hashlib
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from fabricate import serve_files
from PIL import Image

from text_recognizer.data.download import DownloadError, RemoteFile, download_file, fetch, sha256sum
from text_recognizer.data.emnist import (
    EMNIST,
    EMNIST_CHARACTERS,
    EMNIST_REMOTE,
    EMNISTLines,
    fabricate_emnist_zip,
)
from text_recognizer.data.iam import IAM_REMOTE, IAMLines, IAMParagraphs, fabricate_iam_zip, process_iam
from text_recognizer.data.mnist import MNIST, MNIST_FILES, write_idx
from text_recognizer.data.modules import FeedbackDatasetError, read_feedback_pages
from text_recognizer.metadata import MAX_LINE_LENGTH, MAX_PARAGRAPH_LENGTH, VOCABULARY, indices_to_text
from text_recognizer.utils import HOME_ENV_VAR

PAYLOAD = os.urandom(250_000)
GOOD = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path / "home"))
    for name in ("TEXT_RECOGNIZER_EMNIST_ZIP", "TEXT_RECOGNIZER_IAM_ZIP", "TEXT_RECOGNIZER_MNIST_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with serve_files({"/data.bin": PAYLOAD}) as (base, state):
        yield base, state


def files_in(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- download_file


def test_download_verifies_renames_and_caches(server, tmp_path):
    base, state = server
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False)
    assert dest.read_bytes() == PAYLOAD and files_in(tmp_path) == ["data.bin"]
    download_file(f"{base}/data.bin", dest, GOOD, progress=False)
    assert len(state.requests) == 1  # the second call used the verified cache


def test_checksum_mismatch_leaves_nothing_cached(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="not the expected one"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", "0" * 64, progress=False)
    assert files_in(tmp_path) == []


def test_truncated_body_is_an_error_then_resumes_with_range(server, tmp_path):
    base, state = server
    state.cut_after = 100_000  # Content-Length says 250,000; the connection closes after 100,000
    with pytest.raises(DownloadError, match="ended after 100000 of 250000 bytes"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False)
    assert files_in(tmp_path) == ["data.bin.part"] and (tmp_path / "data.bin.part").stat().st_size == 100_000
    state.cut_after = None
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False)
    assert dest.read_bytes() == PAYLOAD and files_in(tmp_path) == ["data.bin"]
    assert state.requests[-1] == ("/data.bin", "bytes=100000-")  # only the missing bytes were asked for


def test_restarts_cleanly_when_server_ignores_range(server, tmp_path):
    base, state = server
    state.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"garbage from another file" * 100)
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False)
    assert dest.read_bytes() == PAYLOAD and state.requests[-1][1] is not None  # asked, got 200, rewrote


def test_part_longer_than_file_restarts(server, tmp_path):
    base, state = server
    (tmp_path / "data.bin.part").write_bytes(b"x" * 300_000)  # the server answers 416
    assert download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False).read_bytes() == PAYLOAD
    assert [r[1] for r in state.requests] == ["bytes=300000-", None]


def test_corrupt_part_fails_checksum_then_recovers(server, tmp_path):
    base, _ = server
    (tmp_path / "data.bin.part").write_bytes(b"\0" * 1000)  # a wrong prefix that resume would keep
    with pytest.raises(DownloadError, match="It was deleted"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False)
    assert files_in(tmp_path) == []
    assert download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False).read_bytes() == PAYLOAD


def test_damaged_cached_file_is_fetched_again(server, tmp_path):
    base, _ = server
    (tmp_path / "data.bin").write_bytes(b"stale")
    assert download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, progress=False).read_bytes() == PAYLOAD


def test_stalled_server_times_out(server, tmp_path):
    base, state = server
    state.stall_seconds = 2
    with pytest.raises(DownloadError, match="run again"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", GOOD, timeout=0.3, progress=False)
    assert not (tmp_path / "data.bin").exists()


def test_http_errors_unreachable_hosts_and_schemes(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base}/missing.bin", tmp_path / "m.bin", GOOD, progress=False)
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file("http://127.0.0.1:9/data.bin", tmp_path / "m.bin", GOOD, timeout=2, progress=False)
    with pytest.raises(ValueError, match="only http"):
        download_file("ftp://example.com/data.bin", tmp_path / "m.bin", GOOD)
    assert files_in(tmp_path) == []


def test_local_copy_from_argument_and_environment(server, tmp_path, monkeypatch):
    base, state = server
    copy = tmp_path / "mine.bin"
    copy.write_bytes(PAYLOAD)
    remote = RemoteFile(f"{base}/data.bin", GOOD, "data.bin", env_var="TR_TEST_COPY")
    assert fetch(remote, tmp_path / "cache", local_copy=copy) == copy
    monkeypatch.setenv("TR_TEST_COPY", str(copy))
    assert fetch(remote, tmp_path / "cache") == copy
    assert state.requests == [] and not (tmp_path / "cache" / "data.bin").exists()
    copy.write_bytes(PAYLOAD[:-1])
    with pytest.raises(DownloadError, match="expected " + GOOD):
        fetch(remote, tmp_path / "cache")


# ---------------------------------------------------------------- EMNIST


@pytest.fixture(scope="module")
def emnist_zip(tmp_path_factory):
    return fabricate_emnist_zip(tmp_path_factory.mktemp("emnist") / "matlab.zip", per_class=6)


def test_emnist_download_processing_and_modules(emnist_zip, tmp_path):
    body = emnist_zip.read_bytes()
    with serve_files({"/matlab.zip": body}) as (base, state):
        remote = RemoteFile(f"{base}/matlab.zip", sha256sum(emnist_zip), "matlab.zip")
        dm = EMNIST(batch_size=8, num_workers=0, folder=tmp_path, remote=remote, limit=0, per_class=5)
        dm.prepare_data()
        dm.setup()
    assert (tmp_path / "matlab.zip").read_bytes() == body and dm.processed_path.exists()
    counts = np.bincount([int(y) for _, y in dm.data_train] + [int(y) for _, y in dm.data_val])
    assert sorted(set(counts) - {0}) == [5] and len(counts.nonzero()[0]) == 62  # balanced: 5 of each of 62
    assert len(dm.data_test) == 62 and {VOCABULARY[int(y)] for _, y in dm.data_test} == set(EMNIST_CHARACTERS)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    # upright (the .mat stores images column by column): "L" has its ink left and bottom
    ells = torch.stack([x for x, y in dm.data_test if VOCABULARY[int(y)] == "L"])[:, 0]
    assert ells[..., :14].sum() > ells[..., 14:].sum() and ells[:, 14:].sum() > ells[:, :14].sum()

    lines = EMNISTLines(batch_size=4, num_workers=0, folder=tmp_path, remote=remote, per_class=5,
                        num_train=8, num_val=4, num_test=4, val_fraction=0.0)
    lines.prepare_data()  # cached: no server needed any more
    lines.setup()
    x, y = next(iter(lines.train_dataloader()))
    assert x.shape == (4, 1, 40, 640) and y.shape == (4, MAX_LINE_LENGTH + 2)
    assert torch.equal(lines.data_train[3][0], lines.data_train[3][0])  # deterministic
    assert len(state.requests) == 1


def test_emnist_checksum_failure_caches_nothing(emnist_zip, tmp_path):
    with serve_files({"/matlab.zip": emnist_zip.read_bytes()}) as (base, _):
        remote = dataclasses.replace(EMNIST_REMOTE, url=f"{base}/matlab.zip")  # the real sha256: a mismatch
        with pytest.raises(DownloadError, match="not the expected one"):
            EMNIST(num_workers=0, folder=tmp_path, remote=remote).prepare_data()
    assert files_in(tmp_path) == []


def test_emnist_truncated_download_then_resume(emnist_zip, tmp_path):
    body = emnist_zip.read_bytes()
    with serve_files({"/matlab.zip": body}) as (base, state):
        remote = RemoteFile(f"{base}/matlab.zip", sha256sum(emnist_zip), "matlab.zip")
        state.cut_after = len(body) // 3
        with pytest.raises(DownloadError, match="run again to resume"):
            EMNIST(num_workers=0, folder=tmp_path, remote=remote).prepare_data()
        assert files_in(tmp_path) == ["matlab.zip.part"]
        state.cut_after = None
        dm = EMNIST(num_workers=0, folder=tmp_path, remote=remote)
        dm.prepare_data()
    assert state.requests[-1][1] == f"bytes={len(body) // 3}-" and dm.processed_path.exists()


# ---------------------------------------------------------------- IAM


@pytest.fixture(scope="module")
def iam_zip(tmp_path_factory):
    return fabricate_iam_zip(tmp_path_factory.mktemp("iam") / "iamdb.zip")


def _labels(dm, kind, split):
    return json.loads((dm.processed_dir / kind / f"{split}.json").read_text())


def test_iam_download_processing_splits_and_modules(iam_zip, tmp_path):
    with serve_files({"/iam/iamdb.zip": iam_zip.read_bytes()}) as (base, _):
        remote = dataclasses.replace(IAM_REMOTE, url=f"{base}/iam/iamdb.zip", sha256=sha256sum(iam_zip))
        lines = IAMLines(batch_size=3, num_workers=0, folder=tmp_path, remote=remote, limit=0)
        lines.prepare_data()
        lines.setup()
    report = lines.report
    assert (report["lines_train"], report["lines_val"], report["lines_test"]) == (6, 3, 2)
    assert report["lines_dropped_unknown_characters"] == {"b02-010-00": "%"}
    assert report["forms_dropped_writer_in_two_splits"] == ["d04-006"]
    # disjoint by form and by writer; no empty labels
    forms, writers = {}, {}
    for split in ("train", "val", "test"):
        items = _labels(lines, "lines", split)
        assert all(item["text"].strip() for item in items)
        forms[split] = {item["form"] for item in items}
        writers[split] = {item["writer"] for item in items}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        assert not forms[a] & forms[b] and not writers[a] & writers[b]
    texts = {item["text"] for item in _labels(lines, "lines", "train")}
    assert 'He said: "Fine, thanks."' in texts and "Cafe in the corner (2 rooms)" in texts

    x, y = next(iter(lines.train_dataloader()))
    assert x.shape == (3, 1, 40, 640) and y.shape == (3, MAX_LINE_LENGTH + 2)
    assert x.mean() < 0.5 and x.max() > 0.5  # ink bright on a dark background
    decoded = {indices_to_text(row[1:].tolist()) for row in y}
    assert decoded <= texts

    paragraphs = IAMParagraphs(batch_size=2, num_workers=0, folder=tmp_path, remote=remote, limit=0)
    paragraphs.prepare_data()  # processed already: the server is gone and nothing is fetched
    paragraphs.setup()
    x, y = paragraphs.data_test[0]
    assert x.shape == (1, 576, 640) and y.shape == (MAX_PARAGRAPH_LENGTH + 2,)
    assert indices_to_text(y.tolist()) == "Four and twenty blackbirds\nbaked in a pie!"
    assert [len(paragraphs.data_train), len(paragraphs.data_val), len(paragraphs.data_test)] == [3, 1, 1]


def test_iam_truncated_or_corrupt_download_leaves_nothing(iam_zip, tmp_path):
    body = iam_zip.read_bytes()
    with serve_files({"/iamdb.zip": body}) as (base, state):
        remote = dataclasses.replace(IAM_REMOTE, url=f"{base}/iamdb.zip", sha256=sha256sum(iam_zip))
        state.cut_after = 1000
        with pytest.raises(DownloadError, match="ended after 1000 of"):
            IAMLines(num_workers=0, folder=tmp_path, remote=remote).prepare_data()
        assert files_in(tmp_path) == ["iamdb.zip.part"]
        state.cut_after = None
        state.files["/iamdb.zip"] = body[:1000] + b"X" + body[1001:]  # the rest arrives, but the file changed
        with pytest.raises(DownloadError, match="not the expected one"):
            IAMLines(num_workers=0, folder=tmp_path, remote=remote).prepare_data()
    assert files_in(tmp_path) == []  # no zip, no .part, no processed folder


def test_iam_local_zip_and_local_folder(iam_zip, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT_RECOGNIZER_IAM_ZIP", str(iam_zip))
    with pytest.raises(DownloadError, match="expected f3c9e87a"):  # a local copy is checked against the real sha256
        IAMLines(num_workers=0, folder=tmp_path).prepare_data()
    assert files_in(tmp_path) == []
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(iam_zip).extractall(unpacked)
    monkeypatch.setenv("TEXT_RECOGNIZER_IAM_ZIP", str(unpacked / "iamdb"))
    lines = IAMLines(num_workers=0, folder=tmp_path / "cache", limit=0)
    lines.setup()
    assert len(lines.data_test) == 2 and lines.data_test[0][0].shape == (1, 40, 640)


def _altered_zip(source, target, old: bytes, new: bytes, rename=None):
    "A copy of the zip `source` with `old` replaced by `new` in every member (and member names renamed)."
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as altered:
        for info in original.infolist():
            name = rename(info.filename) if rename else info.filename
            altered.writestr(name, original.read(info).replace(old, new))
    return target


@pytest.mark.parametrize("evil", ["../../../../escaped", "/tmp/escaped-iam-line", "a01/../../../escaped"])
def test_iam_line_ids_that_are_not_plain_names_are_refused(iam_zip, tmp_path, evil):
    evil_zip = _altered_zip(iam_zip, tmp_path / "evil.zip", b'<line id="a01-003-00"', f'<line id="{evil}"'.encode())
    out = tmp_path / "deep" / "er" / "processed"
    with pytest.raises(ValueError, match="not a plain IAM id"):
        process_iam(evil_zip, out)
    assert not out.exists() and files_in(out.parent) == []  # nothing written, not even a temporary folder
    assert not list(tmp_path.rglob("escaped*")) and not os.path.exists("/tmp/escaped-iam-line.png")


def test_iam_form_file_names_that_are_not_plain_ids_are_refused(iam_zip, tmp_path):
    rename = lambda name: name.replace("xml/a01-003.xml", "xml/../../escaped.xml")  # noqa: E731
    evil_zip = _altered_zip(iam_zip, tmp_path / "evil.zip", b"", b"", rename=rename)
    with pytest.raises(ValueError, match="not a plain IAM id"):
        process_iam(evil_zip, tmp_path / "processed")
    assert not list(tmp_path.rglob("escaped*.png"))


# ---------------------------------------------------------------- MNIST


def test_mnist_download_over_loopback(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (24, 28, 28)), "train-labels-idx1-ubyte.gz": np.arange(24) % 10,
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)), "t10k-labels-idx1-ubyte.gz": np.arange(10)}
    bodies = {}
    for name, array in arrays.items():
        bodies["/mnist/" + name] = write_idx(tmp_path / name, array.astype(np.uint8)).read_bytes()
    assert set(arrays) == set(MNIST_FILES)
    with serve_files(bodies) as (base, _):
        files = {name: RemoteFile(f"{base}/mnist/{name}", hashlib.sha256(bodies["/mnist/" + name]).hexdigest(), name)
                 for name in arrays}
        dm = MNIST(num_workers=0, source="mnist", folder=tmp_path / "cache", files=files, limit=0)
        dm.prepare_data()
        dm.setup()
    assert dm.source == "mnist" and len(dm.data_train) + len(dm.data_val) == 24 and len(dm.data_test) == 10
    x, y = dm.data_test[3]
    assert x.shape == (1, 28, 28) and int(y) == 3
    auto = MNIST(num_workers=0, folder=tmp_path / "cache", files=files)  # downloaded now: "auto" picks MNIST
    auto.setup()
    assert auto.source == "mnist"


# ---------------------------------------------------------------- feedback folders (untrusted input)


def _feedback_folder(folder, image_name):
    "A feedback folder with one good image, whose labels.jsonl names `image_name`."
    (folder / "images").mkdir(parents=True)
    Image.new("L", (120, 40), 255).save(folder / "images" / "0.png")
    (folder / "labels.jsonl").write_text(json.dumps({"image": image_name, "text": "hello"}) + "\n")
    return folder


def test_feedback_folder_reads_its_own_images(tmp_path):
    [(image, text, where)] = read_feedback_pages(_feedback_folder(tmp_path / "folder", "images/0.png"))
    assert image.mode == "L" and image.size == (120, 40) and text == "hello" and where.endswith("labels.jsonl:1")


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink", "symlinked_labels"])
def test_feedback_folder_refuses_files_outside_it(tmp_path, kind):
    secret = tmp_path / "secret.png"
    Image.new("L", (120, 40), 0).save(secret)
    name = {"parent": "../secret.png", "absolute": str(secret)}.get(kind, "images/link.png")
    folder = _feedback_folder(tmp_path / "folder", name)
    (folder / "images" / "link.png").symlink_to(secret)
    if kind == "symlinked_labels":
        (tmp_path / "outside.jsonl").write_text(json.dumps({"image": "images/0.png", "text": "hello"}) + "\n")
        (folder / "labels.jsonl").unlink()
        (folder / "labels.jsonl").symlink_to(tmp_path / "outside.jsonl")
    with pytest.raises(FeedbackDatasetError, match="outside the feedback folder"):
        read_feedback_pages(folder)


def test_feedback_decompression_bomb_is_a_clear_error_naming_the_file(tmp_path):
    folder = _feedback_folder(tmp_path / "folder", "images/bomb.png")
    Image.new("1", (20_000, 10_000)).save(folder / "images" / "bomb.png")  # 200 million pixels, about 30 KB
    assert (folder / "images" / "bomb.png").stat().st_size < 100_000
    with pytest.raises(FeedbackDatasetError, match=r"bomb\.png.*decompression bomb") as error:
        read_feedback_pages(folder)
    assert "labels.jsonl:1" in str(error.value)
