//! A whole message through inspection: MIME, every attachment by its
//! bytes, the detectors. Panics abort (libFuzzer's hook runs before the
//! inspector's catch_unwind), so even a caught panic is found.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn inspector() -> &'static tomare_inspect::Inspector {
    static I: std::sync::OnceLock<tomare_inspect::Inspector> = std::sync::OnceLock::new();
    I.get_or_init(|| tomare_inspect::Inspector::new(&tomare_config::Config::default()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let facts = inspector().message(data);
    // Whatever could not be read is said so.
    assert!(facts.complete == facts.incomplete_reasons.is_empty());
});
