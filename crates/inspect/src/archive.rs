//! Archives opened for their members: zip (with CP932 names and encrypted
//! entries reported), gzip and tar.

use crate::Budget;
use encoding_rs::SHIFT_JIS;
use std::io::{Cursor, Read};

pub struct Member {
    pub name: String,
    pub data: Vec<u8>,
    pub encrypted: bool,
    /// Why the member could not be read, if it could not.
    pub error: Option<String>,
}

/// A zip entry's name: UTF-8 when it is (or says it is), else CP932, the
/// encoding of zips made on Japanese Windows.
fn entry_name(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => SHIFT_JIS.decode_without_bom_handling(raw).0.into_owned(),
    }
}

/// An archive's members, and why not all of them were read (if not).
pub type Members = (Vec<Member>, Option<String>);

pub fn zip_members(bytes: &[u8], max_entries: usize, budget: &Budget) -> Result<(Vec<Member>, Option<String>), String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("zip: {e}"))?;
    let mut members = Vec::new();
    let mut incomplete = None;
    for i in 0..archive.len() {
        if members.len() >= max_entries {
            incomplete = Some(format!("more than {max_entries} entries; the rest not read"));
            break;
        }
        if budget.out_of_time() {
            incomplete = Some("time budget exceeded".into());
            break;
        }
        let entry = match archive.by_index_raw(i) {
            Ok(e) => e,
            Err(e) => {
                members.push(Member {
                    name: format!("#{i}"),
                    data: Vec::new(),
                    encrypted: false,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry_name(entry.name_raw());
        let encrypted = entry.encrypted();
        let declared = entry.size();
        drop(entry);
        if encrypted {
            members.push(Member { name, data: Vec::new(), encrypted: true, error: None });
            continue;
        }
        // Sized by what the entry says it holds (a lie costs at most one
        // growth): read_to_end's doubling would allocate up to twice the
        // entry, 64 MB for a 34 MB file.
        let mut data = Vec::with_capacity(declared.min(budget.remaining_bytes() + 1).min(256 << 20) as usize);
        let read = match archive.by_index(i) {
            Ok(file) => {
                let limit = budget.remaining_bytes();
                file.take(limit + 1).read_to_end(&mut data).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match read.and_then(|_| budget.charge(data.len() as u64)) {
            Ok(()) => members.push(Member { name, data, encrypted: false, error: None }),
            Err(e) => {
                let limit_hit = e.contains("limit");
                members.push(Member { name, data: Vec::new(), encrypted: false, error: Some(e) });
                if limit_hit {
                    incomplete = Some("decompressed size limit reached".into());
                    break;
                }
            }
        }
    }
    Ok((members, incomplete))
}

pub fn gunzip(bytes: &[u8], budget: &Budget) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(budget.remaining_bytes() + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    budget.charge(out.len() as u64)?;
    Ok(out)
}

/// The regular files of a tar archive (ustar and GNU long names).
pub fn tar_members(bytes: &[u8], max_entries: usize) -> Result<(Vec<Member>, Option<String>), String> {
    let mut members = Vec::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    while pos + 512 <= bytes.len() {
        let header = &bytes[pos..pos + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &header[r];
            let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let size_text = field(124..136);
        let size = u64::from_str_radix(size_text.trim(), 8).map_err(|_| format!("tar: bad size {size_text:?}"))?;
        let kind = header[156];
        let start = pos + 512;
        let end = start.checked_add(size as usize).filter(|e| *e <= bytes.len()).ok_or("tar: truncated member")?;
        let mut name = field(0..100);
        let prefix = field(345..500);
        if &header[257..262] == b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        if let Some(long) = long_name.take() {
            name = long;
        }
        match kind {
            b'L' => long_name = Some(String::from_utf8_lossy(&bytes[start..end]).trim_end_matches('\0').to_string()),
            b'0' | 0 | b'7' => {
                if members.len() >= max_entries {
                    return Ok((members, Some(format!("more than {max_entries} entries; the rest not read"))));
                }
                members.push(Member { name, data: bytes[start..end].to_vec(), encrypted: false, error: None });
            }
            _ => {}
        }
        pos = start + (size as usize).div_ceil(512) * 512;
    }
    Ok((members, None))
}

/// A 7z archive's files (LZMA/LZMA2 and the other methods the reader
/// knows), under the same entry, byte and time limits as a zip. An
/// AES-encrypted one (data or names) is reported encrypted: `Ok(None)`.
pub fn sevenz_members(bytes: &[u8], max_entries: usize, budget: &Budget) -> Result<Option<Members>, String> {
    use sevenz_rust2::{ArchiveReader, EntryDecision, Error, Password};
    // The decoder's dictionaries, bounded (kB): a header that asks for more is refused.
    const MEMORY_KB: usize = 256 * 1024;
    let encrypted = |e: &Error| {
        matches!(e, Error::PasswordRequired | Error::MaybeBadPassword(_))
            || matches!(e, Error::UnsupportedCompressionMethod(m) if m.to_ascii_lowercase().contains("aes"))
    };
    let mut reader = match ArchiveReader::new_with_memory_limit(Cursor::new(bytes), Password::empty(), MEMORY_KB) {
        Ok(r) => r,
        Err(e) if encrypted(&e) => return Ok(None),
        Err(e) => return Err(format!("7z: {e}")),
    };
    let mut members = Vec::new();
    let mut incomplete = None;
    let result = reader.for_each_entries_with_decision(|entry, data| {
        if entry.is_directory || !entry.has_stream {
            return Ok(EntryDecision::Continue);
        }
        if members.len() >= max_entries {
            incomplete = Some(format!("more than {max_entries} entries; the rest not read"));
            return Ok(EntryDecision::Stop);
        }
        if budget.out_of_time() {
            incomplete = Some("time budget exceeded".into());
            return Ok(EntryDecision::Stop);
        }
        let limit = budget.remaining_bytes();
        let mut out = Vec::new();
        data.take(limit + 1).read_to_end(&mut out).map_err(|e| Error::Io(e, "7z entry".into()))?;
        if budget.charge(out.len() as u64).is_err() {
            incomplete = Some("decompressed size limit reached".into());
            return Ok(EntryDecision::Stop);
        }
        members.push(Member { name: entry.name.clone(), data: out, encrypted: false, error: None });
        Ok(EntryDecision::Continue)
    });
    match result {
        Ok(()) => Ok(Some((members, incomplete))),
        Err(e) if encrypted(&e) => Ok(None),
        Err(e) => Err(format!("7z: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp932_names() {
        let (raw, _, _) = SHIFT_JIS.encode("見積書.xlsx");
        assert_eq!(entry_name(&raw), "見積書.xlsx");
        assert_eq!(entry_name("請求書.pdf".as_bytes()), "請求書.pdf");
    }

    #[test]
    fn tar_with_ustar_prefix() {
        let mut tar = vec![0u8; 512];
        tar[..9].copy_from_slice(b"notes.txt");
        tar[124..135].copy_from_slice(b"00000000005");
        tar[156] = b'0';
        tar[257..262].copy_from_slice(b"ustar");
        tar[345..348].copy_from_slice(b"dir");
        tar.extend_from_slice(b"hello");
        tar.resize(512 * 2, 0);
        tar.resize(512 * 4, 0);
        let (m, incomplete) = tar_members(&tar, 10).unwrap();
        assert!(incomplete.is_none());
        assert_eq!(m[0].name, "dir/notes.txt");
        assert_eq!(m[0].data, b"hello");
    }
}
