"""Regenerate what settings.ini and the lab notebooks decide: README.md's lab table, and each lab's Colab cell.

Each lab notebook's first markdown cell holds its title (`# Lab 01: PyTorch`) and a line
starting with `**Time:**`. The "Open in Colab" links are built from settings.ini's `user`,
`repo` and `branch`, so a fork changes them in one place and reruns this script
(`make export` does).

Every lab also starts with the same setup cell, which in Colab clones this repository at the
release the labs were written for (`v` + settings.ini's `version`) and installs it; where that
release has not been tagged yet it falls back to the default branch, saying so, and installs the
`course` extra: everything any lab runs (`make test-colab` runs this very cell in a fresh virtual
environment, then every lab). Ten copies of one cell drift apart when edited by hand, so this script
writes them all from `colab_setup_cell()`.

`--check` exits 1 when README.md or a lab's setup cell is out of date, for `make test`.

`--smoke-times LOG` first rewrites the "smoke test N min" part of each lab's **Time:** line from a
pytest log with nbmake's per-notebook `--durations` (what `make test-colab` prints), so the README's
times are measured ones: the command is printed under the table (SMOKE_TIMES_COMMAND).
"""

import configparser
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- labs:start -->", "<!-- labs:end -->"
SETUP_CELL_START = "import os, subprocess, sys"  # how the setup cell is recognized
SMOKE_TIMES_COMMAND = ("make test-colab PYTEST_WORKERS=1 | tee smoke.log && "
                       ".venv/bin/python setup/update_readme.py --smoke-times smoke.log")


def settings() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"]


def lab_paths() -> list[Path]:
    return sorted((ROOT / "labs").glob("lab*.ipynb"))


def lab_rows() -> list[str]:
    s = settings()
    rows = ["| lab | what you build | time | open |", "|---|---|---|---|"]
    for path in lab_paths():
        cells = json.loads(path.read_text())["cells"]
        first = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
        title = re.search(r"^#\s+(.+)$", first, re.M)
        subtitle = re.search(r"^>\s*(.+)$", first, re.M)
        time = re.search(r"^\*\*Time:\*\*\s*(.+)$", first, re.M)
        url = f"https://colab.research.google.com/github/{s['user']}/{s['repo']}/blob/{s['branch']}/labs/{path.name}"
        badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
        rows.append(f"| [{title.group(1) if title else path.stem}](labs/{path.name}) | "
                    f"{subtitle.group(1) if subtitle else ''} | {time.group(1) if time else '?'} | {badge} |")
    return rows


def render(readme: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers around the lab table")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    note = (f"\nSmoke-test times: each lab alone in smoke mode on 2 CPU cores, in the Colab-like environment,"
            f" measured by `{SMOKE_TIMES_COMMAND}`.\n")
    return head + START + "\n" + "\n".join(lab_rows()) + "\n" + note + END + tail


def colab_setup_cell() -> str:
    "The source of every lab's setup cell."
    s = settings()
    return f'''{SETUP_CELL_START}  # noqa: E401
REPO, REF = "{s['user']}/{s['repo']}", "v{s['version']}"  # REF: the release these labs were written for
HOME = os.environ.get("TEXT_RECOGNIZER_HOME", "/content/text-recognizer")  # where Colab keeps the clone
if "google.colab" in sys.modules:
    if not os.path.isdir(HOME):
        clone = ["git", "clone", "-q", "--depth", "1", f"https://github.com/{{REPO}}", HOME]
        if subprocess.run(clone[:-2] + ["-b", REF] + clone[-2:]).returncode != 0:
            print(f"release {{REF}} is not tagged yet: cloning the default branch instead")
            subprocess.run(clone, check=True)
        subprocess.run(f"pip install -q -e '{{HOME}}[course]'", shell=True, check=True)
        subprocess.run(["bash", os.path.join(HOME, "setup", "system-packages.sh"), "--fonts"], check=True)  # pen-stroke and handwriting fonts
    sys.path.insert(0, HOME); os.chdir(os.path.join(HOME, "labs"))  # noqa: E702'''


def sync_setup_cell(path: Path, write: bool) -> bool:
    "True when `path`'s setup cell is the template (after writing it, when `write`)."
    notebook = json.loads(path.read_text())
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"
             and "".join(c["source"]).startswith(SETUP_CELL_START)]
    if len(cells) != 1:
        raise SystemExit(f"{path}: expected one setup cell starting with {SETUP_CELL_START!r}, found {len(cells)}")
    wanted = colab_setup_cell()
    if "".join(cells[0]["source"]) == wanted:
        return True
    if write:
        cells[0]["source"] = wanted.splitlines(keepends=True)
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        print(f"{path.relative_to(ROOT)}: setup cell rewritten")
    return False


def smoke_minutes(log: str) -> dict[str, str]:
    "Each lab's smoke-test time, from the `--durations` lines of a pytest log (`12.3s call labs/lab01_x.ipynb::...`)."
    seconds = {m.group(2): float(m.group(1)) for m in re.finditer(r"([\d.]+)s call\s+\S*?(lab\w+)\.ipynb", log)}
    return {lab: "under 1 min" if s < 60 else f"{math.ceil(s / 60)} min" for lab, s in seconds.items()}


def write_smoke_times(log_path: Path) -> None:
    "Rewrite `smoke test ...` in each measured lab's **Time:** line."
    minutes = smoke_minutes(log_path.read_text())
    if not minutes:
        raise SystemExit(f"{log_path}: no `--durations` lines of labs found")
    for path in lab_paths():
        if path.stem not in minutes:
            continue
        notebook = json.loads(path.read_text())
        first = next(c for c in notebook["cells"] if c["cell_type"] == "markdown")
        text = "".join(first["source"])
        measured = minutes[path.stem]
        fresh = re.sub(r"(^\*\*Time:\*\*.*?smoke test )[^·\n]*", lambda m, t=measured: m.group(1) + t, text, flags=re.M)
        if fresh != text:
            first["source"] = fresh.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            print(f"{path.relative_to(ROOT)}: smoke test {minutes[path.stem]}")


def main(argv: list[str]) -> int:
    if "--smoke-times" in argv:
        write_smoke_times(Path(argv[argv.index("--smoke-times") + 1]))
    check = "--check" in argv
    readme_path = ROOT / "README.md"
    current = readme_path.read_text()
    fresh = render(current)
    stale = [path.name for path in lab_paths() if not sync_setup_cell(path, write=not check)]
    if check:
        problems = (["README.md's lab table"] if fresh != current else []) + [f"the setup cell of {n}" for n in stale]
        if problems:
            print(f"out of date: {', '.join(problems)}: run `make export` (setup/update_readme.py) and commit",
                  file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        readme_path.write_text(fresh)
        print("README.md: lab table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
