//! OVA packaging: a tar holding the OVF descriptor first, then the manifest (`.mf`, SHA-256 of every
//! other file), then the disks, as the OVF specification orders them; or the same files unpacked
//! beside an `.ovf`. Reproducible and written under temporary names; disks are streamOptimized VMDKs
//! made by [`super::vmdk`] from the build's disks (qcow2, or VMware's VMDKs), streamed without a raw
//! copy.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::archive::{tar_size, ReproducibleTar};
use super::ovf::{Details, OvfDisk, OvfMachine, OvfVersion};
use super::stream::{ensure_space, Input, WriteError};
use super::vmdk::{self, VmdkError};
use crate::download::checksum::{hash_reader, Algorithm};

/// Why an OVA could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OvaError {
    #[error(transparent)]
    Disk(#[from] VmdkError),
    /// Reading a disk or writing the package failed, or the build was cancelled.
    #[error(transparent)]
    Io(#[from] WriteError),
}

/// The machine to export, apart from its disks.
#[derive(Debug, Clone)]
pub struct OvaSpec<'a> {
    pub name: &'a str,
    pub cpus: u32,
    pub memory_mb: u64,
    pub mac: Option<String>,
    pub system_type: &'a str,
    pub version: OvfVersion,
    /// The guest OS, the disks' controllers and the NIC.
    pub details: Details,
}

/// Converts `disks` to VMDKs in `work_dir` and packs `<output>` (an `.ova`). Returns the
/// files written: the OVA. The package's size is known once the VMDKs are made, so packing is
/// refused up front when the filesystem has less free space. Stops within one read of `cancel`
/// being cancelled, leaving nothing at `output` or its temporary name.
pub fn export(
    spec: &OvaSpec<'_>,
    disks: &[PathBuf],
    work_dir: &Path,
    output: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<PathBuf>, OvaError> {
    let package = prepare(spec, disks, work_dir, cancel)?;
    let disks = package
        .disks
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()));
    let entries = [package.ovf.len() as u64, package.manifest.len() as u64];
    ensure_space(output, tar_size(entries.into_iter().chain(disks)))?;
    let write = |tmp: &Path| -> std::io::Result<()> {
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp)?);
        let mut tar = ReproducibleTar::new(file);
        tar.append_bytes(&package.ovf_name, package.ovf.as_bytes())?;
        tar.append_bytes(&package.mf_name, package.manifest.as_bytes())?;
        for (name, path) in &package.disks {
            tar.append_file(name, path, cancel)?;
        }
        // Flushed, not fsynced: the rename below is what keeps a partial OVA from its name.
        tar.finish()?.flush()
    };
    super::write_through_temp(output, write, |e| e).map_err(|e| WriteError::from_io(e, output))?;
    Ok(vec![output.to_path_buf()])
}

/// Writes an unpacked OVF package: the VMDKs, then `<name>.mf`, then the descriptor at `ovf`
/// (its directory holds them all). Returns the files, descriptor first. Stops when `cancel` is
/// cancelled; whatever stops it, the VMDKs and manifest already written are removed, so no part
/// of an unfinished package sits under its final names.
pub fn export_ovf(
    spec: &OvaSpec<'_>,
    disks: &[PathBuf],
    ovf: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<PathBuf>, OvaError> {
    let dir = ovf
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mf = dir.join(mf_name(spec));
    let written = prepare(spec, disks, dir, cancel).and_then(|package| {
        write_atomically(&mf, package.manifest.as_bytes())?;
        write_atomically(ovf, package.ovf.as_bytes())?;
        Ok(package)
    });
    let package = match written {
        Ok(package) => package,
        Err(e) => {
            for i in 0..disks.len() {
                let _ = std::fs::remove_file(dir.join(disk_name(spec, i)));
            }
            let _ = std::fs::remove_file(&mf);
            return Err(e);
        }
    };
    let mut files = vec![ovf.to_path_buf(), mf];
    files.extend(package.disks.into_iter().map(|(_, p)| p));
    Ok(files)
}

/// The file name of the package's disk `i` (from 0).
fn disk_name(spec: &OvaSpec<'_>, i: usize) -> String {
    format!("{}-disk{:03}.vmdk", spec.name, i + 1)
}

/// The file name of the package's manifest.
fn mf_name(spec: &OvaSpec<'_>) -> String {
    format!("{}.mf", spec.name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OvaError> {
    super::write_through_temp(path, |tmp| std::fs::write(tmp, bytes), |e| e).map_err(|source| {
        WriteError::Write {
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

/// A package's parts: descriptor, manifest, disks (name in the package, file).
struct Package {
    ovf_name: String,
    ovf: String,
    mf_name: String,
    manifest: String,
    disks: Vec<(String, PathBuf)>,
}

fn prepare(
    spec: &OvaSpec<'_>,
    disks: &[PathBuf],
    work_dir: &Path,
    cancel: &CancellationToken,
) -> Result<Package, OvaError> {
    std::fs::create_dir_all(work_dir).map_err(|source| WriteError::Write {
        path: work_dir.to_path_buf(),
        source,
    })?;
    let mut ovf_disks = Vec::new();
    let mut files = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let file_name = disk_name(spec, i);
        let path = work_dir.join(&file_name);
        let info = vmdk::write_stream_optimized(disk, &path, "lsilogic", cancel)?;
        ovf_disks.push(OvfDisk {
            file_name: file_name.clone(),
            file_size: info.file_size,
            capacity: info.capacity,
        });
        files.push((file_name, path));
    }
    let machine = OvfMachine {
        name: spec.name.to_string(),
        cpus: spec.cpus,
        memory_mb: spec.memory_mb,
        disks: ovf_disks,
        mac: spec.mac.clone(),
        system_type: spec.system_type.to_string(),
        details: spec.details.clone(),
    };
    let ovf_name = format!("{}.ovf", spec.name);
    let ovf = machine.descriptor(spec.version);
    // Hashing bytes in memory cannot fail; the descriptor is named should it all the same.
    let ovf_hex = hash_reader(Algorithm::Sha256, &mut ovf.as_bytes())
        .map_err(|e| WriteError::from_read(e, &work_dir.join(&ovf_name)))?;
    let mut manifest = format!("SHA256({ovf_name})= {ovf_hex}\n");
    for (name, path) in &files {
        let read = |e| WriteError::from_read(e, path);
        let mut file = Input::open(path, cancel).map_err(read)?;
        let hex = hash_reader(Algorithm::Sha256, &mut file).map_err(read)?;
        manifest.push_str(&format!("SHA256({name})= {hex}\n"));
    }
    Ok(Package {
        ovf_name,
        ovf,
        mf_name: mf_name(spec),
        manifest,
        disks: files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::stream::testing::{noise, Tmpfs};

    /// Issue 13: an unpacked export that stops after its first disk (cancelled, a full disk, or
    /// as here a missing second disk) leaves none of the package behind, not even the disk it
    /// had finished.
    #[test]
    fn a_failed_unpacked_export_leaves_no_part_of_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let qcow2 = dir.path().join("disk.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow2)
            .arg("1M")
            .status()
            .unwrap();
        assert!(made.success());
        let spec = OvaSpec {
            name: "vm",
            cpus: 1,
            memory_mb: 512,
            mac: None,
            system_type: "virtualbox-2.2",
            version: OvfVersion::V1,
            details: Details::default(),
        };
        let out = dir.path().join("export");
        let ovf = out.join("vm.ovf");
        // The second disk is missing, so the export fails after writing the first.
        let disks = [qcow2, dir.path().join("absent.qcow2")];
        assert!(export_ovf(&spec, &disks, &ovf, &CancellationToken::new()).is_err());
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// Issue 13: an OVA's size is known once its disks are converted, so packing one larger than
    /// the free space is refused up front, saying what it needs, and nothing is left behind.
    #[test]
    fn an_ova_larger_than_the_free_space_is_refused_before_packing() {
        let Some(fs) = Tmpfs::mount() else { return };
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, noise(6 << 20)).unwrap();
        let qcow2 = dir.path().join("disk.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2)
            .status()
            .unwrap();
        assert!(made.success());
        let spec = OvaSpec {
            name: "vm",
            cpus: 1,
            memory_mb: 512,
            mac: None,
            system_type: "virtualbox-2.2",
            version: OvfVersion::V1,
            details: Details::default(),
        };
        let out = fs.path().join("vm.ova");
        let err = export(
            &spec,
            &[qcow2],
            &dir.path().join("work"),
            &out,
            &CancellationToken::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!(
                "not enough free space to write {}: it needs 6.",
                out.display()
            )) && err.ends_with("MiB, but 4.0 MiB is free"),
            "{err}"
        );
        assert_eq!(fs.listing(), Vec::<PathBuf>::new());
    }
}
