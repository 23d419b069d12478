//! OVA packaging: a tar holding the OVF descriptor first, then the manifest (`.mf`, SHA-256 of every
//! other file), then the disks, as the OVF specification orders them. Reproducible and written under
//! a temporary name; disks are streamOptimized VMDKs made by [`super::vmdk`] from the build's qcow2.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::archive::ReproducibleTar;
use super::ovf::{OvfDisk, OvfMachine};
use super::vmdk::{self, VmdkError};
use crate::download::checksum::{hash_reader, Algorithm};

/// Why an OVA could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OvaError {
    #[error(transparent)]
    Disk(#[from] VmdkError),
    #[error("could not write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The machine to export, apart from its disks.
#[derive(Debug, Clone)]
pub struct OvaSpec<'a> {
    pub name: &'a str,
    pub cpus: u32,
    pub memory_mb: u64,
    pub mac: Option<String>,
    pub system_type: &'a str,
}

/// Converts `qcow2_disks` to VMDKs in `work_dir` and packs `<output>` (an `.ova`).
pub fn export(
    spec: &OvaSpec<'_>,
    qcow2_disks: &[PathBuf],
    work_dir: &Path,
    output: &Path,
) -> Result<(), OvaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OvaError::Io { path, source }
    };
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    let mut disks = Vec::new();
    let mut files = Vec::new();
    for (i, qcow2) in qcow2_disks.iter().enumerate() {
        let file_name = format!("{}-disk{:03}.vmdk", spec.name, i + 1);
        let path = work_dir.join(&file_name);
        let info = vmdk::write_from_qcow2(qcow2, &path, "lsilogic")?;
        disks.push(OvfDisk {
            file_name,
            file_size: info.file_size,
            capacity: info.capacity,
        });
        files.push(path);
    }
    let machine = OvfMachine {
        name: spec.name.to_string(),
        cpus: spec.cpus,
        memory_mb: spec.memory_mb,
        disks,
        mac: spec.mac.clone(),
        system_type: spec.system_type.to_string(),
    };
    let ovf_name = format!("{}.ovf", spec.name);
    let ovf = machine.descriptor();
    let mut manifest = format!(
        "SHA256({ovf_name})= {}\n",
        hash_reader(Algorithm::Sha256, &mut ovf.as_bytes()).map_err(io(output))?
    );
    for (disk, path) in machine.disks.iter().zip(&files) {
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let hex = hash_reader(Algorithm::Sha256, &mut file).map_err(io(path))?;
        manifest.push_str(&format!("SHA256({})= {hex}\n", disk.file_name));
    }

    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        let mut tar = ReproducibleTar::new(file);
        tar.append_bytes(&ovf_name, ovf.as_bytes())?;
        tar.append_bytes(&format!("{}.mf", spec.name), manifest.as_bytes())?;
        for (disk, path) in machine.disks.iter().zip(&files) {
            tar.append_file(&disk.file_name, path)?;
        }
        let mut file = tar.finish()?;
        file.flush()?;
        file.get_ref().sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(output)(e));
    }
    std::fs::rename(&tmp, output).map_err(io(output))
}
