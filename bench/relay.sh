#!/usr/bin/env bash
# End-to-end relay throughput: tomare versus a private Postfix instance, in
# the same run, each relaying to its own Postfix smtp-sink on loopback.
#
#   smtp-source -s 10 -m N -l 10240  ->  [tomare | postfix]  ->  smtp-sink -M N
#
# The clock runs from smtp-source's first connection until the sink has
# received all N messages. Both servers fsync every message before their 250.
# Needs root (Postfix's master), the postfix package, and a release build.
#
# Usage: bench/relay.sh            (N=10000, S=10, L=10240 by default)
#        N=2000 bench/relay.sh     (a quicker look)
#        TOMARE_EXTRA='...' bench/relay.sh   (extra config lines, e.g. rules)
#        SKIP_POSTFIX=1 bench/relay.sh       (tomare only; bench/policy.sh uses it)
#        ARCHIVE_OFF=1 bench/relay.sh        (also tomare with [archive] enabled = false)
#        TOMARE_BIN=/path/to/tomare bench/relay.sh   (another build, for an A/B comparison)
# Always also measures smtp-source straight into smtp-sink: the machine's
# limit for this load.
set -euo pipefail
N=${N:-10000}
S=${S:-10}
L=${L:-10240}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tomare-relay-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/postfix/conf/main.cf" ] && postfix -c "$work/postfix/conf" stop >/dev/null 2>&1 || true
  pkill -f "master -c $work/postfix/conf" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v smtp-source >/dev/null || { echo "needs Postfix's smtp-source (apt-get install postfix)" >&2; exit 2; }
if [ -z "${TOMARE_BIN:-}" ]; then (cd "$root" && cargo build --release -q); fi
bin="${TOMARE_BIN:-$root/target/release/tomare}"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# run_side NAME LISTEN_PORT SINK_PORT: prints "seconds accept_seconds"
run_side() {
  local name=$1 listen=$2 sink=$3
  # Start each side with no writeback left over from the other.
  sync; sleep 1
  smtp-sink -u postfix -M "$N" "127.0.0.1:$sink" 256 &
  local sink_pid=$!
  sleep 0.3
  local t0 t1 t2
  t0=$(now)
  # Straight into the sink, the sink exits on its last message under
  # sessions still open: smtp-source's "lost connection" is expected there.
  smtp-source -s "$S" -m "$N" -l "$L" -f taro@example.com -t partner@customer.test "127.0.0.1:$listen" \
    2> >(grep -v "lost connection" >&2) || [ "$name" = direct ]
  t1=$(now)
  local waited=0
  while kill -0 "$sink_pid" 2>/dev/null; do
    sleep 0.02
    waited=$((waited + 1))
    if [ $waited -gt 30000 ]; then echo "$name: sink did not receive $N messages in 10 minutes" >&2; exit 1; fi
  done
  t2=$(now)
  python3 -c "print(f'{$t2-$t0:.3f} {$t1-$t0:.3f}')"
}

# --- tomare ---------------------------------------------------------------
# run_tomare NAME EXTRA: sets t_total t_accept t_rss
run_tomare() {
  local name=$1 extra=$2
  local t_listen t_web t_sink
  t_listen=$(port); t_web=$(port); t_sink=$(port)
  rm -rf "$work/tomare-data"
  cat > "$work/tomare.toml" <<TOML
[smtp]
listen = "127.0.0.1:$t_listen"
[web]
listen = "127.0.0.1:$t_web"
[storage]
data_dir = "$work/tomare-data"
[delivery]
mode = "relay"
concurrency = 20
[delivery.relay]
host = "127.0.0.1"
port = $t_sink
tls = "none"
[hold]
external = "0s"
internal = "0s"
$extra
TOML
  "$bin" serve --config "$work/tomare.toml" >"$work/tomare.log" 2>&1 &
  local tomare_pid=$!
  # KEEP_LOG=FILE keeps the server's log (e.g. with TOMARE_LOG=sqlx::query=debug).
  if [ -n "${KEEP_LOG:-}" ]; then trap 'cp "$work/tomare.log" "$KEEP_LOG"; cleanup' EXIT; fi
  pids+=("$tomare_pid")
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$t_listen") 2>/dev/null && break; sleep 0.1; done
  read -r t_total t_accept < <(run_side "$name" "$t_listen" "$t_sink")
  # Not part of the ratio: how long the archive took to catch up after the
  # sink had everything, and how many messages it had to inspect again.
  # (The CPU and peak RSS read below then include that catch-up.)
  if [ "$name" = tomare ] && command -v sqlite3 >/dev/null; then
    local ta left
    ta=$(now)
    for _ in $(seq 1200); do
      left=$(sqlite3 "file:$work/tomare-data/tomare.db?mode=ro" \
        "SELECT count(*) FROM messages WHERE archived = 0 OR (archived = 1 AND state IN ('delivered','failed','cancelled','rejected'))" 2>/dev/null || echo '?')
      [ "$left" = 0 ] || [ "$left" = '?' ] && break
      sleep 0.05
    done
    python3 -c "print(f'$name: archive caught up {$(now)-$ta:.2f} s after the sink ($left left)')" >&2
    curl -s "http://127.0.0.1:$t_web/metrics" | grep '^tomare_archive_reinspected_total' | sed "s/^/$name: /" >&2 || true
  fi
  t_rss=$(awk '/VmHWM/ {print $2}' "/proc/$tomare_pid/status")
  awk -v n="$name" '{print n " cpu s: user", $14/100, "sys", $15/100}' "/proc/$tomare_pid/stat" >&2
  awk -v n="$name" '/^write_bytes/ {printf "%s disk writes: %.1f MiB\n", n, $2/1048576}' "/proc/$tomare_pid/io" >&2
  kill "$tomare_pid"; wait "$tomare_pid" 2>/dev/null || true
}
run_tomare tomare "${TOMARE_EXTRA:-}"
if [ -n "${ARCHIVE_OFF:-}" ]; then
  t_main=("$t_total" "$t_accept" "$t_rss")
  run_tomare tomare-archive-off "$(printf '[archive]\nenabled = false\n%s' "${TOMARE_EXTRA:-}")"
  off_total=$t_total
  off_rss=$t_rss
  read -r t_total t_accept t_rss <<< "${t_main[*]}"
fi

if [ -n "${SKIP_POSTFIX:-}" ]; then
  echo "tomare peak RSS: $((t_rss/1024)) MiB"
  python3 -c "print(f'tomare : {$N/$t_total:8.0f} msg/s end-to-end ({$t_total:.2f} s)')"
  exit 0
fi

# --- Postfix (private instance, default tuning) ---------------------------
p_listen=$(port); p_sink=$(port)
pf="$work/postfix"
mkdir -p "$pf/conf" "$pf/queue" "$pf/data"
chown postfix:postfix "$pf/data"
cat > "$pf/conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix-bench.example.com
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$p_sink
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = /tmp
maillog_file = $pf/maillog
CF
# master.cf from the package: smtpd on our port, nothing chrooted.
sed -e "s/^smtp \+inet .*smtpd\$/127.0.0.1:$p_listen inet n - n - - smtpd/" \
    -e 's/^\([a-z]*\s\+\(unix\|unix-dgram\|inet\|fifo\|pass\)\s\+\S\+\s\+\S\+\s\+\)y/\1n/' \
    /etc/postfix/master.cf > "$pf/conf/master.cf"
/usr/lib/postfix/sbin/post-install config_directory="$pf/conf" meta_directory=/etc/postfix create-missing >/dev/null
/usr/lib/postfix/sbin/master -c "$pf/conf" -w
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$p_listen") 2>/dev/null && break; sleep 0.1; done
read -r p_total p_accept < <(run_side postfix "$p_listen" "$p_sink")

# --- the machine's limit: smtp-source straight into smtp-sink -----------------
direct=$(port)
read -r d_total _ < <(run_side direct "$direct" "$direct")

python3 - "$N" "$t_total" "$t_accept" "$p_total" "$p_accept" "$t_rss" "${off_total:-0}" "${d_total:-0}" "${off_rss:-0}" <<'PY'
import sys
n = int(sys.argv[1]); tt, ta, pt, pa = map(float, sys.argv[2:6]); rss = int(sys.argv[6])
off, direct, off_rss = float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9])
print(f"messages: {n} x {sys.argv[0] and ''}10 KiB, 10 concurrent sessions")
print(f"tomare : {n/tt:8.0f} msg/s end-to-end ({tt:.2f} s; accept {n/ta:.0f} msg/s)")
print(f"postfix: {n/pt:8.0f} msg/s end-to-end ({pt:.2f} s; accept {n/pa:.0f} msg/s)")
print(f"ratio  : {pt/tt:8.2f}x  (tomare / postfix, end-to-end)")
print(f"tomare peak RSS: {rss/1024:.1f} MiB")
if off:
    print(f"archive off: {n/off:8.0f} msg/s end-to-end ({off:.2f} s; {pt/off:.2f}x postfix; peak RSS {off_rss/1024:.1f} MiB)")
if direct:
    print(f"limit  : {n/direct:8.0f} msg/s smtp-source straight into smtp-sink ({direct:.2f} s)")
PY
