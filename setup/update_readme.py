"""Regenerate the lab table in README.md from settings.ini and the lab notebooks.

Each lab notebook's first markdown cell holds its title (`# Lab 01: PyTorch`) and a line
starting with `**Time:**`. The "Open in Colab" links are built from settings.ini's `user`,
`repo` and `branch`, so a fork changes them in one place and reruns this script
(`make export` does). `--check` exits 1 when README.md is out of date, for `make test`.
"""

import configparser
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- labs:start -->", "<!-- labs:end -->"


def lab_rows() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    s = cfg["DEFAULT"]
    rows = ["| lab | what you build | time | open |", "|---|---|---|---|"]
    for path in sorted((ROOT / "labs").glob("lab*.ipynb")):
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
    return head + START + "\n" + "\n".join(lab_rows()) + "\n" + END + tail


def main(argv: list[str]) -> int:
    readme_path = ROOT / "README.md"
    current = readme_path.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print("README.md's lab table is out of date: run `make export` (setup/update_readme.py) and commit",
                  file=sys.stderr)
            return 1
        return 0
    if fresh != current:
        readme_path.write_text(fresh)
        print("README.md: lab table regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
