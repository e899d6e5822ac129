"""Run every benchmark, each in its own process within a time budget, then regenerate the README's results.

    make bench                                   # = .venv/bin/python bench/run_all.py: the suite, < 15 min on 2 cores
    .venv/bin/python bench/run_all.py --quick    # tiny sizes, results in a scratch folder, README untouched
    .venv/bin/python bench/run_all.py --only quality app          # some benches, then the report
    .venv/bin/python bench/run_all.py --budget quality=400        # more time for one bench

The benches run one after another (never at once: they would measure each other), each with the sizes
below, chosen so that the whole suite fits in 15 minutes on 2 cores. A bench that runs past its budget
is stopped (its whole process group) and reported as "timed out"; the suite goes on (--quick doubles
the budgets: it is a check that the code runs, often on a busy machine). The suite also
stops starting benches when its own 14.5-minute limit is near. Each bench writes
bench/results/<name>.json (machine, date, command); this script adds bench/results/run_all.json (what
ran, how long, the status, the load average) and then runs bench/report.py, which rewrites the
README's "Results" section and the plots. Exit status 1 when any bench failed, timed out or is missing.
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, command_line, load_average, machine, utc_now, write_json

RESULTS = ROOT / "bench" / "results"
SUITE_LIMIT_S = 870  # 14.5 minutes: the suite's promise is "under 15 minutes on 2 cores"


@dataclass
class Bench:
    "One benchmark script: its arguments for the suite and for --quick, its time budget and its output flag."

    name: str  # also the results file: bench/results/<name>.json
    script: str
    args: list = field(default_factory=list)  # sizes for `make bench`
    quick: list = field(default_factory=list)  # sizes for --quick: a check that it runs, seconds
    budget_s: int = 60
    out_flag: str = "--out"  # how to send its results elsewhere (used only when not bench/results/)


BENCHES = [
    Bench("quality", "bench/quality.py", ["--lines", "40", "--paragraphs", "8", "--threads", "1",
                                          "--card-metrics", "bench/results/card_metrics.json"], ["--quick"], 900),
    Bench("inference", "bench/bench_inference.py",
          ["--lines-per-font", "10", "--paragraphs", "5", "--repeats", "15", "--cold-start-runs", "2"],
          ["--quick", "--backends", "onnx"], 200),
    Bench("renderer", "bench/bench_renderer.py", ["--count", "300", "--repeats", "2"],
          ["--count", "20", "--repeats", "1", "--workers", "1", "--kinds", "lines", "--no-model"], 90),
    Bench("training", "bench/bench_training.py", ["--steps", "10"], ["--steps", "2", "--only", "MLP"], 130,
          out_flag="--output"),
    Bench("monitoring", "bench/bench_monitoring.py", ["--records", "1000", "--per-writer", "250"],
          ["--records", "50", "--writers", "2", "--per-writer", "20"], 40),
    Bench("app", "bench/bench_app.py", ["--requests", "4"], ["--clients", "1", "2", "--requests", "2"], 70),
    Bench("lambda_local", "bench/bench_lambda.py", ["--requests", "24"], ["--clients", "1", "2", "--requests", "4"], 60),
]


def stop(process: subprocess.Popen):
    "SIGTERM to the bench's whole process group (it may have started servers), SIGKILL if that is not enough."
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bench(bench: Bench, args: list[str], budget_s: float, results: Path) -> dict:
    "Run one bench script in its own process group, echoing its output; its status, seconds and output tail."
    result_file = results / f"{bench.name}.json"
    command = [sys.executable, bench.script, *args]
    if results.resolve() != RESULTS.resolve():
        command += [bench.out_flag, str(result_file)]
    record = {"name": bench.name, "command": shlex.join(["python", *command[1:]]), "budget_s": round(budget_s),
              "load_average_at_start": load_average()}
    if not (ROOT / bench.script).exists():
        print(f"[{bench.name}] {bench.script} does not exist: skipped", flush=True)
        return {**record, "status": "missing", "seconds": 0}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("TEXT_RECOGNIZER_SMOKE", None)  # benches measure the real thing
    print(f"[{bench.name}] {record['command']}  (budget {budget_s:.0f} s)", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace", start_new_session=True)
    tail = []

    def echo():
        for line in process.stdout:
            print(f"[{bench.name}] {line}", end="", flush=True)
            tail.append(line.rstrip())
            del tail[:-20]

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    try:
        returncode = process.wait(budget_s)
        status = "ok" if returncode == 0 else f"failed (exit {returncode})"
    except subprocess.TimeoutExpired:
        stop(process)
        status = "timed out"
    reader.join(5)
    seconds = time.monotonic() - started
    if status == "ok" and not (result_file.exists() and result_file.stat().st_mtime >= time.time() - seconds - 1):
        status = "ok, but no results file"
    print(f"[{bench.name}] {status} after {seconds:.0f} s", flush=True)
    return {**record, "status": status, "seconds": round(seconds, 1), "returncode": process.returncode,
            **({"output_tail": tail} if status != "ok" else {})}


def parse_budgets(pairs: list[str]) -> dict:
    budgets = {}
    for pair in pairs:
        name, _, seconds = pair.partition("=")
        if name not in {b.name for b in BENCHES} or not seconds.isdigit():
            raise SystemExit(f"--budget wants NAME=SECONDS with NAME one of {[b.name for b in BENCHES]}, got {pair!r}")
        budgets[name] = int(seconds)
    return budgets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes into a scratch folder; the README is not touched")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run these benches: {[b.name for b in BENCHES]}")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="run all but these")
    parser.add_argument("--budget", nargs="+", metavar="NAME=SECONDS", default=[], help="another time budget")
    parser.add_argument("--results", type=Path, help="results folder (default: bench/results, or a scratch folder "
                        "with --quick)")
    parser.add_argument("--no-report", action="store_true", help="do not run bench/report.py afterwards")
    args = parser.parse_args(argv)
    names = {b.name for b in BENCHES}
    for name in [*(args.only or []), *args.skip]:
        if name not in names:
            parser.error(f"unknown bench {name!r}; choose from {sorted(names)}")
    budgets = parse_budgets(args.budget)
    results = args.results or (Path(tempfile.gettempdir()) / "text-recognizer-bench-quick" if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    chosen = [b for b in BENCHES if (not args.only or b.name in args.only) and b.name not in args.skip]

    suite_started, runs = time.monotonic(), []
    suite = {"benchmark": "the bench suite (make bench)", "date": utc_now(), "command": command_line("run_all.py", argv),
             "machine": machine(load_average_at_start=load_average()), "quick": args.quick}
    for bench in chosen:
        left = SUITE_LIMIT_S - (time.monotonic() - suite_started)
        budget = min(budgets.get(bench.name, bench.budget_s * (2 if args.quick else 1)), left)
        if budget < 20:
            print(f"[{bench.name}] skipped: the suite's {SUITE_LIMIT_S} s limit is reached", flush=True)
            runs.append({"name": bench.name, "status": "skipped (suite time limit)", "seconds": 0})
            continue
        runs.append(run_bench(bench, bench.quick if args.quick else bench.args, budget, results))
    suite.update(benches=runs, total_seconds=round(time.monotonic() - suite_started, 1))
    suite["machine"]["load_average_at_end"] = load_average()
    write_json(results / "run_all.json", suite, announce=False)

    print("\n" + "\n".join(f"{r['name']:<14} {r['status']:<28} {r['seconds']:>6.0f} s" for r in runs))
    print(f"{'total':<14} {'':<28} {suite['total_seconds']:>6.0f} s")
    if not args.no_report:
        sys.path.insert(0, str(ROOT / "bench"))
        import report

        if args.quick:
            report.main(["--results", str(results), "--print"])
            written = report.draw_plots(report.load_results(results), results)
            print(f"quick run: results, plots and run_all.json in {results} ({len(written)} plots); README.md untouched")
        else:
            report.main(["--results", str(results)])
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
