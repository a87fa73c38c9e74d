//! Inspects each file named on the command line in one process (as
//! `serve` does: tesseract found once), printing one JSON line per file:
//! its text and whether the inspection was complete. Used by bench/ocr.sh.
//! Usage: ocr_read FILE...

fn main() {
    let inspector = tomare_inspect::Inspector::new(&tomare_config::Config::default()).expect("default config");
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).expect("readable file");
        let name =
            std::path::Path::new(&path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let facts = inspector.file(&name, &bytes);
        let text = facts.attachments.first().map(|a| a.text.clone()).unwrap_or_default();
        let line = serde_json::json!({ "file": path, "text": text, "complete": facts.complete });
        println!("{line}");
    }
}
