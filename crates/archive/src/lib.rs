//! The archive: every message kept as evidence, searchable in Japanese,
//! tamper-evident.
//!
//! - [`blobs`]: the messages, zstd-compressed, named by their SHA-256, in
//!   pack files whose places `archive.db` keeps.
//! - Records (in `archive.db`, see `tomare_store::ArchiveRecord`): per
//!   message a `received` record (original bytes, envelope, Facts, verdict)
//!   and a `final` record (the bytes as delivered, state, delivery results,
//!   history); `imported` for mail brought in; `purge` when retention
//!   removed some. Each is hashed onto the one before ([`chain`]) and the
//!   head is signed with Ed25519 after each round.
//! - [`index`]: tantivy over addresses (Bcc too), subject, body, attachment
//!   names and text, date, size, state and rules, with the [`tokenizer`]'s
//!   positioned CJK bigrams; [`query`] is the search language.
//! - [`ops`]: import, reindex, verify, export and retention over a store.

pub mod blobs;
pub mod chain;
pub mod index;
pub mod meta;
pub mod ops;
pub mod query;
pub mod tokenizer;

use ed25519_dalek::SigningKey;
use std::io;
use std::path::Path;

pub use blobs::Blobs;
pub use index::{DocInput, Hit, SearchIndex};

/// The archive's files in the data directory: `blobs/`, `index/` and the
/// signing key `archive.key`.
pub struct Archive {
    pub blobs: Blobs,
    pub index: SearchIndex,
    pub key: SigningKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Index(#[from] index::IndexError),
    #[error("{0}")]
    Store(#[from] tomare_store::StoreError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

impl Archive {
    pub fn open(data_dir: &Path) -> Result<Archive> {
        std::fs::create_dir_all(data_dir)?;
        Ok(Archive {
            blobs: Blobs::open(data_dir)?,
            index: SearchIndex::open(&data_dir.join("index"))?,
            key: load_key(&data_dir.join("archive.key"))?,
        })
    }
}

/// The checkpoint signing key, created (mode 0600) on first use.
fn load_key(path: &Path) -> Result<SigningKey> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: Option<[u8; 32]> = (0..64)
                .step_by(2)
                .map(|i| text.trim().get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .and_then(|v| v.try_into().ok());
            bytes
                .map(|b| SigningKey::from_bytes(&b))
                .ok_or_else(|| ArchiveError::Other(format!("{} is not an archive key", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = chain::new_key();
            let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
            let tmp = path.with_extension("key.tmp");
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())?;
            f.sync_all()?;
            // Another process may have made one meanwhile: theirs wins.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    Ok(key)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&tmp);
                    load_key(path)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
