"""The inspection benchmark's mail: 10 KB Japanese/English text mails, and
mails carrying 200 KB to 2 MB attachments (PDFs from bench/gen_pdfs.py,
and docx/xlsx/pptx built here), in a 4:1 mix."""
import io
import json
import os
import random
import sys
import zipfile
from email.message import EmailMessage

pdf_dir, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rng = random.Random(7)
JA = "お世話になっております。本日の打ち合わせ資料を送付いたします。ご確認のほどよろしくお願いいたします。"
EN = "Please find attached the documents we discussed. Let me know if anything is unclear. "

def office(kind, size):
    """A docx, xlsx or pptx of roughly `size` bytes of text."""
    buf = io.BytesIO()
    words = (JA + EN) * (size // len((JA + EN).encode()) + 1)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        if kind == "docx":
            paras = "".join(f"<w:p><w:r><w:t>{words[i:i + 200]}</w:t></w:r></w:p>" for i in range(0, len(words), 200))
            z.writestr("word/document.xml", f'<w:document xmlns:w="w"><w:body>{paras}社外秘</w:body></w:document>')
        else:
            slides = range(0, len(words), 4000)
            for n, i in enumerate(slides):
                z.writestr(f"ppt/slides/slide{n + 1}.xml", f'<p:sld xmlns:a="a" xmlns:p="p"><a:p><a:r><a:t>{words[i:i + 4000]}</a:t></a:r></a:p></p:sld>')
    return buf.getvalue()

pdfs = [os.path.join(pdf_dir, f) for f in sorted(os.listdir(pdf_dir)) if f.endswith(".pdf")]
pdfs = [p for p in pdfs if 150_000 <= os.path.getsize(p) <= 2_500_000] or pdfs
count = int(sys.argv[3]) if len(sys.argv) > 3 else 500
for n in range(count):
    m = EmailMessage()
    m["From"] = "taro@example.com"
    m["To"] = "partner@customer.test"
    m["Subject"] = f"資料送付 {n}"
    body = (JA + EN) * 60
    m.set_content(body[: 10_000 // 2])
    if n % 5 == 4:
        pick = rng.random()
        if pick < 0.5:
            path = rng.choice(pdfs)
            m.add_attachment(open(path, "rb").read(), maintype="application", subtype="pdf", filename=os.path.basename(path))
        else:
            kind = rng.choice(["docx", "pptx"])
            data = office(kind, rng.randint(200_000, 2_000_000))
            m.add_attachment(data, maintype="application", subtype="octet-stream", filename=f"資料{n}.{kind}")
    open(os.path.join(out, f"{n:05d}.eml"), "wb").write(bytes(m))
print(f"{count} mails")
