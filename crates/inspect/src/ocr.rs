//! Text in pictures: the `tesseract` program (Japanese and English), run as
//! a child process with the image on its standard input, killed when the
//! inspection's time budget runs out. Found once per process; when it is
//! absent (or `[inspect] ocr = "off"`), a picture that may carry text is a
//! fact the rules see: not inspected.

use crate::Budget;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The languages read, in tesseract's terms.
pub const LANGUAGES: &str = "jpn+eng";

/// A picture smaller than this (either side, in pixels) carries no text a
/// person could read: icons, spacers, tracking pixels.
const MIN_SIDE: u32 = 16;

#[derive(Debug, Clone)]
pub struct Tesseract {
    pub program: PathBuf,
    pub version: String,
}

/// The tesseract on PATH with `jpn` and `eng`, or why there is none (asked
/// once per process).
pub fn find() -> Result<Tesseract, String> {
    static FOUND: OnceLock<Result<Tesseract, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let program = std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("tesseract")).find(|p| p.is_file()))
                .ok_or_else(|| "the tesseract program is not installed".to_string())?;
            let langs = Command::new(&program)
                .arg("--list-langs")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("tesseract does not run: {e}"))?;
            let listed = String::from_utf8_lossy(&langs.stdout).into_owned();
            for lang in LANGUAGES.split('+') {
                if !listed.lines().any(|l| l.trim() == lang) {
                    return Err(format!("tesseract has no {lang} language data (tesseract-ocr-{lang})"));
                }
            }
            let version = Command::new(&program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            Ok(Tesseract { program, version })
        })
        .clone()
}

/// Pictures read lately, by their SHA-256 (a signature's logo comes with
/// every mail of its sender): read once per process, not once per mail.
static READ: std::sync::Mutex<Option<std::collections::HashMap<[u8; 32], String>>> = std::sync::Mutex::new(None);
/// How many texts the cache keeps before it starts over.
const CACHED: usize = 512;

/// Whether `image` was read before in this process (its text is kept).
pub fn cached(image: &[u8]) -> bool {
    use sha2::Digest;
    let key: [u8; 32] = sha2::Sha256::digest(image).into();
    READ.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|m| m.contains_key(&key))
}

impl Tesseract {
    /// The text tesseract reads in `image` (any format leptonica knows:
    /// PNG, JPEG, GIF, TIFF, BMP, WebP, PNM), within the time left; a
    /// picture read before in this process is not read again.
    pub fn read(&self, image: &[u8], budget: &Budget) -> Result<String, String> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(image).into();
        if let Some(text) = READ.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.get(&key)) {
            return Ok(text.clone());
        }
        let text = self.run(image, budget)?;
        let mut cache = READ.lock().unwrap_or_else(|p| p.into_inner());
        let map = cache.get_or_insert_with(Default::default);
        if map.len() >= CACHED {
            map.clear();
        }
        map.insert(key, text.clone());
        Ok(text)
    }

    fn run(&self, image: &[u8], budget: &Budget) -> Result<String, String> {
        let deadline = Instant::now() + budget.time_left();
        let mut child = Command::new(&self.program)
            .args(["stdin", "stdout", "-l", LANGUAGES])
            // One thread: inspections already run in parallel.
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("OCR: tesseract does not start: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("OCR: no stdin")?;
        let data = image.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let mut stdout = child.stdout.take().ok_or("OCR: no stdout")?;
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = writer.join();
                    let _ = reader.join();
                    return Err("OCR did not finish within the time budget".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("OCR: {e}")),
            }
        };
        let _ = writer.join();
        let out = reader.join().unwrap_or_default();
        if !status.success() {
            return Err("OCR: tesseract could not read this picture".into());
        }
        Ok(tidy(&String::from_utf8_lossy(&out)))
    }
}

/// tesseract's Japanese output puts spaces between characters (社 外 秘):
/// a space between two CJK characters goes; form feeds and runs of blank
/// lines go too.
pub fn tidy(text: &str) -> String {
    let cjk = |c: char| matches!(c as u32, 0x3000..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF);
    let chars: Vec<char> = text.chars().filter(|c| *c != '\u{c}').collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = out.chars().next_back();
            let after = chars[i + 1..].iter().find(|c| **c != ' ');
            if before.is_some_and(cjk) && after.is_some_and(|a| cjk(*a)) {
                continue;
            }
        }
        if c == '\n' && out.ends_with("\n\n") {
            continue;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// Width and height of a PNG, JPEG, GIF, BMP, TIFF or WebP, from its header.
pub fn image_size(b: &[u8]) -> Option<(u32, u32)> {
    let be16 = |i: usize| Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    let le16 = |i: usize| Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as u32);
    let be32 = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
    let le32 = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    if b.len() > 3 && b[0] == b'P' && matches!(b[1], b'5' | b'6') && b[2].is_ascii_whitespace() {
        // PNM, as scanned PDF pages are handed over: "P5 W H 255".
        let head = String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
        let mut fields = head[2..].split_ascii_whitespace();
        return Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?));
    }
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"BM") {
        return Some((le32(18)?, (le32(22)? as i32).unsigned_abs()));
    }
    if b.starts_with(b"\xff\xd8") {
        // The first start-of-frame marker holds the size.
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xFF {
                i += 1;
                continue;
            }
            let marker = b[i + 1];
            if marker == 0xFF {
                // Fill bytes before a marker.
                i += 1;
                continue;
            }
            if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                i += 2;
                continue;
            }
            i += 2 + be16(i + 2)? as usize;
        }
        return None;
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8 " => Some((le16(26)? & 0x3FFF, le16(28)? & 0x3FFF)),
            b"VP8L" => {
                let v = le32(21)?;
                Some(((v & 0x3FFF) + 1, ((v >> 14) & 0x3FFF) + 1))
            }
            b"VP8X" => {
                let w = le32(24)? & 0xFF_FFFF;
                let h = le32(27)? & 0xFF_FFFF;
                Some((w + 1, h + 1))
            }
            _ => None,
        };
    }
    if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        let little = b[0] == b'I';
        let u16_at = |i: usize| if little { le16(i) } else { be16(i) };
        let u32_at = |i: usize| if little { le32(i) } else { be32(i) };
        let ifd = u32_at(4)? as usize;
        let n = u16_at(ifd)? as usize;
        let (mut w, mut h) = (None, None);
        for k in 0..n.min(256) {
            let e = ifd + 2 + k * 12;
            let tag = u16_at(e)?;
            let kind = u16_at(e + 2)?;
            let value = if kind == 3 { u16_at(e + 8)? } else { u32_at(e + 8)? };
            match tag {
                256 => w = Some(value),
                257 => h = Some(value),
                _ => {}
            }
        }
        return Some((w?, h?));
    }
    None
}

/// Whether a picture this size can carry text worth reading.
pub fn may_carry_text(size: Option<(u32, u32)>) -> bool {
    size.is_none_or(|(w, h)| w >= MIN_SIDE && h >= MIN_SIDE)
}

/// Raw samples as a binary PNM (grey P5 or RGB P6), which tesseract reads.
pub fn pnm(width: u32, height: u32, components: u8, samples: &[u8]) -> Option<Vec<u8>> {
    let magic = match components {
        1 => "P5",
        3 => "P6",
        _ => return None,
    };
    let need = width as usize * height as usize * components as usize;
    let data = samples.get(..need)?;
    let mut out = format!("{magic}\n{width} {height}\n255\n").into_bytes();
    out.extend_from_slice(data);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(image_size(&png), Some((640, 480)));
        let gif = b"GIF89a\x10\x00\x08\x00";
        assert_eq!(image_size(gif), Some((16, 8)));
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0, 50, 0, 100, 3, 0, 0, 0];
        assert_eq!(image_size(&jpeg), Some((100, 50)));
        assert_eq!(image_size(b"not a picture"), None);
        assert_eq!(image_size(b"P5\n1200 200\n255\n\0\0"), Some((1200, 200)));
        let filled = [0xFF, 0xD8, 0xFF, 0xFF, 0xFF, 0xC0, 0, 11, 8, 0, 50, 0, 100, 3, 0, 0, 0, 0, 0];
        assert_eq!(image_size(&filled), Some((100, 50)), "fill bytes before a marker");
        assert!(!may_carry_text(Some((1, 1))) && may_carry_text(Some((800, 600))) && may_carry_text(None));
    }

    #[test]
    fn japanese_spacing_is_closed_up() {
        assert_eq!(tidy("社 外 秘 の 資料\n\n\n\nPage 2 of 3\u{c}"), "社外秘の資料\n\nPage 2 of 3");
        assert_eq!(tidy("A 社 B"), "A 社 B");
    }

    #[test]
    fn samples_become_pnm() {
        let p = pnm(2, 1, 1, &[0, 255]).unwrap();
        assert!(p.starts_with(b"P5\n2 1\n255\n") && p.ends_with(&[0, 255]));
        assert!(pnm(2, 2, 1, &[0]).is_none(), "too few samples");
    }
}
