//! Office documents: OOXML (docx, pptx) and OpenDocument text from their XML
//! parts; spreadsheets (xlsx, xls, ods) through calamine; compound files
//! (legacy and encrypted Office) by their streams.

use crate::Budget;
use calamine::Reader as _;
use quick_xml::events::Event;
use std::io::{Cursor, Read};

#[derive(Clone, Copy)]
enum Dialect {
    /// Text only inside `t` elements (w:t, a:t); `p` ends a paragraph.
    Ooxml,
    /// Text anywhere in the body; `p`/`h` end a paragraph.
    Odf,
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
        match event {
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_t += 1,
                "tab" => out.push('\t'),
                "br" | "cr" | "line-break" => out.push('\n'),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "tab" => out.push('\t'),
                "br" | "cr" | "line-break" => out.push('\n'),
                "s" if matches!(dialect, Dialect::Odf) => out.push(' '),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_t = in_t.saturating_sub(1),
                "p" | "h" if !out.ends_with('\n') => out.push('\n'),
                "tc" | "table-cell" => out.push('\t'),
                _ => {}
            },
            Event::Text(t) if in_t > 0 || matches!(dialect, Dialect::Odf) => out.push_str(&t.xml10_content()),
            Event::CData(t) if in_t > 0 => out.push_str(t.as_ref()),
            Event::GeneralRef(r) if in_t > 0 || matches!(dialect, Dialect::Odf) => {
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

fn parts_text(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
    dialect: Dialect,
    budget: &Budget,
) -> Result<String, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("zip: {e}"))?;
    let mut names: Vec<String> =
        archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).filter(|n| wanted(n)).collect();
    names.sort_by_key(|n| natural_key(n));
    let mut out = String::new();
    for name in names {
        let xml = member(&mut archive, &name, budget)?;
        out.push_str(&xml_text(&xml, dialect, budget)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

pub fn docx(bytes: &[u8], budget: &Budget) -> Result<String, String> {
    let wanted = |n: &str| {
        n == "word/document.xml"
            || (n.starts_with("word/")
                && n.ends_with(".xml")
                && ["header", "footer", "footnotes", "endnotes", "comments"].iter().any(|p| n[5..].starts_with(p)))
    };
    parts_text(bytes, wanted, Dialect::Ooxml, budget)
}

pub fn pptx(bytes: &[u8], budget: &Budget) -> Result<String, String> {
    let wanted = |n: &str| {
        (n.starts_with("ppt/slides/slide") || n.starts_with("ppt/notesSlides/notesSlide")) && n.ends_with(".xml")
    };
    parts_text(bytes, wanted, Dialect::Ooxml, budget)
}

/// odt, odp: the body and the styles (headers and footers live there).
pub fn odf(bytes: &[u8], budget: &Budget) -> Result<String, String> {
    parts_text(bytes, |n| n == "content.xml" || n == "styles.xml", Dialect::Odf, budget)
}

/// xlsx, xls, ods: every sheet's name and cells, tab-separated rows.
pub fn spreadsheet(bytes: &[u8], budget: &Budget) -> Result<String, String> {
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
    fn slides_in_numeric_order() {
        let mut names = vec!["ppt/slides/slide10.xml", "ppt/slides/slide2.xml", "ppt/slides/slide1.xml"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["ppt/slides/slide1.xml", "ppt/slides/slide2.xml", "ppt/slides/slide10.xml"]);
    }
}
