"""Repository-wide pytest setup.

nbmake runs every notebook in nbs/ and labs/ top to bottom. Cells that need a GPU, the internet
or a long time carry an nbdev test flag (`#| gpu`, `#| internet`, `#| slow`, listed as tst_flags
in settings.ini). nbdev_test skips them; this hook teaches nbmake to skip them too, by dropping
flagged cells from the notebook nbmake reads (the file on disk is never changed).
"""

import configparser
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).parent


def _test_flags() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    return set(cfg["DEFAULT"].get("tst_flags", "").split())


FLAGS = _test_flags()
_FLAG_LINE = re.compile(r"^\s*#\s*\|\s*(\w+)\s*$")


def is_flagged(source: str, flags: set[str] = FLAGS) -> bool:
    "True when a cell's source carries one of the nbdev test flags as a `#| flag` line."
    return any((m := _FLAG_LINE.match(line)) and m.group(1) in flags for line in source.splitlines())


class _SkipFlaggedCells:
    "Stands in for the nbformat module inside nbmake: reads a notebook without its flagged cells."

    def __getattr__(self, name):
        return getattr(nbformat, name)

    @staticmethod
    def read(fp, as_version, **kwargs):
        nb = nbformat.read(fp, as_version, **kwargs)
        nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and is_flagged(c.source))]
        return nb


try:
    import nbmake.nb_run

    nbmake.nb_run.nbformat = _SkipFlaggedCells()
except ImportError:  # nbmake not installed: only tests/ can run
    pass
