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
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
pub use tomare_store::BlobLoc;
pub use tomare_store::sha256_hex;

const MAGIC: &[u8; 8] = b"tomareb1";

/// What a blob is made from.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Bytes(&'a [u8]),
    /// A file, read and compressed a piece at a time.
    File(&'a Path),
}

/// Content bigger than this is compressed as a stream.
const STREAM_OVER: usize = 1 << 20;

/// Writes one frame compressed as `from` is read, after its header at
/// `offset`; the length field is filled in once the frame is written.
/// Returns the frame's length.
fn stream_frame(file: &mut io::BufWriter<File>, offset: u64, from: &mut impl Read) -> io::Result<u64> {
    let len_at = offset + HEADER - 8;
    file.write_all(&0u64.to_le_bytes())?;
    let mut encoder = zstd::stream::Encoder::new(&mut *file, 3)?;
    io::copy(from, &mut encoder)?;
    encoder.finish()?;
    let end = file.stream_position()?;
    let len = end - offset - HEADER;
    file.seek(SeekFrom::Start(len_at))?;
    file.write_all(&len.to_le_bytes())?;
    file.seek(SeekFrom::Start(end))?;
    Ok(len)
}

/// The SHA-256 of a file, read a piece at a time.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
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
        let items: Vec<(String, Content<'_>)> = items.iter().map(|(h, b)| (h.clone(), Content::Bytes(b))).collect();
        self.write_pack_from(&items)
    }

    /// [`Blobs::write_pack`] for content in memory or in a file: a file is
    /// compressed as it is read, so a 45 MB message is never in memory whole.
    pub fn write_pack_from(&self, items: &[(String, Content<'_>)]) -> io::Result<Vec<BlobLoc>> {
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
        for (hash, content) in items {
            file.write_all(MAGIC)?;
            file.write_all(&unhex32(hash))?;
            let len = match content {
                Content::Bytes(data) if data.len() <= STREAM_OVER => {
                    let frame = compressor.compress(data)?;
                    file.write_all(&(frame.len() as u64).to_le_bytes())?;
                    file.write_all(&frame)?;
                    frame.len() as u64
                }
                // Big content is compressed straight into the pack: a
                // frame buffer would be as big as the message again.
                Content::Bytes(data) => stream_frame(&mut file, offset, &mut &data[..])?,
                Content::File(path) => stream_frame(&mut file, offset, &mut File::open(path)?)?,
            };
            locs.push(BlobLoc {
                hash: hash.clone(),
                pack: pack.clone(),
                offset: (offset + HEADER) as i64,
                len: len as i64,
            });
            offset += HEADER + len;
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
pub fn new_items<'a, T>(
    candidates: impl IntoIterator<Item = (&'a str, T)>,
    known: &HashMap<String, BlobLoc>,
) -> Vec<(String, T)> {
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
mod stream_tests {
    use super::*;

    #[test]
    fn a_file_is_packed_as_it_is_read_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let path = dir.path().join("m.eml");
        fs::write(&path, &big).unwrap();
        let small = b"small one".to_vec();
        let mut big2 = big.clone();
        big2.reverse();
        let (hb, hs, hb2) = (sha256_file(&path).unwrap(), sha256_hex(&small), sha256_hex(&big2));
        assert_eq!(hb, sha256_hex(&big));
        let items = [(hs, Content::Bytes(&small)), (hb, Content::File(&path)), (hb2, Content::Bytes(&big2))];
        let locs = blobs.write_pack_from(&items).unwrap();
        assert_eq!(blobs.read(&locs[0]).unwrap(), small);
        assert_eq!(blobs.read(&locs[1]).unwrap(), big);
        assert_eq!(blobs.read(&locs[2]).unwrap(), big2, "big bytes in memory are streamed too");
    }
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
