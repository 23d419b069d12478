//! The download cache: one file per input, named by a hash of its checksum (or of its URL when it has
//! none), so the same ISO is fetched once across templates. Files arrive under a `.part` name, are
//! verified, and only then renamed into place: an interrupted or wrong download never poisons the
//! cache. A lock file per entry makes parallel builds that want the same input wait for one fetch.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

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

impl Cache {
    /// `KILN_CACHE_DIR`, else `PACKER_CACHE_DIR`, else `packer_cache` under the working directory
    /// (Packer 1.6's default, so an existing cache is reused).
    pub fn from_env(cwd: &Path) -> Self {
        let dir = std::env::var_os("KILN_CACHE_DIR")
            .or_else(|| std::env::var_os("PACKER_CACHE_DIR"))
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

    /// The path of the entry for `key` (a checksum such as `sha256:…`, or a URL), with the given
    /// extension (`iso` by default in Packer).
    pub fn entry_path(&self, key: &str, extension: &str) -> PathBuf {
        let digest: String = Sha1::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let extension = extension.trim_start_matches('.');
        if extension.is_empty() {
            self.dir.join(digest)
        } else {
            self.dir.join(format!("{digest}.{extension}"))
        }
    }

    /// Where a download of `entry` is written before it is verified.
    pub fn part_path(entry: &Path) -> PathBuf {
        let mut name = entry.as_os_str().to_owned();
        name.push(".part");
        PathBuf::from(name)
    }

    /// Takes the entry's lock, waiting while another build holds it.
    pub fn lock(&self, entry: &Path) -> std::io::Result<EntryLock> {
        std::fs::create_dir_all(&self.dir)?;
        let mut name = entry.as_os_str().to_owned();
        name.push(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(name))?;
        file.lock()?;
        Ok(EntryLock { _file: file })
    }

    /// Moves a verified `.part` file into place.
    pub fn commit(entry: &Path) -> std::io::Result<()> {
        std::fs::rename(Cache::part_path(entry), entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn entries_are_named_by_key_hash() {
        let cache = Cache::new(PathBuf::from("/c"));
        let a = cache.entry_path("sha256:aa", "iso");
        assert_eq!(a, cache.entry_path("sha256:aa", ".iso"));
        assert_ne!(a, cache.entry_path("sha256:ab", "iso"));
        assert_eq!(a.extension().and_then(|e| e.to_str()), Some("iso"));
        assert_eq!(
            Cache::part_path(&a).to_string_lossy(),
            format!("{}.part", a.display())
        );
    }

    #[test]
    fn lock_serialises_holders() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::new(dir.path().join("cache")));
        let entry = cache.entry_path("k", "iso");
        let held = cache.lock(&entry).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let (c, e, b) = (cache.clone(), entry.clone(), barrier.clone());
        let waiter = std::thread::spawn(move || {
            b.wait();
            let start = std::time::Instant::now();
            let _lock = c.lock(&e).unwrap();
            start.elapsed()
        });
        barrier.wait();
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(held);
        let waited = waiter.join().unwrap();
        assert!(
            waited >= std::time::Duration::from_millis(150),
            "second holder did not wait: {waited:?}"
        );
    }

    #[test]
    fn commit_moves_the_part_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let entry = cache.entry_path("k", "iso");
        std::fs::write(Cache::part_path(&entry), b"data").unwrap();
        Cache::commit(&entry).unwrap();
        assert_eq!(std::fs::read(&entry).unwrap(), b"data");
        assert!(!Cache::part_path(&entry).exists());
    }
}
