//! Rewrites a verdict asks for, on the raw message: To/Cc external
//! addresses moved out of sight (Bcc conversion) and headers added. Only the
//! header block changes; the body bytes are kept as they are.
//!
//! Attachments are taken out and parts put in their place for protection
//! (`protect`).
//!
//! Pure: bytes in, bytes out.

pub mod dkim;
pub mod protect;
pub mod zip;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_parser::{Addr, HeaderValue, MessageParser};
use tomare_model::{domain_of, is_internal_domain};

/// Where the header block ends (the index of the blank line's start) and
/// the line ending the message uses.
fn split(raw: &[u8]) -> (usize, &'static str) {
    if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return (p + 2, "\r\n");
    }
    if let Some(p) = raw.windows(2).position(|w| w == b"\n\n") {
        return (p + 1, "\n");
    }
    (raw.len(), "\r\n")
}

/// Header fields as (name, whole raw field including folded lines).
fn fields(block: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in block.split_inclusive(|b| *b == b'\n') {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            && let Some(last) = out.last_mut()
        {
            last.1.extend_from_slice(line);
            continue;
        }
        let name = line.iter().position(|b| *b == b':').map(|i| String::from_utf8_lossy(&line[..i]).trim().to_string());
        out.push((name.unwrap_or_default(), line.to_vec()));
    }
    out
}

fn encode_name(name: &str) -> String {
    if name.is_ascii() && !name.contains(['"', '\\', ',', ';', '<', '>', '@', '(', ')', ':']) {
        name.to_string()
    } else if name.is_ascii() {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("=?UTF-8?B?{}?=", B64.encode(name))
    }
}

fn format_addr(a: &Addr) -> Option<String> {
    let address = a.address()?;
    Some(match a.name().filter(|n| !n.is_empty()) {
        Some(n) => format!("{} <{address}>", encode_name(n)),
        None => address.to_string(),
    })
}

/// Removes addresses outside `internal` from To and Cc. When To is left
/// empty it shows `undisclosed-recipients:;` (mode `undisclosed`) or the
/// sender (mode `sender`); an emptied Cc disappears. The envelope is not
/// touched here: every recipient still gets the message.
pub fn convert_to_bcc(raw: &[u8], mode: &str, sender: &str, internal: &[String]) -> Vec<u8> {
    let (end, eol) = split(raw);
    let Some(message) = MessageParser::default().parse_headers(raw) else { return raw.to_vec() };
    let keep = |a: &&Addr| a.address().is_some_and(|x| is_internal_domain(&domain_of(x), internal));
    let kept = |name: &str| -> Vec<String> {
        message
            .headers()
            .iter()
            .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .filter_map(|h| match &h.value {
                HeaderValue::Address(a) => Some(a.iter().filter(keep).filter_map(format_addr).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    let (to, cc) = (kept("To"), kept("Cc"));
    let mut out = Vec::with_capacity(raw.len());
    let mut to_written = false;
    for (name, field) in fields(&raw[..end]) {
        if name.eq_ignore_ascii_case("To") {
            if !to_written {
                let value = if !to.is_empty() {
                    to.join(", ")
                } else if mode == "sender" {
                    sender.to_string()
                } else {
                    "undisclosed-recipients:;".to_string()
                };
                out.extend_from_slice(format!("To: {value}{eol}").as_bytes());
                to_written = true;
            }
        } else if name.eq_ignore_ascii_case("Cc") {
            if !cc.is_empty() {
                out.extend_from_slice(format!("Cc: {}{eol}", cc.join(", ")).as_bytes());
            }
        } else {
            out.extend_from_slice(&field);
        }
    }
    if !to_written {
        out.extend_from_slice(format!("To: undisclosed-recipients:;{eol}").as_bytes());
    }
    out.extend_from_slice(&raw[end..]);
    out
}

/// Adds header fields at the top (values are one line; names were checked
/// when the rules were loaded).
pub fn add_headers(raw: &[u8], headers: &[(String, String)]) -> Vec<u8> {
    let (_, eol) = split(raw);
    let mut out = Vec::with_capacity(raw.len() + 64 * headers.len());
    for (name, value) in headers {
        let value: String = value.chars().filter(|c| !c.is_control()).collect();
        out.extend_from_slice(format!("{name}: {value}{eol}").as_bytes());
    }
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "Received: from x\r\nFrom: Taro <taro@example.com>\r\nTo: \"Yamada, Hanako\" <h@customer.test>,\r\n \
jiro@example.com, =?UTF-8?B?5L2Q6Jek?= <s@other.test>\r\nCc: c@customer.test\r\nSubject: hello\r\n\r\nBody\r\nTo: not a header\r\n";

    #[test]
    fn external_addresses_leave_the_headers_body_untouched() {
        let out = String::from_utf8(convert_to_bcc(
            RAW.as_bytes(),
            "undisclosed",
            "taro@example.com",
            &["example.com".into()],
        ))
        .unwrap();
        assert!(out.contains("\r\nTo: jiro@example.com\r\n"), "{out}");
        assert!(!out.contains("customer.test\r\n\r\n") && !out.contains("Cc:"), "{out}");
        assert!(!out.contains("h@customer.test") && !out.contains("s@other.test"));
        assert!(out.ends_with("\r\n\r\nBody\r\nTo: not a header\r\n"), "body unchanged: {out}");
        assert!(out.starts_with("Received: from x\r\nFrom: Taro <taro@example.com>\r\n"));
    }

    #[test]
    fn an_emptied_to_shows_undisclosed_or_the_sender() {
        let raw = "From: taro@example.com\r\nTo: a@x.test, b@y.test\r\nSubject: s\r\n\r\nb\r\n";
        let out = String::from_utf8(convert_to_bcc(
            raw.as_bytes(),
            "undisclosed",
            "taro@example.com",
            &["example.com".into()],
        ))
        .unwrap();
        assert!(out.contains("To: undisclosed-recipients:;\r\n"), "{out}");
        let out =
            String::from_utf8(convert_to_bcc(raw.as_bytes(), "sender", "taro@example.com", &["example.com".into()]))
                .unwrap();
        assert!(out.contains("To: taro@example.com\r\n"), "{out}");
        let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("s"));
    }

    #[test]
    fn names_survive_and_headers_are_added_on_one_line() {
        let raw = "From: t@example.com\r\nTo: \"Sato, Ichiro\" <i@example.com>, 山田 <y@example.com>, z@out.test\r\n\r\nb\r\n";
        let out = convert_to_bcc(raw.as_bytes(), "undisclosed", "t@example.com", &["example.com".into()]);
        let parsed = MessageParser::default().parse(&out).unwrap();
        let to: Vec<(Option<&str>, Option<&str>)> =
            parsed.to().unwrap().iter().map(|a| (a.name(), a.address())).collect();
        assert_eq!(to, [(Some("Sato, Ichiro"), Some("i@example.com")), (Some("山田"), Some("y@example.com"))]);
        let out = add_headers(raw.as_bytes(), &[("X-Tomare-Checked".into(), "yes\r\nBcc: evil@x".into())]);
        assert!(String::from_utf8(out).unwrap().starts_with("X-Tomare-Checked: yesBcc: evil@x\r\nFrom:"));
    }
}
