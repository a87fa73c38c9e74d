#!/usr/bin/env python3
"""Synthetic business mail for bench/archive.sh: a maildir of N messages,
Japanese (ISO-2022-JP, UTF-8) and English, a third with a text attachment
(Shift_JIS or UTF-8, base64) whose text is indexed too.

Planted phrases check recall and precision: each PHRASE appears whole in a
few known messages, and split in two (both halves, far apart) in others,
which a correct phrase search must not return. Writes manifest.json:
{"planted": {phrase: [message-id, ...]}, "decoys": {phrase: [...]}}.

Usage: gen_archive.py OUT_MAILDIR COUNT
"""
import base64
import json
import os
import random
import sys
from email.header import Header

out, count = sys.argv[1], int(sys.argv[2])
rnd = random.Random(20261129)
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(out, d), exist_ok=True)

JA_WORDS = (
    "見積 請求書 納品 契約 会議 資料 確認 依頼 対応 予定 担当 営業 技術 開発 品質 価格 数量 発注 出荷 在庫 "
    "顧客 案件 提案 報告 進捗 課題 修正 変更 承認 打合せ 日程 調整 連絡 返信 添付 ファイル 送付 受領 検収 "
    "システム サーバ ネットワーク セキュリティ プロジェクト スケジュール ミーティング レポート データ 分析"
).split()
JA_GLUE = "は が を に で と の も から まで より へ".split()
EN_WORDS = (
    "quote invoice delivery contract meeting document confirm request schedule owner sales engineering quality "
    "price quantity order shipment stock customer project proposal report progress issue change approval agenda "
    "follow up attached file received review budget forecast deadline update team partner"
).split()
NAMES = ["tanaka", "suzuki", "sato", "takahashi", "watanabe", "ito", "yamamoto", "nakamura", "kobayashi", "kato"]
DOMAINS_OUT = ["customer.co.jp", "partner.jp", "vendor.com", "client.co.jp", "supplier.net", "agency.jp"]
# Phrases built from rare characters so that only planted text holds them.
PHRASES = [
    "鶴亀算定表", "紫陽花計画", "蒼穹プロトコル", "雷鳥作戦書", "翡翠ノート", "琥珀台帳",
    "朱雀設計図", "白虎見積", "玄武仕様", "麒麟報告書",
]


def ja_sentence(n):
    return "".join(rnd.choice(JA_WORDS) + rnd.choice(JA_GLUE) for _ in range(n)) + "。"


def en_sentence(n):
    return " ".join(rnd.choice(EN_WORDS) for _ in range(n)).capitalize() + "."


def b64_lines(data):
    s = base64.b64encode(data).decode()
    return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76))


planted = {p: [] for p in PHRASES}
decoys = {p: [] for p in PHRASES}
for i in range(count):
    mid = f"bench{i:06d}@example.com"
    japanese = rnd.random() < 0.7
    sender = f"{rnd.choice(NAMES)}@example.com"
    to = f"{rnd.choice(NAMES)}@{rnd.choice(DOMAINS_OUT)}"
    cc = f"{rnd.choice(NAMES)}@example.com" if rnd.random() < 0.3 else None
    day = 1 + i * 365 // max(count, 1)
    date = f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri'][i % 5]}, {1 + day % 28:02d} {['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][day * 12 // 366]} 2025 {9 + i % 9:02d}:{i % 60:02d}:00 +0900"
    if japanese:
        subject = rnd.choice(JA_WORDS) + "の件（" + rnd.choice(JA_WORDS) + "）"
        paras = [ja_sentence(rnd.randint(6, 14)) for _ in range(rnd.randint(3, 10))]
    else:
        subject = "Re: " + en_sentence(4)[:-1]
        paras = [en_sentence(rnd.randint(8, 20)) for _ in range(rnd.randint(3, 10))]
    # Plant: one in 500 messages holds a phrase whole; one in 500 split.
    r = rnd.random()
    if r < 0.002:
        p = rnd.choice(PHRASES)
        paras.insert(rnd.randint(0, len(paras)), f"件名: {p}について")
        planted[p].append(mid)
    elif r < 0.004:
        p = rnd.choice(PHRASES)
        cut = rnd.randint(2, len(p) - 2)
        paras.insert(0, p[:cut] + "について")
        paras.append("および" + p[cut:])
        decoys[p].append(mid)
    body = "\r\n\r\n".join(paras) + "\r\n"
    headers = [
        f"From: {Header(sender.split('@')[0].title() + ' 様' if japanese else sender.split('@')[0].title(), 'utf-8').encode()} <{sender}>",
        f"To: <{to}>",
    ]
    if cc:
        headers.append(f"Cc: <{cc}>")
    headers += [
        f"Subject: {Header(subject, 'iso-2022-jp' if japanese else 'us-ascii').encode()}",
        f"Date: {date}",
        f"Message-ID: <{mid}>",
        "MIME-Version: 1.0",
    ]
    charset = "iso-2022-jp" if japanese and rnd.random() < 0.6 else "utf-8"
    if charset == "iso-2022-jp":
        part_body = body.encode("iso2022_jp", errors="replace")
        text_part = f"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        text_bytes = text_part.encode() + part_body
    else:
        text_part = f"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        text_bytes = text_part.encode() + b64_lines(body.encode()).encode() + b"\r\n"
    if rnd.random() < 0.33:
        att_text = "\r\n".join(ja_sentence(12) if japanese else en_sentence(20) for _ in range(rnd.randint(10, 40)))
        enc = "shift_jis" if japanese and rnd.random() < 0.5 else "utf-8"
        att = att_text.encode(enc, errors="replace")
        name = f"{rnd.choice(['mitsumori', 'report', 'minutes', 'spec'])}_{i}.txt"
        msg = ("\r\n".join(headers) + '\r\nContent-Type: multipart/mixed; boundary="=b="\r\n\r\n--=b=\r\n').encode()
        msg += text_bytes
        msg += (
            f"\r\n--=b=\r\nContent-Type: text/plain; charset={'Shift_JIS' if enc == 'shift_jis' else 'UTF-8'}; name=\"{name}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        msg += b64_lines(att).encode() + b"\r\n--=b=--\r\n"
    else:
        msg = ("\r\n".join(headers) + "\r\n").encode() + text_bytes
    with open(os.path.join(out, "cur", f"{1700000000 + i}.{i}.bench:2,S"), "wb") as f:
        f.write(msg)

with open(os.path.join(os.path.dirname(out.rstrip("/")), "manifest.json"), "w") as f:
    json.dump({"planted": planted, "decoys": decoys}, f, ensure_ascii=False)
print(f"{count} messages, {sum(map(len, planted.values()))} planted, {sum(map(len, decoys.values()))} decoys")
