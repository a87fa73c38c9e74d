#!/usr/bin/env bash
# Messages inspected per second, in one process, for a 4:1 mix of 10 KB
# text mails and mails with 200 KB–2 MB PDF/Office attachments.
# Reuses the PDFs of bench/pdf.sh (run that first, or this runs its setup).
# Usage: bench/inspect.sh [COUNT=500]
set -euo pipefail
COUNT=${1:-500}
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/tomare-pdf-bench
if [ ! -f "$work/pdfs/manifest.json" ]; then ROUNDS=1 "$root/bench/pdf.sh" >/dev/null; fi
rm -rf "$work/mails"
python3 "$root/bench/gen_mails.py" "$work/pdfs" "$work/mails" "$COUNT" >/dev/null
(cd "$root" && cargo build --release -q -p tomare-inspect --example inspect_rate)
"$root/target/release/examples/inspect_rate" "$work/mails"
