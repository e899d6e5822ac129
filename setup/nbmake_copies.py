"""pytest plugin: keep the notebooks nbmake executed, outputs and figures included.

`pytest --nbmake -p nbmake_copies --nbmake-copies DIR nbs labs` writes each executed notebook to
`DIR/<folder>/<name>.ipynb` (`DIR/labs/lab01_pytorch.ipynb`), leaving the sources untouched. The docs
site (`make docs`) renders those copies, so a notebook is executed once, by the test that checks it.
A notebook that fails is written too, with its error, so the site shows what broke.
"""

from pathlib import Path

import nbformat


def pytest_addoption(parser):
    parser.getgroup("nbmake").addoption(
        "--nbmake-copies", default=None, metavar="DIR",
        help="write each executed notebook to DIR/<folder>/<name> instead of nowhere")


class _WriteToCopies:
    "Stands in for nbformat inside nbmake's items: `write` goes to the copies folder, not the source."

    def __init__(self, folder: Path):
        self.folder = folder

    def __getattr__(self, name):
        return getattr(nbformat, name)

    def write(self, nb, fp, *args, **kwargs):
        source = Path(fp)
        out = self.folder / source.parent.name / source.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out), *args, **kwargs)


def pytest_configure(config):
    folder = config.getoption("nbmake_copies")
    if folder:
        import nbmake.pytest_items

        nbmake.pytest_items.nbformat = _WriteToCopies(Path(folder).resolve())
        config.option.overwrite = True  # nbmake then calls write(), which the stand-in redirects
