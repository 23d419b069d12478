//! The local layer store: `<cache dir>/layers/<key>/`, one directory per layer, holding the
//! builder's files (QEMU: `disk0.qcow2`… whose backing files are the parent layer's, named
//! `../<parent key>/disk0.qcow2`) and `layer.json` ([`LayerMeta`]).
//!
//! - **A half-written layer is never used**: a layer is written into `.tmp-<key>-<pid>-<n>/` and
//!   appears under its key only by a rename once complete. A build killed mid-way leaves the
//!   temporary directory, which no lookup reads and `prune` removes.
//! - **Parallel builds**: a build that starts from a layer holds a shared `flock(2)` on
//!   `<key>.lock` of that layer and of each of its ancestors until it ends; `prune` removes a
//!   layer only with the exclusive lock, so it never takes a layer (or a backing file) from
//!   under a running build. A layer is a delta over the exact copy of its parent it was made
//!   on, so a build that makes a layer the store already has replaces it (and the layers built
//!   on it) unless a build holds them; then it stops saving layers.
//! - **Last use** is the modification time of `layer.json` (touched along the whole chain on
//!   each use), which `prune` goes by.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What `layer.json` says about a layer (never a value of the template: keys are hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    /// The layer this one is a delta over; `None` for an install layer.
    pub parent: Option<String>,
    /// The template it was built from (its path as given).
    pub template: String,
    /// The build (`qemu.debian`).
    pub build: String,
    /// The step it follows (`install`, `provisioner 2 (shell)`).
    pub step: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created: u64,
    /// How many builds started from it.
    #[serde(default)]
    pub hits: u64,
}

impl LayerMeta {
    /// Seconds since the layer was made.
    pub fn age_secs(&self) -> u64 {
        unix(SystemTime::now()).saturating_sub(self.created)
    }
}

/// A layer found in the store.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its key.
    pub key: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its `layer.json`.
    pub meta: LayerMeta,
}

/// One layer as `kiln cache list` shows it.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub layer: Layer,
    /// Bytes its files take on disk.
    pub size: u64,
    /// Last made or used.
    pub last_used: SystemTime,
}

/// What [`LayerStore::prune`] removed.
#[derive(Debug, Default)]
pub struct PrunedLayers {
    /// The keys removed.
    pub removed: Vec<String>,
    /// Bytes freed.
    pub bytes: u64,
    /// Keys kept because a build is using them.
    pub in_use: Vec<String>,
}

/// A shared hold on layers a build starts from; released on drop.
#[derive(Debug)]
pub struct InUse {
    _locks: Vec<File>,
}

/// A layer being written; removed on drop unless committed.
#[derive(Debug)]
pub struct Pending {
    key: String,
    dir: PathBuf,
    store: PathBuf,
    _lock: File,
    lock_path: PathBuf,
    done: bool,
}

/// The layer store at one directory.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
}

const META: &str = "layer.json";
const TMP: &str = ".tmp-";

/// Seconds since the Unix epoch of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl LayerStore {
    /// The store in `dir` (created when a layer is first written).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    fn open_lock(&self, key: &str) -> std::io::Result<File> {
        std::fs::create_dir_all(&self.dir)?;
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_path(key))
    }

    /// The complete layer `key`, if the store has it.
    pub fn find(&self, key: &str) -> Option<Layer> {
        let dir = self.dir.join(key);
        let text = std::fs::read(dir.join(META)).ok()?;
        let meta = serde_json::from_slice(&text).ok()?;
        Some(Layer {
            key: key.to_owned(),
            dir,
            meta,
        })
    }

    /// Hold the layers `keys` (a layer and its ancestors) for a build, waiting while `prune`
    /// removes one; then the layers are checked to be there still (`None` when one is gone).
    pub fn hold(&self, keys: &[String]) -> std::io::Result<Option<InUse>> {
        let mut locks = Vec::with_capacity(keys.len());
        for key in keys {
            let f = self.open_lock(key)?;
            f.lock_shared()?;
            locks.push(f);
        }
        Ok(keys
            .iter()
            .all(|k| self.find(k).is_some())
            .then_some(InUse { _locks: locks }))
    }

    /// Count a build starting from `keys`' last layer, and mark the whole chain used now.
    pub fn record_use(&self, keys: &[String]) {
        let Some((last, _)) = keys.split_last() else {
            return;
        };
        if let Some(mut layer) = self.find(last) {
            layer.meta.hits += 1;
            if let Err(e) = write_meta(&layer.dir, &layer.meta) {
                tracing::debug!(error = %e, "could not count the layer's use");
            }
        }
        for key in keys {
            let f = File::options()
                .write(true)
                .open(self.dir.join(key).join(META));
            if let Ok(f) = f {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    /// Start writing the layer `key` into a temporary directory.
    pub fn begin(&self, key: &str) -> std::io::Result<Pending> {
        static N: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir)?;
        let name = format!(
            "{TMP}{key}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lock_path = self.dir.join(format!("{name}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        lock.lock()?;
        let dir = self.dir.join(&name);
        std::fs::create_dir(&dir)?;
        Ok(Pending {
            key: key.to_owned(),
            dir,
            store: self.dir.clone(),
            _lock: lock,
            lock_path,
            done: false,
        })
    }

    /// Every complete layer, with its size and last use.
    pub fn list(&self) -> std::io::Result<Vec<LayerEntry>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP) || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(layer) = self.find(&name) else {
                continue;
            };
            let last_used = std::fs::metadata(layer.dir.join(META))
                .and_then(|m| m.modified())
                .unwrap_or(UNIX_EPOCH);
            out.push(LayerEntry {
                size: dir_size(&layer.dir),
                layer,
                last_used,
            });
        }
        out.sort_by_key(|e| e.last_used);
        Ok(out)
    }

    /// Remove half-written layers left by killed builds, layers not used for `older_than`,
    /// then the least recently used ones until the store holds at most `max_size` bytes. A
    /// layer goes with every layer built on it; layers a build holds stay.
    pub fn prune(
        &self,
        older_than: Option<Duration>,
        max_size: Option<u64>,
    ) -> std::io::Result<PrunedLayers> {
        let mut pruned = PrunedLayers::default();
        self.remove_abandoned()?;
        let entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let now = SystemTime::now();
        let mut gone = std::collections::BTreeSet::new();
        for e in &entries {
            if gone.contains(&e.layer.key) {
                continue;
            }
            let old = older_than.is_some_and(|age| {
                now.duration_since(e.last_used)
                    .is_ok_and(|used| used >= age)
            });
            let big = max_size.is_some_and(|max| total > max);
            if !old && !big {
                continue;
            }
            let mut doomed = descendants(&entries, &e.layer.key);
            doomed.retain(|k| !gone.contains(k));
            let Some(locks) = self.try_lock_all(&doomed)? else {
                pruned.in_use.push(e.layer.key.clone());
                continue;
            };
            for key in &doomed {
                let size = entries
                    .iter()
                    .find(|x| &x.layer.key == key)
                    .map_or(0, |x| x.size);
                match std::fs::remove_dir_all(self.dir.join(key)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                // The lock file goes while still held: a build that opened it meanwhile finds
                // the layer gone when it checks after locking.
                let _ = std::fs::remove_file(self.lock_path(key));
                total = total.saturating_sub(size);
                pruned.bytes += size;
                pruned.removed.push(key.clone());
                gone.insert(key.clone());
            }
            drop(locks);
        }
        Ok(pruned)
    }

    /// Exclusive locks on every layer of `keys`, or `None` when a build holds one.
    fn try_lock_all(&self, keys: &[String]) -> std::io::Result<Option<Vec<File>>> {
        let mut locks = Vec::new();
        for key in keys {
            let f = self.open_lock(key)?;
            match f.try_lock() {
                Ok(()) => locks.push(f),
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Ok(Some(locks))
    }

    /// Temporary directories whose writer is gone (its lock is free).
    fn remove_abandoned(&self) -> std::io::Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TMP) || name.ends_with(".lock") {
                continue;
            }
            let lock_path = self.dir.join(format!("{name}.lock"));
            let free = match File::options().write(true).open(&lock_path) {
                Ok(f) => f.try_lock().is_ok(),
                Err(_) => true,
            };
            if free {
                std::fs::remove_dir_all(e.path())?;
                let _ = std::fs::remove_file(lock_path);
            }
        }
        Ok(())
    }
}

/// `key` and every layer whose chain of parents reaches it, children after parents reversed
/// (leaves first), so that a layer is never removed before the layers built on it.
fn descendants(entries: &[LayerEntry], key: &str) -> Vec<String> {
    let mut out = vec![key.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].clone();
        for e in entries {
            if e.layer.meta.parent.as_deref() == Some(parent.as_str())
                && !out.contains(&e.layer.key)
            {
                out.push(e.layer.key.clone());
            }
        }
        i += 1;
    }
    out.reverse();
    out
}

fn write_meta(dir: &Path, meta: &LayerMeta) -> std::io::Result<()> {
    let tmp = dir.join(format!("{META}.tmp"));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, dir.join(META))
}

/// Bytes the files under `dir` take on disk (sparse disk images count what they hold).
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.blocks().saturating_mul(512))
            .sum()
    })
}

impl Pending {
    /// Where the builder writes the layer's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Publish the layer under its key with `meta`. A layer already there (made by another
    /// build, or stale under `-rebuild-from`) is replaced with the layers built on it, since
    /// layers made after this one are deltas over this copy; false when a build holds it.
    pub fn commit(mut self, meta: &LayerMeta) -> std::io::Result<bool> {
        write_meta(&self.dir, meta)?;
        let store = LayerStore::new(self.store.clone());
        let target = self.store.join(&self.key);
        if std::fs::rename(&self.dir, &target).is_err() {
            let entries = store.list()?;
            let doomed = descendants(&entries, &self.key);
            let Some(locks) = store.try_lock_all(&doomed)? else {
                return Ok(false);
            };
            for key in &doomed {
                std::fs::remove_dir_all(self.store.join(key))?;
            }
            std::fs::rename(&self.dir, &target)?;
            drop(locks);
        }
        self.done = true;
        Ok(true)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(parent: Option<&str>, step: &str) -> LayerMeta {
        LayerMeta {
            parent: parent.map(str::to_owned),
            template: "t.pkr.hcl".into(),
            build: "qemu.x".into(),
            step: step.into(),
            created: unix(SystemTime::now()),
            hits: 0,
        }
    }

    fn put(store: &LayerStore, key: &str, parent: Option<&str>, bytes: usize) {
        let p = store.begin(key).unwrap();
        std::fs::write(p.dir().join("disk0.qcow2"), vec![7u8; bytes]).unwrap();
        assert!(p.commit(&meta(parent, key)).unwrap());
    }

    fn age(store: &LayerStore, key: &str, secs: u64) {
        let f = File::options()
            .write(true)
            .open(store.dir().join(key).join(META))
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn a_layer_appears_only_once_committed_and_an_abandoned_one_is_never_used() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().join("layers"));
        let p = store.begin("k1").unwrap();
        std::fs::write(p.dir().join("disk0.qcow2"), b"half").unwrap();
        assert!(store.find("k1").is_none(), "not visible while written");
        drop(p);
        assert!(store.find("k1").is_none());
        assert!(
            std::fs::read_dir(store.dir()).unwrap().next().is_none(),
            "a dropped layer leaves nothing"
        );
        // A writer killed mid-way (simulated: its files remain, its lock is free).
        let p = store.begin("k2").unwrap();
        std::fs::write(p.dir().join("disk0.qcow2"), b"half").unwrap();
        let dir = p.dir().to_owned();
        std::mem::forget(p);
        assert!(store.find("k2").is_none());
        assert!(store.list().unwrap().is_empty());
        // Its lock is still held by this process (the forgotten file): prune keeps it…
        store.prune(None, None).unwrap();
        assert!(dir.exists(), "a writer still running is left alone");
        // …and removes it once the writer is gone.
        let lock = PathBuf::from(format!("{}.lock", dir.display()));
        std::fs::remove_file(&lock).unwrap();
        store.prune(None, None).unwrap();
        assert!(!dir.exists(), "an abandoned half-layer is removed");
    }

    #[test]
    fn a_layer_made_again_replaces_the_old_one_and_its_children_unless_held() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().to_owned());
        put(&store, "k", None, 1);
        put(&store, "child", Some("k"), 1);
        let again = store.begin("k").unwrap();
        std::fs::write(again.dir().join("disk0.qcow2"), b"new").unwrap();
        assert!(again.commit(&meta(None, "install")).unwrap());
        let disk = std::fs::read(store.dir().join("k/disk0.qcow2")).unwrap();
        assert_eq!(disk, b"new");
        assert!(
            store.find("child").is_none(),
            "a delta over the old copy goes with it"
        );
        // A build holds k: the new copy is dropped and the old one stays.
        let held = store.hold(&["k".to_owned()]).unwrap().unwrap();
        let third = store.begin("k").unwrap();
        std::fs::write(third.dir().join("disk0.qcow2"), b"third").unwrap();
        assert!(!third.commit(&meta(None, "install")).unwrap());
        drop(held);
        assert_eq!(
            std::fs::read(store.dir().join("k/disk0.qcow2")).unwrap(),
            b"new"
        );
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn prune_by_age_takes_the_layers_built_on_it_and_spares_held_ones() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().to_owned());
        put(&store, "a", None, 10);
        put(&store, "b", Some("a"), 10);
        put(&store, "c", Some("b"), 10);
        put(&store, "x", None, 10);
        age(&store, "b", 3600);
        age(&store, "x", 3600);
        // A build holds x.
        let held = store.hold(&["x".to_owned()]).unwrap().expect("x is there");
        let p = store.prune(Some(Duration::from_secs(600)), None).unwrap();
        assert_eq!(p.removed, ["c", "b"], "b goes with c, built on it");
        assert_eq!(p.in_use, ["x"]);
        assert!(store.find("a").is_some() && store.find("x").is_some());
        drop(held);
        let p = store.prune(Some(Duration::from_secs(600)), None).unwrap();
        assert_eq!(p.removed, ["x"]);
    }

    #[test]
    fn prune_by_size_removes_the_least_recently_used_first() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().to_owned());
        put(&store, "old", None, 64 * 1024);
        put(&store, "mid", None, 64 * 1024);
        put(&store, "new", None, 64 * 1024);
        age(&store, "old", 300);
        age(&store, "mid", 200);
        age(&store, "new", 100);
        let one = store.list().unwrap()[0].size;
        assert!(one >= 64 * 1024);
        let p = store.prune(None, Some(2 * one)).unwrap();
        assert_eq!(p.removed, ["old"]);
        assert_eq!(p.bytes, one);
        store.record_use(&["mid".to_owned()]);
        let p = store.prune(None, Some(one)).unwrap();
        assert_eq!(p.removed, ["new"], "mid was just used");
        assert_eq!(store.find("mid").unwrap().meta.hits, 1);
    }

    #[test]
    fn prune_to_nothing_removes_every_branch_once() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().to_owned());
        put(&store, "a", None, 1);
        put(&store, "b", Some("a"), 1);
        put(&store, "c", Some("b"), 1);
        put(&store, "c2", Some("b"), 1);
        age(&store, "c", 50);
        age(&store, "a", 40);
        let p = store.prune(None, Some(0)).unwrap();
        let mut removed = p.removed.clone();
        removed.sort();
        assert_eq!(removed, ["a", "b", "c", "c2"]);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn hold_reports_a_layer_pruned_while_waiting() {
        let t = tempfile::tempdir().unwrap();
        let store = LayerStore::new(t.path().to_owned());
        put(&store, "a", None, 1);
        assert!(store
            .hold(&["a".to_owned(), "gone".to_owned()])
            .unwrap()
            .is_none());
    }
}
