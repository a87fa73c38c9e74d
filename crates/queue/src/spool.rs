//! Raw messages as files under `data_dir/spool/`, one per message, named by
//! id. A file is complete only once it is fsynced and its directory entry is
//! fsynced; a file without a database record is an orphan (its sender never
//! got a 250) and is removed at start.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tomare_model::MessageId;

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let dir = data_dir.join("spool");
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        Ok(Spool { dir })
    }

    /// The spool of `data_dir`, without creating anything (for the CLI).
    pub fn at(data_dir: &Path) -> Spool {
        Spool { dir: data_dir.join("spool") }
    }

    pub fn path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Writes and fdatasyncs one message. Blocking: call from a blocking thread.
    pub fn write_durable(&self, id: &MessageId, data: &[u8]) -> io::Result<()> {
        let mut file = self.create(id)?;
        file.write_all(data)?;
        file.sync_data()
    }

    /// A new spool file for `id`, readable by tomare's user only.
    pub fn create(&self, id: &MessageId) -> io::Result<File> {
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(self.path(id))
    }

    /// Makes the directory entries of files written so far durable.
    pub fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// The message as the rules rewrote it (Bcc conversion, added headers).
    pub fn out_path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(format!("{id}.out.eml"))
    }

    pub fn read(&self, id: &MessageId) -> io::Result<Vec<u8>> {
        fs::read(self.path(id))
    }

    /// The first `max` bytes of the message (its header block, for a DSN).
    pub fn read_head(&self, id: &MessageId, max: usize) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut head = Vec::with_capacity(max.min(64 * 1024));
        File::open(self.path(id))?.take(max as u64).read_to_end(&mut head)?;
        Ok(head)
    }

    /// What goes out: the rewritten message when there is one.
    pub fn read_for_delivery(&self, id: &MessageId) -> io::Result<Vec<u8>> {
        match fs::read(self.out_path(id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.read(id),
            other => other,
        }
    }

    /// The file that goes out: the rewritten copy when there is one.
    pub fn path_for_delivery(&self, id: &MessageId) -> PathBuf {
        let out = self.out_path(id);
        if out.exists() { out } else { self.path(id) }
    }

    /// Writes (or rewrites, after a restart) the rewritten message, synced.
    pub fn write_out(&self, id: &MessageId, data: &[u8]) -> io::Result<()> {
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(self.out_path(id))?;
        file.write_all(data)?;
        file.sync_data()
    }

    pub fn remove(&self, id: &MessageId) {
        for path in [self.path(id), self.out_path(id)] {
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(%id, error = %e, "could not remove spool file");
            }
        }
    }

    /// Removes files that belong to no live message. Returns how many.
    pub fn remove_orphans(&self, live: &HashSet<MessageId>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // ID.eml, and ID.out.eml (the rewritten copy) beside it.
            let stem = name.strip_suffix(".out.eml").or_else(|| name.strip_suffix(".eml"));
            let live_file = stem.and_then(MessageId::parse).is_some_and(|id| live.contains(&id));
            if !live_file {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphans_go_and_live_messages_keep_both_copies() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let (live, dead) = (MessageId::generate(1), MessageId::generate(2));
        for id in [&live, &dead] {
            spool.write_durable(id, b"original").unwrap();
            spool.write_out(id, b"rewritten").unwrap();
        }
        let removed = spool.remove_orphans(&HashSet::from([live.clone()])).unwrap();
        assert_eq!(removed, 2);
        assert_eq!(spool.read_for_delivery(&live).unwrap(), b"rewritten", "a restart keeps the rewritten copy");
        assert!(spool.read(&dead).is_err());
    }
}
