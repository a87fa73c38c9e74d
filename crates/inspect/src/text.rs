//! Plain text in an unknown Japanese or Western charset: BOMs, UTF-8,
//! ISO-2022-JP, then Shift_JIS (CP932) versus EUC-JP by which decodes
//! cleanly into more Japanese.

use encoding_rs::{EUC_JP, Encoding, ISO_2022_JP, SHIFT_JIS, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Decodes `bytes`, guessing the charset.
pub fn decode(bytes: &[u8]) -> String {
    detect(bytes).decode_without_bom_handling(strip_bom(bytes)).0.into_owned()
}

/// Decodes at most the first `max` bytes (the charset guessed from all of
/// them); `true` when some were left out. A 34 MB text attachment is not
/// turned whole into a string when only 20 MB of text will be scanned.
pub fn decode_limited(bytes: &[u8], max: usize) -> (String, bool) {
    let encoding = detect(bytes);
    let body = strip_bom(bytes);
    let cut = body.len() > max;
    let text = encoding.decode_without_bom_handling(&body[..body.len().min(max)]).0.into_owned();
    (text, cut)
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    for bom in [&b"\xEF\xBB\xBF"[..], b"\xFF\xFE", b"\xFE\xFF"] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return rest;
        }
    }
    bytes
}

pub fn detect(bytes: &[u8]) -> &'static Encoding {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return UTF_8;
    }
    if bytes.starts_with(b"\xFF\xFE") {
        return UTF_16LE;
    }
    if bytes.starts_with(b"\xFE\xFF") {
        return UTF_16BE;
    }
    if let Some(utf16) = utf16_without_bom(bytes) {
        return utf16;
    }
    // ISO-2022-JP is 7-bit, so it is also valid UTF-8: look for it first.
    if bytes.windows(3).any(|w| w == b"\x1B$B" || w == b"\x1B$@") {
        return ISO_2022_JP;
    }
    if std::str::from_utf8(bytes).is_ok() || valid_utf8_prefix(bytes) {
        return UTF_8;
    }
    let score = |enc: &'static Encoding| -> i64 {
        let (text, _, had_errors) = enc.decode(bytes);
        if had_errors {
            return i64::MIN;
        }
        text.chars()
            .map(|c| match c {
                '\u{3040}'..='\u{30FF}' => 3, // kana
                '\u{4E00}'..='\u{9FFF}' => 2, // kanji
                '\u{FF01}'..='\u{FF9F}' => 1, // full-width forms, half-width kana
                c if c.is_ascii() => 0,
                _ => -3,
            })
            .sum()
    };
    let (sjis, euc) = (score(SHIFT_JIS), score(EUC_JP));
    match (sjis, euc) {
        (i64::MIN, i64::MIN) => WINDOWS_1252,
        (s, e) if e > s => EUC_JP,
        _ => SHIFT_JIS,
    }
}

/// UTF-8 cut in the middle of a character at the end of a sample.
fn valid_utf8_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len(),
    }
}

/// UTF-16 without a BOM shows as every other byte zero in ASCII-heavy text.
fn utf16_without_bom(bytes: &[u8]) -> Option<&'static Encoding> {
    if bytes.len() < 16 {
        return None;
    }
    let sample = &bytes[..bytes.len().min(512) & !1];
    let pairs = sample.len() / 2;
    let even_zero = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let odd_zero = sample.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
    if odd_zero * 10 > pairs * 6 && even_zero * 10 < pairs {
        Some(UTF_16LE)
    } else if even_zero * 10 > pairs * 6 && odd_zero * 10 < pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

/// Whether a sample reads as text in some charset we know (few control
/// bytes, decodes without errors).
pub fn is_text(sample: &[u8]) -> bool {
    if sample.is_empty() {
        return true;
    }
    if utf16_without_bom(sample).is_some() || sample.starts_with(b"\xFF\xFE") || sample.starts_with(b"\xFE\xFF") {
        return true;
    }
    let controls = sample.iter().filter(|&&b| b < 0x09 || (0x0E..0x20).contains(&b) && b != 0x1B).count();
    if controls * 100 > sample.len() {
        return false;
    }
    let enc = detect(sample);
    enc != WINDOWS_1252 || !sample.iter().any(|b| *b >= 0x80) || {
        let (_, _, errors) = WINDOWS_1252.decode(sample);
        !errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JA: &str = "見積書を送付いたします。ご確認ください。株式会社テスト";

    #[test]
    fn japanese_charsets() {
        for enc in [SHIFT_JIS, EUC_JP, ISO_2022_JP, UTF_8] {
            let (bytes, _, _) = enc.encode(JA);
            assert_eq!(decode(&bytes), JA, "{}", enc.name());
        }
        let mut le = vec![0xFF, 0xFE];
        le.extend(JA.encode_utf16().flat_map(|u| u.to_le_bytes()));
        assert_eq!(decode(&le), JA);
        let be: Vec<u8> = "plain ascii text, long enough".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        assert_eq!(decode(&be), "plain ascii text, long enough");
        assert!(is_text(&SHIFT_JIS.encode(JA).0));
        assert!(!is_text(&[0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0x90]));
    }
}
