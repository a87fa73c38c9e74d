#!/usr/bin/env python3
"""The query half of bench/archive.sh: the same 20 searches on tomare and
notmuch (each a fresh process, as a user runs them), alternating, ROUNDS
times; latency p50/p99 per tool; recall and false matches of the planted
Japanese phrases for both.

Usage: archive_queries.py TOMARE CONFIG NOTMUCH_CONFIG MANIFEST ROUNDS
"""
import json
import os
import subprocess
import sys
import time

tomare, config, nm_config, manifest_path, rounds = sys.argv[1:6]
rounds = int(rounds)
manifest = json.load(open(manifest_path))
env_nm = dict(os.environ, XAPIAN_CJK_NGRAM="1")

# (tomare query, notmuch query)
QUERIES = [
    ("見積", "見積"),
    ('"紫陽花計画"', '"紫陽花計画"'),
    ('"鶴亀算定表"', '"鶴亀算定表"'),
    ('"麒麟報告書"', '"麒麟報告書"'),
    ("from:tanaka@example.com", "from:tanaka@example.com"),
    ("to:customer.co.jp", "to:customer.co.jp"),
    ("subject:請求書", "subject:請求書"),
    ("invoice", "invoice"),
    ('"contract meeting"', '"contract meeting"'),
    ("請求書 承認", "請求書 and 承認"),
    ("invoice OR 請求書", "invoice or 請求書"),
    ("見積 -from:suzuki@example.com", "見積 and not from:suzuki@example.com"),
    ("filename:report", "attachment:report*"),
    ("after:2025-06-01 before:2025-07-01", "date:2025-06-01..2025-06-30"),
    ("has:attachment 報告", "tag:attachment and 報告"),
    ("セキュリティ ネットワーク", "セキュリティ and ネットワーク"),
    ('"delivery schedule"', '"delivery schedule"'),
    ("from:sato to:partner.jp", "from:sato and to:partner.jp"),
    ("budget forecast deadline", "budget and forecast and deadline"),
    ("在庫 OR 出荷 OR 発注", "在庫 or 出荷 or 発注"),
]


def run_tomare(q, limit):
    out = subprocess.run(
        [tomare, "archive", "search", "--config", config, "--json", "--limit", str(limit), q],
        capture_output=True, check=True,
    ).stdout
    return [h["message_id"].strip("<>") for h in json.loads(out)]


def run_notmuch(q, limit):
    out = subprocess.run(
        ["notmuch", f"--config={nm_config}", "search", "--output=messages", "--sort=newest-first",
         f"--limit={limit}", q],
        capture_output=True, check=True, env=env_nm,
    ).stdout.decode()
    return [line[3:] for line in out.split() if line.startswith("id:")]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


lat = {"tomare": [], "notmuch": []}
counts = {}
for r in range(rounds):
    for tq, nq in QUERIES:
        for name, fn, q in (("tomare", run_tomare, tq), ("notmuch", run_notmuch, nq)):
            t0 = time.perf_counter()
            ids = fn(q, 100)
            lat[name].append(time.perf_counter() - t0)
            counts.setdefault(tq, {})[name] = len(ids)

print("query results (first 100, newest first):")
for tq, _ in QUERIES:
    print(f"  {tq:42s} tomare {counts[tq]['tomare']:4d}   notmuch {counts[tq]['notmuch']:4d}")

recall = {}
for name, fn in (("tomare", run_tomare), ("notmuch", run_notmuch)):
    found = planted = false = 0
    for phrase, ids in manifest["planted"].items():
        got = set(fn(f'"{phrase}"', 10000))
        planted += len(ids)
        found += len(set(ids) & got)
        false += len(got & set(manifest["decoys"][phrase]))
    recall[name] = (found, planted, false)

for name in ("tomare", "notmuch"):
    f, p, fa = recall[name]
    print(f"{name:8s} latency p50 {pct(lat[name], 50) * 1000:7.1f} ms   p99 {pct(lat[name], 99) * 1000:7.1f} ms   "
          f"planted phrases found {f}/{p}   false phrase matches {fa}")
print(f"p50 ratio notmuch/tomare {pct(lat['notmuch'], 50) / pct(lat['tomare'], 50):.2f}x   "
      f"p99 ratio notmuch/tomare {pct(lat['notmuch'], 99) / pct(lat['tomare'], 99):.2f}x")
