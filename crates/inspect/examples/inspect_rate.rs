//! Messages inspected per second over a folder of .eml files, in one
//! process (as `serve` does it). Used by bench/inspect.sh.
//! Usage: inspect_rate DIR

use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: inspect_rate DIR");
    let mut mails: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("readable folder")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("readable file")))
        .collect();
    mails.sort();
    let inspector = tomare_inspect::Inspector::new(&tomare_config::Config::default()).expect("default config");
    let bytes: usize = mails.iter().map(|(_, m)| m.len()).sum();
    let (mut small, mut large, mut small_t, mut large_t) = (0, 0, 0f64, 0f64);
    let (mut detections, mut incomplete) = (0, 0);
    let start = Instant::now();
    for (_, raw) in &mails {
        let t = Instant::now();
        let facts = inspector.message(raw);
        let secs = t.elapsed().as_secs_f64();
        detections += facts.detections.len();
        incomplete += usize::from(!facts.complete);
        if facts.attachments.is_empty() {
            small += 1;
            small_t += secs;
        } else {
            large += 1;
            large_t += secs;
        }
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "{} messages ({:.1} MB) in {:.2} s: {:.0} messages/s, {:.1} MB/s",
        mails.len(),
        bytes as f64 / 1e6,
        total,
        mails.len() as f64 / total,
        bytes as f64 / 1e6 / total
    );
    println!(
        "  text mails: {small}, {:.0}/s; with Office/PDF attachments: {large}, {:.1}/s",
        small as f64 / small_t,
        large as f64 / large_t
    );
    println!("  detections: {detections}; incomplete: {incomplete}");
}
