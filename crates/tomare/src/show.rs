//! Printing what came from mail. A Subject, a HELO name, an attachment's
//! name or a remote server's reply can carry ESC sequences that retitle or
//! clear the admin's terminal, or an encoded CR LF that prints a fake
//! `Bcc:` line: every line the CLI prints with such values goes through
//! [`say!`], which escapes every control character in it (our own text has
//! none), and JSON through [`json`], which also escapes what serde leaves
//! as it is (DEL, C1 controls, bidi overrides).

/// `println!`, with every control character of the line escaped.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", tomare_model::escape_controls(&format!($($arg)*)))
    };
}
pub(crate) use say;

/// Pretty JSON in which no character a terminal acts on is left raw
/// (serde already escapes C0 controls; the rest become `\uXXXX`).
pub fn json(value: &impl serde::Serialize) -> serde_json::Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    if !text.chars().any(escaped_in_json) {
        return Ok(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped_in_json(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn escaped_in_json(c: char) -> bool {
    // Only ever inside strings: serde escapes C0 itself, and JSON's own
    // punctuation is plain ASCII. None of these is outside the BMP.
    c != '\n' && tomare_model::needs_escape(c)
}

/// Extracted text for `inspect --text`: lines and tabs kept, every other
/// control character escaped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if tomare_model::needs_escape(c) => {
                out.push_str(&tomare_model::escape_controls(c.encode_utf8(&mut [0; 4])))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_meaning_and_loses_terminal_controls() {
        let v = serde_json::json!({ "subject": "a\u{1b}[2Jb\u{9b}c\u{202e}d\r\n" });
        let out = json(&v).unwrap();
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
        assert!(!out.contains('\u{202e}'));
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn text_keeps_lines() {
        assert_eq!(text("a\tb\nc\x1b[2Jd\r"), "a\tb\nc\\x1b[2Jd\\r");
    }
}
