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
