//! The `vagrant` post-processor's packaging. A `.box` is a gzipped tar of `metadata.json`, a
//! `Vagrantfile` and the provider's files; each provider below decides those three things, and one
//! writer packs them (reproducibly, see [`crate::artifact::archive`], under a temporary name).
//!
//! - libvirt (what a QEMU build becomes): disks as `box_0.img`, `box_1.img`… listed under `disks`,
//!   and `libvirt.driver` from the accelerator the build used (`kvm` for KVM, `qemu` otherwise).
//! - virtualbox from a QEMU build (`provider_override = "virtualbox"`): the qcow2 disks become
//!   streamOptimized VMDKs described by `box.ovf`, and the Vagrantfile sets `config.vm.base_mac` to
//!   the OVF's first adapter, as Vagrant's VirtualBox provider expects.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::artifact::archive::{ParallelGzWriter, ReproducibleTar};
use crate::artifact::ovf::{OvfDisk, OvfMachine};
use crate::artifact::vmdk::{self, VmdkError};

/// Packer's default output pattern.
pub const DEFAULT_OUTPUT: &str = "packer_{{ .BuildName }}_{{ .Provider }}_{{ .Architecture }}.box";

/// The MAC kiln gives a VirtualBox box's adapter (VirtualBox's OUI); fixed so boxes are reproducible.
const VIRTUALBOX_MAC: &str = "080027C0FFEE";

/// What every provider's box shares.
#[derive(Debug, Clone)]
pub struct BoxOptions<'a> {
    /// `architecture` (Vagrant ≥ 2.4 reads it; default `amd64`).
    pub architecture: &'a str,
    /// The rendered `vagrantfile_template`, appended to the provider's Vagrantfile.
    pub vagrantfile_template: Option<&'a str>,
    /// `include`: extra files placed at the top of the box.
    pub include: &'a [PathBuf],
    /// `compression_level`, 0 (stored) to 9; Packer's default is 6.
    pub compression_level: u32,
}

/// Why a box could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("the {provider} box needs qcow2 disks, but {path} is not qcow2\nhint: set format = \"qcow2\" in the qemu source")]
    NotQcow2 {
        provider: &'static str,
        path: PathBuf,
    },
    #[error("the artifact has no disk to put in the box")]
    NoDisk,
    #[error("unknown accelerator `{0}` for a libvirt box\nhint: libvirt boxes come from kvm, tcg, none or hvf builds")]
    Accelerator(String),
    #[error(transparent)]
    Disk(#[from] VmdkError),
    #[error("could not write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A box's contents before packing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxContents {
    pub metadata: String,
    pub vagrantfile: String,
    /// (name in the box, file on disk), in box order.
    pub files: Vec<(String, PathBuf)>,
}

/// The libvirt box of a QEMU build whose `disks` (boot disk first) ran with `accelerator`.
pub fn libvirt(
    disks: &[PathBuf],
    accelerator: &str,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    check_qcow2("libvirt", disks)?;
    let driver = match accelerator {
        "kvm" => "kvm",
        "tcg" | "none" | "hvf" => "qemu",
        other => return Err(VagrantError::Accelerator(other.to_string())),
    };
    let listed: Vec<_> = (0..disks.len())
        .map(|i| json!({ "path": format!("box_{i}.img"), "format": "qcow2" }))
        .collect();
    let metadata =
        json!({ "provider": "libvirt", "architecture": opts.architecture, "disks": listed });
    let vagrantfile = format!(
        "# Made by kiln for the libvirt provider.\nVagrant.configure(\"2\") do |config|\n  config.vm.provider :libvirt do |libvirt|\n    libvirt.driver = \"{driver}\"\n  end\nend\n"
    );
    let files = disks
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("box_{i}.img"), d.clone()))
        .collect();
    Ok(finish(metadata, vagrantfile, files, opts))
}

/// The VirtualBox machine a QEMU build's box describes.
#[derive(Debug, Clone)]
pub struct VirtualboxMachine<'a> {
    pub name: &'a str,
    pub cpus: u32,
    pub memory_mb: u64,
}

/// The virtualbox box of a QEMU build: converts `disks` to VMDKs in `work_dir`.
pub fn virtualbox_from_qcow2(
    disks: &[PathBuf],
    machine: &VirtualboxMachine<'_>,
    work_dir: &Path,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    check_qcow2("virtualbox", disks)?;
    std::fs::create_dir_all(work_dir).map_err(|source| io_err(work_dir, source))?;
    let mut ovf_disks = Vec::new();
    let mut files = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let file_name = format!("{}-disk{:03}.vmdk", machine.name, i + 1);
        let path = work_dir.join(&file_name);
        let info = vmdk::write_from_qcow2(disk, &path, "lsilogic")?;
        ovf_disks.push(OvfDisk {
            file_name: file_name.clone(),
            file_size: info.file_size,
            capacity: info.capacity,
        });
        files.push((file_name, path));
    }
    let ovf = OvfMachine {
        name: machine.name.to_string(),
        cpus: machine.cpus,
        memory_mb: machine.memory_mb,
        disks: ovf_disks,
        mac: Some(VIRTUALBOX_MAC.to_string()),
        system_type: "virtualbox-2.2".to_string(),
    };
    let ovf_path = work_dir.join("box.ovf");
    std::fs::write(&ovf_path, ovf.descriptor()).map_err(|source| io_err(&ovf_path, source))?;
    files.insert(0, ("box.ovf".to_string(), ovf_path));
    let metadata = json!({ "provider": "virtualbox", "architecture": opts.architecture });
    let vagrantfile = format!(
        "# Made by kiln for the virtualbox provider.\nVagrant.configure(\"2\") do |config|\n  config.vm.base_mac = \"{VIRTUALBOX_MAC}\"\nend\n"
    );
    Ok(finish(metadata, vagrantfile, files, opts))
}

fn finish(
    metadata: serde_json::Value,
    mut vagrantfile: String,
    mut files: Vec<(String, PathBuf)>,
    opts: &BoxOptions<'_>,
) -> BoxContents {
    if let Some(template) = opts.vagrantfile_template {
        vagrantfile.push('\n');
        vagrantfile.push_str(template);
        if !template.ends_with('\n') {
            vagrantfile.push('\n');
        }
    }
    for extra in opts.include {
        let name = extra
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push((name, extra.clone()));
    }
    BoxContents {
        metadata: format!("{metadata:#}\n"),
        vagrantfile,
        files,
    }
}

impl BoxContents {
    /// Packs the box into `output` (through `<output>.tmp`) at `compression_level`.
    pub fn write(&self, output: &Path, compression_level: u32) -> Result<(), VagrantError> {
        let mut tmp = output.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        if let Err(e) = self.write_archive(&tmp, compression_level) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, output).map_err(|source| io_err(output, source))
    }

    fn write_archive(&self, tmp: &Path, level: u32) -> Result<(), VagrantError> {
        let err = |source| io_err(tmp, source);
        if let Some(dir) = tmp.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(err)?);
        let mut tar = ReproducibleTar::new(ParallelGzWriter::new(file, level, 0));
        tar.append_bytes("metadata.json", self.metadata.as_bytes())
            .map_err(err)?;
        tar.append_bytes("Vagrantfile", self.vagrantfile.as_bytes())
            .map_err(err)?;
        for (name, path) in &self.files {
            tar.append_file(name, path)
                .map_err(|source| io_err(path, source))?;
        }
        let mut file = tar.finish().map_err(err)?.finish().map_err(err)?;
        file.flush().map_err(err)?;
        file.get_ref().sync_all().map_err(err)
    }
}

fn check_qcow2(provider: &'static str, disks: &[PathBuf]) -> Result<(), VagrantError> {
    if disks.is_empty() {
        return Err(VagrantError::NoDisk);
    }
    for disk in disks {
        if !is_qcow2(disk).map_err(|source| io_err(disk, source))? {
            return Err(VagrantError::NotQcow2 {
                provider,
                path: disk.clone(),
            });
        }
    }
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> VagrantError {
    VagrantError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// qcow2 files start with `QFI\xfb`.
fn is_qcow2(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path)?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"QFI\xfb"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: BoxOptions<'static> = BoxOptions {
        architecture: "amd64",
        vagrantfile_template: None,
        include: &[],
        compression_level: 6,
    };

    fn qcow2_stub(dir: &Path) -> PathBuf {
        let path = dir.join("d.qcow2");
        std::fs::write(&path, b"QFI\xfb rest of a header").unwrap();
        path
    }

    #[test]
    fn driver_follows_the_accelerator() {
        let dir = tempfile::tempdir().unwrap();
        let disks = [qcow2_stub(dir.path())];
        let kvm = libvirt(&disks, "kvm", &OPTS).unwrap();
        assert!(kvm.vagrantfile.contains("libvirt.driver = \"kvm\""));
        let tcg = libvirt(&disks, "tcg", &OPTS).unwrap();
        assert!(tcg.vagrantfile.contains("libvirt.driver = \"qemu\""));
        let err = libvirt(&disks, "whpx", &OPTS).unwrap_err().to_string();
        assert!(err.starts_with("unknown accelerator `whpx`"), "{err}");
    }

    #[test]
    fn refuses_raw_disks() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let err = libvirt(std::slice::from_ref(&raw), "tcg", &OPTS)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "the libvirt box needs qcow2 disks, but {} is not qcow2",
                raw.display()
            )),
            "{err}"
        );
        assert!(matches!(
            libvirt(&[], "tcg", &OPTS),
            Err(VagrantError::NoDisk)
        ));
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let contents = BoxContents {
            metadata: "{}".into(),
            vagrantfile: String::new(),
            files: vec![("box_0.img".into(), dir.path().join("vanished.img"))],
        };
        let out = dir.path().join("x.box");
        assert!(contents.write(&out, 6).is_err());
        assert!(!out.exists());
        assert!(!dir.path().join("x.box.tmp").exists());
    }
}
