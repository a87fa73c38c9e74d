//! What sits where the sender does not look, inside real mail through
//! `tomare check`: a keyword only in a docx's tracked deletion, only in an
//! xlsx cell comment, only in a screenshot (read by the real tesseract) —
//! each caught by the built-in pack's confidential-to-outside rule; and,
//! with OCR off, the screenshot makes the inspection incomplete instead.

mod common;
use common::*;

/// Files made by Python's standard zipfile and Pillow, base64 for a mail.
fn fixture(kind: &str) -> Vec<u8> {
    let script = r#"
import io, sys, zipfile
kind = sys.argv[1]
out = io.BytesIO()
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
if kind == "docx":
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f'<w:document {W}><w:body><w:p><w:del><w:r><w:delText>社外秘</w:delText></w:r></w:del><w:r><w:t>見積書</w:t></w:r></w:p></w:body></w:document>')
elif kind == "xlsx":
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
        z.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>単価</t></is></c></row></sheetData></worksheet>')
        z.writestr("xl/comments1.xml", '<comments><commentList><comment ref="A1"><text><r><t>関係者外秘</t></r></text></comment></commentList></comments>')
else:
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 48)
    img = Image.new("L", (900, 160), 255)
    ImageDraw.Draw(img).text((30, 50), "社外秘 顧客一覧", font=font, fill=0)
    img.save(out, "PNG")
sys.stdout.buffer.write(out.getvalue())
"#;
    let out = std::process::Command::new("python3").args(["-c", script, kind]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn mail_with(name: &str, ctype: &str, data: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!(
        "From: taro@example.com\r\nTo: partner@customer.test\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b\r\nContent-Type: {ctype}\r\nContent-Disposition: attachment; filename={name}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        lines.join("\r\n")
    )
}

fn check(dir: &std::path::Path, config: &str, eml: &str) -> serde_json::Value {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, format!("[storage]\ndata_dir = \"{}\"\n{config}", dir.join("data").display())).unwrap();
    let path = dir.join("m.eml");
    std::fs::write(&path, eml).unwrap();
    let out = tomare().args(["check", "--json", "--config"]).arg(&cfg).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn keywords_in_hidden_places_and_pictures_are_caught_by_the_built_in_pack() {
    let dir = tempfile::tempdir().unwrap();
    let ooxml = "application/vnd.openxmlformats-officedocument";
    for (name, ctype, kind) in [
        ("見積書.docx", format!("{ooxml}.wordprocessingml.document"), "docx"),
        ("単価表.xlsx", format!("{ooxml}.spreadsheetml.sheet"), "xlsx"),
        ("screenshot.png", "image/png".to_string(), "png"),
    ] {
        let v = check(dir.path(), "", &mail_with(name, &ctype, &fixture(kind)));
        let fired: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert!(fired.contains(&"confidential-to-outside"), "{name}: {fired:?}");
        assert!(!fired.contains(&"inspection-incomplete"), "{name} was read: {v}");
        assert_eq!(v["outcome"], "approval", "{name}");
    }
    // OCR off: the screenshot is not read, and a person decides.
    let v = check(dir.path(), "[inspect]\nocr = \"off\"\n", &mail_with("screenshot.png", "image/png", &fixture("png")));
    let fired: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(fired.contains(&"inspection-incomplete") && !fired.contains(&"confidential-to-outside"), "{fired:?}");
    let reason = v["rules"].as_array().unwrap().iter().find(|r| r["name"] == "inspection-incomplete").unwrap();
    assert!(reason["reason"].as_str().unwrap().contains("no OCR"), "{reason}");
}
