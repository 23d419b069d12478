//! QEMU's side of the layer cache ([`crate::layers`]): saving the running VM as a layer (its
//! disks and its RAM) and resuming a VM from one.
//!
//! **A layer is the whole machine at one instant**: the guest is paused (QMP `stop`); a new
//! qcow2 overlay `<disk>.partial.<N>` is created on each disk's current file, and one QMP
//! `transaction` of `blockdev-snapshot-sync` (`mode: existing`) moves every drive onto its
//! overlay; then QEMU's
//! migration writes the RAM and device state to the layer's `memory`, and the guest goes on
//! (`cont`). The frozen files are no longer written, so they are copied into the layer while
//! the guest runs: the first layer flattened into standalone qcow2 files, the next ones as they
//! are (only what changed since the last freeze) with their backing file renamed to the parent
//! layer's. A rebuild starts QEMU with the same devices and `-incoming defer`, on overlays of
//! the layer's disks, loads `memory` and continues: the guest never reboots, so it has its page
//! cache, its processes and its clock as they were.
//!
//! Why not the disks alone: a disk frozen under a running guest is only crash-consistent, and
//! measured here (the Debian cloud image, ext4, right after cloud-init grew the root file
//! system) the journal replay on the next boot left directory blocks failing their checksums.
//! A clean shutdown and boot per layer would be consistent but costs a guest boot per layer
//! (most of a minute under TCG); saving the RAM costs a second or two per layer and saves the
//! boot on every rebuild.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::img::{self, ImgError};
use super::qmp::{QmpClient, QmpError};

/// Why a layer could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum LayerSaveError {
    /// A QMP command failed.
    #[error("QEMU refused to {what}")]
    Qmp {
        /// What kiln asked.
        what: &'static str,
        /// Why.
        #[source]
        source: QmpError,
    },
    /// QEMU has no drive open on this disk (a `qemuargs` `-drive` of its own?).
    #[error("QEMU has no drive on {0} (its drives: {1})")]
    NoDrive(PathBuf, String),
    /// A file could not be renamed, copied or created.
    #[error("cannot write {0}")]
    Io(PathBuf, #[source] std::io::Error),
    /// `qemu-img` failed.
    #[error(transparent)]
    Img(#[from] ImgError),
    /// Saving or loading the RAM failed.
    #[error("QEMU could not save or load the VM's RAM: {0}")]
    Migration(String),
}

/// The disks of a running VM, as the layer cache sees them.
#[derive(Debug, Clone)]
pub struct Disks {
    /// The files QEMU writes (`<disk>.partial`), main disk first.
    pub files: Vec<PathBuf>,
    /// Their format when QEMU started (`qcow2`, `raw`); overlays are qcow2.
    pub format: String,
    /// The UEFI variable store, which the installer changes (boot entries).
    pub efivars: Option<PathBuf>,
}

/// A drive as `query-block` lists it.
#[derive(Debug, serde::Deserialize)]
struct Block {
    device: String,
    inserted: Option<Inserted>,
}

#[derive(Debug, serde::Deserialize)]
struct Inserted {
    file: String,
    image: Image,
}

#[derive(Debug, serde::Deserialize)]
struct Image {
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
}

/// The name of disk `j` in a layer.
pub fn layer_disk(j: usize) -> String {
    format!("disk{j}.qcow2")
}

/// The overlay the `k`-th freeze of a build puts `disk` (its `.partial` file) on.
pub fn overlay(disk: &Path, k: usize) -> PathBuf {
    let mut s = disk.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

/// The files of `disk`'s chain in the output directory, oldest first: `disk` itself, then the
/// overlays the freezes put on it. The last is the one QEMU wrote last.
pub fn chain(disk: &Path) -> Vec<PathBuf> {
    let mut out = vec![disk.to_owned()];
    while let Some(next) = Some(overlay(disk, out.len())).filter(|p| p.exists()) {
        out.push(next);
    }
    out
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayerSaveError + '_ {
    move |e| LayerSaveError::Io(path.to_owned(), e)
}

/// What a VM's earlier freezes left: how many, and the drive of each disk.
#[derive(Debug, Default)]
pub struct Freezes {
    taken: usize,
    /// `query-block`'s device names, found by file name at the first freeze (QEMU names an
    /// overlay's file by a JSON description after that).
    devices: Vec<String>,
}

/// The drive of each of `disks`, by the file QEMU has open.
fn find_devices(blocks: &[Block], disks: &Disks) -> Result<Vec<String>, LayerSaveError> {
    disks
        .files
        .iter()
        .map(|file| {
            let abs = std::fs::canonicalize(file).map_err(io(file))?;
            let opened = |b: &&Block| {
                b.inserted
                    .as_ref()
                    .is_some_and(|i| std::fs::canonicalize(&i.file).is_ok_and(|f| f == abs))
            };
            blocks
                .iter()
                .find(opened)
                .map(|b| b.device.clone())
                .ok_or_else(|| {
                    let files: Vec<&str> = blocks
                        .iter()
                        .filter_map(|b| b.inserted.as_ref().map(|i| i.file.as_str()))
                        .collect();
                    LayerSaveError::NoDrive(file.clone(), files.join(", "))
                })
        })
        .collect()
}

/// Freeze `disks` and write them into `dir`: standalone when `parent` is `None`, else as
/// deltas backed by `parent`'s files (`parent` relative to `dir`). `state` counts this VM's
/// freezes (the files' format is `disks.format` before the first, qcow2 after); it grows as
/// soon as the disks are frozen, even when writing the layer fails afterwards.
pub async fn save(
    qmp: &mut QmpClient,
    disks: &Disks,
    state: &mut Freezes,
    dir: &Path,
    parent: Option<&Path>,
) -> Result<(), LayerSaveError> {
    let blocks: Vec<Block> =
        qmp.execute("query-block")
            .await
            .map_err(|source| LayerSaveError::Qmp {
                what: "list its drives",
                source,
            })?;
    if state.devices.is_empty() {
        state.devices = find_devices(&blocks, disks)?;
    }
    let n = state.taken;
    let format = if n == 0 {
        disks.format.as_str()
    } else {
        "qcow2"
    };
    let base = disks
        .files
        .iter()
        .map(|f| std::fs::canonicalize(f).map_err(io(f)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut found = Vec::new();
    for (disk, device) in base.iter().zip(&state.devices) {
        let abs = if n == 0 {
            disk.clone()
        } else {
            overlay(disk, n)
        };
        let size = blocks
            .iter()
            .find(|b| &b.device == device)
            .and_then(|b| b.inserted.as_ref())
            .map_or(0, |i| i.image.virtual_size);
        found.push((abs, device.clone(), size));
    }
    qmp_do(qmp, "stop", json!({}), "pause the guest").await?;
    let frozen_ok = freeze(qmp, &found, &base, n, format).await;
    let saved = match frozen_ok {
        Ok(moved) => {
            state.taken += 1;
            migrate_out(qmp, &dir.join(MEMORY)).await.map(|()| moved)
        }
        Err(e) => Err(e),
    };
    // The guest goes on whatever happened.
    let resumed = qmp_do(qmp, "cont", json!({}), "resume the guest").await;
    let moved = saved?;
    resumed?;
    write_disks(&moved, dir, parent).await?;
    if let Some(vars) = disks.efivars.as_ref().filter(|v| v.exists()) {
        let dst = dir.join("efivars.fd");
        std::fs::copy(vars, &dst).map_err(io(&dst))?;
    }
    Ok(())
}

/// The file of a layer holding the VM's RAM and device state.
pub const MEMORY: &str = "memory";

async fn qmp_do(
    qmp: &mut QmpClient,
    command: &str,
    args: serde_json::Value,
    what: &'static str,
) -> Result<serde_json::Value, LayerSaveError> {
    qmp.execute_with::<_, serde_json::Value>(command, &args)
        .await
        .map_err(|source| LayerSaveError::Qmp { what, source })
}

/// Put each drive of `found` (its current file, device, size) on a new overlay `<disk>.<n+1>`
/// backed by that file; the frozen files are returned. No file QEMU has open is renamed: QEMU
/// reopens a file by its name (a backing file made read-only), so a renamed file would be
/// replaced by whatever has its old name.
async fn freeze(
    qmp: &mut QmpClient,
    found: &[(PathBuf, String, u64)],
    base: &[PathBuf],
    n: usize,
    format: &str,
) -> Result<Vec<(PathBuf, PathBuf)>, LayerSaveError> {
    let mut made: Vec<(PathBuf, PathBuf)> = Vec::new();
    let prepared = async {
        for ((top, _, size), disk) in found.iter().zip(base) {
            let new = overlay(disk, n + 1);
            // -u: QEMU holds the backing file's write lock; the size is given instead of read.
            img::run(&[
                "create".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                "-u".into(),
                "-b".into(),
                top.display().to_string(),
                "-F".into(),
                format.into(),
                new.display().to_string(),
                size.to_string(),
            ])
            .await?;
            made.push((top.clone(), new));
        }
        let actions: Vec<_> = found
            .iter()
            .zip(&made)
            .map(|((_, device, _), (_, new))| {
                json!({ "type": "blockdev-snapshot-sync", "data": {
                    "device": device, "snapshot-file": new, "format": "qcow2", "mode": "existing",
                }})
            })
            .collect();
        qmp_do(
            qmp,
            "transaction",
            json!({ "actions": actions }),
            "move its drives onto new overlays",
        )
        .await?;
        Ok::<(), LayerSaveError>(())
    }
    .await;
    if let Err(e) = prepared {
        for (_, new) in &made {
            let _ = std::fs::remove_file(new);
        }
        return Err(e);
    }
    Ok(made)
}

/// Write QEMU's RAM and device state to `file` (the guest is paused) and wait until done.
async fn migrate_out(qmp: &mut QmpClient, file: &Path) -> Result<(), LayerSaveError> {
    // The default bandwidth cap (128 MiB/s) would make a 1 GiB guest take seconds.
    qmp_do(
        qmp,
        "migrate-set-parameters",
        json!({ "max-bandwidth": 1u64 << 34 }),
        "lift the migration bandwidth cap",
    )
    .await?;
    let uri = format!(
        "exec:cat > {}",
        crate::communicator::shell_quote(&file.to_string_lossy())
    );
    qmp_do(qmp, "migrate", json!({ "uri": uri }), "save its RAM").await?;
    wait_migration(qmp).await
}

/// Load QEMU's RAM and device state from `file` into a QEMU started with `-incoming defer`,
/// then run the guest.
pub async fn resume(qmp: &mut QmpClient, file: &Path) -> Result<(), LayerSaveError> {
    let uri = format!(
        "exec:cat {}",
        crate::communicator::shell_quote(&file.to_string_lossy())
    );
    qmp_do(
        qmp,
        "migrate-incoming",
        json!({ "uri": uri }),
        "load the layer's RAM",
    )
    .await?;
    wait_migration(qmp).await?;
    qmp_do(qmp, "cont", json!({}), "run the resumed guest").await?;
    Ok(())
}

/// Poll `query-migrate` until the migration completes; its error when it fails.
async fn wait_migration(qmp: &mut QmpClient) -> Result<(), LayerSaveError> {
    loop {
        let state = qmp_do(qmp, "query-migrate", json!({}), "report the migration").await?;
        match state.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some("failed" | "cancelled") => {
                let why = state
                    .get("error-desc")
                    .and_then(|s| s.as_str())
                    .unwrap_or("no reason given");
                return Err(LayerSaveError::Migration(why.to_owned()));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// Copy the frozen files of `moved` (frozen file, its overlay) into the layer `dir`.
async fn write_disks(
    moved: &[(PathBuf, PathBuf)],
    dir: &Path,
    parent: Option<&Path>,
) -> Result<(), LayerSaveError> {
    for (j, (old, _)) in moved.iter().enumerate() {
        let dst = dir.join(layer_disk(j));
        match parent {
            None => {
                // -U: QEMU has the file open (read-only now).
                img::run(&[
                    "convert".into(),
                    "-U".into(),
                    "-O".into(),
                    "qcow2".into(),
                    old.display().to_string(),
                    dst.display().to_string(),
                ])
                .await?;
            }
            Some(p) => {
                std::fs::copy(old, &dst).map_err(io(&dst))?;
                img::run(&[
                    "rebase".into(),
                    "-u".into(),
                    "-F".into(),
                    "qcow2".into(),
                    "-b".into(),
                    p.join(layer_disk(j)).display().to_string(),
                    dst.display().to_string(),
                ])
                .await?;
            }
        }
    }
    Ok(())
}
