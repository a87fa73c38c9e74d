"""Makes the PDF benchmark set: Japanese and English multi-page PDFs in the
three ways Japanese PDFs usually come (a non-embedded CID font with
UniJIS-UCS2-H, an embedded TrueType subset, plain Helvetica), each with
planted phrases on random pages. Writes manifest.json: file -> phrases."""
import json
import os
import random
import sys

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(42)
pdfmetrics.registerFont(UnicodeCIDFont("HeiseiMin-W3"))
IPAG = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"
fonts = [("cid", "HeiseiMin-W3"), ("latin", "Helvetica")]
if os.path.exists(IPAG):
    pdfmetrics.registerFont(TTFont("IPAGothic", IPAG))
    fonts.append(("ttf", "IPAGothic"))

JA = ["お世話になっております。", "下記のとおりお見積りを申し上げます。", "納期は別途ご相談ください。",
      "本資料の取り扱いにはご注意ください。", "ご不明な点がございましたらご連絡ください。", "請求書を送付いたします。",
      "全角ＡＢＣと半角ｶﾀｶﾅを含みます。", "株式会社サンプル 営業部"]
EN = ["Please find the quotation below.", "Delivery dates are to be agreed.", "Handle this document with care.",
      "Quarterly figures attached.", "Contact us with any questions."]

manifest = {}
n = 0
for kind, font in fonts:
    for pages in (3, 12, 40, 150):
        for copy in range(3):
            n += 1
            name = f"{kind}-{pages}p-{copy}.pdf"
            planted = []
            c = canvas.Canvas(os.path.join(out, name), pagesize=A4)
            plant_pages = set(rng.sample(range(pages), min(3, pages)))
            for p in range(pages):
                c.setFont(font, 10)
                y = 800
                for line in range(45):
                    if kind == "latin":
                        text = " ".join(rng.choice(EN) for _ in range(2))
                    else:
                        text = rng.choice(JA) + rng.choice(EN if rng.random() < 0.3 else JA)
                    if p in plant_pages and line == 20:
                        marker = (f"CONFIDENTIAL-{n:03d}-{p:03d} internal only" if kind == "latin"
                                  else f"社外秘資料番号{n:03d}-{p:03d}（関係者外秘）")
                        planted.append(marker)
                        text = marker
                    c.drawString(40, y, text)
                    y -= 17
                c.showPage()
            c.save()
            manifest[name] = planted
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"), ensure_ascii=False, indent=1)
print(f"{len(manifest)} PDFs")
