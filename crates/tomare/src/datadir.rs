//! The data directory holds held mail, the archive and password hashes:
//! readable by tomare's user only. `main` sets the umask to 077, so every
//! file and directory any stage creates (SQLite's, tantivy's, the packs,
//! the sandbox) is 0600 / 0700 whatever umask tomare was started with; at
//! start, `serve` also tightens whatever an older version or an admin left
//! open. And it measures the free space the SMTP listener checks before
//! it takes more mail.

use anyhow::{Context, Result};
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tomare_config::Reserve;
use tomare_model::Metrics;

/// Creates `dir` (and its parents) as 0700 when it is missing.
pub fn create(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// An error saying where the data directory was looked for, and how to
/// point at another, unless it exists (with its database).
pub fn require(dir: &Path) -> Result<()> {
    if dir.join("tomare.db").exists() {
        return Ok(());
    }
    let lang = tomare_model::i18n::Lang::from_env();
    let shown = std::fs::canonicalize(dir.parent().unwrap_or(Path::new("."))).map_or_else(
        |_| dir.display().to_string(),
        |parent| parent.join(dir.file_name().unwrap_or_default()).display().to_string(),
    );
    anyhow::bail!(tomare_model::i18n::t(lang, "cli.no_data_dir", &[&shown]))
}

/// What [`tighten`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// The data directory's own mode before, when it was changed.
    pub top: Option<u32>,
    /// Files and directories below it that were changed.
    pub below: usize,
}

/// Takes group and other permissions off `dir` and everything below it
/// (symbolic links are not followed).
pub fn tighten(dir: &Path) -> std::io::Result<Tightened> {
    let mut t = Tightened::default();
    // The directory itself may be a link (to a bigger disk): its target counts.
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7700))?;
        t.top = Some(mode & 0o7777);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode & 0o7700))?;
                t.below += 1;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(t)
}

/// Free and total bytes of the file system holding `dir`.
pub fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `s` a statvfs to fill in.
    if unsafe { libc::statvfs(path.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = s.f_frsize as u64;
    Ok((s.f_bavail as u64 * block, s.f_blocks as u64 * block))
}

/// Measures the data disk now and then every second, into `metrics.health`.
pub fn watch_space(dir: &Path, reserve: Reserve, metrics: Arc<Metrics>) {
    let measure = {
        let dir = dir.to_path_buf();
        move |metrics: &Metrics| match space(&dir) {
            Ok((free, total)) => {
                let h = &metrics.health;
                h.disk_free.store(free, Relaxed);
                h.disk_reserve.store(reserve.bytes(total), Relaxed);
                h.disk_known.store(true, Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "could not measure free space on the data disk"),
        }
    };
    measure(&metrics);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            measure(&metrics);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighten_takes_group_and_other_bits_off_everything() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("data");
        fs::create_dir_all(top.join("spool")).unwrap();
        fs::write(top.join("tomare.db"), b"x").unwrap();
        fs::write(top.join("spool/a.eml"), b"x").unwrap();
        for (p, m) in [("", 0o755), ("spool", 0o775), ("tomare.db", 0o644), ("spool/a.eml", 0o604)] {
            fs::set_permissions(top.join(p), fs::Permissions::from_mode(m)).unwrap();
        }
        let t = tighten(&top).unwrap();
        assert_eq!(t, Tightened { top: Some(0o755), below: 3 });
        for (p, m) in [("", 0o700), ("spool", 0o700), ("tomare.db", 0o600), ("spool/a.eml", 0o600)] {
            let mode = fs::metadata(top.join(p)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, m, "{p}");
        }
        assert_eq!(tighten(&top).unwrap(), Tightened::default(), "nothing left to do");
    }

    #[test]
    fn space_is_measured() {
        let (free, total) = space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
    }
}
