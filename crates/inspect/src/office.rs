//! Office documents: OOXML (docx, pptx) and OpenDocument text from their XML
//! parts; spreadsheets (xlsx, xls, ods) through calamine; compound files
//! (legacy and encrypted Office) by their streams.
//!
//! Everything a recipient can see counts, not only the body: comments and
//! threaded comments, tracked insertions and deletions, headers, footers,
//! foot- and endnotes, text boxes and shapes, charts, alt text, document
//! properties (core, app, custom), defined names; embedded files
//! (`*/embeddings/*`, OLE packages) come back as members, inspected like
//! attachments of their own.

use crate::Budget;
use calamine::Reader as _;
use quick_xml::events::Event;
use std::io::{Cursor, Read};

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    /// Text only inside `t` elements (w:t, a:t; w:delText, a tracked
    /// deletion; `text`, a threaded comment's; `v`, a chart's cached
    /// label); `p` ends a paragraph. Alt text (`descr`, `title` of a
    /// picture or shape) counts too.
    Ooxml,
    /// Text anywhere in the body; `p`/`h` end a paragraph.
    Odf,
    /// Every element's text, one per line, and the `name` of defined names
    /// (document properties, a workbook's names).
    Values,
}

/// Elements whose text is a document's text (OOXML).
const TEXT_ELEMENTS: &[&str] = &["t", "delText", "text", "v"];

/// Attributes that carry text a reader sees (alt text, a defined name).
fn attribute_text(e: &quick_xml::events::BytesStart, out: &mut String) {
    let local = e.local_name();
    let wanted: &[&str] = match local.as_ref() {
        "docPr" | "cNvPr" => &["descr", "title"],
        "definedName" => &["name"],
        _ => return,
    };
    for a in e.attributes().flatten() {
        if wanted.contains(&a.key.local_name().as_ref())
            && let Ok(v) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            && !v.trim().is_empty()
        {
            out.push_str(&v);
            out.push('\n');
        }
    }
}

/// Text of one XML part.
fn xml_text(xml: &[u8], dialect: Dialect, budget: &Budget) -> Result<String, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = String::new();
    let mut in_t = 0usize;
    let mut events = 0u32;
    loop {
        events += 1;
        if events.is_multiple_of(4096) && budget.out_of_time() {
            return Err("time budget exceeded".into());
        }
        let event = reader.read_event().map_err(|e| format!("XML: {e}"))?;
        let everywhere = matches!(dialect, Dialect::Odf | Dialect::Values);
        match event {
            Event::Start(e) => {
                attribute_text(&e, &mut out);
                match e.local_name().as_ref() {
                    t if TEXT_ELEMENTS.contains(&t) => in_t += 1,
                    "tab" => out.push('\t'),
                    "br" | "cr" | "line-break" => out.push('\n'),
                    _ => {}
                }
            }
            Event::Empty(e) => {
                attribute_text(&e, &mut out);
                match e.local_name().as_ref() {
                    "tab" => out.push('\t'),
                    "br" | "cr" | "line-break" => out.push('\n'),
                    "s" if dialect == Dialect::Odf => out.push(' '),
                    _ => {}
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                t if TEXT_ELEMENTS.contains(&t) => {
                    in_t = in_t.saturating_sub(1);
                    if dialect == Dialect::Ooxml && (t == "text" || t == "v") && !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
                "p" | "h" if !out.ends_with('\n') => out.push('\n'),
                "tc" | "table-cell" => out.push('\t'),
                _ if dialect == Dialect::Values && !out.ends_with('\n') && !out.is_empty() => out.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_t > 0 || everywhere => out.push_str(&t.xml10_content()),
            Event::CData(t) if in_t > 0 || everywhere => out.push_str(t.as_ref()),
            Event::GeneralRef(r) if in_t > 0 || everywhere => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else {
                    out.push_str(match r.xml10_content().as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        _ => "",
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// Reads one zip member, charging its size to the budget.
fn member(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, budget: &Budget) -> Result<Vec<u8>, String> {
    let file = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let mut data = Vec::new();
    let limit = budget.remaining_bytes();
    file.take(limit + 1).read_to_end(&mut data).map_err(|e| format!("{name}: {e}"))?;
    budget.charge(data.len() as u64)?;
    Ok(data)
}

/// Sorted so that slide10 follows slide9.
fn natural_key(name: &str) -> (String, u64) {
    let digits: String =
        name.chars().rev().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    let n = digits.chars().rev().collect::<String>().parse().unwrap_or(0);
    (name.trim_end_matches(|c: char| !c.is_ascii_digit()).trim_end_matches(|c: char| c.is_ascii_digit()).to_string(), n)
}

/// What a package holds: the text of its wanted parts (in order) and the
/// files embedded in it.
pub struct Package {
    pub text: String,
    pub embedded: Vec<crate::archive::Member>,
    /// What was not read, when something was not.
    pub partial: Option<String>,
}

/// Parts of every OOXML package a reader sees besides its body: document
/// properties, charts, drawings (shapes, alt text).
fn common_part(n: &str) -> Option<Dialect> {
    if n.starts_with("docProps/") && n.ends_with(".xml") && n != "docProps/thumbnail.xml" {
        return Some(Dialect::Values);
    }
    let dir = n.split('/').nth(1).unwrap_or("");
    (matches!(dir, "charts" | "drawings" | "diagrams") && n.ends_with(".xml") && !n.contains("/_rels/"))
        .then_some(Dialect::Ooxml)
}

/// An embedded file of a package (`word/embeddings/x.xlsx`, an OLE
/// package `oleObject1.bin`) or a picture it shows (`word/media/`,
/// `xl/media/`, `ppt/media/`, ODF `Pictures/`: a pasted screenshot is read
/// by OCR), under its package-relative name.
fn is_embedding(n: &str) -> bool {
    let dir = n.split('/').nth(1);
    let odf_picture = n.starts_with("Pictures/");
    (matches!(dir, Some("embeddings" | "media")) || odf_picture) && !n.ends_with('/')
}

fn package(bytes: &[u8], wanted: impl Fn(&str) -> Option<Dialect>, budget: &Budget) -> Result<Package, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("zip: {e}"))?;
    let all: Vec<String> = archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    let mut names: Vec<(String, Dialect)> = all.iter().filter_map(|n| wanted(n).map(|d| (n.clone(), d))).collect();
    names.sort_by_key(|(n, _)| natural_key(n));
    let mut out = String::new();
    for (name, dialect) in names {
        let xml = member(&mut archive, &name, budget)?;
        out.push_str(&xml_text(&xml, dialect, budget)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    let mut embedded = Vec::new();
    for name in all.iter().filter(|n| is_embedding(n)) {
        let short = if name.starts_with("Pictures/") {
            name.clone()
        } else {
            name.split_once('/').map(|(_, rest)| rest).unwrap_or(name).to_string()
        };
        // One unreadable embedding is a fact of its own, not the loss of
        // the document's text.
        match member(&mut archive, name, budget) {
            Ok(data) => embedded.extend(ole_package(&short, data)),
            Err(e) => embedded.push(crate::archive::Member {
                name: short,
                data: Vec::new(),
                encrypted: false,
                error: Some(e),
            }),
        }
    }
    Ok(Package { text: out, embedded, partial: None })
}

/// An OLE package (a compound file with an `\x01Ole10Native` stream) is
/// the file inside it; anything else is itself.
fn ole_package(name: &str, data: Vec<u8>) -> Vec<crate::archive::Member> {
    let plain =
        |name: &str, data| crate::archive::Member { name: name.to_string(), data, encrypted: false, error: None };
    if !data.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return vec![plain(name, data)];
    }
    let Ok(mut cfb) = cfb::CompoundFile::open(Cursor::new(&data)) else { return vec![plain(name, data)] };
    let mut native = Vec::new();
    let read = cfb.open_stream("/\u{1}Ole10Native").and_then(|mut s| s.read_to_end(&mut native));
    if read.is_err() {
        return vec![plain(name, data)];
    }
    match ole10_native(&native) {
        Some((file, inner)) => vec![plain(&format!("{name}/{file}"), inner)],
        None => vec![crate::archive::Member {
            name: name.to_string(),
            data: Vec::new(),
            encrypted: false,
            error: Some("an OLE package that does not read".into()),
        }],
    }
}

/// The file name and bytes of an Ole10Native stream: total size, flags,
/// label, original path, two reserved words, the temporary path, then the
/// data's size and the data.
fn ole10_native(s: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut at = 6; // u32 size, u16 flags
    let cstr = |at: &mut usize| -> Option<String> {
        let end = s.get(*at..)?.iter().position(|b| *b == 0)? + *at;
        let text = String::from_utf8_lossy(&s[*at..end]).into_owned();
        *at = end + 1;
        Some(text)
    };
    let label = cstr(&mut at)?;
    let _path = cstr(&mut at)?;
    at += 8; // u32 reserved, u32 length of the temporary path
    let _temp = cstr(&mut at)?;
    let len = u32::from_le_bytes(s.get(at..at + 4)?.try_into().ok()?) as usize;
    let data = s.get(at + 4..at + 4 + len)?.to_vec();
    let name = label.rsplit(['\\', '/']).next().unwrap_or("").to_string();
    Some((if name.is_empty() { "package.bin".into() } else { name }, data))
}

pub fn docx(bytes: &[u8], budget: &Budget) -> Result<Package, String> {
    let wanted = |n: &str| {
        let body = n == "word/document.xml"
            || (n.starts_with("word/")
                && n.ends_with(".xml")
                && ["header", "footer", "footnotes", "endnotes", "comments"].iter().any(|p| n[5..].starts_with(p)));
        if body { Some(Dialect::Ooxml) } else { common_part(n) }
    };
    package(bytes, wanted, budget)
}

pub fn pptx(bytes: &[u8], budget: &Budget) -> Result<Package, String> {
    let wanted = |n: &str| {
        // Masters and layouts too: a footer set there shows on every slide.
        let body = (n.starts_with("ppt/slides/slide")
            || n.starts_with("ppt/notesSlides/notesSlide")
            || n.starts_with("ppt/slideMasters/slideMaster")
            || n.starts_with("ppt/slideLayouts/slideLayout")
            || n.starts_with("ppt/comments/"))
            && n.ends_with(".xml");
        if body { Some(Dialect::Ooxml) } else { common_part(n) }
    };
    package(bytes, wanted, budget)
}

/// The parts of an xlsx besides its cells: comments (old and threaded),
/// shapes and charts, defined names, properties.
fn xlsx_extra(bytes: &[u8], budget: &Budget) -> Result<Package, String> {
    let wanted = |n: &str| {
        if n == "xl/workbook.xml" {
            // Only its defined names' names (attributes); their formulas below.
            return Some(Dialect::Ooxml);
        }
        let body = (n.starts_with("xl/comments") || n.starts_with("xl/threadedComments/")) && n.ends_with(".xml");
        if body { Some(Dialect::Ooxml) } else { common_part(n) }
    };
    let mut p = package(bytes, wanted, budget)?;
    // Defined names' formulas (what they point at) are values too; each
    // sheet's printed headers and footers are read from its own part.
    if let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) {
        if let Ok(xml) = member(&mut archive, "xl/workbook.xml", budget) {
            p.text.push_str(&elements_text(&xml, &["definedName"]));
        }
        let sheets: Vec<String> = archive
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| n.starts_with("xl/worksheets/") && n.ends_with(".xml"))
            .map(|n| n.into_owned())
            .collect();
        for sheet in sheets {
            let xml = member(&mut archive, &sheet, budget)?;
            p.text.push_str(&elements_text(
                &xml,
                &["oddHeader", "oddFooter", "evenHeader", "evenFooter", "firstHeader", "firstFooter"],
            ));
        }
        // Pivot caches keep their source's values, which may be gone from
        // every sheet.
        let caches: Vec<String> = archive
            .file_names()
            .filter_map(Result::ok)
            .filter(|n| n.starts_with("xl/pivotCache/") && n.ends_with(".xml"))
            .map(|n| n.into_owned())
            .collect();
        for cache in caches {
            let xml = member(&mut archive, &cache, budget)?;
            p.text.push_str(&pivot_values(&xml));
        }
    }
    Ok(p)
}

/// The text inside the elements named `names` (a sheet's headers and
/// footers, defined names' formulas, ODF comments), one per line; a
/// paragraph inside one ends a line too.
fn elements_text(xml: &[u8], names: &[&str]) -> String {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = String::new();
    let mut depth = 0usize;
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) if names.contains(&e.local_name().as_ref()) => depth += 1,
            Event::End(e) if names.contains(&e.local_name().as_ref()) => {
                depth = depth.saturating_sub(1);
                out.push('\n');
            }
            Event::End(e) if depth > 0 && e.local_name().as_ref() == "p" => out.push('\n'),
            Event::Text(t) if depth > 0 => out.push_str(&t.xml10_content()),
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The text values of a pivot cache (`<s v="…"/>`, shared items and
/// records alike).
fn pivot_values(xml: &[u8]) -> String {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = String::new();
    while let Ok(event) = reader.read_event() {
        match event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "s" => {
                for a in e.attributes().flatten() {
                    if a.key.local_name().as_ref() == "v"
                        && let Ok(v) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    {
                        out.push_str(&v);
                        out.push('\n');
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// odt, odp: the body and the styles (headers and footers live there), the
/// properties (meta.xml), and embedded objects' own content.
pub fn odf(bytes: &[u8], budget: &Budget) -> Result<Package, String> {
    let wanted = |n: &str| match n {
        "content.xml" | "styles.xml" => Some(Dialect::Odf),
        "meta.xml" => Some(Dialect::Values),
        n if n.ends_with("/content.xml") && !n.starts_with("META-INF") => Some(Dialect::Odf),
        _ => None,
    };
    package(bytes, wanted, budget)
}

/// xlsx, xls, ods: every sheet's name and cells (hidden sheets, rows and
/// columns too), tab-separated rows; for an xlsx also its comments, shapes,
/// charts, defined names, properties and embedded files.
pub fn spreadsheet(bytes: &[u8], budget: &Budget) -> Result<Package, String> {
    let cells = spreadsheet_cells(bytes, budget)?;
    if !bytes.starts_with(b"PK") {
        // A legacy .xls: its comments' and text boxes' text from the BIFF
        // records calamine leaves; its pictures are a fact.
        let (text, partial) = xls_extra(bytes, budget);
        return Ok(Package { text: cells + &text, embedded: Vec::new(), partial });
    }
    let mut extra = if crate::sniff::sniff(bytes) == crate::sniff::Kind::Ods {
        // The cells are read already: their comments, the properties and
        // embedded objects.
        let wanted = |n: &str| match n {
            "meta.xml" => Some(Dialect::Values),
            n if n.ends_with("/content.xml") && !n.starts_with("META-INF") => Some(Dialect::Odf),
            _ => None,
        };
        let mut p = package(bytes, wanted, budget)?;
        if let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes))
            && let Ok(xml) = member(&mut archive, "content.xml", budget)
        {
            p.text.push_str(&elements_text(&xml, &["annotation"]));
        }
        p
    } else {
        xlsx_extra(bytes, budget)?
    };
    extra.text.insert_str(0, &cells);
    Ok(extra)
}

fn spreadsheet_cells(bytes: &[u8], budget: &Budget) -> Result<String, String> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| format!("spreadsheet: {e}"))?;
    let mut out = String::new();
    for name in book.sheet_names() {
        out.push_str(&name);
        out.push('\n');
        let range = match book.worksheet_range(&name) {
            Ok(r) => r,
            Err(e) => return Err(format!("sheet {name}: {e}")),
        };
        for row in range.rows() {
            if budget.out_of_time() {
                return Err("time budget exceeded".into());
            }
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            let line = cells.join("\t");
            let line = line.trim_end();
            if !line.is_empty() {
                budget.charge(line.len() as u64)?;
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The text of a .xls's TXO records (cell comments, text boxes: the text is
/// in the CONTINUE record after each), and whether it holds pictures.
fn xls_extra(bytes: &[u8], budget: &Budget) -> (String, Option<String>) {
    let Ok(mut file) = cfb::CompoundFile::open(Cursor::new(bytes)) else { return (String::new(), None) };
    let name = if file.exists("/Workbook") { "/Workbook" } else { "/Book" };
    let mut data = Vec::new();
    let read = file.open_stream(name).and_then(|s| s.take(budget.remaining_bytes() + 1).read_to_end(&mut data));
    if read.is_err() || budget.charge(data.len() as u64).is_err() {
        return (String::new(), Some("a legacy .xls whose workbook stream could not be read".into()));
    }
    let (mut text, mut pictures) = (String::new(), false);
    let (mut i, mut after_txo) = (0usize, false);
    while i + 4 <= data.len() {
        let kind = u16::from_le_bytes([data[i], data[i + 1]]);
        let len = u16::from_le_bytes([data[i + 2], data[i + 3]]) as usize;
        let body = data.get(i + 4..i + 4 + len).unwrap_or_default();
        match kind {
            0x01B6 => after_txo = true,
            0x003C if after_txo => {
                after_txo = false;
                if let Some((&flag, chars)) = body.split_first() {
                    if flag & 1 == 1 {
                        let units: Vec<u16> = chars.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                        text.push_str(&String::from_utf16_lossy(&units));
                    } else {
                        text.extend(chars.iter().map(|b| *b as char));
                    }
                    text.push('\n');
                }
            }
            // MSODRAWINGGROUP: the workbook's pictures.
            0x00EB => pictures = true,
            _ => {}
        }
        i += 4 + len;
    }
    (text, pictures.then(|| "pictures in a legacy .xls: not read by OCR".to_string()))
}

/// Whether a calamine error means a password.
pub fn is_password_error(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("password") || e.contains("encrypt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ooxml_text_only_inside_t_and_with_references() {
        let xml = r#"<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>&#x793E;&#22806;&#31192;</w:t></w:r>
            <w:r><w:tab/><w:t xml:space="preserve">A &amp; B</w:t></w:r></w:p><w:p><w:instrText>IGNORED</w:instrText>
            <w:r><w:t>二行目</w:t></w:r></w:p></w:body></w:document>"#;
        let text = xml_text(xml.as_bytes(), Dialect::Ooxml, &Budget::unlimited()).unwrap();
        assert_eq!(text, "社外秘\tA & B\n二行目\n");
    }

    #[test]
    fn a_legacy_workbooks_comment_text_and_pictures() {
        let record = |kind: u16, body: &[u8]| {
            let mut r = kind.to_le_bytes().to_vec();
            r.extend_from_slice(&(body.len() as u16).to_le_bytes());
            r.extend_from_slice(body);
            r
        };
        let mut wide = vec![1u8];
        wide.extend("社外秘のコメント".encode_utf16().flat_map(|u| u.to_le_bytes()));
        let mut stream = record(0x0809, &[0; 16]);
        stream.extend(record(0x01B6, &[0; 18]));
        stream.extend(record(0x003C, &wide));
        stream.extend(record(0x01B6, &[0; 18]));
        stream.extend(record(0x003C, b"\0plain note"));
        let mut cfb = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        std::io::Write::write_all(&mut cfb.create_stream("/Workbook").unwrap(), &stream).unwrap();
        cfb.flush().unwrap();
        let bytes = cfb.into_inner().into_inner();
        let (text, partial) = xls_extra(&bytes, &Budget::unlimited());
        assert_eq!(text, "社外秘のコメント\nplain note\n");
        assert!(partial.is_none());
        stream.extend(record(0x00EB, &[0; 8]));
        let mut cfb = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        std::io::Write::write_all(&mut cfb.create_stream("/Workbook").unwrap(), &stream).unwrap();
        cfb.flush().unwrap();
        let (_, partial) = xls_extra(&cfb.into_inner().into_inner(), &Budget::unlimited());
        assert!(partial.unwrap().contains("pictures"));
    }

    #[test]
    fn slides_in_numeric_order() {
        let mut names = vec!["ppt/slides/slide10.xml", "ppt/slides/slide2.xml", "ppt/slides/slide1.xml"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["ppt/slides/slide1.xml", "ppt/slides/slide2.xml", "ppt/slides/slide10.xml"]);
    }
}
