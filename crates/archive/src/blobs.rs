//! Messages as evidence: zstd-compressed, named by the SHA-256 of their
//! content, appended to pack files (`blobs/<name>.pack`, one per batch)
//! whose places the database keeps (`tomare_store::BlobLoc`). One file per
//! batch instead of one per message: creating and unlinking a file per
//! message costs the filesystem more than compressing it.
//!
//! Each blob in a pack is a header — `tomareb1`, the 32-byte SHA-256, the
//! frame length (u64 LE) — then one zstd frame, so a pack describes itself.
//! A read checks the bytes against their hash: a changed byte is found.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
pub use tomare_store::BlobLoc;
pub use tomare_store::sha256_hex;

const MAGIC: &[u8; 8] = b"tomareb1";
const HEADER: u64 = 8 + 32 + 8;

pub struct Blobs {
    dir: PathBuf,
}

fn unhex32(hash: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = hash.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(0);
    }
    out
}

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Blobs> {
        let dir = data_dir.join("blobs");
        fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    pub fn pack_path(&self, pack: &str) -> PathBuf {
        self.dir.join(format!("{pack}.pack"))
    }

    /// Writes the messages (hash → bytes; each once) to a new pack, synced
    /// with its directory entry, and returns where each one is. Nothing is
    /// written for an empty list.
    pub fn write_pack(&self, items: &[(String, &[u8])]) -> io::Result<Vec<BlobLoc>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut seed = [0u8; 6];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
        let suffix: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let pack = format!("{:013}-{suffix}", tomare_model::now_ms());
        let tmp = self.dir.join(format!(".{pack}.tmp"));
        let mut file = io::BufWriter::new(File::create(&tmp)?);
        let mut offset = 0u64;
        let mut locs = Vec::with_capacity(items.len());
        let mut compressor = zstd::bulk::Compressor::new(3)?;
        for (hash, data) in items {
            let frame = compressor.compress(data)?;
            file.write_all(MAGIC)?;
            file.write_all(&unhex32(hash))?;
            file.write_all(&(frame.len() as u64).to_le_bytes())?;
            file.write_all(&frame)?;
            locs.push(BlobLoc {
                hash: hash.clone(),
                pack: pack.clone(),
                offset: (offset + HEADER) as i64,
                len: frame.len() as i64,
            });
            offset += HEADER + frame.len() as u64;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        fs::rename(&tmp, self.pack_path(&pack))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(locs)
    }

    /// The stored bytes, checked against their hash.
    pub fn read(&self, loc: &BlobLoc) -> io::Result<Vec<u8>> {
        let file = File::open(self.pack_path(&loc.pack))?;
        let mut frame = vec![0u8; usize::try_from(loc.len).unwrap_or(0)];
        file.read_exact_at(&mut frame, u64::try_from(loc.offset).unwrap_or(0))?;
        let data = zstd::stream::decode_all(&frame[..])?;
        if sha256_hex(&data) != loc.hash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} does not match its content", loc.hash),
            ));
        }
        Ok(data)
    }

    /// Rewrites a pack with only `keep` (retention removed the rest):
    /// returns their new places; the old file goes once the caller has
    /// recorded them ([`Blobs::remove_pack`]).
    pub fn compact(&self, keep: &[BlobLoc]) -> io::Result<Vec<BlobLoc>> {
        let mut live = Vec::with_capacity(keep.len());
        for loc in keep {
            live.push((loc.hash.clone(), self.read(loc)?));
        }
        let items: Vec<(String, &[u8])> = live.iter().map(|(h, d)| (h.clone(), d.as_slice())).collect();
        self.write_pack(&items)
    }

    pub fn remove_pack(&self, pack: &str) -> io::Result<()> {
        match fs::remove_file(self.pack_path(pack)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Messages to store, each once: (hash, bytes), skipping those already
/// stored (`known`) or already in the list.
pub fn new_items<'a>(
    candidates: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    known: &HashMap<String, BlobLoc>,
) -> Vec<(String, &'a [u8])> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (hash, data) in candidates {
        if !known.contains_key(hash) && seen.insert(hash) {
            out.push((hash.to_string(), data));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_compressed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let a = "Subject: 見積書\r\n\r\n".repeat(200);
        let b = "Subject: other\r\n\r\nbody".to_string();
        let (ha, hb) = (sha256_hex(a.as_bytes()), sha256_hex(b.as_bytes()));
        let items = new_items([(&*ha, a.as_bytes()), (&*hb, b.as_bytes()), (&*ha, a.as_bytes())], &HashMap::new());
        assert_eq!(items.len(), 2, "the same bytes once");
        let locs = blobs.write_pack(&items).unwrap();
        assert_eq!(locs[0].hash, sha256_hex(a.as_bytes()));
        assert_eq!(locs[0].pack, locs[1].pack, "one file per batch");
        assert!(fs::metadata(blobs.pack_path(&locs[0].pack)).unwrap().len() < a.len() as u64 / 4, "compressed");
        assert_eq!(blobs.read(&locs[0]).unwrap(), a.as_bytes());
        assert_eq!(blobs.read(&locs[1]).unwrap(), b.as_bytes());
        // A byte changed inside the frame: found.
        let path = blobs.pack_path(&locs[1].pack);
        let mut bytes = fs::read(&path).unwrap();
        let at = (locs[1].offset + locs[1].len - 3) as usize;
        bytes[at] ^= 0x55;
        fs::write(&path, bytes).unwrap();
        assert!(blobs.read(&locs[1]).is_err());
        assert_eq!(blobs.read(&locs[0]).unwrap(), a.as_bytes(), "its neighbour is intact");
        // Compaction keeps what is asked for, elsewhere.
        let moved = blobs.compact(&locs[..1]).unwrap();
        blobs.remove_pack(&locs[0].pack).unwrap();
        assert_eq!(blobs.read(&moved[0]).unwrap(), a.as_bytes());
        assert!(blobs.read(&locs[0]).is_err());
    }
}
