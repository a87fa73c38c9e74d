//! The SMTP command parser and the DATA reader, and the address type at
//! their heart. Beyond "no panic": an accepted address reads back the same
//! from its canonical form and never carries what would split a command
//! line; the DATA reader gives the same message whatever the chunking, and
//! never a bare CR or LF.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tomare_model::Address;
use tomare_smtp::{Command, DataReader, parse_command};

fuzz_target!(|data: &[u8]| {
    let (utf8, rest) = match data.split_first() {
        Some((b, rest)) => (b & 1 == 1, rest),
        None => return,
    };
    if let Ok(s) = std::str::from_utf8(rest) {
        if let Ok(a) = Address::parse(s, utf8) {
            let canonical = a.to_string();
            let back: Address = canonical.parse().expect("the canonical form parses");
            assert_eq!(back, a);
            assert!(!canonical.contains(['\r', '\n', '\0', '<', '>']), "{canonical:?}");
            assert!(utf8 || canonical.is_ascii());
        }
    }
    if let Ok(Command::Mail(m)) = parse_command(rest, utf8) {
        let text = m.from.to_string();
        assert!(!text.contains(['\r', '\n', '<', '>', '\0']));
    }
    if let Ok(Command::Rcpt(a)) = parse_command(rest, utf8) {
        assert!(!a.domain().is_empty());
        let text = a.to_string();
        assert!(!text.contains(['\r', '\n', '<', '>', '\0']));
    }
    // DATA: whole, then in chunks of a size taken from the input.
    let mut whole = Vec::new();
    let end = DataReader::default().feed(rest, &mut whole);
    let chunk = 1 + (data[0] as usize % 7);
    let mut pieces = Vec::new();
    let mut reader = DataReader::default();
    let mut chunk_end = None;
    let mut pos = 0;
    while pos < rest.len() {
        let upto = (pos + chunk).min(rest.len());
        if let Some(used) = reader.feed(&rest[pos..upto], &mut pieces) {
            chunk_end = Some(pos + used);
            break;
        }
        pos = upto;
    }
    assert_eq!(end, chunk_end);
    assert_eq!(whole, pieces);
    for (i, &b) in whole.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(whole.get(i + 1), Some(&b'\n'));
        }
        if b == b'\n' {
            assert!(i > 0 && whole[i - 1] == b'\r');
        }
    }
    if let Some(end) = end {
        assert!(end >= 3 && &rest[end - 3..end] == b".\r\n");
    }
});
