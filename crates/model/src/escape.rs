//! Text that came from mail, made safe to print on a terminal or in a log
//! line: a Subject with ESC sequences must not retitle or clear the admin's
//! terminal, an encoded CR LF must not print a fake `Bcc:` line.

use std::borrow::Cow;

/// Text for HTML (an element's text or a quoted attribute): every value
/// from mail goes through this where it is shown in a page or a mail.
/// Control characters but the line feed become U+FFFD.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Control characters (C0, DEL, C1) and the Unicode line and bidi
/// controls written as escapes: `\x1b`, `\r`, `\n`, `\t`, `\u{202e}`.
/// A backslash itself is left as it is (the output is for reading, not for
/// parsing back).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && needs_escape(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape_controls`] writes `c` as an escape.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        // Line/paragraph separators and the bidi overrides and isolates
        // that make a terminal show text in another order than it is.
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_clean_text_is_borrowed() {
        assert!(matches!(escape_controls("見積書 Q3"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\x1b]0;owned\x07b"), "a\\x1b]0;owned\\x07b");
        assert_eq!(escape_controls("Hi\r\nBcc: all@corp"), "Hi\\r\\nBcc: all@corp");
        assert_eq!(escape_controls("\u{9b}2J\u{7f}"), "\\x9b2J\\x7f");
        assert_eq!(escape_controls("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
    }
}
