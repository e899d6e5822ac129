#!/usr/bin/env bash
# make test-colab: the labs as a learner in Colab meets them.
#
# A fresh virtual environment holds only what Colab has before the first cell (Python, torch, a
# Jupyter kernel), plus the harness that drives notebooks (pytest, nbmake). The labs' setup cell,
# its code unchanged, then runs with `google.colab` imported (as Colab's kernel does): it clones the
# repository and pip-installs `.[course]`. GitHub is replaced by a local bare clone of this
# repository's committed HEAD (git's `url.<base>.insteadOf`), and the clone goes to a temporary
# folder (the cell's TEXT_RECOGNIZER_HOME) instead of /content. pip reads the project's pins from
# PIP_CONSTRAINT, as CI installs them. Finally every lab of the clone runs in smoke mode under
# nbmake inside that environment; the executed labs are kept for the docs site (make docs).
#
# Environment: PYTHON (python3), TORCH_SPEC (torch==2.13.0, Colab's torch: never leave it unpinned),
# PYTEST_WORKERS (2), COLAB_WORK (a temporary folder, removed unless KEEP=1),
# NBMAKE_COPIES (docs/_build/executed: where the executed labs go), PYTEST_ARGS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WORK=${COLAB_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/colab-XXXXXX")}
COPIES=${NBMAKE_COPIES:-$ROOT/docs/_build/executed}
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$WORK"' EXIT
started=$SECONDS
step() { echo "test-colab [$((SECONDS - started))s]: $*"; }
# pip's complaints about an extra index folder this machine lacks a package in are noise here
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]]; then
    step "note: uncommitted changes are not tested (the origin is the committed HEAD)"
fi
step "origin: a bare clone of $(git -C "$ROOT" rev-parse --short HEAD) in $WORK"
git clone -q --bare --no-tags "$ROOT" "$WORK/origin.git"  # HEAD, not an older release tag

step "a fresh virtual environment with Colab's starting point: $TORCH_SPEC and a Jupyter kernel"
"$PYTHON" -m venv "$WORK/venv"
BIN=$WORK/venv/bin
quiet "$BIN/python" -m pip install -q --upgrade "pip>=24"
quiet "$BIN/python" -m pip install -q "$TORCH_SPEC"
quiet "$BIN/python" -m pip install -q -c "$ROOT/setup/constraints.txt" pytest pytest-timeout pytest-xdist nbmake
SITE=$("$BIN/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$ROOT/setup/nbmake_copies.py" "$SITE/"
# Colab's kernel has imported google.colab before any cell runs: that is what the setup cell checks
echo "import sys, types; sys.modules.setdefault('google.colab', types.ModuleType('google.colab'))" \
    > "$SITE/colab_stand_in.pth"

# what the setup cell clones, and where: GitHub becomes the local origin, /content a temporary folder
read -r USER_REPO < <(cd "$ROOT" && "$PYTHON" -c \
    "import configparser as c; s = c.ConfigParser(); s.read('settings.ini'); d = s['DEFAULT']; print(d['user'] + '/' + d['repo'])")
export GIT_CONFIG_GLOBAL=$WORK/gitconfig
git config --file "$GIT_CONFIG_GLOBAL" url."file://$WORK/origin.git".insteadOf "https://github.com/$USER_REPO"
export TEXT_RECOGNIZER_HOME=$WORK/content/text-recognizer
export PIP_CONSTRAINT=$ROOT/setup/constraints.txt
export PATH=$BIN:$PATH
unset PYTHONPATH VIRTUAL_ENV

step "the labs' setup cell (from the committed lab00), run as Colab runs it"
git --git-dir="$WORK/origin.git" show HEAD:labs/lab00_overview.ipynb > "$WORK/lab00.ipynb"
"$BIN/python" - "$WORK/lab00.ipynb" > "$WORK/setup_cell.py" <<'PY'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
print(next("".join(c["source"]) for c in cells
           if c["cell_type"] == "code" and "".join(c["source"]).startswith("import os, subprocess, sys")))
PY
mkdir -p "$WORK/content"
(cd "$WORK/content" && quiet "$BIN/python" "$WORK/setup_cell.py")
step "the cell installed the course"
installed=$(cd "$WORK" && "$BIN/python" -c "import text_recognizer; print(text_recognizer.__file__)")
[[ "$installed" == "$TEXT_RECOGNIZER_HOME"/* ]] || { echo "test-colab: the cell installed $installed, not the clone" >&2; exit 1; }

step "every lab in smoke mode, in that environment (executed copies to $COPIES/labs)"
rm -rf "$COPIES/labs"
cd "$TEXT_RECOGNIZER_HOME"
TEXT_RECOGNIZER_SMOKE=1 "$BIN/pytest" --nbmake labs -p nbmake_copies --nbmake-copies "$COPIES" \
    -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --durations=0 ${PYTEST_ARGS:-}
step "done"
