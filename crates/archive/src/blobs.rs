//! Messages as evidence: zstd-compressed files named by the SHA-256 of their
//! content (`blobs/ab/cd/abcd….zst`). The same message stored twice is one
//! file; a changed byte no longer matches its name, which `get` checks.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct Blobs {
    dir: PathBuf,
}

pub use tomare_store::sha256_hex;

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Blobs> {
        let dir = data_dir.join("blobs");
        fs::create_dir_all(&dir)?;
        Ok(Blobs { dir })
    }

    pub fn path(&self, hash: &str) -> PathBuf {
        let (a, b) = (hash.get(..2).unwrap_or("00"), hash.get(2..4).unwrap_or("00"));
        self.dir.join(a).join(b).join(format!("{hash}.zst"))
    }

    /// Stores `data` (durably) and returns its SHA-256.
    pub fn put(&self, data: &[u8]) -> io::Result<String> {
        let hash = sha256_hex(data);
        let path = self.path(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        let compressed = zstd::bulk::compress(data, 3)?;
        let tmp = parent.join(format!(".{hash}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(&compressed)?;
        file.sync_data()?;
        fs::rename(&tmp, &path)?;
        File::open(parent)?.sync_all()?;
        Ok(hash)
    }

    /// Stores without syncing: for bulk imports, which sync the whole
    /// filesystem once at the end of a batch ([`Blobs::sync`]).
    pub fn put_lazy(&self, data: &[u8]) -> io::Result<String> {
        let hash = sha256_hex(data);
        let path = self.path(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        let compressed = zstd::bulk::compress(data, 3)?;
        let tmp = parent.join(format!(".{hash}.tmp"));
        fs::write(&tmp, &compressed)?;
        fs::rename(&tmp, &path)?;
        Ok(hash)
    }

    /// Makes everything written with [`Blobs::put_lazy`] durable: one
    /// `syncfs` of the filesystem holding the blobs.
    pub fn sync(&self) -> io::Result<()> {
        let dir = File::open(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)
    }

    pub fn remove(&self, hash: &str) -> io::Result<()> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The stored bytes, checked against their name.
    pub fn get(&self, hash: &str) -> io::Result<Vec<u8>> {
        let compressed = fs::read(self.path(hash))?;
        let data = zstd::stream::decode_all(&compressed[..])?;
        if sha256_hex(&data) != hash {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("blob {hash} does not match its content")));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_addressed_compressed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let mail = "Subject: 見積書\r\n\r\n".repeat(200);
        let h = blobs.put(mail.as_bytes()).unwrap();
        assert_eq!(h, sha256_hex(mail.as_bytes()));
        assert_eq!(blobs.put(mail.as_bytes()).unwrap(), h, "stored once");
        assert!(fs::metadata(blobs.path(&h)).unwrap().len() < mail.len() as u64 / 4, "compressed");
        assert_eq!(blobs.get(&h).unwrap(), mail.as_bytes());
        // Another message's bytes under this name: detected.
        let other = zstd::bulk::compress(b"Subject: changed\r\n\r\n", 3).unwrap();
        fs::write(blobs.path(&h), other).unwrap();
        assert_eq!(blobs.get(&h).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
