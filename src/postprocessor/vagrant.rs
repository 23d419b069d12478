//! The `vagrant` post-processor's packaging: a `.box` is a gzipped tar of `metadata.json`, a
//! `Vagrantfile` and the provider's files. This holds the libvirt layout (what a QEMU build becomes):
//! disks as `box_0.img`, `box_1.img`… listed under `disks` in the metadata, and a Vagrantfile that sets
//! `libvirt.driver` from the accelerator the build used (`kvm` for KVM, `qemu` for TCG and the rest).
//! Boxes are reproducible (see [`crate::artifact::archive`]) and written under a temporary name.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::artifact::archive::{ParallelGzWriter, ReproducibleTar};

/// Packer's default output pattern.
pub const DEFAULT_OUTPUT: &str = "packer_{{ .BuildName }}_{{ .Provider }}_{{ .Architecture }}.box";

/// What goes into a libvirt box.
#[derive(Debug, Clone)]
pub struct LibvirtBox<'a> {
    /// The build's qcow2 disks, the boot disk first.
    pub disks: &'a [PathBuf],
    /// The accelerator the build ran with (`kvm`, `tcg`, `none`, `hvf`).
    pub accelerator: &'a str,
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
    #[error("libvirt boxes need qcow2 disks, but {0} is not qcow2\nhint: set format = \"qcow2\" in the qemu source")]
    NotQcow2(PathBuf),
    #[error("the artifact has no disk to put in the box")]
    NoDisk,
    #[error("unknown accelerator `{0}` for a libvirt box\nhint: libvirt boxes come from kvm, tcg, none or hvf builds")]
    Accelerator(String),
    #[error("could not write {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LibvirtBox<'_> {
    /// The libvirt driver for the build's accelerator.
    fn driver(&self) -> Result<&'static str, VagrantError> {
        match self.accelerator {
            "kvm" => Ok("kvm"),
            "tcg" | "none" | "hvf" => Ok("qemu"),
            other => Err(VagrantError::Accelerator(other.to_string())),
        }
    }

    /// The `metadata.json` text.
    pub fn metadata(&self) -> String {
        let disks: Vec<_> = (0..self.disks.len())
            .map(|i| json!({ "path": format!("box_{i}.img"), "format": "qcow2" }))
            .collect();
        let value = json!({
            "provider": "libvirt",
            "architecture": self.architecture,
            "disks": disks,
        });
        format!("{value:#}\n")
    }

    /// The `Vagrantfile` text.
    pub fn vagrantfile(&self) -> Result<String, VagrantError> {
        let mut text = format!(
            "# Made by kiln for the libvirt provider.\nVagrant.configure(\"2\") do |config|\n  config.vm.provider :libvirt do |libvirt|\n    libvirt.driver = \"{}\"\n  end\nend\n",
            self.driver()?
        );
        if let Some(template) = self.vagrantfile_template {
            text.push('\n');
            text.push_str(template);
            if !template.ends_with('\n') {
                text.push('\n');
            }
        }
        Ok(text)
    }

    /// Writes the box to `output` (through `<output>.tmp`).
    pub fn write(&self, output: &Path) -> Result<(), VagrantError> {
        if self.disks.is_empty() {
            return Err(VagrantError::NoDisk);
        }
        for disk in self.disks {
            if !is_qcow2(disk).map_err(|source| io_err(disk, source))? {
                return Err(VagrantError::NotQcow2(disk.clone()));
            }
        }
        let vagrantfile = self.vagrantfile()?;
        let mut tmp = output.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = self.write_archive(&tmp, &vagrantfile);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, output).map_err(|source| io_err(output, source))
    }

    fn write_archive(&self, tmp: &Path, vagrantfile: &str) -> Result<(), VagrantError> {
        let err = |source| io_err(tmp, source);
        if let Some(dir) = tmp.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(err)?);
        let gz = ParallelGzWriter::new(file, self.compression_level, 0);
        let mut tar = ReproducibleTar::new(gz);
        tar.append_bytes("metadata.json", self.metadata().as_bytes())
            .map_err(err)?;
        tar.append_bytes("Vagrantfile", vagrantfile.as_bytes())
            .map_err(err)?;
        for (i, disk) in self.disks.iter().enumerate() {
            tar.append_file(&format!("box_{i}.img"), disk)
                .map_err(|source| io_err(disk, source))?;
        }
        for extra in self.include {
            let name = extra
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tar.append_file(&name, extra)
                .map_err(|source| io_err(extra, source))?;
        }
        let mut file = tar.finish().map_err(err)?.finish().map_err(err)?;
        file.flush().map_err(err)?;
        file.get_ref().sync_all().map_err(err)
    }
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

    fn spec<'a>(disks: &'a [PathBuf], accelerator: &'a str) -> LibvirtBox<'a> {
        LibvirtBox {
            disks,
            accelerator,
            architecture: "amd64",
            vagrantfile_template: None,
            include: &[],
            compression_level: 6,
        }
    }

    #[test]
    fn driver_follows_the_accelerator() {
        let disks = [PathBuf::from("d")];
        assert!(spec(&disks, "kvm")
            .vagrantfile()
            .unwrap()
            .contains("libvirt.driver = \"kvm\""));
        assert!(spec(&disks, "tcg")
            .vagrantfile()
            .unwrap()
            .contains("libvirt.driver = \"qemu\""));
        let err = spec(&disks, "whpx").vagrantfile().unwrap_err().to_string();
        assert!(err.starts_with("unknown accelerator `whpx`"), "{err}");
    }

    #[test]
    fn refuses_raw_disks_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let out = dir.path().join("x.box");
        let disks = [raw.clone()];
        let err = spec(&disks, "tcg").write(&out).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "libvirt boxes need qcow2 disks, but {} is not qcow2",
                raw.display()
            )),
            "{err}"
        );
        assert!(!out.exists());
        assert!(!dir.path().join("x.box.tmp").exists());
    }
}
