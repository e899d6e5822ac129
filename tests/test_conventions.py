"""The project's conventions, checked: CI runs the README's test command, the pre-commit hooks work offline.

The hooks are run for real in a scratch git repository (this repository's `.pre-commit-config.yaml`, its
`.venv` linked in), never in the working tree: `pre-commit run` there could touch others' files.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def readme_test_command() -> str:
    "The test command of the README's 'Two commands' block."
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return next(line.split("#")[0].strip() for line in block.splitlines() if line.startswith("make test"))


def test_ci_workflow_runs_the_readme_test_command_without_secrets():
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    workflow = yaml.safe_load(text)
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert readme_test_command() == "make test" and "make test" in runs and "make docs" in runs
    assert "secrets." not in text and workflow["permissions"] == {"contents": "read"}
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "make test\n" in ci_run and "make docs" in ci_run


def test_precommit_config_has_nbdevs_clean_hook_and_ruff():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"nbdev_clean", "nbdev_clean_labs", "ruff"} <= set(hooks)
    for hook in hooks.values():  # local hooks: the pinned tools in .venv, no network
        assert hook["language"] == "system" and hook["entry"].startswith(".venv/bin/")
        assert (VENV_BIN / hook["entry"].split()[0].removeprefix(".venv/bin/")).exists(), hook["entry"]
    result = subprocess.run([str(VENV_BIN / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ruff_hook_fails_a_broken_file_and_passes_the_fixed_one(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    (repo / ".venv").symlink_to(VENV_BIN.parent)
    broken = repo / "broken.py"
    broken.write_text("import os\n\n\ndef width(images):\n    return len(imgs)\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_CONFIG_NOSYSTEM": "1"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)

    def ruff_hook() -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "pre-commit"), "run", "ruff", "--files", "broken.py"], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=120)

    before = ruff_hook()
    assert before.returncode == 1 and "F401" in before.stdout and "F821" in before.stdout, before.stdout
    broken.write_text("def width(images):\n    return len(images)\n")
    after = ruff_hook()
    assert after.returncode == 0 and "Passed" in after.stdout, after.stdout
