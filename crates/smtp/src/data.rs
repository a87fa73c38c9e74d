//! The DATA phase's bytes → the message (pure, streaming).
//!
//! Only `<CRLF>.<CRLF>` ends the data (RFC 5321 §4.1.1.4); `.` followed by
//! CR CR LF, by a bare LF, or preceded by a bare LF or CR is message text, so
//! a body can never carry a second transaction past us. The message comes
//! out with the transparency dot removed (§4.5.2) and every bare CR or LF
//! turned into CRLF: the relay dot-stuffs it again, so a smuggled `<LF>.<LF>`
//! reaches the next server as an ordinary line `..`. Clean input (every line
//! ending in CRLF, as every compliant client sends) comes out byte for byte.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after a CRLF (or at the start of the data): a `.` here may
    /// begin the terminator or a stuffed line.
    LineStart,
    /// LineStart, then `.`.
    Dot,
    /// LineStart, `.`, CR: the terminator if LF follows.
    DotCr,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR: a line end if LF follows, else a bare CR.
    Cr,
}

/// Decodes the DATA byte stream in chunks of any size.
#[derive(Debug)]
pub struct DataReader {
    state: State,
}

impl Default for DataReader {
    fn default() -> Self {
        DataReader { state: State::LineStart }
    }
}

impl DataReader {
    /// Appends the message bytes in `input` to `out`. Returns how many
    /// bytes of `input` were used when the terminator was among them (the
    /// rest belongs to the next command), `None` when more data is needed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::LineStart | State::Text, b'\r') => State::Cr,
                (State::LineStart | State::Text, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    State::Text
                }
                (State::LineStart | State::Text, _) => {
                    // The common case: copy up to the next CR or LF at once.
                    let end = memchr::memchr2(b'\r', b'\n', &input[i..]).map_or(input.len(), |p| i + p);
                    out.extend_from_slice(&input[i - 1..end]);
                    i = end;
                    State::Text
                }
                (State::Dot, b'\r') => State::DotCr,
                (State::Dot, b'\n') => {
                    // "." then a bare LF: text, kept with its dot.
                    out.extend_from_slice(b".\r\n");
                    State::Text
                }
                // A stuffed line: the dot goes, the rest is text.
                (State::Dot, _) => {
                    i -= 1;
                    State::Text
                }
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return Some(i);
                }
                (State::DotCr, _) => {
                    // ".", a bare CR, then something else: the line "." is
                    // text; the CR is a line end of its own.
                    out.extend_from_slice(b".\r\n");
                    i -= 1;
                    State::Text
                }
                (State::Cr, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    State::LineStart
                }
                (State::Cr, _) => {
                    // A bare CR ends its line, but not as a CRLF would: a
                    // dot after it is text.
                    out.extend_from_slice(b"\r\n");
                    i -= 1;
                    State::Text
                }
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and what follows the terminator, feeding `input` in
    /// chunks of `chunk` bytes.
    fn read(input: &[u8], chunk: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut r = DataReader::default();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + chunk).min(input.len());
            if let Some(used) = r.feed(&input[pos..end], &mut out) {
                return (out, Some(input[pos + used..].to_vec()));
            }
            pos = end;
        }
        (out, None)
    }

    fn all_chunkings(input: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        let whole = read(input, input.len().max(1));
        for chunk in 1..=input.len().min(9) {
            assert_eq!(read(input, chunk), whole, "chunks of {chunk} for {:?}", String::from_utf8_lossy(input));
        }
        whole
    }

    #[test]
    fn only_crlf_dot_crlf_ends_the_data() {
        let (msg, rest) = all_chunkings(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
        assert_eq!(msg, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(rest.unwrap(), b"QUIT\r\n");
        // The empty message.
        assert_eq!(all_chunkings(b".\r\nNOOP"), (Vec::new(), Some(b"NOOP".to_vec())));
        // Every other dot line is text, so a second transaction stays body.
        for smuggled in [
            &b"a\r\n.\r\r\nMAIL FROM:<x@evil.net>\r\n"[..],
            b"a\r\n.\r\r\r\nMAIL FROM:<x@evil.net>\r\n",
            b"a\r\n.\nMAIL FROM:<x@evil.net>\r\n",
            b"a\n.\r\nMAIL FROM:<x@evil.net>\r\n",
            b"a\n.\nMAIL FROM:<x@evil.net>\r\n",
            b"a\r.\r\nMAIL FROM:<x@evil.net>\r\n",
            b"a\r.\rMAIL FROM:<x@evil.net>\r\n",
            b"a\r\n.\rMAIL FROM:<x@evil.net>\r\n",
            b"a\r\n .\r\nMAIL FROM:<x@evil.net>\r\n",
            b"a\r\n.x\r\nMAIL FROM:<x@evil.net>\r\n",
        ] {
            let (msg, rest) = all_chunkings(smuggled);
            assert_eq!(rest, None, "{:?} ended the data", String::from_utf8_lossy(smuggled));
            assert!(msg.windows(15).any(|w| w == b"MAIL FROM:<x@ev"), "{:?}", String::from_utf8_lossy(&msg));
            // No bare CR or LF comes out.
            for (i, &b) in msg.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(msg.get(i + 1), Some(&b'\n'));
                }
                if b == b'\n' {
                    assert!(i > 0 && msg[i - 1] == b'\r');
                }
            }
        }
    }

    #[test]
    fn transparency_dots_are_removed_and_bare_endings_become_crlf() {
        let (msg, rest) = all_chunkings(b"..leading dot\r\n...\r\nx\ny\rz\r\n.\r\n");
        assert_eq!(String::from_utf8(msg).unwrap(), ".leading dot\r\n..\r\nx\r\ny\r\nz\r\n");
        assert_eq!(rest.unwrap(), b"");
        // Lines "." that are text keep their dot (the relay stuffs them).
        let (msg, _) = all_chunkings(b"a\n.\nb\r\n.\r\n");
        assert_eq!(msg, b"a\r\n.\r\nb\r\n");
        let (msg, _) = all_chunkings(b"a\r\n.\r\rb\r\n.\r\n");
        assert_eq!(msg, b"a\r\n.\r\n\r\nb\r\n");
        // A bare CR before CRLF.CRLF: the terminator is still there.
        let (msg, rest) = all_chunkings(b"a\r\r\n.\r\n");
        assert_eq!((msg, rest), (b"a\r\n\r\n".to_vec(), Some(Vec::new())));
    }

    #[test]
    fn clean_input_is_copied_byte_for_byte() {
        let body = b"From: a@example.com\r\nSubject: \xe8\xa6\x8b\xe7\xa9\x8d\r\n\r\nline 1\r\n\r\nline 3\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b".\r\n");
        assert_eq!(all_chunkings(&input).0, body);
    }
}
