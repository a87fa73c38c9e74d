#!/usr/bin/env bash
# PDF text extraction: tomare (`tomare inspect --text`) versus pdftotext
# (poppler-utils), one process per file for both, over the same PDFs: a
# generated set (non-embedded CID, embedded TrueType and Helvetica; 3 to 150
# pages; planted phrases) plus the shared corpus's Japanese PDFs.
# Prints MB/s for each, the ratio, and planted-phrase recall for each.
# Needs root the first time (apt-get poppler-utils fonts-ipafont-gothic,
# pip reportlab into a private folder).
# Usage: bench/pdf.sh [ROUNDS=3]
set -euo pipefail
ROUNDS=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/tomare-pdf-bench
mkdir -p "$work"
command -v pdftotext >/dev/null && [ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] ||
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils fonts-ipafont-gothic >/dev/null; }
[ -d "$work/py/reportlab" ] || pip install -q --target "$work/py" reportlab
[ -f "$work/pdfs/manifest.json" ] || PYTHONPATH="$work/py" python3 "$root/bench/gen_pdfs.py" "$work/pdfs"
(cd "$root" && cargo build --release -q)
exec python3 - "$root/target/release/tomare" "$work/pdfs" "$root/../shared/corpus" "$ROUNDS" <<'PY'
import json, os, re, statistics, subprocess, sys, time
tomare, pdfs, corpus, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
manifest = json.load(open(os.path.join(pdfs, "manifest.json")))
files = {os.path.join(pdfs, f): p for f, p in manifest.items()}
LINES = ["機密情報：社外秘", "請求書番号 INV-2024-０１２３", "株式会社テスト御中",
         "半角ｶﾀｶﾅと全角カタカナ、ひらがな、漢字（髙﨑・①②）", "English mixed 日本語 text 123"]
gen = os.path.join(corpus, "attachments/generated-ja")
for f in ["fpdf2_ipagothic.pdf", "reportlab_cid_heiseimin.pdf", "reportlab_ttf_ipagothic.pdf"]:
    if os.path.exists(os.path.join(gen, f)):
        files[os.path.join(gen, f)] = LINES
jo = os.path.join(corpus, "attachments/pdfminer/jo.pdf")
if os.path.exists(jo):
    files[jo] = ["わたくしといふ現象は"]
total = sum(os.path.getsize(f) for f in files)
squash = lambda s: re.sub(r"\s+", "", s)

def run(cmd):
    outputs, start = {}, time.perf_counter()
    for f in files:
        outputs[f] = subprocess.run(cmd(f), capture_output=True).stdout.decode("utf-8", "replace")
    return time.perf_counter() - start, outputs

tools = {"pdftotext": lambda f: ["pdftotext", "-q", f, "-"], "tomare": lambda f: [tomare, "inspect", "--text", f]}
times = {t: [] for t in tools}
recall = {}
for r in range(rounds):
    for name, cmd in tools.items():
        secs, out = run(cmd)
        times[name].append(secs)
        found = sum(squash(p) in squash(out[f]) for f, ps in files.items() for p in ps)
        recall[name] = found
planted = sum(len(p) for p in files.values())
print(f"{len(files)} PDFs, {total / 1e6:.2f} MB, {planted} planted phrases, median of {rounds} rounds")
for name in tools:
    t = statistics.median(times[name])
    print(f"{name:9}: {total / 1e6 / t:6.2f} MB/s ({t:.2f} s), recall {recall[name]}/{planted}")
ratio = statistics.median(times["pdftotext"]) / statistics.median(times["tomare"])
print(f"ratio    : {ratio:.2f}x (tomare speed / pdftotext speed)")
PY
