//! Protected files at rest: AES-256-GCM under a key of the data directory
//! (`protect.key`, 32 random bytes, 0600), one file per attachment in
//! `protect/<message id>/<n>`. Each file is bound to its place (the
//! message id and index are the associated data), so one cannot be swapped
//! for another.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tomare_model::MessageId;

pub struct Vault {
    dir: PathBuf,
    key: LessSafeKey,
}

impl Vault {
    /// The vault of `data_dir`, its key made on first use.
    pub fn open(data_dir: &Path) -> io::Result<Vault> {
        let key_path = data_dir.join("protect.key");
        let key = match fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => return Err(io::Error::other(format!("{} is not a 32-byte key", key_path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| io::Error::other(e.to_string()))?;
                let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_path)?;
                f.write_all(&k)?;
                f.sync_all()?;
                k
            }
            Err(e) => return Err(e),
        };
        let dir = data_dir.join("protect");
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| io::Error::other("bad key"))?);
        Ok(Vault { dir, key })
    }

    /// `plain` encrypted for `place`: a random nonce, then the ciphertext
    /// and its tag.
    pub fn seal(&self, place: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The OS's random source does not fail on Linux once booted.
        let _ = getrandom::fill(&mut nonce);
        let mut data = plain.to_vec();
        // Only fails for inputs beyond 64 GiB.
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(place.as_bytes()),
            &mut data,
        );
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// What [`Vault::seal`] sealed for `place`; None when it was sealed for
    /// another place, with another key, or changed.
    pub fn unseal(&self, place: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(place.as_bytes()), &mut data).ok()?;
        Some(plain.to_vec())
    }

    fn file_path(&self, id: &MessageId, idx: u32) -> PathBuf {
        self.dir.join(id.as_str()).join(idx.to_string())
    }

    /// Keeps a message's files (written again after a restart's review).
    pub fn put(&self, id: &MessageId, files: &[&[u8]]) -> io::Result<()> {
        let dir = self.dir.join(id.as_str());
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        for (idx, data) in files.iter().enumerate() {
            let sealed = self.seal(&format!("{id}/{idx}"), data);
            let tmp = dir.join(format!("{idx}.tmp"));
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&sealed)?;
            f.sync_data()?;
            fs::rename(&tmp, self.file_path(id, idx as u32))?;
        }
        Ok(())
    }

    /// File `idx` of a message, decrypted; an error when it is gone or
    /// does not decrypt.
    pub fn get(&self, id: &MessageId, idx: u32) -> io::Result<Vec<u8>> {
        let sealed = fs::read(self.file_path(id, idx))?;
        self.unseal(&format!("{id}/{idx}"), &sealed)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the file does not decrypt"))
    }

    /// A message's files go (expired, revoked, never sent).
    pub fn remove(&self, id: &MessageId) -> io::Result<()> {
        match fs::remove_dir_all(self.dir.join(id.as_str())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The messages whose files were put here longer than `age` ago (a
    /// message still in review has files before its link is recorded).
    pub fn older_than(&self, age: std::time::Duration) -> Vec<MessageId> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|d| d >= age)))
            .filter_map(|e| MessageId::parse(&e.file_name().to_string_lossy()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_encrypted_bound_to_their_place_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let id = MessageId::generate(1);
        vault.put(&id, &["secret plan 社外秘".as_bytes(), b"second"]).unwrap();
        assert_eq!(vault.older_than(std::time::Duration::ZERO), std::slice::from_ref(&id));
        assert!(vault.older_than(std::time::Duration::from_secs(3600)).is_empty(), "just put");
        let on_disk = fs::read(dir.path().join("protect").join(id.as_str()).join("0")).unwrap();
        assert!(!on_disk.windows(6).any(|w| w == b"secret"), "stored encrypted");
        assert_eq!(vault.get(&id, 0).unwrap(), "secret plan 社外秘".as_bytes());
        // Swapped files do not open.
        let other = fs::read(dir.path().join("protect").join(id.as_str()).join("1")).unwrap();
        assert!(vault.unseal(&format!("{id}/0"), &other).is_none());
        let mode = fs::metadata(dir.path().join("protect.key")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        // The same key next time.
        let again = Vault::open(dir.path()).unwrap();
        assert_eq!(again.get(&id, 1).unwrap(), b"second");
        again.remove(&id).unwrap();
        assert!(again.get(&id, 0).is_err());
        assert!(again.older_than(std::time::Duration::ZERO).is_empty());
    }
}
