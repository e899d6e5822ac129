"""Helpers shared by the benchmark scripts: the machine, the date, the command, the results file, concurrent clients.

Every script is run as `python bench/<script>.py` (by hand, by run_all.py, or in bench_inference.py's
cold-start processes), so its folder bench/ is on sys.path and `from common import ...` finds this module.
The scripts keep their own JSON keys (bench/report.py reads them); these functions supply the values.
"""

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    "The CPU's model name from /proc/cpuinfo, or platform.processor() where that cannot be read."
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def load_average() -> list[float]:
    "The 1, 5 and 15-minute load averages, rounded to 2 decimals."
    return [round(x, 2) for x in os.getloadavg()]


def machine(**extra) -> dict:
    "What ran the benchmark: CPU model, cores, platform and Python version, then `extra` (load, versions...)."
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), **extra}


def git_commit() -> str:
    "The short hash of the checkout's HEAD, or '' when git cannot tell."
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout.strip()
    except OSError:
        return ""


def utc_now() -> str:
    "The date and time now, UTC, to the second (ISO 8601)."
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def command_line(script: str, argv: list[str] | None = None) -> str:
    "How to rerun the benchmark: `python bench/<script> ARGS`, ARGS being `argv` or, when None, the process's own."
    return shlex.join(["python", f"bench/{script}", *(sys.argv[1:] if argv is None else argv)])


def write_json(path: Path | str, data: dict, announce: bool = True) -> Path:
    "Write `data` as indented JSON to `path`, making its folder; print `wrote PATH` unless `announce` is False."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    if announce:
        print(f"wrote {path}")
    return path


def run_concurrently(functions: list[Callable[[], object]]) -> float:
    "Call every function in its own thread, all started together; the wall-clock seconds until the last returns."
    threads = [threading.Thread(target=function) for function in functions]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started
