#!/usr/bin/env bash
# OCR through tomare versus tesseract run by hand, on the same pictures in
# the same run: 50 PNGs and 10 image-only PDFs (bench/gen_ocr.py, Pillow)
# of Japanese and English at 100-300 dpi, each with one planted phrase.
#
#   tomare:    the inspector over every file in one process, as serve runs
#              it (crates/inspect/examples/ocr_read.rs: the PDF's page found,
#              its JPEG handed to tesseract, the text tidied and scanned)
#   tesseract: tesseract IMAGE stdout -l jpn+eng   (the same picture: the PNG,
#              or the JPEG the PDF holds)
#
# Reports planted-phrase recall (white space ignored on both sides) and
# seconds for each, and the ratio. Both run one picture at a time with
# OMP_THREAD_LIMIT=1. Needs tesseract-ocr, tesseract-ocr-jpn, Pillow and a
# release build.
# Usage: bench/ocr.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tomare-ocr-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$root" && cargo build --release -q -p tomare-inspect --example ocr_read)
bin="$root/target/release/examples/ocr_read"
python3 "$root/bench/gen_ocr.py" "$work/pics" >/dev/null
export OMP_THREAD_LIMIT=1
python3 - "$bin" "$work/pics/manifest.json" <<'PY'
import json, subprocess, sys, time, unicodedata
bin, manifest = sys.argv[1], json.load(open(sys.argv[2]))
def norm(s):
    return "".join(unicodedata.normalize("NFKC", s).split()).lower()
def found(text, phrase):
    return norm(phrase) in norm(text)
t0 = time.time()
out = subprocess.run([bin] + [m["file"] for m in manifest], capture_output=True, check=True).stdout
t_ours = time.time() - t0
read = [json.loads(l) for l in out.decode().splitlines()]
ours = sum(found(r["text"], m["phrase"]) for r, m in zip(read, manifest))
incomplete = sum(not r["complete"] for r in read)
t0 = time.time(); theirs = 0
for m in manifest:
    out = subprocess.run(["tesseract", m["image"], "stdout", "-l", "jpn+eng"], capture_output=True, check=True).stdout
    theirs += found(out.decode("utf-8", "replace"), m["phrase"])
t_theirs = time.time() - t0
n = len(manifest)
print(f"pictures: {n} ({sum(1 for m in manifest if m['file'].endswith('.pdf'))} image-only PDFs)")
print(f"tomare:    recall {ours}/{n}  {t_ours:.1f} s  ({incomplete} incomplete)")
print(f"tesseract: recall {theirs}/{n}  {t_theirs:.1f} s")
print(f"time ratio tomare/tesseract: {t_ours / t_theirs:.3f}")
PY
