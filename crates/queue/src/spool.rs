//! Raw messages as files under `data_dir/spool/`, one per message, named by
//! id. A file is complete only once it is fsynced and its directory entry is
//! fsynced; a file without a database record is an orphan (its sender never
//! got a 250) and is removed at start.
//!
//! Files are recycled: a removed message's file is renamed into
//! `spool/free/` (up to [`FREE_FILES`]) and the next message is written
//! over it. Creating and unlinking a file per message made ext4 search its
//! inode bitmap past every recently deleted inode, which under load cost
//! the accept path more than the rest of a message's filing (perf on
//! bench/relay.sh). A file is emptied before it goes into `free/` (no
//! message's bytes wait there), so the next message fills it from nothing
//! (cut only should it somehow be longer); it keeps the 0600 it was made
//! with.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tomare_model::MessageId;

/// How many removed files wait in `spool/free/` to be written over.
pub const FREE_FILES: usize = 512;

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    free: Arc<Free>,
}

#[derive(Debug, Default)]
struct Free {
    /// Files in `spool/free/` ready to be written over; None: no recycling
    /// (the CLI's spool, or `free/` could not be made).
    files: Mutex<Option<Vec<PathBuf>>>,
    next: AtomicU64,
}

impl Spool {
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let dir = data_dir.join("spool");
        DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let free_dir = dir.join("free");
        DirBuilder::new().recursive(true).mode(0o700).create(&free_dir)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(&free_dir)? {
            let path = entry?.path();
            // Emptying before a power loss may not have reached the disk.
            if files.len() < FREE_FILES && OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(0)).is_ok()
            {
                files.push(path);
            } else {
                fs::remove_file(&path)?;
            }
        }
        // Names this run gives are new: a rename never lands on a file
        // still waiting (a restarted container is often pid 1 again).
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let free = Free { files: Mutex::new(Some(files)), next: AtomicU64::new(start) };
        Ok(Spool { dir, free: Arc::new(free) })
    }

    /// The spool of `data_dir`, without creating anything (for the CLI).
    pub fn at(data_dir: &Path) -> Spool {
        Spool { dir: data_dir.join("spool"), free: Arc::default() }
    }

    /// A file from `free/`, renamed to `path`, when there is one.
    fn recycled(&self, path: &Path) -> Option<File> {
        let old = self.free.files.lock().ok()?.as_mut()?.pop()?;
        fs::rename(&old, path).ok()?;
        match OpenOptions::new().write(true).open(path) {
            Ok(f) => Some(f),
            Err(_) => {
                // Out of the way, so a new file can take the name.
                let _ = fs::remove_file(path);
                None
            }
        }
    }

    /// Keeps `path` for a next message instead of unlinking it, while
    /// `free/` has room. The file work is done outside the lock, which
    /// accepting messages take too.
    fn recycle(&self, path: &Path) -> bool {
        fn with_room(files: &mut Option<Vec<PathBuf>>) -> Option<&mut Vec<PathBuf>> {
            files.as_mut().filter(|f| f.len() < FREE_FILES)
        }
        if !self.free.files.lock().is_ok_and(|mut g| with_room(&mut g).is_some()) {
            return false;
        }
        // Emptied first: a delivered (or purged) message's bytes do not
        // wait in free/ for the next one. The inode is what is reused.
        if OpenOptions::new().write(true).truncate(true).open(path).is_err() {
            return false;
        }
        let n = self.free.next.fetch_add(1, Ordering::Relaxed);
        let to = self.dir.join("free").join(format!("{n:x}"));
        if fs::rename(path, &to).is_err() {
            return false;
        }
        let mut guard = self.free.files.lock();
        match guard.as_mut().ok().and_then(|g| with_room(g)) {
            Some(files) => files.push(to),
            // Filled up meanwhile: the emptied file goes after all.
            None => {
                let _ = fs::remove_file(&to);
            }
        }
        true
    }

    pub fn path(&self, id: &MessageId) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Writes and fdatasyncs one message (over a recycled file when there
    /// is one). Blocking: call from a blocking thread.
    pub fn write_durable(&self, id: &MessageId, data: &[u8]) -> io::Result<()> {
        let path = self.path(id);
        let mut file = match self.recycled(&path) {
            Some(f) => f,
            None => self.create(id)?,
        };
        file.write_all(data)?;
        // A recycled file was emptied when it was freed; should it still be
        // longer, it is cut to this message (an fstat costs less than a
        // truncate, which is journalled).
        if file.metadata()?.len() > data.len() as u64 {
            file.set_len(data.len() as u64)?;
        }
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

    /// A copy of the message for some of its recipients: `Plain` is the
    /// rewritten copy ([`Spool::out_path`]).
    pub fn copy_path(&self, id: &MessageId, copy: Copy) -> PathBuf {
        match copy {
            Copy::Plain => self.out_path(id),
            Copy::Link => self.dir.join(format!("{id}.link.eml")),
            Copy::Zip => self.dir.join(format!("{id}.zip.eml")),
        }
    }

    /// Which protected copies a message has: (link, zip).
    pub fn copies(&self, id: &MessageId) -> (bool, bool) {
        (self.copy_path(id, Copy::Link).exists(), self.copy_path(id, Copy::Zip).exists())
    }

    /// The file `copy` is sent from: that copy, else the rewritten one,
    /// else the message as received.
    pub fn path_of_copy(&self, id: &MessageId, copy: Copy) -> PathBuf {
        let p = self.copy_path(id, copy);
        if copy != Copy::Plain && p.exists() { p } else { self.path_for_delivery(id) }
    }

    /// Writes a copy (synced).
    pub fn write_copy(&self, id: &MessageId, copy: Copy, data: &[u8]) -> io::Result<()> {
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(self.copy_path(id, copy))?;
        file.write_all(data)?;
        file.sync_data()
    }

    fn extra_paths(&self, id: &MessageId) -> [PathBuf; 3] {
        [self.out_path(id), self.copy_path(id, Copy::Link), self.copy_path(id, Copy::Zip)]
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

    /// Unlinks a message's files without recycling them: for a file some
    /// handle may still write to (a transfer cut off mid-write).
    pub fn discard(&self, id: &MessageId) {
        let _ = fs::remove_file(self.path(id));
        for path in self.extra_paths(id) {
            let _ = fs::remove_file(path);
        }
    }

    /// A final message's files go: recycled when `free/` has room. Only for
    /// files nothing holds open any more.
    pub fn remove(&self, id: &MessageId) {
        let original = self.path(id);
        let recycled = self.recycle(&original);
        for path in self.extra_paths(id).into_iter().chain((!recycled).then_some(original)) {
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
            if entry.file_type()?.is_dir() {
                continue; // free/
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // ID.eml, and ID.out.eml (the rewritten copy), ID.link.eml and
            // ID.zip.eml (the protected copies) beside it.
            let stem = [".out.eml", ".link.eml", ".zip.eml", ".eml"].iter().find_map(|s| name.strip_suffix(s));
            let live_file = stem.and_then(MessageId::parse).is_some_and(|id| live.contains(&id));
            if !live_file {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Which copy of a message a recipient gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Copy {
    /// As the rules rewrote it (or as received).
    Plain,
    /// Its files replaced by a download link.
    Link,
    /// Its files packed into an AES-256 zip.
    Zip,
}

/// The copy `rcpt` gets of a message with a link copy (`link`) and a zip
/// copy (`zip`): inside the org the plain one; outside the zip for
/// `[protect] zip_domains` (and for everyone when there is no link copy),
/// else the link.
pub fn copy_for(config: &tomare_config::Config, rcpt: &tomare_model::Address, link: bool, zip: bool) -> Copy {
    if rcpt.is_internal(&config.org.internal_domains) {
        Copy::Plain
    } else if zip && (!link || tomare_model::is_internal_domain(rcpt.domain(), &config.protect.zip_domains)) {
        Copy::Zip
    } else if link {
        Copy::Link
    } else {
        Copy::Plain
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

    #[test]
    fn a_removed_file_is_written_over_and_keeps_nothing_of_the_message_before() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let first = MessageId::generate(1);
        spool.write_durable(&first, &b"x".repeat(10_000)).unwrap();
        let inode = fs::metadata(spool.path(&first)).unwrap().ino();
        spool.remove(&first);
        assert!(spool.read(&first).is_err(), "gone under its name");
        let waiting: Vec<_> = fs::read_dir(dir.path().join("spool/free")).unwrap().flatten().collect();
        assert_eq!(waiting.len(), 1);
        assert_eq!(fs::metadata(waiting[0].path()).unwrap().len(), 0, "nothing of the message waits in free/");
        let second = MessageId::generate(2);
        spool.write_durable(&second, b"short message").unwrap();
        let meta = fs::metadata(spool.path(&second)).unwrap();
        assert_eq!(meta.ino(), inode, "the same file, recycled");
        assert_eq!(spool.read(&second).unwrap(), b"short message", "cut to its length");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // free/ is no orphan, and what waits in it survives a restart.
        spool.remove(&second);
        assert_eq!(spool.remove_orphans(&HashSet::new()).unwrap(), 0);
        let again = Spool::open(dir.path()).unwrap();
        let third = MessageId::generate(3);
        again.write_durable(&third, b"third").unwrap();
        assert_eq!(fs::metadata(again.path(&third)).unwrap().ino(), inode);
        // Past FREE_FILES, removing unlinks.
        let ids: Vec<MessageId> = (10..10 + FREE_FILES as i64 + 5).map(MessageId::generate).collect();
        for id in &ids {
            again.write_durable(id, b"m").unwrap();
        }
        for id in &ids {
            again.remove(id);
        }
        assert_eq!(fs::read_dir(dir.path().join("spool/free")).unwrap().count(), FREE_FILES);
    }
}
