//! Inspection of files and messages the tests build themselves: each kind of
//! document, archive, protection, charset and limit the issue names.

use encoding_rs::{EUC_JP, ISO_2022_JP, SHIFT_JIS};
use lopdf::{Document, Object, Stream, dictionary};
use std::io::{Cursor, Write};
use tomare_config::{ByteSize, Config, Duration};
use tomare_inspect::Inspector;
use tomare_model::Facts;

fn inspector() -> Inspector {
    Inspector::new(&Config::default()).unwrap()
}

fn with_limits(f: impl FnOnce(&mut Config)) -> Inspector {
    let mut c = Config::default();
    f(&mut c);
    Inspector::new(&c).unwrap()
}

fn has_detection(facts: &Facts, detector: &str, location: &str) -> bool {
    facts.detections.iter().any(|d| d.detector == detector && d.location == location)
}

// ---- builders ---------------------------------------------------------

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn docx(paragraphs: &[&str]) -> Vec<u8> {
    let body: String = paragraphs.iter().map(|p| format!("<w:p><w:r><w:t>{p}</w:t></w:r></w:p>")).collect();
    let doc = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#
    );
    zip(&[
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>"#,
        ),
        ("word/document.xml", doc.as_bytes()),
    ])
}

fn pptx(slides: &[&str]) -> Vec<u8> {
    let xml: Vec<String> = slides
        .iter()
        .map(|t| format!(r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>{t}</a:t></a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"#))
        .collect();
    let names: Vec<String> = (1..=slides.len()).map(|i| format!("ppt/slides/slide{i}.xml")).collect();
    let mut entries: Vec<(&str, &[u8])> = vec![("[Content_Types].xml", b"<Types/>")];
    for (n, x) in names.iter().zip(&xml) {
        entries.push((n, x.as_bytes()));
    }
    zip(&entries)
}

fn xlsx(sheet: &str, cells: &[&str]) -> Vec<u8> {
    let rows: String = cells
        .iter()
        .enumerate()
        .map(|(i, c)| format!(r#"<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>{c}</t></is></c></row>"#, r = i + 1))
        .collect();
    let sheet_xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#
    );
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>"#
    );
    zip(&[
        (
            "[Content_Types].xml",
            br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        ("xl/workbook.xml", workbook.as_bytes()),
        (
            "xl/_rels/workbook.xml.rels",
            br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
        ("xl/worksheets/sheet1.xml", sheet_xml.as_bytes()),
    ])
}

fn odt(text: &str) -> Vec<u8> {
    let content = format!(
        r#"<?xml version="1.0"?><office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text><text:p>{text}</text:p></office:text></office:body></office:document-content>"#
    );
    zip(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", content.as_bytes())])
}

/// A one-page PDF whose page shows `content` with font `F1` = `font`.
fn pdf(font: lopdf::Dictionary, content: &[u8], extra: impl FnOnce(&mut Document, lopdf::ObjectId)) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(font);
    extra(&mut doc, font_id);
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    let page_id = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("ID", vec![Object::string_literal("0123456789abcdef"), Object::string_literal("0123456789abcdef")]);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn cid_font(encoding: &str) -> lopdf::Dictionary {
    dictionary! {
        "Type" => "Font",
        "Subtype" => "Type0",
        "BaseFont" => "HeiseiMin-W3",
        "Encoding" => Object::Name(encoding.as_bytes().to_vec()),
        "DescendantFonts" => vec![Object::Dictionary(dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType0",
            "BaseFont" => "HeiseiMin-W3",
            "CIDSystemInfo" => dictionary! {
                "Registry" => Object::string_literal("Adobe"),
                "Ordering" => Object::string_literal("Japan1"),
                "Supplement" => 2,
            },
        })],
    }
}

/// The Adobe-Japan1 CID of `c`, from the table inspection ships.
fn japan1_cid(c: char) -> u16 {
    let table = include_bytes!("../data/adobe-japan1-ucs2.bin");
    let cid = table.chunks(4).position(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == c as u32).unwrap();
    cid as u16
}

// ---- documents ----------------------------------------------------------

#[test]
fn pdf_fonts_simple_tounicode_predefined_cmap_and_bare_cids() {
    let i = inspector();
    let latin = pdf(
        dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" },
        b"BT /F1 12 Tf 72 700 Td (Internal Only: Q3 plan) Tj 0 -14 Td [(Card 4111) -250 (1111 1111 1111)] TJ ET",
        |_, _| {},
    );
    let f = i.file("plan.pdf", &latin);
    assert!(f.attachments[0].text.contains("Internal Only: Q3 plan"), "{:?}", f.attachments[0].text);
    assert!(
        f.attachments[0].text.contains("Card 4111 1111 1111 1111"),
        "kern gap is a space: {:?}",
        f.attachments[0].text
    );
    assert!(has_detection(&f, "keyword", "plan.pdf") && has_detection(&f, "credit_card", "plan.pdf"));

    // Non-embedded CID font with UniJIS-UCS2-H: codes are UCS-2.
    let text = "機密情報：社外秘（髙﨑）";
    let utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let ucs2 =
        pdf(cid_font("UniJIS-UCS2-H"), format!("BT /F1 12 Tf 72 700 Td <{}> Tj ET", hex(&utf16)).as_bytes(), |_, _| {});
    assert!(i.file("a.pdf", &ucs2).attachments[0].text.contains(text));

    // Shift_JIS codes (90ms-RKSJ-H).
    let (sjis, _, _) = SHIFT_JIS.encode("請求書 No.12");
    let rksj =
        pdf(cid_font("90ms-RKSJ-H"), format!("BT /F1 12 Tf 72 700 Td <{}> Tj ET", hex(&sjis)).as_bytes(), |_, _| {});
    assert!(i.file("b.pdf", &rksj).attachments[0].text.contains("請求書 No.12"));

    // Identity-H, no ToUnicode, not embedded: only the Adobe-Japan1 table helps.
    let cids: Vec<u8> = "社外秘".chars().flat_map(|c| japan1_cid(c).to_be_bytes()).collect();
    let bare =
        pdf(cid_font("Identity-H"), format!("BT /F1 12 Tf 72 700 Td <{}> Tj ET", hex(&cids)).as_bytes(), |_, _| {});
    let f = i.file("c.pdf", &bare);
    assert!(f.attachments[0].text.contains("社外秘"), "{:?}", f.attachments[0].text);
    assert!(has_detection(&f, "keyword", "c.pdf"));

    // Identity-H with a ToUnicode map (embedded subset fonts).
    let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap 1 begincodespacerange <0000> <FFFF> endcodespacerange 2 beginbfchar <0001> <6975> <0002> <79D8> endbfchar endcmap end end".to_vec();
    let mapped = pdf(cid_font("Identity-H"), b"BT /F1 12 Tf 72 700 Td <00010002> Tj ET", |doc, font_id| {
        let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap));
        if let Ok(Object::Dictionary(d)) = doc.get_object_mut(font_id) {
            d.set("ToUnicode", to_unicode);
        }
    });
    assert!(i.file("d.pdf", &mapped).attachments[0].text.contains("極秘"));
}

#[test]
fn pdf_with_a_user_password_is_protected_and_a_broken_one_incomplete() {
    let i = inspector();
    let plain = pdf(
        dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" },
        b"BT /F1 12 Tf 72 700 Td (secret numbers) Tj ET",
        |_, _| {},
    );
    let mut doc = Document::load_mem(&plain).unwrap();
    let state = lopdf::EncryptionState::try_from(lopdf::EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner",
        user_password: "user-secret",
        key_length: 128,
        permissions: lopdf::Permissions::default(),
    })
    .unwrap();
    doc.encrypt(&state).unwrap();
    let mut encrypted = Vec::new();
    doc.save_to(&mut encrypted).unwrap();
    let f = i.file("locked.pdf", &encrypted);
    assert!(f.attachments[0].encrypted, "{:?}", f.attachments[0]);
    assert!(!f.attachments[0].text.contains("secret"));
    assert!(!f.complete && f.incomplete_reasons[0].contains("password"), "{:?}", f.incomplete_reasons);

    let broken = &plain[..plain.len() / 3];
    let f = i.file("broken.pdf", broken);
    assert!(!f.complete, "a truncated PDF is not a clean pass: {f:?}");
}

#[test]
fn office_documents_and_rtf_html_csv() {
    let i = inspector();
    let f = i.file("見積書.docx", &docx(&["社外秘：見積書", "担当 山田太郎"]));
    assert_eq!(f.attachments[0].detected_type, "docx");
    assert!(f.attachments[0].text.contains("社外秘：見積書\n担当 山田太郎"));
    let f = i.file("q.pptx", &pptx(&["一枚目", "四半期報告（極秘）"]));
    assert!(f.attachments[0].text.contains("一枚目\n四半期報告（極秘）"), "{:?}", f.attachments[0].text);
    assert!(has_detection(&f, "keyword", "q.pptx"));
    let f = i.file("list.xlsx", &xlsx("請求一覧", &["品名", "社内限り", "&#x9AD9;&#xFA11;"]));
    assert_eq!(f.attachments[0].detected_type, "xlsx");
    let text = &f.attachments[0].text;
    assert!(text.contains("請求一覧") && text.contains("社内限り") && text.contains("髙﨑"), "{text:?}");
    let f = i.file("memo.odt", &odt("関係者外秘の議事録"));
    assert!(has_detection(&f, "keyword", "memo.odt"), "{f:?}");

    let rtf = br"{\rtf1\ansi\ansicpg932{\fonttbl{\f0 MS Mincho;}}\f0 \'8e\'d0\'8a\'4f\'94\'e9\par}";
    assert!(i.file("a.rtf", rtf).attachments[0].text.contains("社外秘"));
    let html = "<html><body><p>部外秘</p><script>x='極秘'</script></body></html>";
    let f = i.file("a.html", html.as_bytes());
    assert!(f.detections.iter().any(|d| d.name == "部外秘") && !f.detections.iter().any(|d| d.name == "極秘"));
    let (csv, _, _) = SHIFT_JIS.encode("氏名,個人番号\n山田,123456789018\n");
    let f = i.file("names.csv", &csv);
    assert!(has_detection(&f, "my_number", "names.csv"), "{f:?}");
    let (euc, _, _) = EUC_JP.encode("振込先: みずほ銀行 本店 普通 7654321\n");
    assert!(has_detection(&i.file("bank.txt", &euc), "bank_account", "bank.txt"));
}

#[test]
fn protected_office_and_uninspectable_archives() {
    let i = inspector();
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    cf.create_stream("EncryptionInfo").unwrap().write_all(&[4, 0, 4, 0, 0x40, 0, 0, 0]).unwrap();
    cf.create_stream("EncryptedPackage").unwrap().write_all(&[0u8; 64]).unwrap();
    cf.flush().unwrap();
    let office = cf.into_inner().into_inner();
    let f = i.file("給与.xlsx", &office);
    assert!(f.attachments[0].encrypted);
    assert_eq!(f.attachments[0].detected_type, "encrypted-office");
    assert!(!f.attachments[0].type_mismatch, "an encrypted xlsx keeps its name");
    assert!(!f.complete);

    // A broken 7z is incomplete (a fact); RAR has no free reader.
    for (name, bytes, why) in [
        ("a.7z", &b"7z\xBC\xAF\x27\x1C\x00\x04rest"[..], "7z"),
        ("a.rar", b"Rar!\x1A\x07\x01\x00rest", "not inspectable"),
    ] {
        let f = i.file(name, bytes);
        assert!(!f.complete && f.incomplete_reasons[0].contains(why), "{name}: {f:?}");
    }
}

// ---- archives ----------------------------------------------------------

#[test]
fn nested_zip_with_cp932_names_and_a_disguised_file() {
    let inner = zip(&[("memo.docx", &docx(&["関係者外秘"]))]);
    let outer = zip(&[("XXXXXX.txt", "社外秘メモ".as_bytes()), ("inner.zip", &inner)]);
    // The name as Japanese Windows writes it: CP932 bytes, no UTF-8 flag.
    let (cp932, _, _) = SHIFT_JIS.encode("見積書.txt");
    let outer = replace(&outer, b"XXXXXX.txt", &cp932);
    let f = inspector().file("資料.zip", &outer);
    let paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["資料.zip", "資料.zip/見積書.txt", "資料.zip/inner.zip", "資料.zip/inner.zip/memo.docx"]);
    assert!(has_detection(&f, "keyword", "資料.zip/inner.zip/memo.docx"));
    assert!(f.complete, "{:?}", f.incomplete_reasons);

    let f = inspector().file("invoice.pdf", &outer);
    assert!(f.attachments[0].type_mismatch && f.attachments[0].detected_type == "zip");
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = hay.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    out
}

#[test]
fn encrypted_zip_entries_are_reported() {
    let plain = zip(&[("secret.xlsx", b"not really a spreadsheet")]);
    // Set bit 0 (encrypted) of the general purpose flags, in the local
    // header (offset 6) and in the central directory entry (offset 8).
    let mut z = plain.clone();
    z[6] |= 1;
    let cd = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    z[cd + 8] |= 1;
    let f = inspector().file("pw.zip", &z);
    let entry = f.attachments.iter().find(|a| a.path == "pw.zip/secret.xlsx").expect("entry listed");
    assert!(entry.encrypted);
    assert!(!f.complete && f.incomplete_reasons.iter().any(|r| r.contains("password")));
}

#[test]
fn zip_bomb_entry_limit_depth_and_time_end_incomplete() {
    let zeros = vec![0u8; 30 * 1024 * 1024];
    let bomb = zip(&[("zeros.bin", &zeros)]);
    assert!(bomb.len() < 100 * 1024, "a real bomb: {} bytes", bomb.len());
    let small = with_limits(|c| c.inspect.max_decompressed = ByteSize(10 * 1024 * 1024));
    let f = small.file("bomb.zip", &bomb);
    assert!(!f.complete && f.incomplete_reasons.iter().any(|r| r.contains("limit")), "{:?}", f.incomplete_reasons);

    let many: Vec<(String, Vec<u8>)> = (0..20).map(|n| (format!("f{n}.txt"), b"x".to_vec())).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let few = with_limits(|c| c.inspect.max_entries = 5);
    let f = few.file("many.zip", &zip(&refs));
    assert!(f.incomplete_reasons.iter().any(|r| r.contains("more than 5 entries")), "{:?}", f.incomplete_reasons);

    let mut nested = zip(&[("deep.txt", "社外秘".as_bytes())]);
    for level in 0..12 {
        nested = zip(&[(&format!("level{level}.zip"), &nested)]);
    }
    let f = inspector().file("nest.zip", &nested);
    assert!(f.incomplete_reasons.iter().any(|r| r.contains("nested deeper")), "{:?}", f.incomplete_reasons);

    let hurried = with_limits(|c| c.inspect.time_budget = Duration::secs(0));
    let f = hurried.file("memo.docx", &docx(&["x"]));
    assert!(!f.complete && f.incomplete_reasons.iter().any(|r| r.contains("time budget")), "{f:?}");
}

// ---- messages ----------------------------------------------------------

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, b| a << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>().join("\r\n")
}

#[test]
fn japanese_mail_in_every_charset() {
    let body = "いつもお世話になっております。社外秘の資料です。";
    let i = inspector();
    for (charset, enc) in [("ISO-2022-JP", ISO_2022_JP), ("Shift_JIS", SHIFT_JIS), ("EUC-JP", EUC_JP)] {
        let (bytes, _, _) = enc.encode(body);
        let (subject, _, _) = enc.encode("御見積");
        let mut raw = format!(
            "From: =?{charset}?B?{}?= <taro@example.com>\r\nTo: partner@customer.test\r\nSubject: =?{charset}?B?{}?=\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            b64(&enc.encode("山田").0),
            b64(&subject)
        )
        .into_bytes();
        raw.extend_from_slice(&bytes);
        let f = i.message(&raw);
        assert_eq!(f.subject, "御見積", "{charset}");
        assert!(f.body_text.contains(body), "{charset}: {:?}", f.body_text);
        assert!(has_detection(&f, "keyword", "body"), "{charset}");
        assert_eq!(f.from, ["taro@example.com"]);
    }
    // UTF-8 quoted-printable, and UTF-16 base64.
    let qp = "From: a@example.com\r\nTo: b@x.test\r\nSubject: =?UTF-8?Q?=E7=A4=BE=E5=A4=96=E7=A7=98?=\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=E6=A5=B5=E7=A7=98\r\n";
    let f = i.message(qp.as_bytes());
    assert_eq!(f.subject, "社外秘");
    assert!(f.body_text.contains("極秘"));
    let utf16: Vec<u8> = body.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    let raw = format!(
        "From: a@example.com\r\nTo: b@x.test\r\nSubject: x\r\nContent-Type: text/plain; charset=UTF-16BE\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(&utf16)
    );
    assert!(i.message(raw.as_bytes()).body_text.contains(body));
}

#[test]
fn attachment_names_rfc2231_raw_cp932_and_attached_messages() {
    let attached =
        "From: boss@example.com\r\nTo: taro@example.com\r\nSubject: =?UTF-8?B?6Lui6YCB?=\r\n\r\n極秘の件、了解。\r\n";
    let (raw_name, _, _) = SHIFT_JIS.encode("請求書.txt");
    let mut raw = b"From: taro@example.com\r\nTo: partner@customer.test\r\nBcc: boss@example.com\r\nSubject: files\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML only <b>body</b></p>\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.txt\r\n\r\n\xe7\xa4\xbe\xe5\xa4\x96\xe7\xa7\x98\r\n\
--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\""
        .to_vec();
    raw.extend_from_slice(&raw_name);
    raw.extend_from_slice(b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    raw.extend_from_slice(b64("社内限り".as_bytes()).as_bytes());
    raw.extend_from_slice(b"\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n");
    raw.extend_from_slice(attached.as_bytes());
    raw.extend_from_slice(b"\r\n--b1--\r\n");
    let f = inspector().message(&raw);
    let names: Vec<&str> = f.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["見積書.txt", "請求書.txt", "message-3.eml"], "{:?}", f.attachments);
    assert_eq!(f.bcc, ["boss@example.com"]);
    assert!(f.body_text.contains("HTML only body"), "{:?}", f.body_text);
    assert!(has_detection(&f, "keyword", "見積書.txt"));
    assert!(has_detection(&f, "keyword", "請求書.txt"));
    assert!(has_detection(&f, "keyword", "message-3.eml"), "{:?}", f.detections);
    assert!(f.complete, "{:?}", f.incomplete_reasons);
}

#[test]
fn malformed_address_headers_are_facts() {
    let raw = "From: taro@example.com\r\nTo: partner@customer.test\r\nBcc: boss@example.com\r\nceo@example.com\r\nSubject: x\r\n\r\nbody\r\n";
    let f = inspector().message(raw.as_bytes());
    assert!(f.malformed_headers.iter().any(|m| m.contains("ceo@example.com")), "{:?}", f.malformed_headers);
    let raw = "From: taro@example.com\r\nTo: partner@customer.test, Yamada Taro\r\nSubject: x\r\n\r\nbody\r\n";
    let f = inspector().message(raw.as_bytes());
    assert!(f.malformed_headers.iter().any(|m| m.starts_with("To:")), "{:?}", f.malformed_headers);
    let raw = "From: taro@example.com\r\nTo: undisclosed-recipients:;\r\nSubject: x\r\n\r\nbody\r\n";
    assert!(inspector().message(raw.as_bytes()).malformed_headers.is_empty());
}

#[test]
fn hundred_levels_of_mime_nesting_end_incomplete_not_in_a_crash() {
    let mut raw = String::from("From: a@example.com\r\nTo: b@x.test\r\nSubject: deep\r\nMIME-Version: 1.0\r\n");
    for level in 0..100 {
        raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\n社外秘\r\n");
    for level in (0..100).rev() {
        raw.push_str(&format!("--b{level}--\r\n"));
    }
    let f = inspector().message(raw.as_bytes());
    assert!(!f.complete, "{f:?}");
    assert!(f.incomplete_reasons.iter().any(|r| r.contains("nested")), "{:?}", f.incomplete_reasons);
}

#[test]
fn gzip_tar_and_configured_regex_detectors() {
    let mut tar = vec![0u8; 512];
    tar[..10].copy_from_slice(b"orders.csv");
    let body = "注文番号,金額\nINV-2024-0123,5000\n".as_bytes();
    tar[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
    tar[156] = b'0';
    tar[257..262].copy_from_slice(b"ustar");
    tar.extend_from_slice(body);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let tgz = gz.finish().unwrap();

    let i = with_limits(|c| {
        c.detect.regex =
            vec![tomare_config::RegexDetector { name: "invoice".into(), pattern: r"inv-\d{4}-\d{4}".into() }]
    });
    let f = i.file("backup.tgz", &tgz);
    let paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["backup.tgz", "backup.tgz/(gzip)", "backup.tgz/(gzip)/orders.csv"]);
    let hit = f.detections.iter().find(|d| d.detector == "regex").expect("regex detector ran");
    assert_eq!((hit.name.as_str(), hit.location.as_str()), ("invoice", "backup.tgz/(gzip)/orders.csv"));
    // Full-width digits normalise before the pattern sees them.
    let f = i.file("memo.txt", "請求書 ＩＮＶ－２０２４－０１２３".as_bytes());
    assert!(f.detections.iter().any(|d| d.detector == "regex"), "{:?}", f.detections);

    let bad = tomare_config::RegexDetector { name: "broken".into(), pattern: "(unclosed".into() };
    let mut c = Config::default();
    c.detect.regex = vec![bad];
    assert!(Inspector::new(&c).err().unwrap().contains("broken"));
}

// ---- robustness ----------------------------------------------------------

/// A small deterministic generator: the same mutations every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, cuts and splices bytes of real documents: every inspection must
/// come back (no panic escapes, no hang), and anything it could not read is
/// reported, never silently dropped.
#[test]
fn mutated_documents_never_crash_the_inspector() {
    let i = inspector();
    let latin = pdf(
        dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" },
        b"BT /F1 12 Tf 72 700 Td (mutate me) Tj ET",
        |_, _| {},
    );
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("a.pdf", latin),
        ("a.docx", docx(&["社外秘", "本文"])),
        ("a.xlsx", xlsx("一覧", &["a", "b"])),
        ("a.zip", zip(&[("x.txt", "社外秘".as_bytes()), ("y.docx", &docx(&["y"]))])),
        ("a.rtf", br"{\rtf1\ansi\ansicpg932 \'8e\'d0\par}".to_vec()),
        // The readers of hidden places and legacy formats.
        (
            "b.docx",
            docx_with(
                "<w:p><w:del><w:r><w:delText>x</w:delText></w:r></w:del></w:p>",
                &[("word/embeddings/o.bin", &ole_package("m.txt", b"memo"))],
            ),
        ),
        (
            "b.xlsx",
            xlsx_with(&[(
                "xl/comments1.xml",
                b"<comments><commentList><comment><text><t>c</t></text></comment></commentList></comments>",
            )]),
        ),
        (
            "b.pdf",
            pdf_with(|d| {
                let data = d.add_object(Stream::new(dictionary! {}, b"embedded".to_vec()));
                let outline = d.new_object_id();
                d.objects.insert(
                    outline,
                    Object::Dictionary(dictionary! { "Title" => Object::string_literal("t"), "Next" => outline }),
                );
                (
                vec![("Annots", vec![Object::Dictionary(dictionary! { "Subtype" => "FileAttachment", "Contents" => Object::string_literal("c"), "FS" => dictionary! { "F" => Object::string_literal("e.txt"), "EF" => dictionary! { "F" => data } } })].into())],
                vec![("Outlines", Object::Dictionary(dictionary! { "First" => outline }))],
                vec![("Title", Object::string_literal("t"))],
            )
            }),
        ),
        ("a.doc", legacy_doc("本文", "text", false)),
        ("a.ppt", compound(&[("/PowerPoint Document", record(0x000F, 0x03E8, &record(0, 0x0FA0, &utf16le("本文"))))])),
        (
            "a.msg",
            compound(&[
                ("/__properties_version1.0", vec![0; 32]),
                ("/__substg1.0_1000001F", utf16le("本文")),
                ("/__attach_version1.0_#00000000/__substg1.0_37010102", b"att".to_vec()),
            ]),
        ),
        ("a.7z", sevenz(&[("x.txt", "社外秘".as_bytes())], &[])),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..120 {
        for (name, seed) in &seeds {
            let mut data = seed.clone();
            for _ in 0..1 + rng.below(8) {
                match rng.below(4) {
                    0 if !data.is_empty() => {
                        let at = rng.below(data.len());
                        data[at] ^= 1 << rng.below(8);
                    }
                    1 if !data.is_empty() => {
                        let at = rng.below(data.len());
                        data.truncate(at);
                    }
                    2 => {
                        let at = rng.below(data.len() + 1);
                        let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                        data.splice(at..at, junk);
                    }
                    _ if data.len() > 16 => {
                        let from = rng.below(data.len() - 8);
                        let to = rng.below(data.len() - 8);
                        let chunk: Vec<u8> = data[from..from + 8].to_vec();
                        data[to..to + 8].copy_from_slice(&chunk);
                    }
                    _ => {}
                }
            }
            let f = i.file(name, &data);
            assert_eq!(f.attachments.first().map(|a| a.size), Some(data.len() as u64), "round {round} {name}");
            if f.attachments.iter().any(|a| a.error.is_some()) {
                assert!(!f.complete, "round {round} {name}: an error must make the inspection incomplete");
            }
            // The same bytes as a mail attachment.
            let raw = format!(
                "From: a@example.com\r\nTo: b@x.test\r\nSubject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n\
                 --q\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--q--\r\n",
                b64(&data)
            );
            let _ = i.message(raw.as_bytes());
            // And the mail itself cut at a random point.
            let cut = rng.below(raw.len());
            let _ = i.message(&raw.as_bytes()[..cut]);
        }
    }
}

/// Inputs the fuzzers (`fuzz/`) found to crash something, kept as they
/// were found: each must now be read to facts, never to a panic. Named by
/// target: `mime-*` a whole message, `pdf-*` a PDF, `file-*` a bare file.
#[test]
fn fuzz_findings_are_facts_not_crashes() {
    let i = inspector();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let facts = if name.starts_with("mime-") {
            i.message(&bytes)
        } else if name.starts_with("pdf-") {
            let budget = tomare_inspect::Budget::new(64 << 20, std::time::Duration::from_secs(5));
            let _ = tomare_inspect::pdf::extract(&bytes, &budget);
            i.file("x.pdf", &bytes)
        } else {
            i.file(&name, &bytes)
        };
        assert_eq!(facts.complete, facts.incomplete_reasons.is_empty(), "{name}: {facts:?}");
        seen += 1;
    }
    assert!(seen > 0);
}

/// A CSV as Excel writes it, in `bytes`' charset, attached with the given
/// Content-Type (no charset, or a wrong one) and transfer encoding.
fn csv_mail(bytes: &[u8], content_type: &str, base64: bool) -> Vec<u8> {
    let (cte, body) = if base64 { ("base64", b64(bytes).into_bytes()) } else { ("8bit", bytes.to_vec()) };
    let mut raw = format!(
        "From: a@example.com\r\nTo: b@customer.test\r\nSubject: list\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n\
         --q\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment; filename=\"list.csv\"\r\n\
         Content-Transfer-Encoding: {cte}\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n--q--\r\n");
    raw
}

#[test]
fn text_parts_without_a_true_charset_are_decoded_like_bare_files() {
    let i = inspector();
    let csv = "氏名,銀行,口座\r\n山田太郎,みずほ銀行 普通預金 口座番号,1234567\r\n備考,社外秘,\r\n";
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("cp932, no charset", SHIFT_JIS.encode(csv).0.into_owned(), "text/csv"),
        ("euc-jp, no charset", EUC_JP.encode(csv).0.into_owned(), "text/csv"),
        ("utf-8, no charset", csv.as_bytes().to_vec(), "text/csv"),
        ("cp932 labelled us-ascii", SHIFT_JIS.encode(csv).0.into_owned(), "text/csv; charset=us-ascii"),
        ("cp932 labelled utf-8", SHIFT_JIS.encode(csv).0.into_owned(), "text/plain; charset=utf-8"),
    ];
    for (what, bytes, ctype) in cases {
        for base64 in [true, false] {
            let f = i.message(&csv_mail(&bytes, ctype, base64));
            let a = f.attachments.iter().find(|a| a.name == "list.csv").unwrap_or_else(|| panic!("{what}: {f:?}"));
            assert!(
                a.text.contains("山田太郎") && !a.text.contains('\u{FFFD}'),
                "{what} (base64 {base64}): {:?}",
                a.text
            );
            assert!(has_detection(&f, "keyword", "list.csv"), "{what}: {:?}", f.detections);
            assert!(has_detection(&f, "bank_account", "list.csv"), "{what}: {:?}", f.detections);
        }
    }
    // A body part without a charset, too.
    let mut raw =
        b"From: a@example.com\r\nTo: b@customer.test\r\nSubject: x\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    raw.extend_from_slice(&SHIFT_JIS.encode("この資料は社外秘です\r\n").0);
    let f = i.message(&raw);
    assert!(f.body_text.contains("社外秘"), "{:?}", f.body_text);
    assert!(has_detection(&f, "keyword", "body"));
}

// ---- hidden places (issue 13) ------------------------------------------

/// A zip with `entries` plus `extra` (the hidden place).
fn package_with(entries: &[(&str, &[u8])], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let all: Vec<(&str, &[u8])> = entries.iter().chain(extra).copied().collect();
    zip(&all)
}

const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

fn docx_with(body: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let doc = format!(r#"<?xml version="1.0" encoding="UTF-8"?><w:document {W}><w:body>{body}</w:body></w:document>"#);
    package_with(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", doc.as_bytes())], extra)
}

fn xlsx_with(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let base = xlsx("Sheet1", &["普通のセル"]);
    let mut archive = zip::ZipArchive::new(Cursor::new(base)).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        entries.push((f.name().unwrap().into_owned(), data));
    }
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    package_with(&borrowed, extra)
}

/// An OLE package (compound file with an Ole10Native stream) holding `file`.
fn ole_package(file_name: &str, data: &[u8]) -> Vec<u8> {
    let mut native = Vec::new();
    native.extend_from_slice(&0u32.to_le_bytes());
    native.extend_from_slice(&2u16.to_le_bytes());
    for s in [file_name, &format!("C:\\tmp\\{file_name}")] {
        native.extend_from_slice(s.as_bytes());
        native.push(0);
    }
    native.extend_from_slice(&[0, 0, 3, 0]);
    let temp = format!("C:\\temp\\{file_name}\0");
    native.extend_from_slice(&(temp.len() as u32).to_le_bytes());
    native.extend_from_slice(temp.as_bytes());
    native.extend_from_slice(&(data.len() as u32).to_le_bytes());
    native.extend_from_slice(data);
    let total = (native.len() - 4) as u32;
    native[..4].copy_from_slice(&total.to_le_bytes());
    let mut cfb = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    cfb.create_stream("/\u{1}Ole10Native").unwrap().write_all(&native).unwrap();
    cfb.flush().unwrap();
    cfb.into_inner().into_inner()
}

#[test]
fn a_keyword_only_in_a_hidden_place_of_an_office_file_is_found() {
    let i = inspector();
    let kw = "社外秘";
    let core = format!(
        r#"<cp:coreProperties xmlns:cp="c" xmlns:dc="d"><dc:title>{kw}の資料</dc:title><cp:lastModifiedBy>山田</cp:lastModifiedBy></cp:coreProperties>"#
    );
    let custom = format!(
        r#"<Properties xmlns:vt="v"><property name="区分"><vt:lpwstr>{kw}</vt:lpwstr></property></Properties>"#
    );
    let app = format!(r#"<Properties><Company>{kw}商事</Company><Manager>部長</Manager></Properties>"#);
    let chart = format!(
        r#"<c:chartSpace xmlns:c="c" xmlns:a="a"><c:chart><c:title><c:tx><c:rich><a:p><a:r><a:t>{kw}売上</a:t></a:r></a:p></c:rich></c:tx></c:title></c:chart></c:chartSpace>"#
    );
    let chart_label = format!(
        r#"<c:chartSpace xmlns:c="c"><c:ser><c:cat><c:strRef><c:strCache><c:pt idx="0"><c:v>{kw}部門</c:v></c:pt></c:strCache></c:strRef></c:cat></c:ser></c:chartSpace>"#
    );
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("tracked deletion", "a.docx", docx_with(&format!("<w:p><w:del><w:r><w:delText>{kw}</w:delText></w:r></w:del><w:r><w:t>本文</w:t></w:r></w:p>"), &[])),
        ("tracked insertion", "a.docx", docx_with(&format!("<w:p><w:ins><w:r><w:t>{kw}</w:t></w:r></w:ins></w:p>"), &[])),
        ("text box", "a.docx", docx_with(&format!("<w:p><w:r><w:pict><w:txbxContent><w:p><w:r><w:t>{kw}</w:t></w:r></w:p></w:txbxContent></w:pict></w:r></w:p>"), &[])),
        ("alt text", "a.docx", docx_with(&format!(r#"<w:p><w:r><w:drawing><wp:inline xmlns:wp="wp"><wp:docPr id="1" name="図 1" descr="{kw}の図"/></wp:inline></w:drawing></w:r></w:p>"#), &[])),
        ("title property", "a.docx", docx_with("<w:p><w:r><w:t>本文</w:t></w:r></w:p>", &[("docProps/core.xml", core.as_bytes())])),
        ("custom property", "a.docx", docx_with("<w:p/>", &[("docProps/custom.xml", custom.as_bytes())])),
        ("company property", "a.docx", docx_with("<w:p/>", &[("docProps/app.xml", app.as_bytes())])),
        ("chart title", "a.docx", docx_with("<w:p/>", &[("word/charts/chart1.xml", chart.as_bytes())])),
        ("chart label", "a.xlsx", xlsx_with(&[("xl/charts/chart1.xml", chart_label.as_bytes())])),
        ("sheet footer", "a.xlsx", xlsx_with(&[("xl/worksheets/sheet9.xml", format!(r#"<worksheet><headerFooter><oddFooter>&amp;C{kw} &amp;P</oddFooter></headerFooter></worksheet>"#).as_bytes())])),
        ("pivot cache", "a.xlsx", xlsx_with(&[("xl/pivotCache/pivotCacheRecords1.xml", format!(r#"<pivotCacheRecords><r><s v="{kw}顧客"/><n v="3"/></r></pivotCacheRecords>"#).as_bytes())])),
        ("cell comment", "a.xlsx", xlsx_with(&[("xl/comments1.xml", format!(r#"<comments><commentList><comment ref="A1"><text><r><t>{kw}</t></r></text></comment></commentList></comments>"#).as_bytes())])),
        ("threaded comment", "a.xlsx", xlsx_with(&[("xl/threadedComments/threadedComment1.xml", format!(r#"<ThreadedComments><threadedComment ref="A1"><text>{kw}です</text></threadedComment></ThreadedComments>"#).as_bytes())])),
        ("shape text", "a.xlsx", xlsx_with(&[("xl/drawings/drawing1.xml", format!(r#"<xdr:wsDr xmlns:xdr="x" xmlns:a="a"><xdr:sp><xdr:txBody><a:p><a:r><a:t>{kw}</a:t></a:r></a:p></xdr:txBody></xdr:sp></xdr:wsDr>"#).as_bytes())])),
        ("slide master footer", "a.pptx", package_with(&[("[Content_Types].xml", b"<Types/>"), ("ppt/slides/slide1.xml", b"<p:sld xmlns:p=\"p\"/>")], &[("ppt/slideMasters/slideMaster1.xml", format!(r#"<p:sldMaster xmlns:p="p" xmlns:a="a"><p:sp><p:txBody><a:p><a:r><a:t>{kw}</a:t></a:r></a:p></p:txBody></p:sp></p:sldMaster>"#).as_bytes())])),
        ("slide comment", "a.pptx", package_with(&[("[Content_Types].xml", b"<Types/>"), ("ppt/slides/slide1.xml", b"<p:sld xmlns:p=\"p\"/>")], &[("ppt/comments/comment1.xml", format!(r#"<p:cmLst xmlns:p="p"><p:cm><p:text>{kw}</p:text></p:cm></p:cmLst>"#).as_bytes())])),
        ("odt properties", "a.odt", package_with(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<office:document-content xmlns:office=\"o\"/>")], &[("meta.xml", format!(r#"<office:document-meta xmlns:office="o" xmlns:dc="d"><office:meta><dc:title>{kw}</dc:title></office:meta></office:document-meta>"#).as_bytes())])),
    ];
    for (place, name, bytes) in cases {
        let f = i.file(name, &bytes);
        assert!(f.complete, "{place}: {:?}", f.incomplete_reasons);
        assert!(has_detection(&f, "keyword", name), "{place}: {:?} / {:?}", f.detections, f.attachments);
    }
}

#[test]
fn embedded_files_are_inspected_as_attachments_of_their_own() {
    let i = inspector();
    let inner = xlsx("内訳", &["社外秘の内訳"]);
    let doc = docx_with(
        "<w:p><w:r><w:t>報告書</w:t></w:r></w:p>",
        &[("word/embeddings/Microsoft_Excel_Worksheet.xlsx", &inner)],
    );
    let f = i.file("report.docx", &doc);
    let paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["report.docx", "report.docx/embeddings/Microsoft_Excel_Worksheet.xlsx"]);
    assert!(
        has_detection(&f, "keyword", "report.docx/embeddings/Microsoft_Excel_Worksheet.xlsx"),
        "{:?}",
        f.detections
    );
    assert!(f.complete);
    // An OLE package: the file inside it.
    let ole = ole_package("memo.txt", "関係者外秘のメモ".as_bytes());
    let doc = docx_with("<w:p/>", &[("word/embeddings/oleObject1.bin", &ole)]);
    let f = i.file("report.docx", &doc);
    assert!(has_detection(&f, "keyword", "report.docx/embeddings/oleObject1.bin/memo.txt"), "{:?}", f.attachments);
    // Embedded in an embedded file: the depth limit holds.
    let shallow = with_limits(|c| c.inspect.max_depth = 1);
    let nested = docx_with("<w:p/>", &[("word/embeddings/inner.docx", &doc)]);
    let f = shallow.file("outer.docx", &nested);
    assert!(!f.complete, "too deep is incomplete: {:?}", f.attachments);
}

/// A one-page PDF (page text "本文なし" in Helvetica: nothing to find) with
/// what `f` adds to its page and its catalog.
type Keys = Vec<(&'static str, Object)>;
fn pdf_with(f: impl FnOnce(&mut Document) -> (Keys, Keys, Keys)) -> Vec<u8> {
    let mut doc = Document::with_version("1.7");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let (page_keys, catalog_keys, info_keys) = f(&mut doc);
    let content_id = doc.add_object(Stream::new(dictionary! {}, b"BT /F1 12 Tf 72 700 Td (plain page) Tj ET".to_vec()));
    let mut page = dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "Contents" => content_id,
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    for (k, v) in page_keys {
        page.set(k, v);
    }
    let page_id = doc.add_object(page);
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }),
    );
    let mut catalog = dictionary! { "Type" => "Catalog", "Pages" => pages_id };
    for (k, v) in catalog_keys {
        catalog.set(k, v);
    }
    let catalog = doc.add_object(catalog);
    doc.trailer.set("Root", catalog);
    if !info_keys.is_empty() {
        let mut info = lopdf::Dictionary::new();
        for (k, v) in info_keys {
            info.set(k, v);
        }
        let info = doc.add_object(info);
        doc.trailer.set("Info", info);
    }
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A PDF text string in UTF-16BE with its BOM.
fn pdf_text(s: &str) -> Object {
    let mut b = vec![0xFE, 0xFF];
    for u in s.encode_utf16() {
        b.extend_from_slice(&u.to_be_bytes());
    }
    Object::String(b, lopdf::StringFormat::Hexadecimal)
}

#[test]
fn a_keyword_only_beyond_a_pdfs_page_text_is_found() {
    let i = inspector();
    let kw = "社外秘";
    let none = Vec::new;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text annotation",
            pdf_with(|_| {
                (vec![("Annots", vec![Object::Dictionary(dictionary! { "Type" => "Annot", "Subtype" => "Text", "Contents" => pdf_text(&format!("{kw}です")) })].into())], none(), none())
            }),
        ),
        (
            "free text",
            pdf_with(|_| {
                (
                    vec![(
                        "Annots",
                        vec![Object::Dictionary(dictionary! { "Subtype" => "FreeText", "Contents" => pdf_text(kw) })]
                            .into(),
                    )],
                    none(),
                    none(),
                )
            }),
        ),
        (
            "stamp",
            pdf_with(|_| {
                (
                    vec![(
                        "Annots",
                        vec![Object::Dictionary(
                            dictionary! { "Subtype" => "Stamp", "Contents" => pdf_text(kw), "Name" => "Confidential" },
                        )]
                        .into(),
                    )],
                    none(),
                    none(),
                )
            }),
        ),
        (
            "form field value",
            pdf_with(|d| {
                let kid = d.add_object(
                    dictionary! { "T" => Object::string_literal("memo"), "V" => pdf_text(&format!("{kw}の値")) },
                );
                let parent =
                    d.add_object(dictionary! { "T" => Object::string_literal("group"), "Kids" => vec![kid.into()] });
                (
                    none(),
                    vec![("AcroForm", Object::Dictionary(dictionary! { "Fields" => vec![parent.into()] }))],
                    none(),
                )
            }),
        ),
        (
            "XFA data",
            pdf_with(|d| {
                let xfa = d.add_object(Stream::new(
                    dictionary! {},
                    format!("<xfa:datasets><data><memo>{kw}</memo></data></xfa:datasets>").into_bytes(),
                ));
                (
                    none(),
                    vec![(
                        "AcroForm",
                        Object::Dictionary(
                            dictionary! { "Fields" => Vec::<Object>::new(), "XFA" => vec![Object::string_literal("datasets"), xfa.into()] },
                        ),
                    )],
                    none(),
                )
            }),
        ),
        (
            "information dictionary",
            pdf_with(|_| {
                (
                    none(),
                    none(),
                    vec![("Title", pdf_text(&format!("{kw}資料"))), ("Author", Object::string_literal("Yamada"))],
                )
            }),
        ),
        (
            "XMP metadata",
            pdf_with(|d| {
                let xmp = d.add_object(Stream::new(dictionary! { "Type" => "Metadata", "Subtype" => "XML" }, format!(r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="r"><rdf:Description><dc:subject xmlns:dc="d">{kw}</dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"#).into_bytes()));
                (none(), vec![("Metadata", xmp.into())], none())
            }),
        ),
        (
            "bookmark",
            pdf_with(|d| {
                let outlines = d.new_object_id();
                let second =
                    d.add_object(dictionary! { "Title" => pdf_text(&format!("第2章 {kw}")), "Parent" => outlines });
                let first =
                    d.add_object(dictionary! { "Title" => pdf_text("第1章"), "Parent" => outlines, "Next" => second });
                d.objects.insert(
                    outlines,
                    Object::Dictionary(dictionary! { "Type" => "Outlines", "First" => first, "Last" => second }),
                );
                (none(), vec![("Outlines", outlines.into())], none())
            }),
        ),
    ];
    for (place, bytes) in cases {
        let f = i.file("a.pdf", &bytes);
        assert!(f.complete, "{place}: {:?}", f.incomplete_reasons);
        assert!(has_detection(&f, "keyword", "a.pdf"), "{place}: {:?}", f.attachments[0].text);
    }
}

#[test]
fn files_embedded_in_a_pdf_are_inspected_as_attachments() {
    let i = inspector();
    let bytes = pdf_with(|d| {
        let data = d.add_object(Stream::new(
            dictionary! { "Type" => "EmbeddedFile" },
            "名前,番号\n社外秘の一覧,1\n".as_bytes().to_vec(),
        ));
        let spec = d.add_object(dictionary! { "Type" => "Filespec", "F" => Object::string_literal("list.csv"), "UF" => pdf_text("一覧.csv"), "EF" => dictionary! { "F" => data } });
        let att_data =
            d.add_object(Stream::new(dictionary! { "Type" => "EmbeddedFile" }, "関係者外秘のメモ".as_bytes().to_vec()));
        let att_spec = dictionary! { "Type" => "Filespec", "F" => Object::string_literal("memo.txt"), "EF" => dictionary! { "F" => att_data } };
        (
            vec![(
                "Annots",
                vec![Object::Dictionary(dictionary! { "Subtype" => "FileAttachment", "FS" => att_spec })].into(),
            )],
            vec![(
                "Names",
                Object::Dictionary(
                    dictionary! { "EmbeddedFiles" => dictionary! { "Names" => vec![pdf_text("一覧.csv"), spec.into()] } },
                ),
            )],
            Vec::new(),
        )
    });
    let f = i.file("a.pdf", &bytes);
    let paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["a.pdf", "a.pdf/memo.txt", "a.pdf/一覧.csv"], "{:?}", f.attachments);
    assert!(has_detection(&f, "keyword", "a.pdf/一覧.csv") && has_detection(&f, "keyword", "a.pdf/memo.txt"));
    assert!(f.complete);
}

// ---- text in pictures (OCR with the real tesseract) ---------------------

/// `text` drawn black on white with a CJK font (Pillow), as `format`
/// (PNG, JPEG, GIF, BMP, TIFF, WEBP; `RAW` gives 8-bit grey samples and the
/// size as "W H\n" first).
fn rendered(text: &str, format: &str) -> Vec<u8> {
    let script = r#"
import sys, io
from PIL import Image, ImageDraw, ImageFont
text, fmt = sys.argv[1], sys.argv[2]
font = ImageFont.truetype("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 48)
img = Image.new("L", (1200, 200), 255)
ImageDraw.Draw(img).text((40, 60), text, font=font, fill=0)
out = io.BytesIO()
if fmt == "RAW":
    out.write(b"%d %d\n" % img.size + img.tobytes())
else:
    (img if fmt != "JPEG" else img.convert("RGB")).save(out, fmt)
sys.stdout.buffer.write(out.getvalue())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, text, format])
        .output()
        .expect("python3 with Pillow (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn text_in_pictures_is_read_by_ocr_and_unread_pictures_are_incomplete() {
    let i = inspector();
    assert!(i.ocr_status().is_ok(), "tesseract with jpn and eng is installed: {:?}", i.ocr_status());
    for format in ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"] {
        let name = format!("screenshot.{}", format.to_lowercase());
        let f = i.file(&name, &rendered("社外秘 顧客一覧", format));
        assert!(f.complete, "{format}: {:?}", f.incomplete_reasons);
        assert!(f.attachments[0].ocr, "{format}: read by OCR");
        assert!(has_detection(&f, "keyword", &name), "{format}: {:?}", f.attachments[0].text);
    }
    // A picture seen again (a signature's logo) is not read again.
    let logo = rendered("株式会社サンプル 営業部", "PNG");
    assert!(!tomare_inspect::ocr::cached(&logo));
    let first = i.file("logo.png", &logo);
    assert!(tomare_inspect::ocr::cached(&logo), "kept after the first read");
    let again = i.file("logo.png", &logo);
    assert_eq!(first.attachments[0].text, again.attachments[0].text);
    assert!(again.attachments[0].ocr);
    // As JSON, the attachment says the text came from OCR.
    let f = i.file("screenshot.png", &rendered("CONFIDENTIAL", "PNG"));
    let json = serde_json::to_value(&f).unwrap();
    assert_eq!(json["attachments"][0]["ocr"], true);
    // Without OCR a picture is a fact, not a pass.
    let off = with_limits(|c| c.inspect.ocr = tomare_config::OcrMode::Off);
    let f = off.file("screenshot.png", &rendered("社外秘", "PNG"));
    assert!(!f.complete);
    assert!(f.incomplete_reasons[0].contains("not inspected: no OCR"), "{:?}", f.incomplete_reasons);
    // A tracking pixel carries no text; a giant picture is not read.
    let pixel = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    assert!(off.file("p.gif", pixel).complete);
    let small = with_limits(|c| c.inspect.ocr_max_pixels = 1000);
    let f = small.file("screenshot.png", &rendered("x", "PNG"));
    assert!(!f.complete && f.incomplete_reasons[0].contains("ocr_max_pixels"), "{:?}", f.incomplete_reasons);
}

#[test]
fn a_scanned_pdf_page_is_read_by_ocr() {
    let i = inspector();
    let jpeg = rendered("関係者外秘 見積書", "JPEG");
    let (w, h) = (1200, 200);
    let scan = |image: Stream| {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let image_id = doc.add_object(image);
        let content_id =
            doc.add_object(Stream::new(dictionary! {}, format!("q {w} 0 0 {h} 0 0 cm /Im1 Do Q").into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            "Resources" => dictionary! { "XObject" => dictionary! { "Im1" => image_id } },
            "MediaBox" => vec![0.into(), 0.into(), w.into(), h.into()],
        });
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    };
    let as_jpeg = scan(Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => w, "Height" => h,
        "ColorSpace" => "DeviceRGB", "BitsPerComponent" => 8, "Filter" => "DCTDecode" },
        jpeg,
    ));
    let raw = rendered("関係者外秘 見積書", "RAW");
    let samples = raw[raw.iter().position(|b| *b == b'\n').unwrap() + 1..].to_vec();
    let mut flate = Stream::new(
        dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => w, "Height" => h,
        "ColorSpace" => "DeviceGray", "BitsPerComponent" => 8 },
        samples,
    );
    flate.compress().unwrap();
    let as_flate = scan(flate);
    for (kind, pdf) in [("JPEG", as_jpeg), ("Flate", as_flate)] {
        let f = i.file("scan.pdf", &pdf);
        assert!(f.complete, "{kind}: {:?}", f.incomplete_reasons);
        assert!(f.attachments[0].ocr, "{kind}");
        assert!(has_detection(&f, "keyword", "scan.pdf"), "{kind}: {:?}", f.attachments[0].text);
    }
    // Without OCR, the scanned page is named in the reasons.
    let off = with_limits(|c| c.inspect.ocr = tomare_config::OcrMode::Off);
    let f = off.file(
        "scan.pdf",
        &scan(Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => w, "Height" => h,
            "ColorSpace" => "DeviceRGB", "BitsPerComponent" => 8, "Filter" => "DCTDecode" },
            rendered("x", "JPEG"),
        )),
    );
    assert!(
        !f.complete && f.incomplete_reasons.iter().any(|r| r.contains("scanned page 1") && r.contains("no OCR")),
        "{:?}",
        f.incomplete_reasons
    );
}

// ---- legacy formats ----------------------------------------------------------

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn compound(streams: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut f = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        if let Some((dir, _)) = path.rsplit_once('/')
            && !dir.is_empty()
            && !f.exists(dir)
        {
            f.create_storage_all(dir).unwrap();
        }
        f.create_stream(path).unwrap().write_all(data).unwrap();
    }
    f.flush().unwrap();
    f.into_inner().into_inner()
}

/// A Word 97 document whose text is two pieces: `unicode` (UTF-16) and
/// `ansi` (8-bit, "compressed"), through a real FIB and piece table.
fn legacy_doc(unicode: &str, ansi: &str, encrypted: bool) -> Vec<u8> {
    let mut word = vec![0u8; 1024];
    word[0..2].copy_from_slice(&0xA5ECu16.to_le_bytes());
    word[2..4].copy_from_slice(&0x00C1u16.to_le_bytes());
    word[0x0A..0x0C].copy_from_slice(&(if encrypted { 0x0100u16 } else { 0 }).to_le_bytes());
    word[32..34].copy_from_slice(&14u16.to_le_bytes());
    word[62..64].copy_from_slice(&22u16.to_le_bytes());
    word[152..154].copy_from_slice(&93u16.to_le_bytes());
    let u = utf16le(unicode);
    let a_at = 1024 + u.len();
    word.extend_from_slice(&u);
    word.extend_from_slice(ansi.as_bytes());
    let (n1, n2) = (unicode.encode_utf16().count() as u32, ansi.len() as u32);
    let mut plc = Vec::new();
    for cp in [0, n1, n1 + n2] {
        plc.extend_from_slice(&cp.to_le_bytes());
    }
    for fc in [1024u32, (a_at as u32 * 2) | 0x4000_0000] {
        plc.extend_from_slice(&[0, 0]);
        plc.extend_from_slice(&fc.to_le_bytes());
        plc.extend_from_slice(&[0, 0]);
    }
    let mut clx = vec![0x02];
    clx.extend_from_slice(&(plc.len() as u32).to_le_bytes());
    clx.extend_from_slice(&plc);
    let at = 154 + 33 * 8;
    word[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    word[at + 4..at + 8].copy_from_slice(&(clx.len() as u32).to_le_bytes());
    compound(&[("/WordDocument", word), ("/0Table", clx)])
}

fn record(ver_instance: u16, kind: u16, body: &[u8]) -> Vec<u8> {
    let mut r = ver_instance.to_le_bytes().to_vec();
    r.extend_from_slice(&kind.to_le_bytes());
    r.extend_from_slice(&(body.len() as u32).to_le_bytes());
    r.extend_from_slice(body);
    r
}

#[test]
fn legacy_word_powerpoint_and_outlook_files_are_read() {
    let i = inspector();
    // Word 97: both kinds of piece (a field's instruction is kept: nothing
    // hides behind an unterminated one).
    let doc = legacy_doc("見積書\r社外秘\u{7}", "Draft \u{13} HYPERLINK x \u{14}plan\u{15} v2", false);
    let f = i.file("old.doc", &doc);
    assert_eq!(f.attachments[0].detected_type, "doc");
    assert!(f.complete, "{:?}", f.incomplete_reasons);
    assert!(has_detection(&f, "keyword", "old.doc"), "{:?}", f.attachments[0].text);
    assert!(
        f.attachments[0].text.contains("Draft") && f.attachments[0].text.contains("plan"),
        "{}",
        f.attachments[0].text
    );
    let f = i.file("locked.doc", &legacy_doc("x", "y", true));
    assert!(f.attachments[0].encrypted && !f.complete);
    // Word 95 and older: said so, not read as garbage.
    let mut ole = cfb::CompoundFile::open(Cursor::new(legacy_doc("x", "y", false))).unwrap();
    let mut word = Vec::new();
    std::io::Read::read_to_end(&mut ole.open_stream("/WordDocument").unwrap(), &mut word).unwrap();
    word[2..4].copy_from_slice(&0x0065u16.to_le_bytes());
    let f = i.file("w95.doc", &compound(&[("/WordDocument", word)]));
    assert!(!f.complete && f.incomplete_reasons[0].contains("Word 95"), "{:?}", f.incomplete_reasons);
    // PowerPoint 97: text atoms inside containers.
    let mut inner = record(0, 0x0FA0, &utf16le("関係者外秘の企画"));
    inner.extend(record(0, 0x0FA8, b"Quarterly plan"));
    let ppt = compound(&[("/PowerPoint Document", record(0x000F, 0x03E8, &inner)), ("/Current User", vec![0; 8])]);
    let f = i.file("old.ppt", &ppt);
    assert_eq!(f.attachments[0].detected_type, "ppt");
    assert!(
        has_detection(&f, "keyword", "old.ppt") && f.attachments[0].text.contains("Quarterly plan"),
        "{:?}",
        f.attachments[0]
    );
    // Outlook: subject, body, and its attachment as one of its own.
    let msg = compound(&[
        ("/__properties_version1.0", vec![0; 32]),
        ("/__substg1.0_0037001F", utf16le("お見積もり")),
        ("/__substg1.0_1000001F", utf16le("添付をご確認ください。")),
        ("/__attach_version1.0_#00000000/__substg1.0_3707001F", utf16le("memo.txt")),
        ("/__attach_version1.0_#00000000/__substg1.0_37010102", "社外秘のメモ".as_bytes().to_vec()),
    ]);
    let f = i.file("fwd.msg", &msg);
    let paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["fwd.msg", "fwd.msg/memo.txt"]);
    assert!(f.attachments[0].text.contains("お見積もり") && f.attachments[0].text.contains("添付をご確認"));
    assert!(has_detection(&f, "keyword", "fwd.msg/memo.txt"), "{:?}", f.detections);
    assert!(f.complete, "{:?}", f.incomplete_reasons);
    // Cut files are facts, not crashes: incomplete, with the reason.
    for (name, bytes) in
        [("cut.doc", &doc[..doc.len() / 2]), ("cut.ppt", &ppt[..ppt.len() / 2]), ("cut.msg", &msg[..600])]
    {
        let f = i.file(name, bytes);
        assert!(!f.complete && !f.incomplete_reasons.is_empty(), "{name}: {:?}", f.attachments);
    }
}

/// A 7z made by the real 7-Zip (p7zip-full) from `files`, with `args`.
fn sevenz(files: &[(&str, &[u8])], args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let out = std::process::Command::new("7z")
        .arg("a")
        .args(args)
        .arg("-bd")
        .arg(dir.path().join("a.7z"))
        .args(files.iter().map(|(n, _)| dir.path().join(n)))
        .output()
        .expect("7z (p7zip-full; scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    std::fs::read(dir.path().join("a.7z")).unwrap()
}

#[test]
fn seven_zip_archives_are_opened_and_encrypted_ones_reported() {
    let i = inspector();
    let doc = docx(&["関係者外秘の報告"]);
    let plain = sevenz(&[("メモ.txt", "社外秘のメモ".as_bytes()), ("report.docx", &doc)], &[]);
    let f = i.file("資料.7z", &plain);
    let mut paths: Vec<&str> = f.attachments.iter().map(|a| a.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["資料.7z", "資料.7z/report.docx", "資料.7z/メモ.txt"]);
    assert!(has_detection(&f, "keyword", "資料.7z/メモ.txt") && has_detection(&f, "keyword", "資料.7z/report.docx"));
    assert!(f.complete, "{:?}", f.incomplete_reasons);
    for args in [&["-psecret"][..], &["-psecret", "-mhe=on"]] {
        let f = i.file("locked.7z", &sevenz(&[("x.txt", b"secret")], args));
        assert!(f.attachments[0].encrypted && !f.complete, "{args:?}: {:?}", f.incomplete_reasons);
    }
    // The byte limit holds for 7z as for zip.
    let big = vec![b'a'; 5_000_000];
    let small = with_limits(|c| c.inspect.max_decompressed = ByteSize(1_000_000));
    let f = small.file("big.7z", &sevenz(&[("a.txt", &big)], &[]));
    assert!(!f.complete, "{:?}", f.incomplete_reasons);
}

#[test]
fn a_screenshot_pasted_into_a_document_or_beside_a_pdfs_text_is_read() {
    let i = inspector();
    let shot = rendered("社外秘 顧客一覧", "PNG");
    let doc = docx_with("<w:p><w:r><w:t>報告です</w:t></w:r></w:p>", &[("word/media/image1.png", &shot)]);
    let f = i.file("report.docx", &doc);
    assert!(has_detection(&f, "keyword", "report.docx/media/image1.png"), "{:?}", f.attachments);
    assert!(f.attachments.iter().any(|a| a.ocr));
    // A page with a text layer and a picture of text: both are read; a
    // picture every page shows is read once.
    let jpeg = rendered("関係者外秘 見積書", "JPEG");
    let bytes = pdf_with(|d| {
        let image = d.add_object(Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Image", "Width" => 1200, "Height" => 200,
            "ColorSpace" => "DeviceRGB", "BitsPerComponent" => 8, "Filter" => "DCTDecode" },
            jpeg,
        ));
        // Inside a form XObject, as layout programs place them.
        let form = d.add_object(Stream::new(
            dictionary! { "Type" => "XObject", "Subtype" => "Form", "Resources" => dictionary! { "XObject" => dictionary! { "Im1" => image } } },
            b"q 600 0 0 100 0 0 cm /Im1 Do Q".to_vec(),
        ));
        (
            vec![("Resources", Object::Dictionary(dictionary! { "XObject" => dictionary! { "Fm1" => form } }))],
            Vec::new(),
            Vec::new(),
        )
    });
    let f = i.file("mixed.pdf", &bytes);
    assert!(has_detection(&f, "keyword", "mixed.pdf") && f.attachments[0].ocr, "{:?}", f.attachments[0].text);
    // Too many embedded files: the rest are a fact.
    let few = with_limits(|c| c.inspect.max_entries = 2);
    let parts: Vec<(String, Vec<u8>)> = (0..4).map(|n| (format!("word/embeddings/e{n}.txt"), b"x".to_vec())).collect();
    let refs: Vec<(&str, &[u8])> = parts.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let f = few.file("many.docx", &docx_with("<w:p/>", &refs));
    assert!(
        !f.complete && f.incomplete_reasons.iter().any(|r| r.contains("2 more embedded files")),
        "{:?}",
        f.incomplete_reasons
    );
}

#[test]
fn inline_pdf_pictures_ods_comments_and_legacy_pictures_are_not_passed_over() {
    let i = inspector();
    // An inline picture (BI … ID … EI) with text: read by OCR.
    let raw = rendered("社外秘 顧客一覧", "RAW");
    let samples = raw[raw.iter().position(|b| *b == b'\n').unwrap() + 1..].to_vec();
    let mut content = b"q 600 0 0 100 0 0 cm BI /W 1200 /H 200 /CS /G /BPC 8 ID ".to_vec();
    content.extend_from_slice(&samples);
    content.extend_from_slice(b" EI Q");
    let bytes = pdf_with(move |d| {
        let c = d.add_object(Stream::new(dictionary! {}, content));
        (vec![("Contents", c.into())], Vec::new(), Vec::new())
    });
    let f = i.file("inline.pdf", &bytes);
    assert!(has_detection(&f, "keyword", "inline.pdf"), "{:?} {:?}", f.attachments[0].text, f.incomplete_reasons);
    // A cell comment of an ods.
    let content = r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="S"><table:table-row><table:table-cell><office:annotation><text:p>関係者外秘</text:p></office:annotation><text:p>普通</text:p></table:table-cell></table:table-row></table:table></office:spreadsheet></office:body></office:document-content>"#;
    let manifest = r#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    let ods = zip(&[
        ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"),
        ("META-INF/manifest.xml", manifest.as_bytes()),
        ("content.xml", content.as_bytes()),
    ]);
    let f = i.file("a.ods", &ods);
    assert!(has_detection(&f, "keyword", "a.ods"), "{:?}", f.attachments[0]);
    // Pictures inside a legacy presentation are a fact, not a pass.
    let ppt = compound(&[
        ("/PowerPoint Document", record(0x000F, 0x03E8, &record(0, 0x0FA0, &utf16le("本文")))),
        ("/Pictures", vec![1; 64]),
    ]);
    let f = i.file("pics.ppt", &ppt);
    assert!(!f.complete && f.incomplete_reasons[0].contains("pictures"), "{:?}", f.incomplete_reasons);
}

#[test]
fn text_in_a_font_without_a_unicode_map_is_reported_not_read() {
    let font = dictionary! {
        "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "Custom", "Encoding" => "Identity-H",
        "DescendantFonts" => vec![Object::Dictionary(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "Custom",
            "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Identity"), "Supplement" => 0 },
        })],
    };
    let codes: Vec<u8> = (1..=20u16).flat_map(|c| c.to_be_bytes()).collect();
    let content = format!("BT /F1 12 Tf 72 700 Td <{}> Tj ET", hex(&codes));
    let f = inspector().file("glyphs.pdf", &pdf(font, content.as_bytes(), |_, _| {}));
    assert!(!f.complete, "{:?}", f.attachments[0]);
    assert!(f.incomplete_reasons[0].contains("without a Unicode map"), "{:?}", f.incomplete_reasons);
}

#[test]
fn a_picture_written_into_the_html_body_is_read() {
    let png = rendered("社外秘 顧客一覧", "PNG");
    let mail = format!(
        "From: a@example.com\r\nTo: b@x.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>ご確認ください</p><img src=\"data:image/png;base64,{}\">\r\n",
        b64(&png)
    );
    let f = inspector().message(mail.as_bytes());
    assert!(has_detection(&f, "keyword", "inline-image-1.png"), "{:?}", f.attachments);
    assert!(f.attachments.iter().any(|a| a.ocr));
}
