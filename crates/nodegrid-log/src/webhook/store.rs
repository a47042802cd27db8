//! The `queue_dir` store-and-forward disk queue (LOGGING.md §2.4).
//!
//! One file per batch, holding the batch's NDJSON bytes Snappy-compressed (raw block format).
//! Name: `<seq>-<count>-<instance>.ndjson.snappy`; `seq` is a nanosecond timestamp made
//! strictly increasing per process, so sorting names replays oldest first; `instance` tells
//! which target object wrote the file (files of another instance, e.g. a previous process,
//! are adopted at start-up). Files are written atomically: temp name, fsync, rename, fsync
//! of the directory. At most `max_files` files and `max_bytes` bytes are kept.
//!
//! Permissions (LOGGING.md §2.4, §6): the directory gets mode `0770`; files get `0660`, set
//! explicitly so the umask does not change them. The spec gives `0770` for files too (the
//! reference passes the directory mode to its file writes); a data file has no use for the
//! execute bit, so ours keep the same owner and group access without it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const SUFFIX: &str = ".ndjson.snappy";
const TMP_PREFIX: &str = ".tmp-";

/// Mode of the queue directory.
pub(crate) const DIR_MODE: u32 = 0o770;
/// Mode of a stored file.
pub(crate) const FILE_MODE: u32 = 0o660;

/// A stored batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub(crate) path: PathBuf,
    pub(crate) count: u64,
    pub(crate) instance: String,
    /// Size on disk, bytes.
    pub(crate) size: u64,
}

/// Why a batch could not be stored.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutError {
    /// The queue is at its file or byte bound (the text names the bound, not the counts).
    Full(String),
    /// Any other failure (compression, I/O).
    Io(String),
}

/// Why a stored file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// I/O error (retry later).
    Io(String),
    /// Undecodable content: the file is deleted and its entries counted as failed.
    Corrupt(String),
}

/// The directory of one target.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    max_files: usize,
    max_bytes: u64,
    instance: String,
}

/// Sets the permission bits of `path` exactly (the umask does not apply).
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

fn next_seq() -> u64 {
    seq_after(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    )
}

/// The next sequence number given the clock reading `now`: `now`, or one more than the last
/// number handed out if the clock has not moved past it (same nanosecond, clock stepped back).
fn seq_after(now: u64) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

impl Store {
    /// Opens (creating, mode 0770) `<queue_dir>/nodegrid-http-<target>` and checks that it is
    /// writable. An error here is a configuration error: the target is not registered.
    pub(crate) fn open(
        queue_dir: &Path,
        target: &str,
        max_files: usize,
        max_bytes: u64,
    ) -> Result<Store, String> {
        let dir = queue_dir.join(format!("nodegrid-http-{target}"));
        fs::create_dir_all(&dir).map_err(|e| format!("queue_dir {}: {e}", dir.display()))?;
        // A directory owned by someone else may refuse the change; it is usable if writable.
        let _ = set_mode(&dir, DIR_MODE);
        let instance = format!("{:x}", next_seq());
        let probe = dir.join(format!("{TMP_PREFIX}probe-{instance}"));
        fs::write(&probe, b"").map_err(|e| format!("queue_dir {}: {e}", dir.display()))?;
        let _ = fs::remove_file(&probe);
        // Leftovers of an interrupted write are incomplete by definition.
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Store {
            dir,
            max_files,
            max_bytes,
            instance,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Stored batches, oldest first.
    pub(crate) fn list(&self) -> Result<Vec<StoredFile>, String> {
        let rd = fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let mut out: Vec<(u64, StoredFile)> = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let Some(stem) = name.strip_suffix(SUFFIX) else {
                continue;
            };
            let mut parts = stem.splitn(3, '-');
            let seq = parts.next().and_then(|s| s.parse::<u64>().ok());
            let count = parts.next().and_then(|s| s.parse::<u64>().ok());
            let instance = parts.next().unwrap_or_default().to_string();
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            match (seq, count) {
                (Some(seq), Some(count)) => out.push((
                    seq,
                    StoredFile {
                        path: e.path(),
                        count,
                        instance,
                        size,
                    },
                )),
                // A file we did not write: counted as one corrupt entry when replayed.
                _ => out.push((
                    u64::MAX,
                    StoredFile {
                        path: e.path(),
                        count: 1,
                        instance: String::new(),
                        size,
                    },
                )),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        Ok(out.into_iter().map(|(_, f)| f).collect())
    }

    /// Writes one batch atomically. Fails with [`PutError::Full`] when `max_files` files are
    /// stored already, or when the new file would take the directory over `max_bytes`.
    pub(crate) fn put(&self, body: &[u8], count: u64) -> Result<StoredFile, PutError> {
        let io = |e: std::io::Error| {
            PutError::Io(format!(
                "cannot write to the disk queue {}: {e}",
                self.dir.display()
            ))
        };
        let (mut files, mut bytes) = (0usize, 0u64);
        for e in fs::read_dir(&self.dir).map_err(io)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(SUFFIX) {
                files += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        if files >= self.max_files {
            return Err(PutError::Full(format!(
                "disk queue {} is full: it holds its limit of {} files (queue_size)",
                self.dir.display(),
                self.max_files
            )));
        }
        let packed = snap::raw::Encoder::new()
            .compress_vec(body)
            .map_err(|e| PutError::Io(format!("compress: {e}")))?;
        let size = packed.len() as u64;
        if bytes.saturating_add(size) > self.max_bytes {
            return Err(PutError::Full(format!(
                "disk queue {} is full: a batch would take it over its limit of {} bytes \
                 (queue_dir_max_bytes)",
                self.dir.display(),
                self.max_bytes
            )));
        }
        let name = format!("{:020}-{count}-{}{SUFFIX}", next_seq(), self.instance);
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let path = self.dir.join(&name);
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            set_mode(&tmp, FILE_MODE)?;
            f.write_all(&packed)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(e)
        })?;
        Ok(StoredFile {
            path,
            count,
            instance: self.instance.clone(),
            size,
        })
    }

    /// Reads and decompresses a stored batch.
    pub(crate) fn read(&self, f: &StoredFile) -> Result<Vec<u8>, ReadError> {
        let raw =
            fs::read(&f.path).map_err(|e| ReadError::Io(format!("{}: {e}", self.dir.display())))?;
        snap::raw::Decoder::new()
            .decompress_vec(&raw)
            .map_err(|e| ReadError::Corrupt(e.to_string()))
    }

    /// Deletes a stored batch.
    pub(crate) fn remove(&self, f: &StoredFile) -> Result<(), String> {
        match fs::remove_file(&f.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!(
                "cannot delete a file in {}: {e}",
                self.dir.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_read_oldest_first_and_limit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Store::open(tmp.path(), "audit-_", 2, u64::MAX).expect("open");
        let a = s.put(b"{\"a\":1}\n", 1).expect("put a");
        let b = s.put(b"{\"b\":1}\n{\"b\":2}\n", 2).expect("put b");
        assert!(
            matches!(s.put(b"x\n", 1), Err(PutError::Full(_))),
            "limit of 2 files"
        );
        let l = s.list().expect("list");
        assert_eq!(l, vec![a.clone(), b.clone()]);
        assert_eq!(
            s.read(&b).ok().as_deref(),
            Some(&b"{\"b\":1}\n{\"b\":2}\n"[..])
        );
        s.remove(&a).expect("remove");
        assert_eq!(s.list().expect("list"), vec![b]);
        // A second store on the same directory (a restart) sees the files.
        let s2 = Store::open(tmp.path(), "audit-_", 2, u64::MAX).expect("reopen");
        assert_eq!(s2.list().expect("list").len(), 1);
        assert_ne!(s2.instance(), s.instance());
    }

    #[test]
    fn sequence_numbers_increase_even_when_the_clock_does_not() {
        let a = next_seq();
        // Clock readings at or before the last number handed out: still strictly more each
        // time (other tests may take numbers meanwhile, so only the order is checked).
        let b = seq_after(a);
        let c = seq_after(0);
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn removing_a_file_that_is_gone_is_fine_other_errors_are_not() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Store::open(tmp.path(), "t", 10, u64::MAX).expect("open");
        let f = s.put(b"line\n", 1).expect("put");
        s.remove(&f).expect("remove");
        assert!(!f.path.exists());
        assert_eq!(s.remove(&f), Ok(()), "already gone");
        // A path that cannot be removed as a file (a directory).
        let sub = s.dir().join("sub.ndjson.snappy");
        fs::create_dir(&sub).expect("mkdir");
        let d = StoredFile { path: sub, ..f };
        let e = s
            .remove(&d)
            .expect_err("a directory is not removed as a file");
        assert!(
            e.starts_with(&format!("cannot delete a file in {}: ", s.dir().display())),
            "{e}"
        );
    }

    #[test]
    fn corrupt_file_is_reported_as_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Store::open(tmp.path(), "t", 10, u64::MAX).expect("open");
        let f = s.put(b"line\n", 1).expect("put");
        fs::write(&f.path, b"not snappy at all \xff\xff").expect("overwrite");
        assert!(matches!(s.read(&f), Err(ReadError::Corrupt(_))));
    }

    #[test]
    fn unwritable_dir_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("plain-file");
        fs::write(&file, b"").expect("file");
        assert!(Store::open(&file, "t", 10, u64::MAX).is_err());
    }

    #[test]
    fn byte_bound_refuses_a_batch_that_does_not_fit() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let body = b"{\"entry\":\"0123456789\"}\n".repeat(4);
        let probe = Store::open(tmp.path(), "probe", 10, u64::MAX).expect("open");
        let one = probe.put(&body, 4).expect("put").size;
        let s = Store::open(tmp.path(), "t", 10, 2 * one + one / 2).expect("open");
        let a = s.put(&body, 4).expect("first fits");
        s.put(&body, 4).expect("second fits");
        let e = s.put(&body, 4).expect_err("third would exceed the bound");
        assert!(
            matches!(&e, PutError::Full(t) if t.contains("queue_dir_max_bytes")),
            "{e:?}"
        );
        assert_eq!(s.list().expect("list").len(), 2);
        s.remove(&a).expect("remove");
        s.put(&body, 4).expect("fits again once a file is gone");
    }

    #[cfg(unix)]
    #[test]
    fn directory_and_files_get_the_spec_modes_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Store::open(tmp.path(), "t", 10, u64::MAX).expect("open");
        let f = s.put(b"x\n", 1).expect("put");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(s.dir()), 0o770);
        assert_eq!(mode(&f.path), 0o660);
    }
}
