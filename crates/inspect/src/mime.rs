//! The message itself: header fields, body text, and the walk over its
//! attachments (mail-parser does the MIME: every charset, encoded words,
//! RFC 2231 names, nested multiparts and messages).

use crate::Walk;
use encoding_rs::SHIFT_JIS;
use mail_parser::{Address, HeaderName, Message, MessagePart, MimeHeaders, PartType};
use tomare_model::Facts;

fn addresses(a: Option<&Address>) -> Vec<String> {
    a.map(|a| a.iter().filter_map(|x| x.address()).map(str::to_string).collect()).unwrap_or_default()
}

/// Header fields the policy reads, and the address headers that are not
/// clean lists of addresses.
pub fn headers(message: &Message, raw: &[u8], facts: &mut Facts) {
    facts.subject = message.subject().unwrap_or_default().to_string();
    facts.from = addresses(message.from());
    facts.to = addresses(message.to());
    facts.cc = addresses(message.cc());
    facts.bcc = addresses(message.bcc());
    facts.message_id = message.message_id().map(|m| format!("<{m}>")).unwrap_or_default();

    let header_end =
        raw.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| raw.windows(2).position(|w| w == b"\n\n"));
    let block = String::from_utf8_lossy(&raw[..header_end.unwrap_or(raw.len())]);
    // A line in the header block that is neither a field nor a
    // continuation: typically an address pasted after a stray newline.
    for line in block.lines() {
        if line.is_empty() || line.starts_with([' ', '\t']) {
            continue;
        }
        let field_ok = line
            .split_once(':')
            .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        if !field_ok {
            facts.malformed_headers.push(format!("stray line in header: {}", short(line)));
        }
    }
    for (name, field) in [("To", HeaderName::To), ("Cc", HeaderName::Cc), ("Bcc", HeaderName::Bcc)] {
        for header in message.headers().iter().filter(|h| h.name == field) {
            let start = header.offset_start as usize;
            let end = (header.offset_end as usize).min(raw.len());
            let value = String::from_utf8_lossy(raw.get(start..end).unwrap_or_default()).trim().to_string();
            let parsed = match &header.value {
                mail_parser::HeaderValue::Address(a) => Some(a),
                _ => None,
            };
            let count = parsed.map(|a| a.iter().count()).unwrap_or(0);
            let bad = parsed.map(|a| a.iter().any(|x| !x.address().is_some_and(valid_address))).unwrap_or(true);
            let group_only = value.trim_end().ends_with(":;") || value.trim() == "undisclosed-recipients:;";
            if !value.is_empty() && !group_only && (count == 0 || bad) {
                facts.malformed_headers.push(format!("{name}: {}", short(&value)));
            }
        }
    }
}

fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !a.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn short(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
}

/// The file name as written. mail-parser decodes encoded words and RFC 2231;
/// a raw 8-bit name (as some Japanese mailers send) comes out broken, and is
/// read again from the raw header as CP932.
fn attachment_name(part: &MessagePart, raw: &[u8]) -> Option<String> {
    let name = part.attachment_name()?;
    if !name.contains('\u{FFFD}') {
        return Some(name.to_string());
    }
    for h in &part.headers {
        if !matches!(h.name, HeaderName::ContentDisposition | HeaderName::ContentType) {
            continue;
        }
        let bytes = raw.get(h.offset_start as usize..h.offset_end as usize).unwrap_or_default();
        let text = SHIFT_JIS.decode_without_bom_handling(bytes).0;
        for key in ["filename=", "name="] {
            if let Some(pos) = text.find(key) {
                let v = text[pos + key.len()..].trim_start();
                let v = if let Some(q) = v.strip_prefix('"') {
                    q.split('"').next()
                } else {
                    v.split([';', '\r', '\n']).next()
                };
                if let Some(v) = v.filter(|v| !v.is_empty() && !v.contains('\u{FFFD}')) {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    Some(name.to_string())
}

/// The bytes of a part as they were sent, transfer encoding undone.
fn transfer_decoded(part: &MessagePart, raw: &[u8]) -> Option<Vec<u8>> {
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    match part.content_transfer_encoding().map(str::to_ascii_lowercase).as_deref() {
        Some("base64") => mail_parser::decoders::base64::base64_decode(body),
        Some("quoted-printable") => mail_parser::decoders::quoted_printable::quoted_printable_decode(body),
        _ => Some(body.to_vec()),
    }
}

/// For a text part without a charset parameter, or whose charset does not
/// decode it cleanly (a CSV from Excel in CP932 labelled `us-ascii`, or not
/// labelled at all): its bytes, to be decoded by the same detection as a
/// bare file. `None` when the declared charset did the job.
fn undeclared_text(part: &MessagePart, raw: &[u8]) -> Option<Vec<u8>> {
    let (PartType::Text(t) | PartType::Html(t)) = &part.body else { return None };
    let declared = part.content_type().and_then(|c| c.attribute("charset")).is_some();
    if declared && !t.contains('\u{FFFD}') {
        return None;
    }
    transfer_decoded(part, raw)
}

/// Real mail nests multiparts a few levels (forwards add two or three
/// each); far deeper is built to hide something from a parser.
const MAX_MIME_DEPTH: usize = 32;

/// How deep the multipart tree goes, walked without recursion.
fn mime_depth(message: &Message) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(0usize, 1usize)];
    let mut visited = 0;
    while let Some((part, depth)) = stack.pop() {
        visited += 1;
        if visited > message.parts.len() {
            break;
        }
        deepest = deepest.max(depth);
        if let Some(PartType::Multipart(children)) = message.parts.get(part).map(|p| &p.body) {
            stack.extend(children.iter().map(|c| (*c as usize, depth + 1)));
        }
    }
    deepest
}

impl Walk<'_> {
    /// Body text of `message`; its attachments are inspected under `prefix`.
    pub(crate) fn message(&mut self, message: &Message, prefix: &str, depth: usize) -> String {
        let raw = message.raw_message();
        let mut body = String::new();
        for i in 0.. {
            let Some(text) = message.body_text(i) else { break };
            if !body.is_empty() {
                body.push('\n');
            }
            let part = message.text_body.get(i).and_then(|id| message.parts.get(*id as usize));
            match part.and_then(|p| undeclared_text(p, raw).map(|bytes| (p, bytes))) {
                Some((p, bytes)) => {
                    let text = crate::text::decode(&bytes);
                    if matches!(p.body, PartType::Html(_)) {
                        body.push_str(&crate::html::to_text(&text));
                    } else {
                        body.push_str(&text);
                    }
                }
                None => body.push_str(&text),
            }
        }
        let depth_found = mime_depth(message);
        if depth_found > MAX_MIME_DEPTH {
            let at = if prefix.is_empty() { String::new() } else { format!("{prefix}: ") };
            self.reasons.push(format!("{at}MIME parts nested {depth_found} levels deep (more than {MAX_MIME_DEPTH})"));
        }
        for (n, part) in message.parts.iter().enumerate() {
            // Containers flagged for a missing closing boundary still gave up
            // their parts, and an attached message is judged by its own walk;
            // a leaf that could not be decoded is content we did not read.
            let leaf = !matches!(part.body, PartType::Multipart(_) | PartType::Message(_));
            if part.is_encoding_problem && leaf && !part.contents().iter().all(u8::is_ascii_whitespace) {
                let at = if prefix.is_empty() { String::new() } else { format!("{prefix}: ") };
                self.reasons.push(format!("{at}MIME part {n} could not be decoded"));
            }
        }
        let body = self.keep_text(if prefix.is_empty() { "body" } else { prefix }, body);
        // Pictures written into the HTML body (data: URIs) are inspected
        // like attached ones.
        let mut inline = 0;
        for id in &message.html_body {
            // Only real HTML parts (mail-parser offers plain text as HTML too).
            let Some(PartType::Html(html)) = message.parts.get(*id as usize).map(|p| &p.body) else { continue };
            if !html.contains("data:image/") {
                continue;
            }
            for (subtype, bytes) in crate::html::data_images(html, self.inspector.max_entries) {
                inline += 1;
                let name = format!("inline-image-{inline}.{subtype}");
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                self.attachment(&path, &name, &format!("image/{subtype}"), &bytes, depth);
            }
        }
        for (n, part) in message.attachments().enumerate() {
            let ctype = part
                .content_type()
                .map(|c| match &c.c_subtype {
                    Some(s) => format!("{}/{}", c.c_type, s),
                    None => c.c_type.to_string(),
                })
                .unwrap_or_default()
                .to_ascii_lowercase();
            let default_name = match &part.body {
                PartType::Message(_) => format!("message-{}.eml", n + 1),
                _ => format!("attachment-{}", n + 1),
            };
            let name = attachment_name(part, raw).unwrap_or(default_name);
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            match &part.body {
                PartType::Message(inner) => self.attachment(&path, &name, "message/rfc822", inner.raw_message(), depth),
                PartType::Text(t) | PartType::Html(t) => match undeclared_text(part, raw) {
                    // Its bytes go in as a bare file's would: the same charset detection.
                    Some(bytes) => self.attachment(&path, &name, &ctype, &bytes, depth),
                    None => self.attachment(&path, &name, &ctype, t.as_bytes(), depth),
                },
                PartType::Binary(b) | PartType::InlineBinary(b) => self.attachment(&path, &name, &ctype, b, depth),
                PartType::Multipart(_) => {}
            }
        }
        body
    }
}
