#!/usr/bin/env python3
"""Generates crates/inspect/data/adobe-japan1-ucs2.bin from Adobe's
Adobe-Japan1-UCS2 CMap (BSD-3-Clause, shipped by Debian's poppler-data in
/usr/share/poppler/cMap/Adobe-Japan1/).

The output is one little-endian u32 per CID: the first Unicode scalar the CID
maps to (variation selectors dropped), 0 where there is none. tomare uses it
for CID-keyed fonts with no ToUnicode map (non-embedded Japanese fonts such as
Ryumin-Light with Identity-H/V), as pdftotext does.

Usage: scripts/gen-adobe-japan1.py [/usr/share/poppler/cMap/Adobe-Japan1/Adobe-Japan1-UCS2]
"""
import re
import struct
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/poppler/cMap/Adobe-Japan1/Adobe-Japan1-UCS2"
text = open(src, encoding="latin-1").read()

def first_scalar(hexstr):
    units = [int(hexstr[i:i + 4], 16) for i in range(0, len(hexstr), 4)]
    if 0xD800 <= units[0] < 0xDC00 and len(units) > 1:
        return 0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00)
    return units[0]

table = {}
section = None
for line in text.splitlines():
    line = line.strip()
    if line.endswith("beginbfchar"):
        section = "char"
        continue
    if line.endswith("beginbfrange"):
        section = "range"
        continue
    if line.startswith("end"):
        section = None
        continue
    if section == "char":
        m = re.match(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", line)
        if m:
            table[int(m.group(1), 16)] = first_scalar(m.group(2))
    elif section == "range":
        m = re.match(r"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", line)
        if m:
            lo, hi, dst = int(m.group(1), 16), int(m.group(2), 16), first_scalar(m.group(3))
            for i, cid in enumerate(range(lo, hi + 1)):
                table[cid] = dst + i

size = max(table) + 1
with open("crates/inspect/data/adobe-japan1-ucs2.bin", "wb") as out:
    for cid in range(size):
        out.write(struct.pack("<I", table.get(cid, 0) if table.get(cid, 0) != 0xFFFD else 0))
print(f"{len(table)} CIDs mapped, table of {size}")
