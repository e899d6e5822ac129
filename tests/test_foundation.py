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
    (tmp_path / "setup").mkdir()
    shutil.copy2(ROOT / "setup" / "check_sync.py", tmp_path / "setup" / "check_sync.py")
    return tmp_path


def run_check(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo / "setup" / "check_sync.py")], capture_output=True, text=True)


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


# the labs' Colab setup cell (written by setup/update_readme.py)

def run_colab_cell(tmp_path: Path, origin: Path) -> subprocess.CompletedProcess:
    "Run the labs' setup cell as Colab would, against a local `origin` repository instead of GitHub."
    sys.path.insert(0, str(ROOT / "setup"))
    import update_readme

    source = (update_readme.colab_setup_cell()
              .replace('f"https://github.com/{REPO}"', repr(f"file://{origin}"))
              .replace("/content/text-recognizer", str(tmp_path / "content" / "text-recognizer"))
              .replace("pip install -q -e", "echo pip install -q -e"))
    script = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n" + source
    return subprocess.run([sys.executable, "-c", script + "\nimport os; print('cwd', os.getcwd())"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_every_lab_has_the_generated_setup_cell():
    result = subprocess.run([sys.executable, str(ROOT / "setup" / "update_readme.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("tagged", [True, False])
def test_colab_setup_cell_clones_the_release_or_says_it_falls_back(tmp_path, tagged):
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    (origin / "labs").mkdir(parents=True)
    (origin / "labs" / "marker.txt").write_text("main branch\n")
    (origin / "setup").mkdir()  # the cell installs the Debian fonts with it (nothing to do where they are installed)
    (origin / "setup" / "system-packages.sh").write_text((ROOT / "setup" / "system-packages.sh").read_text())
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    if tagged:
        import configparser

        cfg = configparser.ConfigParser()
        cfg.read(ROOT / "settings.ini")
        (origin / "labs" / "marker.txt").write_text("the release\n")
        subprocess.run(git + ["commit", "-q", "-am", "release"], check=True)
        subprocess.run(git + ["tag", f"v{cfg['DEFAULT']['version']}"], check=True)
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "after the release"], check=True)
    result = run_colab_cell(tmp_path, origin)
    assert result.returncode == 0, result.stderr
    clone = tmp_path / "content" / "text-recognizer"
    assert f"cwd {clone / 'labs'}" in result.stdout and "pip install -q -e" in result.stdout
    marker = (clone / "labs" / "marker.txt").read_text()
    if tagged:
        assert marker == "the release\n" and "not tagged yet" not in result.stdout
    else:
        assert marker == "main branch\n" and "not tagged yet: cloning the default branch" in result.stdout
