#!/usr/bin/env bash
# Debian packages the tests and benchmarks use, installed only when missing:
#   chromium                       the real browser the Gradio app is tested in (driven by Playwright)
#   tesseract-ocr tesseract-ocr-eng the OCR engine the benchmarks compare the shipped model with
#   hershey-fonts-data             single-stroke (pen path) fonts: data.synthetic.strokes writes with them
#   fonts-breip fonts-dkg-handwriting fonts-ecolier-court fonts-dustin fonts-havana fonts-kiloji
#   fonts-rufscript fonts-sjfonts
#                                  handwriting fonts: more hands for training and for the held-out test
# Without root (and without sudo) it prints the command to run instead; under CI it must succeed.
# `--fonts`: the fonts only (what the data needs): the Colab setup cell of every lab runs that.
set -euo pipefail
missing=()
if [ "${1:-}" != "--fonts" ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
fi
for package in hershey-fonts-data fonts-breip fonts-dkg-handwriting fonts-ecolier-court fonts-dustin fonts-havana \
               fonts-kiloji fonts-rufscript fonts-sjfonts; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: not a Debian/Ubuntu machine; install ${missing[*]} yourself (browser and OCR tests will say they are skipped; the stroke and handwriting fonts are needed)"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
        echo "system-packages: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
        [ "${CI:-}" = "true" ] && exit 1 || exit 0
    fi
fi
echo "system-packages: installing ${missing[*]}"
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
