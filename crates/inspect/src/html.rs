//! HTML made readable: tags dropped, script/style skipped, entities decoded,
//! block elements on their own lines.

pub fn to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        push_text(&mut out, &rest[..lt]);
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map(|i| &rest[i + 3..]).unwrap_or("");
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &rest[gt + 1..];
        if !tag.starts_with('/') && (name == "script" || name == "style") {
            let close = format!("</{name}");
            rest = find_ci(rest, &close).map(|i| &rest[i..]).unwrap_or("");
            continue;
        }
        if matches!(
            name.as_str(),
            "br" | "p"
                | "div"
                | "tr"
                | "li"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "table"
                | "blockquote"
                | "pre"
                | "hr"
                | "title"
        ) && !out.ends_with('\n')
        {
            out.push('\n');
        } else if matches!(name.as_str(), "td" | "th") {
            out.push('\t');
        }
    }
    push_text(&mut out, rest);
    out.trim().to_string()
}

/// `needle` (ASCII, lower case) in `hay`, ignoring ASCII case, without
/// copying `hay` (many scripts in one page must not cost quadratic time).
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.windows(n.len()).position(|w| w.eq_ignore_ascii_case(n))
}

/// Text between tags: whitespace runs collapsed, entities decoded.
fn push_text(out: &mut String, raw: &str) {
    let decoded = decode_entities(raw);
    let mut last_space = out.ends_with([' ', '\n', '\t']) || out.is_empty();
    for c in decoded.chars() {
        if c.is_whitespace() && c != '\u{3000}' {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
        } else {
            out.push(c);
            last_space = false;
        }
    }
}

pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(|c: char| c == ';' || c == '&' || c.is_whitespace()).map(|i| i + 1);
        let (entity, len) = match end {
            Some(e) if rest.as_bytes().get(e) == Some(&b';') && e <= 12 => (&rest[1..e], e + 1),
            _ => {
                out.push('&');
                rest = &rest[1..];
                continue;
            }
        };
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "yen" => Some('¥'),
            "copy" => Some('©'),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_scripts_with_any_case_are_all_skipped() {
        // 50,000 scripts: linear work (the old lower-casing copy of the rest
        // of the page per script took minutes here).
        let page = "<script>var a = 1;</SCRIPT>本文".repeat(50_000);
        let text = to_text(&page);
        assert_eq!(text.chars().count(), 100_000, "only the text between the scripts");
        assert!(!text.contains("var"));
    }

    #[test]
    fn readable_text() {
        let html = "<html><head><style>p{color:red}</style><script>var x='社外秘';</script></head>\
                    <body><p>見積書&nbsp;&amp;&#x8acb;&#27714;書</p><div>二行目<br>三行目</div><!-- hidden --></body></html>";
        assert_eq!(to_text(html), "見積書 &請求書\n二行目\n三行目");
    }
}

/// Pictures written into HTML as `data:image/…;base64,…` URIs: a picture
/// of text there is as visible as an attached one (at most `max`).
pub fn data_images(html: &str, max: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("data:image/") {
        if out.len() >= max {
            break;
        }
        let after = &rest[at + "data:image/".len()..];
        let subtype: String =
            after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '-').collect();
        let Some(comma) = after.find(',') else { break };
        let is_base64 = after[..comma].contains(";base64");
        let data: String = after[comma + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\r' | '\n' | ' '))
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if is_base64 && let Ok(bytes) = decode_base64(&data) {
            out.push((subtype, bytes));
        }
        rest = &after[comma + 1..];
    }
    out
}

/// Standard base64 (padding optional).
fn decode_base64(s: &str) -> Result<Vec<u8>, ()> {
    let value = |c: u8| -> Result<u32, ()> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(()),
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (k, b) in chunk.iter().enumerate() {
            n |= value(*b)? << (18 - 6 * k);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod data_tests {
    use super::*;

    #[test]
    fn data_uris_give_their_pictures() {
        let html = r#"<p>x</p><img src="data:image/png;base64,iVBORw0K
GgoA"><img src="data:image/gif,notbase64"><img src="http://x/a.png">"#;
        let found = data_images(html, 8);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "png");
        assert!(found[0].1.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
}
