//! The `queue_dir` store-and-forward disk queue (LOGGING.md §2.4).
//!
//! One file per batch, holding the batch's NDJSON bytes Snappy-compressed (raw block format).
//! Name: `<seq>-<count>-<instance>.ndjson.snappy`; `seq` is a nanosecond timestamp made
//! strictly increasing per process, so sorting names replays oldest first; `instance` tells
//! which target object wrote the file (files of another instance, e.g. a previous process,
//! are adopted at start-up). Files are written atomically: temp name, fsync, rename, fsync
//! of the directory. At most `limit` files are kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const SUFFIX: &str = ".ndjson.snappy";
const TMP_PREFIX: &str = ".tmp-";

/// A stored batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub(crate) path: PathBuf,
    pub(crate) count: u64,
    pub(crate) instance: String,
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
    limit: usize,
    instance: String,
}

fn next_seq() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
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
    pub(crate) fn open(queue_dir: &Path, target: &str, limit: usize) -> Result<Store, String> {
        let dir = queue_dir.join(format!("nodegrid-http-{target}"));
        fs::create_dir_all(&dir).map_err(|e| format!("queue_dir {}: {e}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o770));
        }
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
            limit,
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
            match (seq, count) {
                (Some(seq), Some(count)) => out.push((
                    seq,
                    StoredFile {
                        path: e.path(),
                        count,
                        instance,
                    },
                )),
                // A file we did not write: counted as one corrupt entry when replayed.
                _ => out.push((
                    u64::MAX,
                    StoredFile {
                        path: e.path(),
                        count: 1,
                        instance: String::new(),
                    },
                )),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        Ok(out.into_iter().map(|(_, f)| f).collect())
    }

    /// Writes one batch atomically. Fails when `limit` files are already stored.
    pub(crate) fn put(&self, body: &[u8], count: u64) -> Result<StoredFile, String> {
        let n = fs::read_dir(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .count();
        if n >= self.limit {
            return Err(format!(
                "disk queue {}: store limit of {} files reached",
                self.dir.display(),
                self.limit
            ));
        }
        let packed = snap::raw::Encoder::new()
            .compress_vec(body)
            .map_err(|e| format!("compress: {e}"))?;
        let name = format!("{:020}-{count}-{}{SUFFIX}", next_seq(), self.instance);
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let path = self.dir.join(&name);
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&packed)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot write to the disk queue {}: {e}", self.dir.display())
        })?;
        Ok(StoredFile {
            path,
            count,
            instance: self.instance.clone(),
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
        let s = Store::open(tmp.path(), "audit-_", 2).expect("open");
        let a = s.put(b"{\"a\":1}\n", 1).expect("put a");
        let b = s.put(b"{\"b\":1}\n{\"b\":2}\n", 2).expect("put b");
        assert!(s.put(b"x\n", 1).is_err(), "limit of 2 files");
        let l = s.list().expect("list");
        assert_eq!(l, vec![a.clone(), b.clone()]);
        assert_eq!(
            s.read(&b).ok().as_deref(),
            Some(&b"{\"b\":1}\n{\"b\":2}\n"[..])
        );
        s.remove(&a).expect("remove");
        assert_eq!(s.list().expect("list"), vec![b]);
        // A second store on the same directory (a restart) sees the files.
        let s2 = Store::open(tmp.path(), "audit-_", 2).expect("reopen");
        assert_eq!(s2.list().expect("list").len(), 1);
        assert_ne!(s2.instance(), s.instance());
    }

    #[test]
    fn corrupt_file_is_reported_as_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = Store::open(tmp.path(), "t", 10).expect("open");
        let f = s.put(b"line\n", 1).expect("put");
        fs::write(&f.path, b"not snappy at all \xff\xff").expect("overwrite");
        assert!(matches!(s.read(&f), Err(ReadError::Corrupt(_))));
    }

    #[test]
    fn unwritable_dir_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("plain-file");
        fs::write(&file, b"").expect("file");
        assert!(Store::open(&file, "t", 10).is_err());
    }
}
