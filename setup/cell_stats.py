"""Exported-cell sizes and examples for every notebook in nbs/.

For each notebook: the exported cells (`#| export` / `#| exports`), their non-blank,
non-directive lines, the median per notebook and overall, the largest cells, and each
exported cell not followed (before the next exported cell) by a code cell that uses one of
the names it defines and asserts something. Cells made only of imports (re-exports), or only a `__main__`
entry point, are exempt.

    python setup/cell_stats.py            # table
    python setup/cell_stats.py --check    # exit 1 when the median > 12 or a cell lacks its example
"""
import argparse
import ast
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MEDIAN = 12
EXPORT = re.compile(r"^\s*#\s*\|\s*(export|exports)\b")
DIRECTIVE = re.compile(r"^\s*#\s*\|")


def cell_source(cell) -> str:
    """The cell's source as one string."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def is_exported(cell) -> bool:
    """True for a code cell carrying `#| export` or `#| exports`."""
    return cell.get("cell_type") == "code" and any(EXPORT.match(line) for line in cell_source(cell).splitlines())


def body_lines(source: str) -> list:
    """Non-blank lines that are not `#|` directives."""
    return [line for line in source.splitlines() if line.strip() and not DIRECTIVE.match(line)]


def _parse(source: str):
    """The cell parsed with Python, magics and shell lines blanked; None when it does not parse."""
    text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


def is_import_only(source: str) -> bool:
    """True when every statement in the cell is an import (or an `__all__` re-export list)."""
    tree = _parse(source)
    return tree is not None and bool(tree.body) and all(
        isinstance(s, (ast.Import, ast.ImportFrom)) or _is_all(s) for s in tree.body)


def _is_all(statement) -> bool:
    """True for `__all__ = ...` / `__all__ += ...`: a re-export list, not a definition."""
    target = getattr(statement, "target", None) or (getattr(statement, "targets", None) or [None])[0]
    return isinstance(target, ast.Name) and target.id == "__all__"


def _targets(node) -> set:
    """Names bound by an assignment target."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (ast.Tuple, ast.List)):
        return set().union(*map(_targets, node.elts)) if node.elts else set()
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    if isinstance(node, ast.Attribute):
        return {node.attr}  # `Cls.method = fn` defines `method`
    return set()


def is_exempt(source: str) -> bool:
    """True for cells that need no example: only imports, or only an `if __name__ == "__main__"` entry point."""
    if is_import_only(source):
        return True
    tree = _parse(source)
    return tree is not None and len(tree.body) == 1 and isinstance(tree.body[0], ast.If) and \
        "__name__" in ast.unparse(tree.body[0].test)


def defined_names(source: str) -> set:
    """Top-level names a cell defines: functions, classes, assignments, imports; `@patch` methods too."""
    tree = _parse(source)
    if tree is None:
        return set()
    names = set()
    for s in tree.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(s.name)
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.args.args:  # `@patch def f(self: Cls)`
            ann = s.args.args[0].annotation
            if isinstance(ann, ast.Name) and any("patch" in ast.unparse(d) for d in s.decorator_list):
                names.add(ann.id)
        elif isinstance(s, ast.Assign):
            names |= set().union(*map(_targets, s.targets))
        elif isinstance(s, (ast.AnnAssign, ast.AugAssign)):
            names |= _targets(s.target)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in s.names if a.name != "*"}
    return names


def used_names(source: str) -> set:
    """Every identifier and attribute name a cell mentions."""
    tree = _parse(source)
    if tree is None:
        return set(re.findall(r"[A-Za-z_]\w*", source))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}


def asserts(source: str) -> bool:
    """True when the cell asserts something (`assert`, a `test_*` helper or `pytest.raises`)."""
    return bool(re.search(r"\bassert\b|\btest_(eq|ne|close|fail|is|stdout|warns)\w*\(|\braises\(", source))


def notebook_cells(path: Path) -> list:
    """One dict per exported cell: index, lines, names, import_only, has_example."""
    cells = json.loads(path.read_text())["cells"]
    out = []
    for i, cell in enumerate(cells):
        if not is_exported(cell):
            continue
        src = cell_source(cell)
        names = defined_names(src)
        example = False
        for nxt in cells[i + 1:]:
            if is_exported(nxt):
                break
            if nxt.get("cell_type") != "code":
                continue
            nsrc = cell_source(nxt)
            if asserts(nsrc) and (not names or names & used_names(nsrc)):
                example = True
                break
        out.append(dict(index=i, lines=len(body_lines(src)), names=sorted(names),
                        import_only=is_exempt(src), has_example=example))
    return out


def collect(nbs: Path) -> dict:
    """Exported cells per notebook name, for every notebook in `nbs`."""
    return {p.name: notebook_cells(p) for p in sorted(nbs.glob("*.ipynb"))}


def missing_examples(stats: dict) -> list:
    """(notebook, cell) for each exported, non-import cell without an asserting example."""
    return [(nb, c) for nb, cells in stats.items() for c in cells
            if not c["import_only"] and not c["has_example"]]


def report(stats: dict, top: int = 15) -> float:
    """Print the table, the largest cells and the cells without example; return the overall median."""
    sizes = [c["lines"] for cells in stats.values() for c in cells if not c["import_only"]]
    print(f"{'notebook':42} {'cells':>5} {'median':>6} {'max':>4} {'no-ex':>5}")
    for nb, cells in stats.items():
        s = [c["lines"] for c in cells if not c["import_only"]]
        if not s:
            continue
        miss = sum(1 for c in cells if not c["import_only"] and not c["has_example"])
        print(f"{nb:42} {len(s):5d} {statistics.median(s):6.1f} {max(s):4d} {miss:5d}")
    overall = statistics.median(sizes) if sizes else 0.0
    print(f"\noverall: {len(sizes)} exported cells (imports aside), median {overall:.1f} lines (target <= {TARGET_MEDIAN})")
    big = sorted(((c["lines"], nb, c) for nb, cells in stats.items() for c in cells), key=lambda t: -t[0])[:top]
    print(f"\nlargest {top} exported cells:")
    for n, nb, c in big:
        print(f"  {n:4d}  {nb} cell {c['index']}  {', '.join(c['names'][:3])}")
    miss = missing_examples(stats)
    print(f"\nexported cells without an asserting example: {len(miss)}")
    for nb, c in miss:
        print(f"  {nb} cell {c['index']} ({c['lines']} lines): {', '.join(c['names'][:4]) or '?'}")
    return overall


def main(argv=None) -> int:
    """Print the table; with --check, 1 when the median is over target or an example is missing."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when median > 12 or a cell lacks its example")
    ap.add_argument("--nbs", default=str(ROOT / "nbs"), help="the notebooks folder")
    ap.add_argument("--top", type=int, default=15, help="how many of the largest cells to list")
    ap.add_argument("notebooks", nargs="*", help="only these notebook names (e.g. 24_models.line_rnn)")
    args = ap.parse_args(argv)
    stats = collect(Path(args.nbs))
    if args.notebooks:
        stats = {k: v for k, v in stats.items() if any(k.startswith(n) for n in args.notebooks)}
    overall = report(stats, args.top)
    return int(args.check and (overall > TARGET_MEDIAN or bool(missing_examples(stats))))


if __name__ == "__main__":
    sys.exit(main())
