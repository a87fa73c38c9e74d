#!/usr/bin/env bash
# The rules' cost: built-in pack evaluations per second over the shared
# corpus (in one process), and end-to-end relay throughput with the pack on
# versus every rule off (bench/relay.sh, tomare side only, alternating runs).
# Usage: bench/policy.sh [ROUNDS=2]
set -euo pipefail
ROUNDS=${ROUNDS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/../shared/corpus/mail"
(cd "$root" && cargo build --release -q -p tomare-policy --example rules_rate)
if [ -d "$corpus" ]; then
  "$root/target/release/examples/rules_rate" "$corpus"
else
  echo "($corpus not found: rules/s skipped)"
fi
on=(); off=()
for _ in $(seq "$ROUNDS"); do
  on+=("$(SKIP_POSTFIX=1 "$root/bench/relay.sh" | awk '/msg\/s/ {print $3}')")
  off+=("$(SKIP_POSTFIX=1 TOMARE_EXTRA=$'[policy]\nbuiltin = false' "$root/bench/relay.sh" | awk '/msg\/s/ {print $3}')")
done
python3 - "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
m_on, m_off = statistics.median(on), statistics.median(off)
print(f"relay with the built-in pack: {m_on:.0f} msg/s {on}")
print(f"relay with no rules:          {m_off:.0f} msg/s {off}")
print(f"the pack costs {100 * (1 - m_on / m_off):.1f}% of relay throughput")
PY
