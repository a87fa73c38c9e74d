//! The archive's search language. An error names a position inside the
//! query.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    if let Err(e) = tomare_archive::query::parse(q) {
        assert!(e.at <= q.chars().count(), "{e:?} for {q:?}");
    }
});
