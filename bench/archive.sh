#!/usr/bin/env bash
# Archive indexing and search: tomare against notmuch (Xapian, CJK n-grams
# on via XAPIAN_CJK_NGRAM=1), in the same run, over the same maildir:
# COUNT synthetic Japanese/English messages (a third with a text
# attachment) plus the shared corpus's mail.
#
# Prints messages indexed per second (notmuch new / tomare archive import),
# index size relative to the raw mail, query latency p50/p99 over 20 queries
# (each a fresh process), and recall of planted Japanese phrases with false
# phrase matches (the phrase split in two elsewhere).
#
# tomare's import does more than index: it also keeps a compressed copy of
# every message, chains and signs the records. Both read from a warm page
# cache (the maildir is read once before each side).
#
# Usage: bench/archive.sh [COUNT=100000] [ROUNDS=5]
set -euo pipefail
COUNT=${1:-100000}
ROUNDS=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/tomare-archive-bench
corpus=${CORPUS:-$root/../shared/corpus/mail}
command -v notmuch >/dev/null || { echo "needs notmuch (apt-get install -y notmuch)"; exit 1; }

mkdir -p "$work"
if [ "$(cat "$work/count" 2>/dev/null)" != "$COUNT" ]; then
    rm -rf "$work/maildir" "$work/manifest.json"
    python3 "$root/bench/gen_archive.py" "$work/maildir" "$COUNT"
    if [ -d "$corpus" ]; then
        n=0
        while IFS= read -r -d '' f; do
            n=$((n + 1))
            cp "$f" "$work/maildir/cur/corpus$n.eml:2,S"
        done < <(find "$corpus" -type f -name '*.eml' -print0)
        echo "plus $n corpus messages"
    fi
    echo "$COUNT" > "$work/count"
fi
total=$(find "$work/maildir/cur" -type f | wc -l)
raw=$(du -sb "$work/maildir" | cut -f1)

(cd "$root" && cargo build --release -q -p tomare)
tomare=$root/target/release/tomare

warm() { find "$work/maildir" -type f -print0 | xargs -0 cat > /dev/null; sync; }
now() { date +%s.%N; }

# notmuch
rm -rf "$work/notmuch-db"
mkdir -p "$work/notmuch-db"
cat > "$work/notmuch-config" <<EOF
[database]
path=$work/notmuch-db
mail_root=$work/maildir
[new]
tags=
[user]
name=bench
primary_email=bench@example.com
EOF
warm
t0=$(now)
XAPIAN_CJK_NGRAM=1 notmuch --config="$work/notmuch-config" new --quiet
t1=$(now)
nm_secs=$(echo "$t1 - $t0" | bc -l)
nm_size=$(du -sb "$work/notmuch-db" | cut -f1)

# tomare
rm -rf "$work/tomare-data"
cat > "$work/tomare.toml" <<EOF
[storage]
data_dir = "$work/tomare-data"
[org]
internal_domains = ["example.com"]
EOF
warm
t0=$(now)
"$tomare" archive import --config "$work/tomare.toml" "$work/maildir" > "$work/import.log"
t1=$(now)
tm_secs=$(echo "$t1 - $t0" | bc -l)
tm_index=$(du -sb "$work/tomare-data/index" | cut -f1)
tm_blobs=$(du -sb "$work/tomare-data/blobs" | cut -f1)
cat "$work/import.log"

printf "\n%d messages, raw mail %.1f MB\n" "$total" "$(echo "$raw / 1000000" | bc -l)"
printf "notmuch: %6.1f s  %7.0f msg/s  index %.2fx raw\n" "$nm_secs" "$(echo "$total / $nm_secs" | bc -l)" \
    "$(echo "$nm_size / $raw" | bc -l)"
printf "tomare:  %6.1f s  %7.0f msg/s  index %.2fx raw (plus compressed copies %.2fx raw)\n" "$tm_secs" \
    "$(echo "$total / $tm_secs" | bc -l)" "$(echo "$tm_index / $raw" | bc -l)" "$(echo "$tm_blobs / $raw" | bc -l)"
printf "indexing rate tomare/notmuch: %.2fx\n\n" "$(echo "$nm_secs / $tm_secs" | bc -l)"

python3 "$root/bench/archive_queries.py" "$tomare" "$work/tomare.toml" "$work/notmuch-config" \
    "$work/manifest.json" "$ROUNDS"
