//! Our PDF text layer (on lopdf): object syntax, streams, fonts, CMaps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let budget = tomare_inspect::Budget::new(64 << 20, Duration::from_secs(5));
    let _ = tomare_inspect::pdf::extract(data, &budget);
});
