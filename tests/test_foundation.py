"""The repository's own guard rails: the nbdev sync check, the CLI, the packaging metadata."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python 3.11+


@pytest.fixture
def repo_copy(tmp_path):
    "A scratch copy of what the sync check reads: settings, notebooks, library, the check itself."
    for name in ["settings.ini", "pyproject.toml"]:
        shutil.copy2(ROOT / name, tmp_path / name)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "artifacts")
    for name in ["nbs", "labs", "text_recognizer"]:
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    (tmp_path / "tests").mkdir()
    shutil.copy2(ROOT / "tests" / "check_sync.py", tmp_path / "tests" / "check_sync.py")
    return tmp_path


def run_check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "tests" / "check_sync.py")], capture_output=True, text=True)


def test_sync_check_passes_on_the_committed_tree(repo_copy):
    res = run_check(repo_copy)
    assert res.returncode == 0, res.stderr
    assert "in sync" in res.stdout


def test_editing_an_exported_cell_without_exporting_fails(repo_copy):
    nb_path = repo_copy / "nbs" / "00_metadata.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "MAX_LINE_LENGTH = 64" in "".join(c["source"]))
    cell["source"] = "".join(cell["source"]).replace("MAX_LINE_LENGTH = 64", "MAX_LINE_LENGTH = 65")
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    res = run_check(repo_copy)
    assert res.returncode == 1
    assert "out of sync" in res.stderr and "metadata.py" in res.stderr and "make export" in res.stderr


def test_a_notebook_with_outputs_fails(repo_copy):
    nb_path = repo_copy / "nbs" / "00_metadata.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["execution_count"] = 7
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["left over\n"]}]
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    res = run_check(repo_copy)
    assert res.returncode == 1
    assert "not clean" in res.stderr and "00_metadata.ipynb" in res.stderr


def test_cli_lists_subcommands_and_rejects_unknown_ones():
    exe = Path(sys.executable).parent / "text-recognizer"
    ok = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "predict" in ok.stdout and "train" in ok.stdout
    bad = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown subcommand" in bad.stderr


def test_packaging_keeps_torch_a_range_and_has_no_torchvision():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_spec = next(d for d in meta["dependencies"] if d.startswith("torch"))
    assert "==" not in torch_spec and ">=" in torch_spec
    everything = meta["dependencies"] + sum(meta["optional-dependencies"].values(), [])
    assert not any(d.startswith("torchvision") for d in everything)
    assert any(d.startswith("pillow") and "<13" in d for d in meta["dependencies"])
    dev = meta["optional-dependencies"]["dev"]
    for pin in ["nbdev>=2.3,<3", "execnb<0.2", "fastcore<1.9"]:
        assert pin in dev
    constraints = (ROOT / "setup" / "constraints.txt").read_text()
    assert "\ntorch==" not in constraints  # torch is installed first, by TORCH_SPEC, and kept
