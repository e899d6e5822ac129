"""Load on the Gradio app's API: 1, 4 and 8 concurrent gradio_client clients reading a rendered paragraph.

Starts `text-recognizer demo` on a free 127.0.0.1 port (the shipped model, or $TEXT_RECOGNIZER_ARTIFACT,
or an untrained exported model when neither exists), warms it up, then for each client count runs every
client in its own thread, each sending the same page `--requests` times to `/recognize`. Records
requests/s, p50/p95 latency and failures to bench/results/app.json, with the machine, date and command.

    .venv/bin/python bench/bench_app.py                 # 1, 4, 8 clients, 8 requests each
    .venv/bin/python bench/bench_app.py --clients 1 2 --requests 4 --out /tmp/app.json
"""

import argparse
import functools
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, command_line, run_concurrently, utc_now, write_json

sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def artifact_dir(scratch: Path) -> Path:
    "The model the app will serve."
    from text_recognizer.predictor import ArtifactError, ParagraphTextRecognizer

    try:
        return Path(ParagraphTextRecognizer().artifact_dir)
    except ArtifactError:
        from text_recognizer.export import export_untrained_example

        return Path(export_untrained_example(scratch / "untrained"))


def start_app(artifact: Path, home: Path, port: int, concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "TEXT_RECOGNIZER_HOME": str(home), "TEXT_RECOGNIZER_ARTIFACT": str(artifact),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("NGROK_AUTHTOKEN", None)
    log = open(home / "app.log", "wb")  # the child keeps it open for its life
    process = subprocess.Popen([sys.executable, "-c", "import sys; from text_recognizer.cli import main; "
                                "sys.exit(main())", "demo", "--port", str(port), "--concurrency", str(concurrency),
                                "--max-queue", "256"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while f"running on http://127.0.0.1:{port}/" not in (home / "app.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the app did not start:\n" + (home / "app.log").read_text(errors="replace"))
        time.sleep(0.5)
    return process


def percentile(values: list[float], q: float) -> float:
    "The q-th percentile (0-100) by linear interpolation."
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_level(url: str, page: Path, clients: int, requests: int, expected: str) -> dict:
    "`clients` threads, each with its own gradio_client session, each sending `requests` readings."
    from gradio_client import Client, handle_file

    sessions = [Client(url, verbose=False, download_files=False) for _ in range(clients)]
    latencies, failures, lock, start_line = [], [], threading.Lock(), threading.Barrier(clients)

    def work(client):
        start_line.wait()
        for _ in range(requests):
            started = time.perf_counter()
            try:
                text, _ = client.predict(handle_file(str(page)), api_name="/recognize")
                ok = text == expected
                error = None if ok else f"wrong text {text!r}"
            except Exception as exc:  # a failure is counted, not raised
                error = f"{type(exc).__name__}: {exc}"
            with lock:
                (failures.append(error) if error else latencies.append((time.perf_counter() - started) * 1000))

    wall = run_concurrently([functools.partial(work, client) for client in sessions])
    for client in sessions:
        client.close()
    return {"clients": clients, "requests": clients * requests, "failures": len(failures),
            "failure_examples": failures[:3], "wall_s": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--requests", type=int, default=8, help="requests per client at each level")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency (readings at once)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "app.json"))
    args = parser.parse_args(argv)

    from PIL import Image

    from text_recognizer.data.synthetic import render_paragraph
    from text_recognizer.predictor import ParagraphTextRecognizer

    scratch = Path(tempfile.mkdtemp(prefix="bench-app-"))
    artifact = artifact_dir(scratch)
    page = scratch / "page.png"
    render_paragraph(["The quick brown fox jumps", "over 12 lazy dogs, twice."], seed=3).save(page)
    recognizer = ParagraphTextRecognizer(artifact)
    expected = recognizer.predict(str(page))
    port = free_port()
    (scratch / "home").mkdir()
    process = start_app(artifact, scratch / "home", port, args.concurrency)
    url = f"http://127.0.0.1:{port}/"
    try:
        run_level(url, page, 1, 3, expected)  # warm-up: first requests load lazily-built pieces
        levels = []
        for clients in args.clients:
            result = run_level(url, page, clients, args.requests, expected)
            levels.append(result)
            print(f"{clients:>2} clients: {result['requests']:>3} requests, {result['failures']} failures, "
                  f"{result['requests_per_s']:6.2f} req/s, p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms",
                  flush=True)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    report = {
        "benchmark": "gradio app /recognize through gradio_client, concurrent clients",
        "date": utc_now(),
        "command": " ".join(filter(None, [
            f"TEXT_RECOGNIZER_ARTIFACT={shlex.quote(os.environ['TEXT_RECOGNIZER_ARTIFACT'])}"
            if os.environ.get("TEXT_RECOGNIZER_ARTIFACT") else "", command_line("bench_app.py", argv)])),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {"version": str(recognizer.version), "backend": recognizer.backend_name, "kind": recognizer.kind},
        "app": {"concurrency_limit": args.concurrency, "requests_per_client": args.requests,
                "image": "a rendered two-line paragraph", "image_size": list(Image.open(page).size)},
        "levels": levels,
    }
    write_json(args.out, report)
    return 1 if any(level["failures"] for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
