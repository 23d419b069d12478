//! The download cache (`KILN_CACHE_DIR`, else `PACKER_CACHE_DIR`, else `packer_cache` in the
//! working directory) and what `kiln cache list|import|prune` do with it.
//!
//! **Entry names are Packer's**, so a cache directory shared with Packer 1.6 is reused, never
//! corrupted: an input with a checksum lives at `sha1("<type>:<lower-case hex>").<extension>` —
//! the checksum as Packer 1.6.6 normalises it (a bare hex value gets its type from its length, a
//! `file:` list is resolved to the digest it gives, upper case is lowered), so the name is a pure
//! function of the content — and an input with `iso_checksum = "none"` at `sha1(url).<extension>`.
//! (Packer 1.6.6 was run against a local server to confirm each of these.) Sharing is safe because:
//! - both lock `<entry>.lock` with `flock(2)` (Packer through gofrs/flock) before touching an
//!   entry, so kiln and Packer never write one at the same time;
//! - kiln downloads to `<entry>.part`, a name Packer never reads, verifies, and only then renames it
//!   into place: an interrupted or wrong download never looks like an entry;
//! - kiln verifies an existing entry before every use (Packer writes to the final name as it
//!   downloads, so an interrupted Packer run can leave a partial entry; kiln fetches it again);
//! - kiln's own bookkeeping is a `<entry>.kiln` note (checksum and origin, for `kiln cache list`;
//!   the server's validators and the size, see [`Note`]), a name Packer ignores.
//!
//! An entry's modification time is its last use by kiln (kiln touches it), which is what
//! `kiln cache prune --older-than` goes by. Entries with checksum `none` cannot be verified by
//! their content, so their note records what the server said about the file (`ETag`,
//! `Last-Modified`, size): a `.part` is only resumed against the same version, and an entry is
//! only reused while its size matches and (when online) the server still describes it so.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha1::{Digest, Sha1};

use super::checksum::{copy_hashing, Algorithm, Checksum, ChecksumError, CopyError};
use crate::ui::progress::Reporter;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A held lock on one cache entry; released on drop.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

/// One cached input, as `kiln cache list` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub size: u64,
    /// Last written or used by kiln.
    pub modified: SystemTime,
    /// `sha256:…` from kiln's note; `None` for entries Packer made.
    pub checksum: Option<String>,
    /// Where it came from (a URL, or the file it was imported from).
    pub origin: Option<String>,
}

/// Kiln's `<entry>.kiln` note: one `key value` line each. It is written when a download starts
/// (so a later build resumes the `.part` only against the same version of the file) and again,
/// before the rename, when the entry is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// `sha256:…`; `None` for an unverified (`iso_checksum = "none"`) input.
    pub checksum: Option<String>,
    /// The URL, or `imported from <file>`.
    pub origin: Option<String>,
    pub validators: Validators,
}

/// What an HTTP server said identifies one version of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// A strong `ETag` (a weak one cannot be used in `If-Range`, so it is not kept).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The whole file's size.
    pub size: Option<u64>,
}

impl Validators {
    /// The `If-Range` value: the strong `ETag`, else `Last-Modified`.
    pub fn if_range(&self) -> Option<&str> {
        self.etag.as_deref().or(self.last_modified.as_deref())
    }

    /// False when `other` describes a different version: a different `ETag`, else a different
    /// `Last-Modified`, or a different size. What either side does not say is not held against it.
    pub fn same_version(&self, other: &Validators) -> bool {
        let differ =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        let version_differs = if self.etag.is_some() && other.etag.is_some() {
            differ(&self.etag, &other.etag)
        } else {
            differ(&self.last_modified, &other.last_modified)
        };
        !version_differs && !matches!((self.size, other.size), (Some(a), Some(b)) if a != b)
    }
}

impl Note {
    /// The note beside `entry`; empty when there is none (Packer's entries) or it is unreadable.
    pub fn read(entry: &Path) -> Note {
        let text = std::fs::read_to_string(with_suffix(entry, NOTE)).unwrap_or_default();
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
                .map(str::to_owned)
        };
        Note {
            checksum: field("checksum"),
            origin: field("origin"),
            validators: Validators {
                etag: field("etag"),
                last_modified: field("last-modified"),
                size: field("size").and_then(|v| v.parse().ok()),
            },
        }
    }

    /// Writes the note beside `entry`.
    pub fn write(&self, entry: &Path) -> std::io::Result<()> {
        let v = &self.validators;
        let size = v.size.map(|s| s.to_string());
        let text: String = [
            ("checksum", self.checksum.as_deref()),
            ("origin", self.origin.as_deref()),
            ("etag", v.etag.as_deref()),
            ("last-modified", v.last_modified.as_deref()),
            ("size", size.as_deref()),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} {v}\n")))
        .collect();
        std::fs::write(with_suffix(entry, NOTE), text)
    }

    /// Removes the note beside `entry`, if any.
    pub fn remove(entry: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(with_suffix(entry, NOTE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// What `prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Entries, partial downloads and notes removed.
    pub removed: Vec<PathBuf>,
    /// Unused lock files removed (not listed: every entry has one).
    pub locks: usize,
    pub bytes: u64,
    /// Entries skipped because a build holds their lock.
    pub in_use: Vec<PathBuf>,
}

/// What an imported file is filed under.
#[derive(Debug, Clone)]
pub enum ImportKey {
    /// The template's checksum: the file must match it.
    Checksum(Checksum),
    /// Hash the file with this algorithm and file it under the result.
    Compute(Algorithm),
    /// The URL of a template whose `iso_checksum` is `none`.
    Url(String),
}

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
}

const PART: &str = ".part";
const LOCK: &str = ".lock";
const NOTE: &str = ".kiln";

impl Cache {
    /// `KILN_CACHE_DIR`, else `PACKER_CACHE_DIR`, else `packer_cache` under the working directory
    /// (Packer 1.6's default, so an existing cache is reused).
    pub fn from_env(cwd: &Path) -> Self {
        let dir = std::env::var_os("KILN_CACHE_DIR")
            .filter(|d| !d.is_empty())
            .or_else(|| std::env::var_os("PACKER_CACHE_DIR").filter(|d| !d.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("packer_cache"));
        Cache::new(if dir.is_absolute() {
            dir
        } else {
            cwd.join(dir)
        })
    }

    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Packer's file name for `key` (a checksum such as `sha256:…`, or a URL): the SHA-1 of the
    /// key in hex, then the extension (`iso` by default in Packer) when there is one.
    pub fn entry_name(key: &str, extension: &str) -> String {
        let digest: String = Sha1::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        match extension.trim_start_matches('.') {
            "" => digest,
            ext => format!("{digest}.{ext}"),
        }
    }

    /// The path of the entry for `key` with the given extension.
    pub fn entry_path(&self, key: &str, extension: &str) -> PathBuf {
        self.dir.join(Cache::entry_name(key, extension))
    }

    /// Where a download of `entry` is written before it is verified.
    pub fn part_path(entry: &Path) -> PathBuf {
        with_suffix(entry, PART)
    }

    /// Takes the entry's lock (`<entry>.lock`, the file Packer locks too), waiting while another
    /// build holds it.
    pub fn lock(entry: &Path) -> std::io::Result<EntryLock> {
        loop {
            if let Some(lock) = Cache::lock_with(entry, File::lock)? {
                return Ok(lock);
            }
        }
    }

    /// The entry's lock if nobody holds it, else `None`.
    pub fn try_lock(entry: &Path) -> std::io::Result<Option<EntryLock>> {
        Cache::lock_with(entry, |f| match f.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(std::io::Error::from(std::io::ErrorKind::WouldBlock))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        })
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        })
    }

    /// Locks `<entry>.lock` with `how`; `None` when the file was removed (by `prune`) while we
    /// waited, so the caller locks the new one instead of a file nobody else will see.
    fn lock_with(
        entry: &Path,
        how: impl Fn(&File) -> std::io::Result<()>,
    ) -> std::io::Result<Option<EntryLock>> {
        if let Some(dir) = entry.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let path = with_suffix(entry, LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        how(&file)?;
        let held = file.metadata()?.ino();
        match std::fs::metadata(&path) {
            Ok(m) if m.ino() == held => Ok(Some(EntryLock { _file: file })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves a verified (or, for `none`, complete) `.part` file into place, writing its note
    /// first: an entry never appears with a stale note from an earlier version.
    pub fn commit(entry: &Path, note: &Note) -> std::io::Result<()> {
        // An entry without a note is still used (Packer makes those), as one of unknown size.
        if let Err(e) = note.write(entry) {
            tracing::debug!(entry = %entry.display(), error = %e, "could not write the cache note");
        }
        std::fs::rename(Cache::part_path(entry), entry)
    }

    /// Marks `entry` as used now, for `prune --older-than`.
    pub fn touch(entry: &Path) {
        let touched = File::options()
            .write(true)
            .open(entry)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(entry = %entry.display(), error = %e, "could not mark the cache entry as used");
        }
    }

    /// The cached inputs, by name. Kiln's `.part`/`.lock`/`.kiln` files and directories (Packer
    /// keeps a `port` directory here) are not entries.
    pub fn entries(&self) -> Result<Vec<Entry>, CacheError> {
        let read = |source| CacheError::Read {
            path: self.dir.clone(),
            source,
        };
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read(e)),
        };
        let mut out = Vec::new();
        for item in dir {
            let item = item.map_err(read)?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if [PART, LOCK, NOTE].iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let note = Note::read(&path);
            out.push(Entry {
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                checksum: note.checksum,
                origin: note.origin,
                path,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Copies `file` into the cache under the name a template's `iso_checksum` (or, for
    /// `none`, its URL) looks up, hashing it on the way; the copy is verified before it is
    /// renamed into place. Returns the entry and its checksum (`None` for [`ImportKey::Url`]).
    pub fn import(
        &self,
        file: &Path,
        key: &ImportKey,
        extension: &str,
        reporter: &dyn Reporter,
    ) -> Result<(PathBuf, Option<Checksum>), CacheError> {
        let read = |source| CacheError::Read {
            path: file.to_path_buf(),
            source,
        };
        let mut src = File::open(file).map_err(read)?;
        let total = src.metadata().map_err(read)?.len();
        let algorithm = match key {
            ImportKey::Checksum(c) => c.algorithm,
            ImportKey::Compute(a) => *a,
            ImportKey::Url(_) => Algorithm::Sha256,
        };
        // The name depends on the digest when it is computed: copy to a temporary name
        // first, then move the verified copy to its entry.
        std::fs::create_dir_all(&self.dir).map_err(|source| CacheError::Write {
            path: self.dir.clone(),
            source,
        })?;
        let tmp = tempfile::Builder::new()
            .prefix(".import-")
            .suffix(PART)
            .tempfile_in(&self.dir)
            .map_err(|source| CacheError::Write {
                path: self.dir.clone(),
                source,
            })?;
        let mut hasher = algorithm.hasher();
        reporter.start(&format!("Importing {}", file.display()), Some(total), 0);
        let copied = {
            let mut out = std::io::BufWriter::new(tmp.as_file());
            copy_hashing(
                &mut src,
                &mut out,
                std::slice::from_mut(&mut hasher),
                reporter,
                None,
            )
            .and_then(|n| out.flush().map(|()| n).map_err(CopyError::Write))
        };
        reporter.finish();
        match copied {
            Ok(_) => {}
            Err(CopyError::Read(_, e)) => return Err(read(e)),
            Err(CopyError::Cancelled) => return Err(read(std::io::Error::other("cancelled"))),
            Err(CopyError::Write(source)) => {
                return Err(CacheError::Write {
                    path: tmp.path().to_path_buf(),
                    source,
                })
            }
        }
        let actual = hasher.finish_hex();
        let (checksum, name_key) = match key {
            ImportKey::Checksum(c) => {
                c.compare(&actual, &file.display().to_string())?;
                (Some(c.clone()), c.to_string())
            }
            ImportKey::Compute(a) => {
                let c = Checksum::new(*a, &actual)?;
                let name = c.to_string();
                (Some(c), name)
            }
            ImportKey::Url(url) => (None, url.clone()),
        };
        let entry = self.entry_path(&name_key, extension);
        let write = |source| CacheError::Write {
            path: entry.clone(),
            source,
        };
        let _lock = Cache::lock(&entry).map_err(write)?;
        // Readable as downloaded entries are (the temporary file was made 0600).
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(write)?;
        }
        tmp.persist(Cache::part_path(&entry))
            .map_err(|e| write(e.error))?;
        let origin = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let note = Note {
            checksum: checksum.as_ref().map(ToString::to_string),
            origin: Some(format!("imported from {}", origin.display())),
            validators: Validators::default(),
        };
        Cache::commit(&entry, &note).map_err(write)?;
        Ok((entry, checksum))
    }

    /// Removes what no build is using: partial downloads, lock files, notes without an entry,
    /// and, with `older_than`, entries not used for that long (with their lock and note).
    pub fn prune(&self, older_than: Option<Duration>) -> Result<Pruned, CacheError> {
        let mut pruned = Pruned::default();
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pruned),
            Err(source) => {
                return Err(CacheError::Read {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        // Group every file under the entry it belongs to.
        let mut groups = std::collections::BTreeSet::new();
        for item in dir.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            if item.file_type().is_ok_and(|t| t.is_dir()) || name.starts_with(".import-") {
                continue;
            }
            let base = [PART, LOCK, NOTE]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name)
                .to_owned();
            groups.insert(self.dir.join(base));
        }
        let now = SystemTime::now();
        for entry in groups {
            let Some(lock) = Cache::try_lock(&entry).map_err(|source| CacheError::Write {
                path: entry.clone(),
                source,
            })?
            else {
                pruned.in_use.push(entry);
                continue;
            };
            let meta = std::fs::metadata(&entry).ok().filter(|m| m.is_file());
            let old = match (&meta, older_than) {
                (Some(m), Some(age)) => m
                    .modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d >= age),
                _ => false,
            };
            let mut doomed = vec![Cache::part_path(&entry)];
            if meta.is_none() || old {
                doomed.push(with_suffix(&entry, NOTE));
            }
            if old {
                doomed.push(entry.clone());
            }
            // The lock file goes last, while we still hold it, so a build that opened it
            // meanwhile notices (see `lock_with`) and locks a new one.
            doomed.push(with_suffix(&entry, LOCK));
            for path in doomed {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&path) {
                    Ok(()) if path.as_os_str().to_string_lossy().ends_with(LOCK) => {
                        pruned.locks += 1;
                    }
                    Ok(()) => {
                        pruned.bytes += size;
                        pruned.removed.push(path);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(CacheError::Write { path, source }),
                }
            }
            drop(lock);
        }
        Ok(pruned)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::progress::Silent;
    use std::sync::{Arc, Barrier};

    #[test]
    fn entries_are_named_as_packer_1_6_names_them() {
        // Names Packer 1.6.6 gave these keys when run against a local server.
        let key = "sha256:b32d9ac86ea8b168a7a94d196abed7233367718df7daa456ae1a62f6b8be96be";
        assert_eq!(
            Cache::entry_name(key, "iso"),
            "f8dfa7213425fdd024a9663cd6e34c5a452d39b0.iso"
        );
        assert_eq!(
            Cache::entry_name("http://127.0.0.1:18765/x.iso", ".iso"),
            "4a3825fcfa9659a325160ac089e7df0934d716c7.iso"
        );
        assert_eq!(
            Cache::entry_name(key, ""),
            "f8dfa7213425fdd024a9663cd6e34c5a452d39b0"
        );
        let cache = Cache::new(PathBuf::from("/c"));
        let a = cache.entry_path(key, "iso");
        assert_eq!(
            Cache::part_path(&a).to_string_lossy(),
            format!("{}.part", a.display())
        );
    }

    #[test]
    fn lock_serialises_holders() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let entry = cache.entry_path("k", "iso");
        let held = Cache::lock(&entry).unwrap();
        assert!(Cache::try_lock(&entry).unwrap().is_none());
        let barrier = Arc::new(Barrier::new(2));
        let (e, b) = (entry.clone(), barrier.clone());
        let waiter = std::thread::spawn(move || {
            b.wait();
            let start = std::time::Instant::now();
            let _lock = Cache::lock(&e).unwrap();
            start.elapsed()
        });
        barrier.wait();
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(
            waited >= Duration::from_millis(150),
            "second holder did not wait: {waited:?}"
        );
    }

    #[test]
    fn a_lock_file_pruned_while_waiting_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("e.iso");
        let held = Cache::lock(&entry).unwrap();
        let e = entry.clone();
        let waiter = std::thread::spawn(move || Cache::lock(&e).map(drop));
        std::thread::sleep(Duration::from_millis(100));
        // What prune does: remove the lock file while holding it, then release.
        std::fs::remove_file(with_suffix(&entry, LOCK)).unwrap();
        drop(held);
        waiter.join().unwrap().unwrap();
        assert!(
            with_suffix(&entry, LOCK).exists(),
            "the waiter locks a new file"
        );
    }

    #[test]
    fn commit_moves_the_part_file_and_notes_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let entry = cache.entry_path("sha256:aa", "iso");
        std::fs::write(Cache::part_path(&entry), b"data").unwrap();
        let note = Note {
            checksum: Some("sha256:aa".into()),
            origin: Some("http://m/x.iso".into()),
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
                size: Some(4),
            },
        };
        Cache::commit(&entry, &note).unwrap();
        assert_eq!(Note::read(&entry), note, "the note reads back as written");
        assert_eq!(std::fs::read(&entry).unwrap(), b"data");
        assert!(!Cache::part_path(&entry).exists());
        let entries = cache.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].path, entry);
        assert_eq!(entries[0].size, 4);
        assert_eq!(entries[0].checksum.as_deref(), Some("sha256:aa"));
        assert_eq!(entries[0].origin.as_deref(), Some("http://m/x.iso"));
    }

    #[test]
    fn validators_tell_versions_apart_by_etag_then_last_modified_and_size() {
        let v = |etag: Option<&str>, lm: Option<&str>, size: Option<u64>| Validators {
            etag: etag.map(Into::into),
            last_modified: lm.map(Into::into),
            size,
        };
        let first = v(Some("\"a\""), Some("Mon"), Some(10));
        assert_eq!(first.if_range(), Some("\"a\""));
        assert_eq!(v(None, Some("Mon"), None).if_range(), Some("Mon"));
        assert!(first.same_version(&v(Some("\"a\""), Some("Tue"), None)));
        assert!(!first.same_version(&v(Some("\"b\""), Some("Mon"), Some(10))));
        assert!(!first.same_version(&v(None, Some("Tue"), None)));
        assert!(!first.same_version(&v(None, None, Some(11))));
        assert!(first.same_version(&Validators::default()));
    }

    #[test]
    fn import_files_under_the_checksum_and_refuses_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let iso = dir.path().join("x.iso");
        std::fs::write(&iso, b"abc").unwrap();
        let (entry, sum) = cache
            .import(&iso, &ImportKey::Compute(Algorithm::Sha256), "iso", &Silent)
            .unwrap();
        let sum = sum.unwrap().to_string();
        assert_eq!(
            sum,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(entry, cache.entry_path(&sum, "iso"));
        assert_eq!(std::fs::read(&entry).unwrap(), b"abc");

        let wrong = Checksum::new(Algorithm::Md5, "d41d8cd98f00b204e9800998ecf8427e").unwrap();
        let err = cache
            .import(&iso, &ImportKey::Checksum(wrong.clone()), "iso", &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("checksum mismatch for "), "{err}");
        assert!(!cache.entry_path(&wrong.to_string(), "iso").exists());
        let names: Vec<_> = std::fs::read_dir(cache.dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(PART))
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");

        let (by_url, none) = cache
            .import(
                &iso,
                &ImportKey::Url("http://m/x.iso".into()),
                "iso",
                &Silent,
            )
            .unwrap();
        assert!(none.is_none());
        assert_eq!(by_url, cache.entry_path("http://m/x.iso", "iso"));
    }

    #[test]
    fn prune_removes_leftovers_then_old_entries_but_not_locked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let kept = cache.entry_path("sha256:aa", "iso");
        std::fs::write(Cache::part_path(&kept), b"x").unwrap();
        Cache::commit(&kept, &Note::default()).unwrap();
        drop(Cache::lock(&kept).unwrap());
        let partial = cache.entry_path("sha256:bb", "iso");
        std::fs::write(Cache::part_path(&partial), b"half").unwrap();
        let busy = cache.entry_path("sha256:cc", "iso");
        std::fs::write(Cache::part_path(&busy), b"downloading").unwrap();
        std::fs::create_dir(dir.path().join("port")).unwrap();
        let held = Cache::lock(&busy).unwrap();

        let p = cache.prune(None).unwrap();
        assert!(kept.exists());
        assert!(!with_suffix(&kept, LOCK).exists());
        assert!(!Cache::part_path(&partial).exists());
        assert!(
            Cache::part_path(&busy).exists(),
            "a held entry is left alone"
        );
        assert_eq!(p.in_use, std::slice::from_ref(&busy));
        assert!(dir.path().join("port").is_dir());

        let p = cache.prune(Some(Duration::ZERO)).unwrap();
        assert!(!kept.exists() && !with_suffix(&kept, NOTE).exists());
        assert!(p.bytes >= 1);
        drop(held);
        assert!(cache.entries().unwrap().is_empty());
    }
}
