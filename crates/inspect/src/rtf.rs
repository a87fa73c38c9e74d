//! RTF text: control words dropped, `\'hh` bytes decoded in the document's
//! code page (`\ansicpg932` is Shift_JIS), `\uN` characters taken with their
//! fallback skipped, and destinations such as font tables ignored.

use encoding_rs::{Encoding, SHIFT_JIS, WINDOWS_1252};

const SKIP_DESTINATIONS: &[&str] = &[
    "fonttbl",
    "colortbl",
    "stylesheet",
    "info",
    "pict",
    "object",
    "themedata",
    "colorschememapping",
    "datastore",
    "latentstyles",
    "listtable",
    "listoverridetable",
    "rsidtbl",
    "generator",
    "xmlnstbl",
    "mmathPr",
    "header",
    "footer",
    "fldinst",
    "bkmkstart",
    "bkmkend",
];

pub fn to_text(rtf: &[u8]) -> String {
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new(); // pending \'hh bytes in the code page
    let mut encoding: &'static Encoding = WINDOWS_1252;
    // Per group: skipping this group?, \ucN fallback length.
    let mut stack: Vec<(bool, usize)> = vec![(false, 1)];
    let mut skip_chars = 0usize;
    let mut i = 0;
    let flush = |bytes: &mut Vec<u8>, out: &mut String, enc: &'static Encoding| {
        if !bytes.is_empty() {
            out.push_str(&enc.decode_without_bom_handling(bytes).0);
            bytes.clear();
        }
    };
    while i < rtf.len() {
        let skipping = stack.last().is_some_and(|s| s.0);
        match rtf[i] {
            b'{' => {
                let (skip, uc) = *stack.last().unwrap_or(&(false, 1));
                stack.push((skip, uc));
                i += 1;
                // `{\*\dest ...}` is an optional destination: skip it whole.
                if rtf[i..].starts_with(b"\\*")
                    && let Some(top) = stack.last_mut()
                {
                    top.0 = true;
                }
            }
            b'}' => {
                flush(&mut bytes, &mut out, encoding);
                if stack.len() > 1 {
                    stack.pop();
                }
                i += 1;
            }
            b'\\' => {
                i += 1;
                let Some(&c) = rtf.get(i) else { break };
                if c == b'\'' {
                    let hex = rtf.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        if skip_chars > 0 {
                            skip_chars -= 1;
                        } else if !skipping {
                            bytes.push(b);
                        }
                    }
                    i += 3;
                    continue;
                }
                if !c.is_ascii_alphabetic() {
                    // Control symbol: \\ \{ \} \~ and friends.
                    if !skipping {
                        flush(&mut bytes, &mut out, encoding);
                        match c {
                            b'\\' | b'{' | b'}' => out.push(c as char),
                            b'~' => out.push(' '),
                            _ => {}
                        }
                    }
                    i += 1;
                    continue;
                }
                let start = i;
                while i < rtf.len() && rtf[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word = std::str::from_utf8(&rtf[start..i]).unwrap_or("");
                let num_start = i;
                if i < rtf.len() && rtf[i] == b'-' {
                    i += 1;
                }
                while i < rtf.len() && rtf[i].is_ascii_digit() {
                    i += 1;
                }
                let param: Option<i64> = std::str::from_utf8(&rtf[num_start..i]).ok().and_then(|s| s.parse().ok());
                if i < rtf.len() && rtf[i] == b' ' {
                    i += 1;
                }
                if SKIP_DESTINATIONS.contains(&word) {
                    if let Some(top) = stack.last_mut() {
                        top.0 = true;
                    }
                    continue;
                }
                if skipping {
                    continue;
                }
                match word {
                    "ansicpg" => {
                        encoding = match param {
                            Some(932) => SHIFT_JIS,
                            Some(n) => codepage(n),
                            None => WINDOWS_1252,
                        }
                    }
                    "uc" => {
                        if let Some(top) = stack.last_mut() {
                            top.1 = param.unwrap_or(1).max(0) as usize;
                        }
                    }
                    "u" => {
                        flush(&mut bytes, &mut out, encoding);
                        if let Some(n) = param {
                            let n = if n < 0 { n + 65536 } else { n } as u32;
                            if let Some(c) = char::from_u32(n) {
                                out.push(c);
                            }
                        }
                        skip_chars = stack.last().map(|s| s.1).unwrap_or(1);
                    }
                    "par" | "line" | "sect" | "page" | "row" => {
                        flush(&mut bytes, &mut out, encoding);
                        out.push('\n');
                    }
                    "tab" | "cell" => {
                        flush(&mut bytes, &mut out, encoding);
                        out.push('\t');
                    }
                    _ => {}
                }
            }
            b'\r' | b'\n' => i += 1,
            c => {
                if skip_chars > 0 {
                    skip_chars -= 1;
                } else if !skipping {
                    if c >= 0x80 {
                        bytes.push(c);
                    } else {
                        flush(&mut bytes, &mut out, encoding);
                        out.push(c as char);
                    }
                }
                i += 1;
            }
        }
    }
    flush(&mut bytes, &mut out, encoding);
    out.trim().to_string()
}

fn codepage(n: i64) -> &'static Encoding {
    u16::try_from(n).ok().and_then(|n| Encoding::for_label(format!("windows-{n}").as_bytes())).unwrap_or(WINDOWS_1252)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_jis_escapes_unicode_and_skipped_tables() {
        let rtf = br"{\rtf1\ansi\ansicpg932{\fonttbl{\f0 MS Mincho;}}{\*\generator Word;}\f0 \'8e\'d0\'8a\'4f\'94\'e9\par \u35531?\u27714?\'8f\'91 end}";
        assert_eq!(to_text(rtf), "社外秘\n請求書 end");
    }
}
