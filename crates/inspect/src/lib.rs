//! Inspection: raw message bytes (or a bare file) in, [`Facts`] out.
//!
//! Every attachment is opened by what its bytes are, recursively (archives,
//! attached messages), its text extracted and scanned by the detectors.
//! Whatever cannot be read to the end — a password, a corrupt file, a limit,
//! a crashed extractor — is recorded as a reason the inspection is
//! incomplete, which the policy treats as a fact (fail closed).
//!
//! This crate does no I/O beyond the bytes it is given — but for OCR, which
//! runs the `tesseract` program as a child process under the time budget —
//! and never panics outward: each file's extraction runs under
//! `catch_unwind`.

mod archive;
pub mod detect;
pub mod html;
mod legacy;
mod mime;
pub mod ocr;
mod office;
pub mod pdf;
mod rtf;
pub mod sniff;
pub mod text;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};
use tomare_config::Config;
use tomare_model::{Attachment, Facts};

pub use detect::Detectors;
use sniff::Kind;

pub struct Inspector {
    detectors: Detectors,
    max_decompressed: u64,
    max_depth: usize,
    max_entries: usize,
    time_budget: Duration,
    max_text: u64,
    /// tesseract, or why pictures are not read.
    ocr: Result<ocr::Tesseract, String>,
    ocr_max_pixels: u64,
    ocr_max_pages: usize,
}

/// What one inspection may still spend: bytes decompressed and time.
pub struct Budget {
    deadline: Instant,
    remaining: Cell<u64>,
}

impl Budget {
    pub fn new(bytes: u64, time: Duration) -> Budget {
        Budget { deadline: Instant::now() + time, remaining: Cell::new(bytes) }
    }

    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX / 2, Duration::from_secs(3600))
    }

    pub fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub fn remaining_bytes(&self) -> u64 {
        self.remaining.get()
    }

    /// Takes `n` bytes from the budget; an error when there were not enough.
    pub fn charge(&self, n: u64) -> Result<(), String> {
        let left = self.remaining.get();
        if n > left {
            self.remaining.set(0);
            return Err("decompressed size limit reached".into());
        }
        self.remaining.set(left - n);
        Ok(())
    }
}

impl Inspector {
    pub fn new(config: &Config) -> Result<Inspector, String> {
        let i = &config.inspect;
        Ok(Inspector {
            detectors: Detectors::new(&config.detect)?,
            max_decompressed: i.max_decompressed.0,
            max_depth: i.max_depth,
            max_entries: i.max_entries,
            time_budget: i.time_budget.0,
            max_text: i.max_text.0,
            ocr: match i.ocr {
                tomare_config::OcrMode::Auto => ocr::find(),
                tomare_config::OcrMode::Off => Err("OCR is off ([inspect] ocr = \"off\")".into()),
            },
            ocr_max_pixels: i.ocr_max_pixels,
            ocr_max_pages: i.ocr_max_pages,
        })
    }

    /// Whether pictures are read (tesseract's version), or why not: what
    /// `serve` says at start.
    pub fn ocr_status(&self) -> Result<String, String> {
        self.ocr.as_ref().map(|t| t.version.clone()).map_err(Clone::clone)
    }

    /// Facts about a whole message.
    pub fn message(&self, raw: &[u8]) -> Facts {
        let mut walk = self.walk();
        let mut facts = Facts { size: raw.len() as u64, ..Facts::default() };
        // The MIME parser itself is contained like any file's reader: it has
        // been found (by fuzzing) to trip a debug assertion on a damaged
        // multipart, and a panic here must be a fact, not a crash.
        let parsed = catch_unwind(AssertUnwindSafe(|| match mail_parser::MessageParser::default().parse(raw) {
            Some(message) => {
                mime::headers(&message, raw, &mut facts);
                facts.body_text = walk.message(&message, "", 0);
                true
            }
            None => false,
        }));
        match parsed {
            Ok(true) => {}
            Ok(false) => walk.reasons.push("the message could not be parsed as MIME".into()),
            Err(_) => walk.reasons.push("the MIME parser failed on this message".into()),
        }
        self.finish(walk, facts)
    }

    /// Facts about one file given alone (an attachment, as `tomare inspect`
    /// sees it).
    pub fn file(&self, name: &str, bytes: &[u8]) -> Facts {
        if sniff::sniff(bytes) == Kind::Eml {
            return self.message(bytes);
        }
        let mut walk = self.walk();
        walk.attachment(name, name, "", bytes, 0);
        let facts = Facts { size: bytes.len() as u64, ..Facts::default() };
        self.finish(walk, facts)
    }

    fn walk(&self) -> Walk<'_> {
        Walk {
            inspector: self,
            budget: Budget::new(self.max_decompressed, self.time_budget),
            attachments: Vec::new(),
            reasons: Vec::new(),
            text_left: self.max_text,
        }
    }

    fn finish(&self, walk: Walk<'_>, mut facts: Facts) -> Facts {
        facts.attachments = walk.attachments;
        facts.incomplete_reasons = walk.reasons;
        let d = &self.detectors;
        d.scan("subject", &facts.subject, &mut facts.detections);
        d.scan("body", &facts.body_text, &mut facts.detections);
        for a in &facts.attachments {
            // A file's name can carry the marker too (社外秘_見積書.xlsx).
            d.scan(&a.path, &format!("{}\n{}", a.name, a.text), &mut facts.detections);
        }
        facts.complete = facts.incomplete_reasons.is_empty();
        facts
    }
}

struct Walk<'a> {
    inspector: &'a Inspector,
    budget: Budget,
    attachments: Vec<Attachment>,
    reasons: Vec<String>,
    text_left: u64,
}

/// What one file gave up.
#[derive(Default)]
struct Extracted {
    text: String,
    /// Read by OCR.
    ocr: bool,
    encrypted: bool,
    error: Option<String>,
    children: Vec<archive::Member>,
    /// Read, but not all of it (entry limit, time).
    partial: Option<String>,
}

impl Walk<'_> {
    fn over_text_limit(&self) -> String {
        format!("text beyond the {} byte limit not scanned", self.inspector.max_text)
    }

    /// Keeps text within the per-message allowance.
    fn keep_text(&mut self, path: &str, mut text: String) -> String {
        let len = text.len() as u64;
        if len > self.text_left {
            let mut cut = self.text_left as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            let reason = format!("{path}: {}", self.over_text_limit());
            if !self.reasons.contains(&reason) {
                self.reasons.push(reason);
            }
        }
        self.text_left = self.text_left.saturating_sub(text.len() as u64);
        text
    }

    fn attachment(&mut self, path: &str, name: &str, content_type: &str, bytes: &[u8], depth: usize) {
        if self.budget.out_of_time() {
            self.reasons.push(format!("{path}: time budget exceeded before it was read"));
            return;
        }
        let kind = match (content_type, sniff::sniff(bytes)) {
            ("message/rfc822", _) => Kind::Eml,
            // A header block alone (bounces carry them) is text, not a message.
            ("text/rfc822-headers" | "message/delivery-status" | "message/disposition-notification", Kind::Eml) => {
                Kind::Text
            }
            (_, kind) => kind,
        };
        let index = self.attachments.len();
        self.attachments.push(Attachment {
            path: path.to_string(),
            name: name.to_string(),
            content_type: if content_type.is_empty() { kind.mime().to_string() } else { content_type.to_string() },
            detected_type: kind.name().to_string(),
            type_mismatch: kind.mismatches(name),
            size: bytes.len() as u64,
            ..Attachment::default()
        });
        if depth > self.inspector.max_depth {
            self.attachments[index].error = Some("nested too deep; not opened".into());
            self.reasons.push(format!("{path}: nested deeper than {} levels; not opened", self.inspector.max_depth));
            return;
        }
        let extracted = if kind == Kind::Eml {
            self.eml(path, bytes, depth)
        } else {
            catch_unwind(AssertUnwindSafe(|| self.extract(kind, bytes))).unwrap_or_else(|_| Extracted {
                error: Some(format!("the {} reader failed on this file", kind.name())),
                ..Extracted::default()
            })
        };
        let text = self.keep_text(path, extracted.text);
        let a = &mut self.attachments[index];
        a.text = text;
        a.ocr = extracted.ocr;
        a.encrypted = extracted.encrypted;
        a.error = extracted.error.clone();
        if extracted.encrypted {
            self.reasons.push(format!("{path}: password-protected; contents not inspected"));
        }
        if let Some(e) = &extracted.error {
            self.reasons.push(format!("{path}: {e}"));
        }
        if let Some(p) = extracted.partial {
            let reason = format!("{path}: {p}");
            if !self.reasons.contains(&reason) {
                self.reasons.push(reason);
            }
        }
        let total = extracted.children.len();
        for (n, member) in extracted.children.into_iter().enumerate() {
            // Embedded files, attachments of an item, members of an archive:
            // the same cap on how many are opened.
            if n >= self.inspector.max_entries {
                self.reasons
                    .push(format!("{path}: {} more embedded files not read ([inspect] max_entries)", total - n));
                break;
            }
            let child_path = format!("{path}/{}", member.name);
            let child_name = member.name.rsplit('/').next().unwrap_or(&member.name).to_string();
            if member.encrypted || member.error.is_some() {
                self.attachments.push(Attachment {
                    path: child_path.clone(),
                    name: child_name,
                    content_type: String::new(),
                    detected_type: "unknown".into(),
                    encrypted: member.encrypted,
                    error: member.error.clone(),
                    ..Attachment::default()
                });
                if member.encrypted {
                    self.reasons.push(format!("{child_path}: password-protected; contents not inspected"));
                }
                if let Some(e) = member.error {
                    self.reasons.push(format!("{child_path}: {e}"));
                }
                continue;
            }
            self.attachment(&child_path, &child_name, "", &member.data, depth + 1);
        }
    }

    /// An attached message: its body is its text, its attachments children.
    fn eml(&mut self, path: &str, bytes: &[u8], depth: usize) -> Extracted {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // An empty message/rfc822 part (bounces often carry one): nothing
            // there to miss.
            return Extracted::default();
        }
        match mail_parser::MessageParser::default().parse(bytes) {
            Some(message) => {
                let mut text = String::new();
                if let Some(s) = message.subject() {
                    text.push_str(s);
                    text.push('\n');
                }
                text.push_str(&self.message(&message, path, depth + 1));
                Extracted { text, ..Extracted::default() }
            }
            None => Extracted { error: Some("not a readable message".into()), ..Extracted::default() },
        }
    }

    /// A picture's text, by OCR; a picture that may carry text and is not
    /// read is incomplete, never a silent pass.
    fn picture(&self, bytes: &[u8]) -> Extracted {
        let Some((w, h)) = ocr::image_size(bytes) else {
            // No size, no cap on what tesseract would be asked to hold.
            return Extracted {
                error: Some("not inspected: a picture whose size cannot be read".into()),
                ..Extracted::default()
            };
        };
        if !ocr::may_carry_text(Some((w, h))) {
            return Extracted::default();
        }
        if w as u64 * h as u64 > self.inspector.ocr_max_pixels {
            return Extracted {
                error: Some(format!("not inspected: a {w}×{h} picture is beyond [inspect] ocr_max_pixels")),
                ..Extracted::default()
            };
        }
        match &self.inspector.ocr {
            Err(why) => Extracted { error: Some(format!("not inspected: no OCR ({why})")), ..Extracted::default() },
            Ok(t) => match t.read(bytes, &self.budget) {
                Ok(text) => Extracted { text, ocr: true, ..Extracted::default() },
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
        }
    }

    /// The pictures a PDF's pages show (scans, screenshots), read by OCR.
    fn scanned_pages(&self, pages: Vec<pdf::Scanned>, e: &mut Extracted) {
        if pages.is_empty() {
            return;
        }
        let mut problems = Vec::new();
        for page in pages.iter() {
            let image = match &page.image {
                Ok(image) => image,
                Err(why) if page.number == 0 => {
                    problems.push(why.clone());
                    continue;
                }
                Err(why) => {
                    problems.push(format!("scanned page {}: {why}", page.number));
                    continue;
                }
            };
            let read = self.picture(image);
            e.ocr |= read.ocr;
            if !read.text.is_empty() {
                e.text.push_str(&read.text);
                e.text.push('\n');
            }
            if let Some(why) = read.error {
                problems.push(format!("scanned page {}: {why}", page.number));
            }
        }
        if !problems.is_empty() {
            e.partial = Some(problems.join("; "));
        }
    }

    fn extract(&mut self, kind: Kind, bytes: &[u8]) -> Extracted {
        let budget = &self.budget;
        let text_of = |r: Result<String, String>| match r {
            Ok(text) => Extracted { text, ..Extracted::default() },
            Err(e) => Extracted { error: Some(e), ..Extracted::default() },
        };
        // A document's text, and its embedded files as members.
        let package_of = |r: Result<office::Package, String>| match r {
            Ok(p) => Extracted { text: p.text, children: p.embedded, partial: p.partial, ..Extracted::default() },
            Err(e) => Extracted { error: Some(e), ..Extracted::default() },
        };
        match kind {
            Kind::Text => match budget.charge(0) {
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
                Ok(()) => {
                    // Never more bytes than the text still allowed.
                    let (text, cut) = text::decode_limited(bytes, self.text_left as usize);
                    let partial = cut.then(|| self.over_text_limit());
                    Extracted { text, partial, ..Extracted::default() }
                }
            },
            Kind::Html => text_of(Ok(html::to_text(&text::decode(bytes)))),
            Kind::Rtf => text_of(Ok(rtf::to_text(bytes))),
            Kind::Pdf => match pdf::extract_limited(bytes, budget, self.inspector.ocr_max_pages) {
                Ok(p) if p.encrypted => Extracted { encrypted: true, ..Extracted::default() },
                Ok(p) => {
                    let mut e = Extracted { text: p.text, children: p.embedded, ..Extracted::default() };
                    self.scanned_pages(p.scanned, &mut e);
                    e
                }
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
            Kind::Docx => package_of(office::docx(bytes, budget)),
            Kind::Pptx => package_of(office::pptx(bytes, budget)),
            Kind::Odt | Kind::Odp => package_of(office::odf(bytes, budget)),
            Kind::Xlsx | Kind::Xls | Kind::Ods => match office::spreadsheet(bytes, budget) {
                Err(e) if office::is_password_error(&e) => Extracted { encrypted: true, ..Extracted::default() },
                r => package_of(r),
            },
            Kind::EncryptedOffice => Extracted { encrypted: true, ..Extracted::default() },
            Kind::Zip => match archive::zip_members(bytes, self.inspector.max_entries, budget) {
                Ok((children, partial)) => Extracted { children, partial, ..Extracted::default() },
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
            Kind::Gzip => match archive::gunzip(bytes, budget) {
                Ok(data) => Extracted {
                    children: vec![archive::Member { name: "(gzip)".into(), data, encrypted: false, error: None }],
                    ..Extracted::default()
                },
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
            Kind::Tar => match archive::tar_members(bytes, self.inspector.max_entries) {
                Ok((children, partial)) => Extracted { children, partial, ..Extracted::default() },
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
            Kind::SevenZip => match archive::sevenz_members(bytes, self.inspector.max_entries, budget) {
                Ok(Some((children, partial))) => Extracted { children, partial, ..Extracted::default() },
                Ok(None) => Extracted { encrypted: true, ..Extracted::default() },
                Err(e) => Extracted { error: Some(e), ..Extracted::default() },
            },
            Kind::Rar => Extracted {
                error: Some("RAR archives are not inspectable (no free reader)".into()),
                ..Extracted::default()
            },
            Kind::Doc | Kind::Ppt | Kind::Msg => {
                let read = match kind {
                    Kind::Doc => legacy::doc(bytes, budget),
                    Kind::Ppt => legacy::ppt(bytes, budget),
                    _ => legacy::msg(bytes, budget),
                };
                match read {
                    Ok(l) => Extracted {
                        text: l.text,
                        encrypted: l.encrypted,
                        children: l.members,
                        partial: l.partial,
                        ..Extracted::default()
                    },
                    Err(e) => Extracted { error: Some(e), ..Extracted::default() },
                }
            }
            Kind::Cfb => {
                Extracted { error: Some("an unknown compound file: text not extracted".into()), ..Extracted::default() }
            }
            Kind::Image => self.picture(bytes),
            Kind::Binary => {
                Extracted { error: Some("unknown binary format: not inspectable".into()), ..Extracted::default() }
            }
            Kind::Eml => Extracted::default(),
        }
    }
}
