"""Throughput and latency of the Lambda handler behind the local Lambda runtime (real awslambdaric).

    .venv/bin/python bench/bench_lambda.py                        # writes bench/results/lambda_local.json
    .venv/bin/python bench/bench_lambda.py --requests 20 --out /tmp/lambda.json   # quick
    .venv/bin/python bench/bench_lambda.py --workers 4            # 4 warm containers instead of 1

A client POSTs a rendered page as {"image": <data URL>} to the runtime's RIE-style invocations endpoint
and waits for the answer; 1, 4 and 8 such clients run at once. One awslambdaric process (`--workers 1`)
is one warm Lambda container, which takes one invocation at a time, exactly as on AWS: with more
clients than containers, requests queue and p95 grows while requests/s stays flat. Lambda itself would
scale out to more containers; `--workers N` simulates that. Cold start (runtime start until the first
answer: import, model load in the init phase, first prediction) is recorded separately. Every answer
must be a 200 with a "pred": failures are counted and make the script exit 1. The machine's load
average is recorded beside the figures.

Needs the real predictor and shipped model (text_recognizer.predictor, text_recognizer/artifacts/).
"""

import argparse
import base64
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from common import ROOT, command_line, load_average, run_concurrently, utc_now, write_json
from PIL import Image, ImageDraw

sys.path.insert(0, str(ROOT))

from text_recognizer.serverless_local import LocalLambdaRuntime  # noqa: E402


def page_png() -> bytes:
    "A rendered handwritten paragraph (the project's renderer), or typeset text when the renderer is missing."
    try:
        from text_recognizer.data.synthetic import render_paragraph

        image = render_paragraph(["The quick brown fox jumps", "over the lazy dog."], seed=0)
    except ImportError:
        image = Image.new("L", (640, 160), 255)
        draw = ImageDraw.Draw(image)
        draw.text((20, 20), "The quick brown fox jumps", fill=0, font_size=32)
        draw.text((20, 80), "over the lazy dog.", fill=0, font_size=32)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def invoke(url: str, body: bytes) -> tuple[float, bool]:
    "(seconds, ok) for one invocation."
    start = time.perf_counter()
    try:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (our loopback runtime)
            answer = json.loads(response.read())
        ok = response.status == 200 and "X-Amz-Function-Error" not in response.headers and isinstance(answer.get("pred"), str)
    except Exception:
        ok = False
    return time.perf_counter() - start, ok


def run_level(url: str, body: bytes, clients: int, requests: int) -> dict:
    "`clients` threads sharing `requests` invocations: requests/s, p50/p95 latency, failures."
    latencies, failures, lock, counter = [], [0], threading.Lock(), iter(range(requests))

    def client():
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            seconds, ok = invoke(url, body)
            with lock:
                latencies.append(seconds)
                failures[0] += not ok

    wall = run_concurrently([client] * clients)
    ms = sorted(1000 * s for s in latencies)
    return {"clients": clients, "requests": len(ms), "failures": failures[0], "requests_per_s": round(len(ms) / wall, 2),
            "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "mean_ms": round(statistics.fmean(ms), 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=80, help="invocations per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--workers", type=int, default=1, help="awslambdaric processes (warm containers)")
    parser.add_argument("--handler", default="text_recognizer.serverless.handler")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lambda_local.json")
    args = parser.parse_args(argv)

    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(page_png()).decode()}).encode()
    started = time.perf_counter()
    with LocalLambdaRuntime(args.handler, port=0, workers=args.workers) as runtime:
        ready_s = time.perf_counter() - started
        first_s, ok = invoke(runtime.invocations_url, body)
        if not ok:
            print("the first invocation failed: is the predictor (text_recognizer.predictor) and its shipped model "
                  "in place? Try: .venv/bin/text-recognizer predict on an image.", file=sys.stderr)
            return 1
        invoke(runtime.invocations_url, body)  # warm every path once more before timing
        levels = [run_level(runtime.invocations_url, body, clients, args.requests) for clients in args.clients]
    result = {
        "benchmark": "lambda handler behind the local Lambda runtime (real awslambdaric), RIE invocations endpoint",
        "command": command_line("bench_lambda.py", argv),
        "time": utc_now(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average": load_average()},
        "handler": args.handler, "workers": args.workers, "image_bytes": len(body),
        "cold_start_s": {"runtime_ready": round(ready_s, 3), "first_invocation": round(first_s, 3)},
        "levels": levels,
    }
    write_json(args.out, result, announce=False)
    for level in levels:
        print(f"{level['clients']} client(s): {level['requests_per_s']} req/s, p50 {level['p50_ms']} ms, "
              f"p95 {level['p95_ms']} ms, {level['failures']} failures")
    print(f"cold start: ready {ready_s:.2f} s, first answer {first_s:.2f} s; written to {args.out}")
    return 1 if any(level["failures"] for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
