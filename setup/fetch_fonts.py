"""Bundle more handwriting fonts for training: Google Fonts families packaged by Fontsource on npm.

The renderer's fonts come from the `fontpkg-*` packages on PyPI, and nine handwriting families is all
they offer. A recognizer that has seen nine hands reads a tenth badly (the held-out fonts in
bench/results/quality.json), so the project bundles 123 more handwriting families (OFL or Apache
licensed, so they may be redistributed) in `text_recognizer/artifacts/fonts/`: one Latin regular WOFF2
file per family, its licence beside it, and `fonts.json`, the manifest that pins each package's version
and npm integrity hash and each file's sha256. The renderer finds them by family name
(`text_recognizer.data.synthetic.BUNDLED_FAMILIES`).

The files are committed, so nobody needs npm to train; this script is how they were made and how to
check or change them:

    python setup/fetch_fonts.py --check      # verify the bundled files against the manifest (offline)
    python setup/fetch_fonts.py              # fetch the pinned versions again with `npm pack`, verify, write
    python setup/fetch_fonts.py --add kalam-x --cursive  # add families at their newest versions

Fetching needs `npm` and the npm registry; every tarball is checked against the manifest's integrity
hash before anything is written, and each file is written to a temporary name and renamed.
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FONTS_DIR = ROOT / "text_recognizer" / "artifacts" / "fonts"  # --dir names another (the tests use a copy)

# Handwriting families chosen by looking at every one (a sample sheet per family): each has real
# lowercase letters (Rock Salt, Walter Turncoat and Give You Glory write lowercase as capitals, which
# would teach wrong case) and is legible (Meddon, League Script and Mrs Saint Delafield are not). Shadows Into Light Two is left out on purpose:
# it is a sibling of the held-out Shadows Into Light. `True` marks connected scripts, which the renderer
# spaces and jitters less so their joins stay joined.
FAMILIES = {
    "alex-brush": True, "allison": True, "allura": True, "annie-use-your-telescope": False,
    "architects-daughter": False, "arizonia": True, "bad-script": False, "beth-ellen": True,
    "birthstone": True, "calligraffitti": False, "caveat-brush": False, "cedarville-cursive": True,
    "charm": False, "charmonman": False, "chilanka": False, "clicker-script": True, "comforter": False,
    "comic-neue": False, "coming-soon": False, "cookie": True, "courgette": True,
    "covered-by-your-grace": False, "crafty-girls": False, "damion": True, "dawning-of-a-new-day": True,
    "dekko": False, "delicious-handrawn": False, "delius": False, "dr-sugiyama": True, "east-sea-dokdo": False,
    "edu-au-vic-wa-nt-hand": False, "edu-nsw-act-cursive": False, "edu-nsw-act-foundation": False,
    "edu-qld-beginner": False, "edu-qld-hand": False, "edu-sa-beginner": False, "edu-tas-beginner": False,
    "edu-vic-wa-nt-beginner": False, "engagement": True, "fuzzy-bubbles": False, "gaegu": False,
    "gamja-flower": False, "gloria-hallelujah": False, "gochi-hand": False, "grand-hotel": True,
    "grape-nuts": False, "handlee": False, "herr-von-muellerhoff": True, "hi-melody": False,
    "homemade-apple": True, "hurricane": True, "ingrid-darling": True, "italianno": True, "itim": False,
    "jim-nightshade": False, "just-another-hand": False, "just-me-again-down-here": False,
    "kaushan-script": True, "klee-one": False, "kranky": False, "kristi": True, "la-belle-aurore": False,
    "lobster-two": True, "loved-by-the-king": False, "mali": False, "mansalva": False, "marck-script": True,
    "meow-script": True, "merienda": False, "mr-dafoe": True, "mr-de-haviland": True, "ms-madi": True,
    "mynerve": False, "nanum-brush-script": False, "nanum-pen-script": False, "nerko-one": False,
    "neucha": False, "niconne": True, "norican": True, "nothing-you-could-do": False, "oleo-script": False,
    "oooh-baby": False, "over-the-rainbow": False, "pacifico": True, "pangolin": False, "parisienne": True,
    "patrick-hand": False, "petit-formal-script": True, "pinyon-script": True, "playball": True,
    "playpen-sans": False, "qwigley": True, "rancho": False, "reenie-beanie": False, "rouge-script": True,
    "ruge-boogie": False, "ruthie": True, "sacramento": True, "schoolbell": False, "seaweed-script": True,
    "sedgwick-ave": False, "shantell-sans": False, "short-stack": False, "single-day": False, "sofia": True,
    "solitreo": False, "square-peg": False, "sriracha": False, "style-script": True,
    "sue-ellen-francisco": False, "sunshiney": False, "swanky-and-moo-moo": False, "tangerine": True,
    "the-girl-next-door": False, "twinkle-star": False, "unkempt": False, "updock": True, "vibur": False,
    "waiting-for-the-sunrise": False, "whisper": True, "yesteryear": True, "yomogi": False,
    "zen-kurenaido": False,
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def integrity(data: bytes) -> str:
    "npm's integrity string (Subresource Integrity, sha512) of a tarball."
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_manifest(folder: Path) -> dict:
    manifest = folder / "fonts.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    return {"families": []}


def npm_pack(spec: str, folder: Path) -> Path:
    "The tarball of npm package `spec` (name@version), downloaded by `npm pack` into `folder`."
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("fetch_fonts: npm is not installed. Install Node.js (apt-get install npm), or use the "
                 "fonts already bundled in text_recognizer/artifacts/fonts/ (--check verifies them).")
    result = subprocess.run([npm, "pack", spec, "--json", "--silent", "--pack-destination", str(folder)],  # noqa: S603
                            capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        sys.exit(f"fetch_fonts: npm pack {spec} failed: {result.stderr.strip()[-500:]}")
    return folder / json.loads(result.stdout)[0]["filename"]


def fetch(slug: str, cursive: bool, pinned: dict | None, folder: Path, fonts_dir: Path) -> dict:
    "Fetch one family, check it, and return its manifest entry (the font and licence are written)."
    package = f"@fontsource/{slug}"
    tarball = npm_pack(f"{package}@{pinned['version']}" if pinned else package, folder)
    data = tarball.read_bytes()
    if pinned and integrity(data) != pinned["integrity"]:
        sys.exit(f"fetch_fonts: {package}@{pinned['version']} does not match the manifest's integrity hash; "
                 "nothing was written. Delete its entry from fonts.json to take a new version on purpose.")
    with tarfile.open(tarball) as archive:
        meta = json.load(archive.extractfile("package/metadata.json"))
        version = json.load(archive.extractfile("package/package.json"))["version"]
        font = archive.extractfile(f"package/files/{slug}-latin-400-normal.woff2").read()
        licence = archive.extractfile("package/LICENSE").read()
    licence_type = meta.get("license", {}).get("type", "")
    if not licence_type.startswith(("OFL", "Apache")):
        sys.exit(f"fetch_fonts: {package} is licensed {licence_type!r}; only OFL and Apache fonts are bundled")
    write_atomic(fonts_dir / f"{slug}.woff2", font)
    write_atomic(fonts_dir / f"{slug}.LICENSE.txt", licence)
    return {"family": meta["family"], "file": f"{slug}.woff2", "sha256": sha256(font), "cursive": cursive,
            "package": package, "version": version, "integrity": integrity(data), "license": licence_type,
            "license_file": f"{slug}.LICENSE.txt", "category": meta.get("category", "")}


def check(fonts_dir: Path) -> int:
    "Verify every bundled file against the manifest; 0 when all match."
    manifest, problems = load_manifest(fonts_dir), []
    if not manifest["families"]:
        problems.append(f"no fonts.json (or no families in it) in {fonts_dir}")
    for entry in manifest["families"]:
        for name, digest in ((entry["file"], entry["sha256"]), (entry["license_file"], None)):
            path = fonts_dir / name
            if not path.is_file():
                problems.append(f"missing {path}")
            elif digest and sha256(path.read_bytes()) != digest:
                problems.append(f"{path} does not match its sha256 in fonts.json")
    for problem in problems:
        print(f"fetch_fonts: {problem}", file=sys.stderr)
    print(f"{len(manifest['families'])} bundled families, {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the bundled files (offline) and stop")
    parser.add_argument("--add", nargs="*", default=[], metavar="SLUG", help="Fontsource family slugs to add")
    parser.add_argument("--cursive", action="store_true", help="the families given to --add are connected scripts")
    parser.add_argument("--dir", type=Path, default=FONTS_DIR, help=f"the fonts folder (default: {FONTS_DIR})")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.dir)
    args.dir.mkdir(parents=True, exist_ok=True)
    pinned = {entry["package"]: entry for entry in load_manifest(args.dir)["families"]}
    wanted = dict(FAMILIES) | {slug: args.cursive for slug in args.add}
    entries = []
    with tempfile.TemporaryDirectory() as folder:
        for slug, cursive in sorted(wanted.items()):
            entry = fetch(slug, cursive, pinned.get(f"@fontsource/{slug}"), Path(folder), args.dir)
            entries.append(entry)
            print(f"{entry['family']:<28} {entry['package']}@{entry['version']} {entry['license']}")
    manifest = {"about": "Handwriting fonts bundled for training, made by setup/fetch_fonts.py; "
                         "each family's licence is in its .LICENSE.txt file.", "families": entries}
    write_atomic(args.dir / "fonts.json", (json.dumps(manifest, indent=1) + "\n").encode())
    print(f"wrote {len(entries)} families to {args.dir}")
    return check(args.dir)


if __name__ == "__main__":
    sys.exit(main())
