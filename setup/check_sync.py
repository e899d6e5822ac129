"""Fail when the library or the notebooks are out of sync with nbdev.

The notebooks in nbs/ are the source of truth. This script exports them into a scratch copy of
the repository and cleans scratch copies of nbs/ and labs/, then compares: if `nbdev_export`
would change text_recognizer/, or `nbdev_clean` would change a notebook, it says which files
and which command fixes it. It never modifies the working tree.
"""

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "artifacts", "examples")


def differing_files(left: Path, right: Path) -> list[str]:
    "Relative paths of the files that differ, or exist on one side only, between two trees."
    out = []
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__", ".ipynb_checkpoints", "artifacts", "examples"])

    def walk(c, prefix=""):
        out.extend(prefix + n for n in c.left_only + c.right_only)
        for name in c.common_files:
            if not filecmp.cmp(Path(c.left) / name, Path(c.right) / name, shallow=False):
                out.append(prefix + name)
        for name, sub in c.subdirs.items():
            walk(sub, prefix + name + "/")

    walk(cmp)
    return sorted(out)


def run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)  # noqa: S603 (our own nbdev commands)
    if res.returncode != 0:
        sys.exit(f"check-sync: `{' '.join(cmd)}` failed:\n{res.stdout}{res.stderr}")


def main() -> int:
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for name in ["settings.ini", "pyproject.toml"]:
            shutil.copy2(ROOT / name, scratch / name)
        for name in ["nbs", "labs", "text_recognizer"]:
            if (ROOT / name).exists():
                shutil.copytree(ROOT / name, scratch / name, ignore=IGNORE)
        run([str(BIN / "nbdev_export")], scratch)
        changed = differing_files(ROOT / "text_recognizer", scratch / "text_recognizer")
        if changed:
            problems.append(
                "the library text_recognizer/ is out of sync with the notebooks in nbs/; "
                "these files would change: " + ", ".join(changed) + "\n  fix: run `make export` "
                "(nbdev_export) and commit the regenerated files; never edit them by hand."
            )
        for folder in ["nbs", "labs"]:
            if not (scratch / folder).exists():
                continue
            run([str(BIN / "nbdev_clean"), "--fname", folder], scratch)
            dirty = differing_files(ROOT / folder, scratch / folder)
            if dirty:
                problems.append(
                    f"notebooks in {folder}/ are not clean (outputs, ids or metadata left in): "
                    + ", ".join(dirty) + "\n  fix: run `make export` (it runs nbdev_clean) and commit."
                )
    if problems:
        print("check-sync FAILED:\n- " + "\n- ".join(problems), file=sys.stderr)
        return 1
    print("check-sync: library and notebooks are in sync (nbdev_export and nbdev_clean change nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
