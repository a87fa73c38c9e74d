#!/usr/bin/env bash
# Fuzzes one target for a while: scripts/fuzz.sh TARGET SECONDS [JOBS]
# Targets: smtp_session address mime pdf ooxml query rules (fuzz/fuzz_targets).
# The corpus grows in fuzz/corpus/TARGET (not committed) from the committed
# seeds in fuzz/seeds/TARGET; crashes land in fuzz/artifacts/TARGET. Ends
# with libFuzzer's statistics (executions, coverage) on stderr.
# Needs cargo-fuzz (installed here if missing); the machine's stable rustc
# is allowed libFuzzer's unstable flags with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS [JOBS]}
jobs=${3:-1}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
mkdir -p "corpus/$target"
# Debug assertions and overflow checks are on, except for `mime`: mail-parser
# 0.11 debug-asserts on damaged multiparts (message.rs: "Invalid part ID"),
# a no-op in release builds that tomare contains anyway (the regression test
# crates/inspect/tests/regressions/mime-*); with it on, every run stops at
# the first damaged multipart.
build=()
[ "$target" = mime ] && build=(-O)
parallel=()
# With jobs, libFuzzer writes each job's log to fuzz-N.log instead of stderr.
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
exec cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
  "${parallel[@]}" -print_final_stats=1
