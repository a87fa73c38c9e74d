//! The compound-file formats before OOXML: Word 97–2003 `.doc` (the text
//! through the piece table of [MS-DOC]: main text, footnotes, headers,
//! comments, endnotes and text boxes alike), PowerPoint 97–2003 `.ppt` (the
//! text atoms of [MS-PPT]: slides, notes, masters), and Outlook `.msg`
//! items ([MS-OXMSG]: subject, body, recipients, and each attachment as a
//! member of its own).

use crate::Budget;
use crate::archive::Member;
use std::io::{Cursor, Read};

type Cfb<'a> = cfb::CompoundFile<Cursor<&'a [u8]>>;

/// What a legacy file held.
pub struct Legacy {
    pub text: String,
    pub encrypted: bool,
    pub members: Vec<Member>,
    /// What was not read (its pictures).
    pub partial: Option<String>,
}

/// Pictures a legacy file holds (Word's `Data` stream, PowerPoint's
/// `Pictures`) are not read: a fact, not a pass.
fn pictures_left(file: &Cfb<'_>, stream: &str) -> Option<String> {
    let len = file.entry(stream).map(|e| e.len()).unwrap_or(0);
    (len > 0).then(|| "pictures in a legacy Office file: not read by OCR".to_string())
}

fn open(bytes: &[u8]) -> Result<Cfb<'_>, String> {
    cfb::CompoundFile::open(Cursor::new(bytes)).map_err(|e| format!("compound file: {e}"))
}

fn stream(file: &mut Cfb<'_>, path: &str, budget: &Budget) -> Result<Vec<u8>, String> {
    let mut s = file.open_stream(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    s.by_ref().take(budget.remaining_bytes() + 1).read_to_end(&mut out).map_err(|e| format!("{path}: {e}"))?;
    budget.charge(out.len() as u64)?;
    Ok(out)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

/// Windows-1252, as Word stores "compressed" (8-bit) pieces.
fn cp1252(b: &[u8]) -> String {
    encoding_rs::WINDOWS_1252.decode_without_bom_handling(b).0.into_owned()
}

/// Word's text with its control characters made plain: paragraph and cell
/// marks become line ends and tabs; the field marks (0x13, 0x14, 0x15)
/// become spaces — a field's instruction is kept as text too, so nothing
/// can hide behind an unterminated one.
fn word_plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{13}' | '\u{14}' | '\u{15}' => out.push(' '),
            '\r' | '\u{b}' | '\u{c}' => out.push('\n'),
            '\u{7}' => out.push('\t'),
            c if c.is_control() && c != '\t' && c != '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// A Word 97–2003 document's text, in character-position order.
pub fn doc(bytes: &[u8], budget: &Budget) -> Result<Legacy, String> {
    let mut file = open(bytes)?;
    let word = stream(&mut file, "/WordDocument", budget)?;
    if u16_at(&word, 0) != Some(0xA5EC) {
        return Err("legacy doc: not a Word document stream".into());
    }
    // Word 97 and later (nFib 0x00C1 on); Word 6 and 95 keep their text
    // another way.
    if u16_at(&word, 2).is_some_and(|n| n < 0x00C1) {
        return Err("legacy doc: Word 95 or older: text not extracted".into());
    }
    let flags = u16_at(&word, 0x0A).ok_or("legacy doc: a cut FIB")?;
    if flags & 0x0100 != 0 {
        return Ok(Legacy { text: String::new(), encrypted: true, members: Vec::new(), partial: None });
    }
    let table_name = if flags & 0x0200 != 0 { "/1Table" } else { "/0Table" };
    // FibBase (32 bytes), then csw + FibRgW, cslw + FibRgLw, cbRgFcLcb +
    // FibRgFcLcb: fcClx / lcbClx are its 34th pair.
    let csw = u16_at(&word, 32).ok_or("legacy doc: a cut FIB")? as usize;
    let at_lw = 34 + csw * 2;
    let cslw = u16_at(&word, at_lw).ok_or("legacy doc: a cut FIB")? as usize;
    let at_fc = at_lw + 2 + cslw * 4 + 2;
    let fc_clx = u32_at(&word, at_fc + 33 * 8).ok_or("legacy doc: no piece table")? as usize;
    let lcb_clx = u32_at(&word, at_fc + 33 * 8 + 4).ok_or("legacy doc: no piece table")? as usize;
    let table = stream(&mut file, table_name, budget)?;
    let clx =
        table.get(fc_clx..fc_clx.saturating_add(lcb_clx)).ok_or("legacy doc: the piece table is outside its stream")?;
    // Prc entries (0x01) first, then the Pcdt (0x02).
    let mut i = 0;
    while clx.get(i) == Some(&0x01) {
        i += 3 + u16_at(clx, i + 1).ok_or("legacy doc: a cut Prc")? as usize;
    }
    if clx.get(i) != Some(&0x02) {
        return Err("legacy doc: no Pcdt".into());
    }
    let lcb = u32_at(clx, i + 1).ok_or("legacy doc: a cut Pcdt")? as usize;
    let plc = clx.get(i + 5..i + 5 + lcb).ok_or("legacy doc: a cut PlcPcd")?;
    // (n + 1) CPs of 4 bytes, then n PCDs of 8.
    let n = plc.len().saturating_sub(4) / 12;
    let mut text = String::new();
    for k in 0..n {
        if budget.out_of_time() {
            return Err("time budget exceeded".into());
        }
        let (cp0, cp1) = (u32_at(plc, k * 4).unwrap_or(0), u32_at(plc, k * 4 + 4).unwrap_or(0));
        let chars = cp1.saturating_sub(cp0) as usize;
        let pcd = (n + 1) * 4 + k * 8;
        let fc = u32_at(plc, pcd + 2).ok_or("legacy doc: a cut PCD")?;
        let compressed = fc & 0x4000_0000 != 0;
        let fc = (fc & 0x3FFF_FFFF) as usize;
        // Pieces may overlap (or all point at one range): each is paid for.
        budget.charge(chars as u64 * if compressed { 1 } else { 2 })?;
        let piece = if compressed {
            word.get(fc / 2..fc / 2 + chars).map(cp1252)
        } else {
            word.get(fc..fc + chars * 2).map(utf16le)
        };
        text.push_str(&piece.ok_or("legacy doc: a piece outside the document stream")?);
    }
    Ok(Legacy {
        text: word_plain(&text),
        encrypted: false,
        members: Vec::new(),
        partial: pictures_left(&file, "/Data"),
    })
}

/// A PowerPoint 97–2003 presentation's text: every text atom of its
/// records, containers walked through.
pub fn ppt(bytes: &[u8], budget: &Budget) -> Result<Legacy, String> {
    let mut file = open(bytes)?;
    if file.exists("/EncryptedSummary") {
        return Ok(Legacy { text: String::new(), encrypted: true, members: Vec::new(), partial: None });
    }
    let data = stream(&mut file, "/PowerPoint Document", budget)?;
    let mut text = String::new();
    let mut i = 0;
    while i + 8 <= data.len() {
        let ver_instance = u16_at(&data, i).unwrap_or(0);
        let kind = u16_at(&data, i + 2).unwrap_or(0);
        let len = u32_at(&data, i + 4).unwrap_or(0) as usize;
        let body = i + 8;
        if ver_instance & 0x000F == 0x000F {
            // A container: its records follow its header.
            i = body;
            continue;
        }
        let Some(content) = data.get(body..body.saturating_add(len)) else {
            return Err("legacy ppt: a record runs past the end of its stream".into());
        };
        match kind {
            // TextCharsAtom, CString: UTF-16LE.
            0x0FA0 | 0x0FBA => text.push_str(&utf16le(content)),
            // TextBytesAtom: the low bytes of UTF-16 (Latin-1).
            0x0FA8 => text.extend(content.iter().map(|b| *b as char)),
            _ => {}
        }
        if matches!(kind, 0x0FA0 | 0x0FBA | 0x0FA8) {
            text.push('\n');
        }
        i = body + len;
    }
    Ok(Legacy {
        text: text.replace(['\r', '\u{b}'], "\n"),
        encrypted: false,
        members: Vec::new(),
        partial: pictures_left(&file, "/Pictures"),
    })
}

/// A property stream of a .msg: `__substg1.0_XXXX001F` (UTF-16LE) or
/// `…001E` (8-bit), when there is one.
fn msg_string(file: &mut Cfb<'_>, dir: &str, tag: &str, budget: &Budget) -> Result<Option<String>, String> {
    for (suffix, unicode) in [("001F", true), ("001E", false)] {
        let path = format!("{dir}/__substg1.0_{tag}{suffix}");
        if !file.exists(&path) {
            continue;
        }
        let b = stream(file, &path, budget)?;
        let text = if unicode { utf16le(&b) } else { crate::text::decode(&b) };
        return Ok(Some(text.trim_end_matches('\0').to_string()));
    }
    Ok(None)
}

/// An Outlook item: its subject, sender and recipients, plain body (or
/// its HTML made text), and its attachments as members.
pub fn msg(bytes: &[u8], budget: &Budget) -> Result<Legacy, String> {
    let mut file = open(bytes)?;
    let mut text = String::new();
    for tag in ["0037", "0C1A", "0C1F", "0E04", "0E03"] {
        if let Some(s) = msg_string(&mut file, "", tag, budget)? {
            text.push_str(&s);
            text.push('\n');
        }
    }
    let entries: Vec<String> = file.read_root_storage().map(|e| e.name().to_string()).collect();
    for recip in entries.iter().filter(|n| n.starts_with("__recip_version1.0_")) {
        for tag in ["3001", "39FE", "3003"] {
            if let Some(s) = msg_string(&mut file, &format!("/{recip}"), tag, budget)? {
                text.push_str(&s);
                text.push('\n');
            }
        }
    }
    match msg_string(&mut file, "", "1000", budget)? {
        Some(body) => text.push_str(&body),
        None if file.exists("/__substg1.0_10130102") => {
            let html = stream(&mut file, "/__substg1.0_10130102", budget)?;
            text.push_str(&crate::html::to_text(&crate::text::decode(&html)));
        }
        // Only the compressed RTF body (LZFu): not read.
        None if file.exists("/__substg1.0_10090102") => {
            return Err("an Outlook item whose body is only compressed RTF: body not read".into());
        }
        None => {}
    }
    let mut members = Vec::new();
    for att in entries.iter().filter(|n| n.starts_with("__attach_version1.0_")) {
        let dir = format!("/{att}");
        let long = msg_string(&mut file, &dir, "3707", budget)?;
        let name = match long.filter(|n| !n.is_empty()) {
            Some(n) => Some(n),
            None => msg_string(&mut file, &dir, "3704", budget)?,
        }
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attachment-{}", members.len() + 1));
        let name = name.rsplit(['/', '\\']).next().unwrap_or("attachment").to_string();
        match stream(&mut file, &format!("{dir}/__substg1.0_37010102"), budget) {
            Ok(data) => members.push(Member { name, data, encrypted: false, error: None }),
            Err(_) => members.push(Member {
                name,
                data: Vec::new(),
                encrypted: false,
                // An attached Outlook item (a storage, not a stream), or a
                // link to a file elsewhere.
                error: Some("an attached item that is not a file: not inspected".into()),
            }),
        }
    }
    Ok(Legacy { text, encrypted: false, members, partial: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_controls_become_plain_text() {
        assert_eq!(
            word_plain("見積\r表\u{7}1\u{7}\u{13}HYPERLINK\u{14}社外秘\u{15}です"),
            "見積\n表\t1\t HYPERLINK 社外秘 です"
        );
        assert!(word_plain("本文\u{13} 社外秘").contains("社外秘"), "an unterminated field hides nothing");
    }
}
