//! Files packed into one AES-256 zip (WinZip AE-2, as 7-Zip, Explorer add-ons
//! and every Japanese archiver since PPAP open it). Names are written in
//! UTF-8 with the UTF-8 flag and again in the Info-ZIP Unicode Path field,
//! so Japanese names come out right on Windows and macOS alike.

use crate::protect::{File, clean_name};
use std::io::{Cursor, Write};
use zip::write::{FileOptions, FullFileOptions, ZipWriter};
use zip::{AesMode, CompressionMethod};

/// The Info-ZIP Unicode Path extra field (0x7075): version 1, the CRC-32 of
/// the name in the header, the name in UTF-8.
fn unicode_path(name: &str) -> Vec<u8> {
    let mut field = vec![1u8];
    field.extend_from_slice(&crc32fast::hash(name.as_bytes()).to_le_bytes());
    field.extend_from_slice(name.as_bytes());
    field
}

/// Names as they go into the archive: cleaned, and each one once (a second
/// `a.pdf` becomes `a (2).pdf`).
fn unique_names(files: &[File]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .map(|f| {
            let base = Some(clean_name(&f.name)).filter(|n| !n.is_empty()).unwrap_or_else(|| "file".into());
            let mut name = base.clone();
            let mut n = 1;
            while !seen.insert(name.to_lowercase()) {
                n += 1;
                name = match base.rsplit_once('.') {
                    Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({n}).{ext}"),
                    _ => format!("{base} ({n})"),
                };
            }
            name
        })
        .collect()
}

/// The zip of `files`, every entry AES-256 encrypted with `password`.
pub fn pack(files: &[File], password: &str) -> zip::result::ZipResult<Vec<u8>> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (file, name) in files.iter().zip(unique_names(files)) {
        let mut options: FullFileOptions = FileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .with_aes_encryption(AesMode::Aes256, password);
        if !name.is_ascii() {
            options.add_extra_field(0x7075, unicode_path(&name), false)?;
        }
        w.start_file(name, options)?;
        w.write_all(&file.data)?;
    }
    Ok(w.finish()?.into_inner())
}

/// The zip's own name: the one file's name with `.zip`, or `attachments.zip`.
pub fn archive_name(files: &[File]) -> String {
    match files {
        [one] => {
            let name = clean_name(&one.name);
            let stem = name.rsplit_once('.').map(|(s, _)| s).filter(|s| !s.is_empty()).unwrap_or(&name);
            format!("{stem}.zip")
        }
        _ => "attachments.zip".into(),
    }
}

/// A password for one message's zip: 16 characters from an alphabet
/// without look-alikes (no 0/O, 1/l/I), about 90 bits; an error when the
/// system has no randomness to give.
pub fn password() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(16);
    while out.len() < 16 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness for a password: {e}"))?;
        // Rejection sampling: no bias towards the first letters.
        for x in b {
            let limit = 256 - 256 % ALPHABET.len();
            if (x as usize) < limit && out.len() < 16 {
                out.push(ALPHABET[x as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn entries_need_the_password_and_keep_their_japanese_names() {
        let files = vec![
            File {
                name: "見積書.pdf".into(), content_type: "application/pdf".into(), data: b"%PDF-1.4 x".repeat(50)
            },
            File { name: "list.csv".into(), content_type: "text/csv".into(), data: b"a,b\n".to_vec() },
            File { name: "list.csv".into(), content_type: "text/csv".into(), data: b"c,d\n".to_vec() },
        ];
        let pw = password().unwrap();
        assert_eq!(pw.len(), 16);
        assert_ne!(pw, password().unwrap());
        let bytes = pack(&files, &pw).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        let names: Vec<String> = archive.file_names().map(|n| n.unwrap().into_owned()).collect();
        assert_eq!(names, ["見積書.pdf", "list.csv", "list (2).csv"]);
        assert!(archive.by_index(0).is_err(), "no password, no content");
        let mut out = Vec::new();
        archive.by_index_decrypt(0, pw.as_bytes()).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, files[0].data);
        assert!(archive.by_index_decrypt(0, b"wrong").is_err());
        // The Unicode Path field is there, with the UTF-8 name.
        let field = unicode_path("見積書.pdf");
        assert!(bytes.windows(field.len()).any(|w| w == field.as_slice()));
        assert_eq!(archive_name(&files[..1]), "見積書.zip");
        assert_eq!(archive_name(&files), "attachments.zip");
    }
}
