#!/usr/bin/env bash
# Robustness run over the shared corpus: `tomare inspect` on every message
# and attachment there. Fails on any crash (non-zero exit, or a reader that
# panicked and was caught) and on any planted string (../shared/corpus/
# README.md) missing from the file that holds it.
# Usage: scripts/corpus-check.sh ../shared/corpus
set -euo pipefail
corpus=${1:-../shared/corpus}
if [ ! -d "$corpus" ]; then
  echo "corpus-check: $corpus not found; skipped"
  exit 0
fi
corpus=$(cd "$corpus" && pwd)
cd "$(dirname "$0")/.."
cargo build -q --bin tomare
exec python3 scripts/corpus-check.py "$corpus" target/debug/tomare
