#!/usr/bin/env python3
"""Pictures for bench/ocr.sh: 50 PNGs and 10 image-only PDFs of Japanese and
English text at 100-300 dpi, each with one planted phrase.

    gen_ocr.py OUT_DIR   -> OUT_DIR/*.png, *.pdf, manifest.json
"""
import json, os, random, sys
from PIL import Image, ImageDraw, ImageFont

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(13)
font_path = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
filler_ja = ["お世話になっております。", "下記の通りご確認ください。", "本件について", "来週の会議資料です。",
             "ご不明な点がございましたら", "どうぞよろしくお願いいたします。", "見積書を送付いたします。"]
filler_en = ["Please find the figures below.", "Meeting notes for next week.", "Let me know if anything is unclear.",
             "Quarterly summary attached.", "Thank you for your time."]
phrases = ["社外秘", "関係者外秘", "CONFIDENTIAL", "INTERNAL ONLY", "極秘資料", "顧客番号 A{:04d}"]
dpis = [100, 150, 200, 300]
manifest = []
for n in range(60):
    dpi = dpis[n % len(dpis)]
    size_pt = 12
    px = int(size_pt * dpi / 72)
    width, height = int(8.27 * dpi), int(3.5 * dpi)
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(font_path, px)
    phrase = rng.choice(phrases).format(rng.randrange(10000))
    lines = [rng.choice(filler_ja if rng.random() < 0.6 else filler_en) for _ in range(5)]
    lines.insert(rng.randrange(len(lines) + 1), phrase)
    y = int(0.3 * dpi)
    for line in lines:
        draw.text((int(0.5 * dpi), y), line, font=font, fill=0)
        y += int(px * 1.6)
    base = f"{n:02d}-{dpi}dpi"
    png = os.path.join(out, base + ".png")
    img.save(png, dpi=(dpi, dpi))
    entry = {"file": png, "image": png, "phrase": phrase, "dpi": dpi}
    if n >= 50:
        pdf = os.path.join(out, base + ".pdf")
        img.convert("RGB").save(pdf, "PDF", resolution=dpi)
        entry["file"] = pdf
        # tesseract by hand reads the very JPEG the PDF holds (like for like).
        data = open(pdf, "rb").read()
        at = data.index(b"/DCTDecode")
        start = data.index(b"stream", at) + len(b"stream")
        start += 2 if data[start:start + 2] == b"\r\n" else 1
        end = data.index(b"endstream", start)
        jpg = os.path.join(out, base + ".jpg")
        open(jpg, "wb").write(data[start:end].rstrip(b"\r\n"))
        entry["image"] = jpg
    manifest.append(entry)
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), ensure_ascii=False, indent=1)
print(len(manifest))
