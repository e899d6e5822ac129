"""Build the course site (`make docs`): every notebook as the tests executed it, plus API pages.

nbdev publishes a project's notebooks through Quarto, which cannot be installed offline, so the site
is built by Sphinx with myst-nb (see docs/conf.py). A notebook is executed once, by the nbmake run
that tests it (`make test` for nbs/, `make test-colab` for labs/, both with
`-p setup.nbmake_copies --nbmake-copies docs/_build/executed`); this script only executes the ones
whose copy is missing or older than the notebook, in smoke mode, the same way. It then puts each
copy's outputs back into its source notebook (nbmake drops the `#| slow`/`#| gpu`/`#| internet`
cells before running, and the site shows them, unrun), hides `#| hide` cells, and renders.

    python docs/build.py                                  # the whole course into docs/_build/html
    python docs/build.py --notebooks a.ipynb --out DIR    # a small site (tests/test_docs.py)
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "docs" / "_build"
sys.path.insert(0, str(ROOT))
from conftest import is_flagged  # noqa: E402 (the one reading of nbdev's test flags)

API_PAGE = """API reference
=============

Every module of the library, generated from its docstrings (the notebooks in nbs/ are their source).

.. autosummary::
   :toctree: api
   :recursive:

   text_recognizer
"""


def course_notebooks() -> list[Path]:
    "The notebooks the site shows: nbs/ (chapters, and index.ipynb as the home page) and labs/."
    return sorted((ROOT / "nbs").glob("*.ipynb")) + sorted((ROOT / "labs").glob("lab*.ipynb"))


def copy_of(notebook: Path, executed: Path) -> Path:
    "Where nbmake_copies writes `notebook` once executed: `executed/<folder>/<name>`."
    return executed / notebook.parent.name / notebook.name


def execute(notebooks: list[Path], executed: Path, workers: int) -> None:
    "Run `notebooks` under nbmake in smoke mode (as the tests do), keeping the executed copies."
    env = {**os.environ, "TEXT_RECOGNIZER_SMOKE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cwd = ROOT if all(n.is_relative_to(ROOT) for n in notebooks) else notebooks[0].parent
    names = [str(n.relative_to(cwd)) for n in notebooks]
    print(f"docs: executing {len(names)} notebook(s) in smoke mode: {' '.join(names)}", flush=True)
    command = [sys.executable, "-m", "pytest", "--nbmake", *names, "-p", "setup.nbmake_copies",
               "--nbmake-copies", str(executed), "-p", "no:cacheprovider", "-q", "-n", str(workers)]
    result = subprocess.run(command, cwd=cwd, env=env)  # noqa: S603 (our own interpreter, our own files)
    if result.returncode != 0:
        raise SystemExit(f"docs: a notebook failed in smoke mode (pytest exit {result.returncode}): fix it first")


def with_outputs(notebook: Path, executed: Path) -> nbformat.NotebookNode:
    "`notebook` with the outputs of its executed copy; flagged cells are shown unrun, `#| hide` cells removed."
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.setdefault("language_info", {"name": "python", "pygments_lexer": "ipython3"})  # nbdev_clean drops it
    runs = iter([c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"])
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [line.replace(" ", "") for line in cell.source.splitlines()]
        if "#|hide" in lines:
            cell.metadata.setdefault("tags", []).append("remove-cell")
        if is_flagged(cell.source):
            continue
        run = next(runs, None)
        if run is None or run.source != cell.source:
            raise SystemExit(f"docs: {executed} is not an execution of {notebook} as it is now: rerun it")
        cell.outputs, cell.execution_count = run.outputs, run.execution_count
    return nb


def home_page(index: nbformat.NotebookNode | None, pages: list[str], api: bool) -> tuple[str, object]:
    "The site's root page: index.ipynb (settings.ini's readme_nb) with the table of contents added."
    captions = {"labs": "Labs", "nbs": "Chapters: the library, notebook by notebook"}
    folders = sorted({p.split("/")[0] for p in pages}, key=lambda f: (f not in captions, f))
    groups = [(captions.get(f, f), [p for p in pages if p.startswith(f + "/")]) for f in folders]
    toc = "\n\n".join(f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(items) + "\n```"
                      for caption, items in groups if items)
    if api:
        toc += "\n\n```{toctree}\n:caption: Reference\n:maxdepth: 1\n\napi\n```"
    if index is None:
        return "index.md", "# Course notebooks\n\n" + toc + "\n"
    index.cells.append(nbformat.v4.new_markdown_cell(toc))
    return "index.ipynb", index


def build(notebooks: list[Path], out: Path, api: bool, workers: int) -> Path:
    "Execute what has no fresh copy, assemble the Sphinx sources in out/src, render out/html."
    executed = out / "executed"
    stale = [n for n in notebooks if not copy_of(n, executed).exists()
             or copy_of(n, executed).stat().st_mtime < n.stat().st_mtime]
    if stale:
        execute(stale, executed, workers)
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    index, pages = None, []
    for notebook in notebooks:
        nb = with_outputs(notebook, copy_of(notebook, executed))
        if notebook.name == "index.ipynb":
            index = nb
            continue
        page = f"{notebook.parent.name}/{notebook.stem}"
        (src / notebook.parent.name).mkdir(exist_ok=True)
        nbformat.write(nb, src / f"{page}.ipynb")
        pages.append(page)
    name, home = home_page(index, pages, api)
    if isinstance(home, str):
        (src / name).write_text(home)
    else:
        nbformat.write(home, src / name)
    if api:
        (src / "api.rst").write_text(API_PAGE)
    html = out / "html"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "--keep-going", "-j", "auto", "-c", str(ROOT / "docs"),
               "-d", str(out / "doctrees"), str(src), str(html)]
    if subprocess.run(command, cwd=ROOT).returncode != 0:  # noqa: S603 (our interpreter, our files)
        raise SystemExit("docs: sphinx-build failed (its messages are above)")
    return html


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="+", type=Path, help="only these notebooks (default: the course)")
    parser.add_argument("--out", type=Path, default=BUILD, help="build folder (default docs/_build)")
    parser.add_argument("--no-api", action="store_true", help="leave out the API pages")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("PYTEST_WORKERS", "2")),
                        help="notebooks executed at once, when some must be")
    args = parser.parse_args(argv)
    started = time.monotonic()
    notebooks = [n.resolve() for n in args.notebooks] if args.notebooks else course_notebooks()
    html = build(notebooks, args.out.resolve(), api=not args.no_api, workers=args.workers)
    print(f"docs: {len(notebooks)} notebooks rendered into {html}/index.html in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
