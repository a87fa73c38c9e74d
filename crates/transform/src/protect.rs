//! Attachments out of a message, and parts in their place: what a download
//! link and a protected zip both start from. The parts that stay (the text
//! and HTML bodies, multiparts without files) are copied byte for byte; only
//! the multiparts that held a file are written anew, with a boundary of
//! their own.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_parser::{MessageParser, MessagePartId, MimeHeaders, PartType};
use std::collections::HashSet;

/// One attachment, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The name the sender gave it (`attachment-N` when it has none).
    pub name: String,
    /// `type/subtype` as the message said.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The parts that are files: every attachment mail-parser sees (named
/// parts, non-text leaves, attached messages) that is not a body, and not
/// a picture the HTML shows inline (a `cid:` part of a multipart/related
/// that is not marked as an attachment: a signature's logo stays).
fn file_parts(m: &mail_parser::Message) -> HashSet<MessagePartId> {
    let bodies: HashSet<MessagePartId> = m.text_body.iter().chain(&m.html_body).copied().collect();
    let mut inline = HashSet::new();
    for part in &m.parts {
        let related = part.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("multipart")
                && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("related"))
        });
        if let (true, Some(children)) = (related, part.sub_parts()) {
            for c in children.iter().skip(1) {
                let Some(child) = m.part(*c) else { continue };
                let attached =
                    child.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"));
                if child.content_id().is_some() && !attached {
                    inline.insert(*c);
                }
            }
        }
    }
    m.attachments.iter().copied().filter(|id| !bodies.contains(id) && !inline.contains(id)).collect()
}

/// A multipart's Content-Type field with a new boundary, every other
/// parameter (`type`, `start`, `protocol`…) kept.
fn with_boundary(field: &[u8], boundary: &str, eol: &str) -> String {
    let text = String::from_utf8_lossy(field);
    let value = text.split_once(':').map(|(_, v)| v).unwrap_or("");
    let unfolded: String = value.replace(['\r', '\n'], " ");
    let params: Vec<String> = unfolded
        .split(';')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("boundary"))
        .collect();
    let kept = params.join("; ");
    format!("Content-Type: {kept}; boundary=\"{boundary}\"{eol}")
}

/// The message's files, in order; empty when it has none.
pub fn attachments(raw: &[u8]) -> Vec<File> {
    let Some(m) = MessageParser::default().parse(raw) else { return Vec::new() };
    let files = file_parts(&m);
    let mut ids: Vec<MessagePartId> = files.into_iter().collect();
    ids.sort();
    ids.iter()
        .enumerate()
        .filter_map(|(n, id)| {
            let part = m.part(*id)?;
            let content_type = part
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")).to_ascii_lowercase())
                .unwrap_or_else(|| "application/octet-stream".into());
            let name = part
                .attachment_name()
                .map(clean_name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("attachment-{}", n + 1));
            let data = match &part.body {
                PartType::Message(_) => raw.get(part.offset_body as usize..part.offset_end as usize)?.to_vec(),
                _ => part.contents().to_vec(),
            };
            Some(File { name, content_type, data })
        })
        .collect()
}

/// A file name as it may be shown and saved: no path, no control
/// characters.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.chars().filter(|c| !c.is_control()).collect::<String>().trim().trim_start_matches('.').to_string()
}

/// The message without its files, with `added` (whole MIME parts: header
/// fields, a blank line, the body) after what is left of the body. None
/// when it has no files or does not parse.
pub fn replace_attachments(raw: &[u8], added: &[Vec<u8>]) -> Option<Vec<u8>> {
    let m = MessageParser::default().parse(raw)?;
    let files = file_parts(&m);
    if files.is_empty() {
        return None;
    }
    let eol = if raw.windows(2).any(|w| w == b"\r\n") { "\r\n" } else { "\n" };
    let root = m.part(0)?;
    let mut seq = 0usize;
    let mut boundary = || {
        seq += 1;
        format!("=_tomare_{}_{seq}", hex_nonce())
    };
    // The header block: every field but the root's MIME ones.
    let head_end = root.offset_body as usize;
    let mut out = Vec::with_capacity(raw.len());
    for (name, field) in crate::fields(&raw[..head_end.min(raw.len())]) {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || lower.starts_with("content-") || lower == "mime-version" {
            continue;
        }
        out.extend_from_slice(&field);
    }
    let top = boundary();
    out.extend_from_slice(
        format!("MIME-Version: 1.0{eol}Content-Type: multipart/mixed; boundary=\"{top}\"{eol}{eol}").as_bytes(),
    );
    // What is left of the body, as one part.
    if !files.contains(&0)
        && let Some(body) = rebuilt(&m, raw, 0, &files, eol, &mut boundary, true)
    {
        out.extend_from_slice(format!("--{top}{eol}").as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(eol.as_bytes());
    }
    for part in added {
        out.extend_from_slice(format!("--{top}{eol}").as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(eol.as_bytes());
    }
    out.extend_from_slice(format!("--{top}--{eol}").as_bytes());
    Some(out)
}

/// Part `id` without the files below it: its own bytes when it holds
/// none, a new multipart when it does, None when it is a file or nothing
/// is left of it. The root's header block holds the message's fields: only
/// its MIME fields are kept.
fn rebuilt(
    m: &mail_parser::Message,
    raw: &[u8],
    id: MessagePartId,
    files: &HashSet<MessagePartId>,
    eol: &str,
    boundary: &mut dyn FnMut() -> String,
    root: bool,
) -> Option<Vec<u8>> {
    if files.contains(&id) {
        return None;
    }
    let part = m.part(id)?;
    let holds_file = |p: &mail_parser::MessagePart| -> bool {
        let mut stack: Vec<MessagePartId> = p.sub_parts().map(|s| s.to_vec()).unwrap_or_default();
        while let Some(c) = stack.pop() {
            if files.contains(&c) {
                return true;
            }
            if let Some(sub) = m.part(c).and_then(|p| p.sub_parts()) {
                stack.extend_from_slice(sub);
            }
        }
        false
    };
    let (start, body, end) = (part.offset_header as usize, part.offset_body as usize, part.offset_end as usize);
    let own_head = |out: &mut Vec<u8>, skip_type: bool| {
        for (name, field) in crate::fields(raw.get(start..body).unwrap_or_default()) {
            let lower = name.to_ascii_lowercase();
            let mime = lower.starts_with("content-");
            if name.is_empty() || (root && !mime) || (skip_type && lower == "content-type") {
                continue;
            }
            out.extend_from_slice(&field);
        }
    };
    match &part.body {
        PartType::Multipart(children) if holds_file(part) => {
            let b = boundary();
            let mut out = Vec::new();
            own_head(&mut out, true);
            let original = crate::fields(raw.get(start..body).unwrap_or_default())
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .map(|(_, f)| f)
                .unwrap_or_else(|| b"Content-Type: multipart/mixed".to_vec());
            out.extend_from_slice(with_boundary(&original, &b, eol).as_bytes());
            out.extend_from_slice(eol.as_bytes());
            let mut any = false;
            for c in children {
                if let Some(bytes) = rebuilt(m, raw, *c, files, eol, boundary, false) {
                    out.extend_from_slice(format!("--{b}{eol}").as_bytes());
                    out.extend_from_slice(&bytes);
                    out.extend_from_slice(eol.as_bytes());
                    any = true;
                }
            }
            out.extend_from_slice(format!("--{b}--{eol}").as_bytes());
            any.then_some(out)
        }
        _ if root => {
            // The root as a part: its MIME fields, then its body as it is.
            let mut out = Vec::new();
            own_head(&mut out, false);
            out.extend_from_slice(eol.as_bytes());
            out.extend_from_slice(raw.get(body..end)?);
            Some(out)
        }
        _ => Some(raw.get(start..end)?.to_vec()),
    }
}

/// A text part (UTF-8, base64) to add.
pub fn text_part(subtype: &str, text: &str) -> Vec<u8> {
    let mut out = format!("Content-Type: text/{subtype}; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        .into_bytes();
    out.extend_from_slice(wrap_base64(text.as_bytes()).as_bytes());
    out
}

/// A file part (base64, `attachment`), its name in both RFC 2231 and
/// encoded-word form, as mail clients old and new read it.
pub fn file_part(name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    let name = clean_name(name);
    let quoted = if name.is_ascii() && !name.contains(['"', '\\']) {
        name.clone()
    } else {
        format!("=?UTF-8?B?{}?=", B64.encode(name.as_bytes()))
    };
    let extended = rfc5987(&name);
    let mut out = format!(
        "Content-Type: {content_type}; name=\"{quoted}\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*=UTF-8''{extended}\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(wrap_base64(data).as_bytes());
    out
}

fn wrap_base64(data: &[u8]) -> String {
    let encoded = B64.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn hex_nonce() -> String {
    // A boundary need not be secret, only unlikely to occur: without the
    // system's randomness the clock serves.
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64)
            .to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A file name as RFC 5987 `filename*` writes it (UTF-8, percent-encoded):
/// what a part's Content-Disposition and a download's response both use.
pub fn rfc5987(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(boundary_body: &str) -> String {
        format!(
            "From: t@example.com\r\nTo: a@customer.test\r\nSubject: =?UTF-8?B?6KaL56mN?=\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\nDKIM-Signature: v=1; x\r\n\r\n{boundary_body}"
        )
    }

    const ALT: &str = "--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\n\
        Content-Type: text/plain; charset=UTF-8\r\n\r\nHello body\r\n--b2\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n\
        <p>Hello body</p>\r\n--b2--\r\n";

    fn with_files() -> String {
        mail(&format!(
            "{ALT}--b1\r\nContent-Type: application/pdf; name=\"=?UTF-8?B?6KaL56mN5pu4LnBkZg==?=\"\r\n\
             Content-Disposition: attachment; filename=\"=?UTF-8?B?6KaL56mN5pu4LnBkZg==?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             JVBERi0xLjQKJeLjz9MK\r\n--b1\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"list.csv\"\r\n\r\n\
             a,b\r\nc,d\r\n--b1--\r\n"
        ))
    }

    #[test]
    fn files_come_out_decoded_and_the_body_stays_as_it_was() {
        let raw = with_files();
        let files = attachments(raw.as_bytes());
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["見積書.pdf", "list.csv"]);
        assert_eq!(files[0].data, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");
        assert_eq!(files[0].content_type, "application/pdf");
        assert_eq!(files[1].data, b"a,b\r\nc,d");
        let out = replace_attachments(raw.as_bytes(), &[text_part("plain", "ダウンロード: https://x/d/1")]).unwrap();
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.attachments().count(), 0, "{}", String::from_utf8_lossy(&out));
        assert_eq!(parsed.subject(), Some("見積"));
        assert_eq!(parsed.body_text(0).as_deref(), Some("Hello body"));
        assert!(parsed.body_html(0).unwrap().contains("<p>Hello body</p>"));
        let texts: Vec<String> =
            (0..parsed.text_body.len()).filter_map(|i| parsed.body_text(i).map(|t| t.into_owned())).collect();
        assert!(texts.iter().any(|t| t.contains("ダウンロード: https://x/d/1")), "{texts:?}");
        let text = String::from_utf8_lossy(&out);
        // The alternative part is copied byte for byte; other headers kept.
        assert!(text.contains(ALT.trim_start_matches("--b1\r\n").trim_end_matches("--b2--\r\n")), "{text}");
        assert!(text.contains("DKIM-Signature: v=1; x\r\n") && text.contains("From: t@example.com\r\n"));
        assert!(!text.contains("JVBERi0xLjQK") && !text.contains("a,b"), "{text}");
    }

    #[test]
    fn a_message_without_files_is_left_alone_and_a_file_only_message_keeps_the_notice() {
        let plain = mail(&format!("{ALT}--b1--\r\n"));
        assert!(attachments(plain.as_bytes()).is_empty());
        assert!(replace_attachments(plain.as_bytes(), &[text_part("plain", "x")]).is_none());
        let only = "From: t@example.com\r\nTo: a@x.test\r\nContent-Type: application/zip\r\n\
                    Content-Disposition: attachment; filename=\"a/../../evil\x01.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n";
        let files = attachments(only.as_bytes());
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].name.as_str(), files[0].data.as_slice()), ("evil.zip", &b"PK\x03\x04"[..]));
        let out = replace_attachments(only.as_bytes(), &[text_part("plain", "notice")]).unwrap();
        let parsed = MessageParser::default().parse(&out).unwrap();
        assert_eq!(parsed.attachments().count(), 0);
        assert_eq!(parsed.body_text(0).as_deref(), Some("notice"));
    }

    #[test]
    fn an_inline_logo_stays_and_a_related_multipart_keeps_its_parameters() {
        let raw = "From: t@example.com\r\nTo: a@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
            --m\r\nContent-Type: multipart/related; type=\"text/html\"; boundary=\"r\"\r\n\r\n\
            --r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo\">\r\n\
            --r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
            --r\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-ID: <a>\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF-1.4\r\n--r--\r\n--m--\r\n";
        let files = attachments(raw.as_bytes());
        assert_eq!(files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a.pdf"], "the logo is not a file");
        let out = String::from_utf8(replace_attachments(raw.as_bytes(), &[text_part("plain", "n")]).unwrap()).unwrap();
        assert!(out.contains("iVBORw0KGgo=") && !out.contains("%PDF"), "{out}");
        assert!(out.contains("Content-Type: multipart/related; type=\"text/html\"; boundary=\"=_tomare_"), "{out}");
        let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
        assert!(parsed.body_html(0).unwrap().contains("cid:logo"));
        // Only inline logos: nothing to replace.
        let logo_only = raw
            .replace("Content-Disposition: attachment; filename=a.pdf", "")
            .replace("application/pdf; name=a.pdf", "image/gif");
        assert!(attachments(logo_only.as_bytes()).is_empty(), "{:?}", attachments(logo_only.as_bytes()));
    }

    #[test]
    fn an_added_file_reads_back_with_its_japanese_name() {
        let raw = with_files();
        let out =
            replace_attachments(raw.as_bytes(), &[file_part("添付ファイル.zip", "application/zip", b"PK\x05\x06")])
                .unwrap();
        let parsed = MessageParser::default().parse(&out).unwrap();
        let att: Vec<_> = parsed.attachments().collect();
        assert_eq!(att.len(), 1);
        assert_eq!(att[0].attachment_name(), Some("添付ファイル.zip"));
        assert_eq!(att[0].contents(), b"PK\x05\x06");
    }
}
