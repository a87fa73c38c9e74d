use std::borrow::Cow;

/// Makes every line end in CRLF. A bare LF or bare CR becomes CRLF, so a
/// `<LF>.<LF>` sequence smuggled inside a message is an ordinary line "." that
/// the relay dot-stuffs, never an end of data for the next server. Messages
/// that are already clean (all of them from a compliant client) come back
/// unchanged, byte for byte.
pub fn normalize_line_endings(data: &[u8]) -> Cow<'_, [u8]> {
    let clean = {
        let mut ok = true;
        let mut i = 0;
        while let Some(pos) = data[i..].iter().position(|&b| b == b'\r' || b == b'\n') {
            let p = i + pos;
            if data[p] == b'\r' && data.get(p + 1) == Some(&b'\n') {
                i = p + 2;
            } else {
                ok = false;
                break;
            }
        }
        ok
    };
    if clean {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_input_is_borrowed_and_bare_endings_fixed() {
        assert!(matches!(normalize_line_endings(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*normalize_line_endings(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(&*normalize_line_endings(b"x\n.\ny"), b"x\r\n.\r\ny");
    }
}
