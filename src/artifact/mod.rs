//! What a build produces ([`Artifact`]: the files and facts a builder hands to post-processors)
//! and the formats kiln writes itself: reproducible archives, ISO 9660 images (CD seeds), qcow2
//! and VMDK reading (as [`source::DiskSource`]s), streamOptimized VMDK, OVF descriptors, OVA
//! packages and VMware vmx files.

pub mod archive;
pub mod floppy;
pub mod iso;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod source;
pub mod stream;
pub mod vmdk;
pub mod vmdk_read;
pub mod vmx;

use std::path::{Path, PathBuf};

/// Writes `output` through `<output>.tmp`, creating `output`'s directory first: `write` fills the
/// temporary path, which is renamed to `output` only once `write` succeeded and removed when it
/// failed, so a failed or interrupted write never leaves a partial file under the final name. A
/// failed directory creation or rename goes through `io_err`. No fsync: like Packer and the standalone compressors, kiln leaves write-back to
/// the kernel (an fsync of gigabytes costs more than the compression on a slow disk); renaming
/// only a complete file is what keeps partial output from the final name.
pub fn write_through_temp<T, E>(
    output: &Path,
    write: impl FnOnce(&Path) -> Result<T, E>,
    io_err: impl FnOnce(std::io::Error) -> E,
) -> Result<T, E> {
    let tmp = match TempOutput::new(output) {
        Ok(t) => t,
        Err(e) => return Err(io_err(e)),
    };
    let written = write(&tmp.path);
    tmp.settle(output, written, io_err)
}

/// [`write_through_temp`] for a `write` that runs asynchronously (another program writing the
/// file, such as `qemu-img convert`); the temporary file is also removed when the returned
/// future is dropped before it finished (a cancelled build).
pub async fn write_through_temp_async<T, E, Fut>(
    output: &Path,
    write: impl FnOnce(PathBuf) -> Fut,
    io_err: impl FnOnce(std::io::Error) -> E,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let tmp = match TempOutput::new(output) {
        Ok(t) => t,
        Err(e) => return Err(io_err(e)),
    };
    let written = write(tmp.path.clone()).await;
    tmp.settle(output, written, io_err)
}

/// The temporary file of [`write_through_temp`], removed when dropped unless it was renamed.
struct TempOutput {
    path: PathBuf,
    renamed: bool,
}

impl TempOutput {
    /// `<output>.tmp`, with `output`'s directory created.
    fn new(output: &Path) -> std::io::Result<Self> {
        if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut path = output.as_os_str().to_owned();
        path.push(".tmp");
        Ok(Self {
            path: PathBuf::from(path),
            renamed: false,
        })
    }

    /// Rename to `output` when `written` succeeded; otherwise, or when the rename fails, the
    /// file is removed as `self` drops.
    fn settle<T, E>(
        mut self,
        output: &Path,
        written: Result<T, E>,
        io_err: impl FnOnce(std::io::Error) -> E,
    ) -> Result<T, E> {
        let value = written?;
        std::fs::rename(&self.path, output).map_err(io_err)?;
        self.renamed = true;
        Ok(value)
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The product of a builder or post-processor, as Packer's `Artifact` interface describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Artifact {
    /// Who made it, with Packer's ids (`transcend.qemu` for the QEMU builder,
    /// `mitchellh.post-processor.vagrant` for a box…), so manifests match Packer's.
    pub builder_id: String,
    /// The source name (`debian`), Packer's `build_name` in manifests and `PACKER_BUILD_NAME`.
    pub build_name: String,
    /// The source type (`qemu`), Packer's `builder_type`.
    pub builder_type: String,
    /// The files, in a stable order.
    pub files: Vec<PathBuf>,
    /// An identifier (`VM` for local disks, a box path…).
    pub id: String,
    /// One line for the final report: `VM files in directory: output-debian`.
    pub description: String,
    /// What the builder knows about the machine (post-processors describe it from these).
    pub facts: MachineFacts,
}

/// Typed facts about a built machine, filled by the builder's steps as they learn them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineFacts {
    /// The main disk's file name (`vm_name`).
    pub disk_name: Option<String>,
    /// Its format (`qcow2`, `raw`, `vmdk`…).
    pub disk_format: Option<String>,
    /// Its virtual size in MiB.
    pub disk_size_mib: Option<u64>,
    /// The accelerator the VM ran under (`kvm`, `tcg`…).
    pub accelerator: Option<String>,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
    /// The firmware the guest was installed with.
    pub firmware: Option<Firmware>,
}

/// A machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// PC BIOS.
    Bios,
    /// UEFI.
    Efi,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_through_temp_renames_only_a_complete_write() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("boxes/a.box");
        let tmp = dir.path().join("boxes/a.box.tmp");
        let failed: Result<(), std::io::Error> = write_through_temp(
            &out,
            |t| {
                std::fs::write(t, b"half")?;
                Err(std::io::Error::other("disk full"))
            },
            |e| e,
        );
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert!(!out.exists() && !tmp.exists());
        let n = write_through_temp(&out, |t| std::fs::write(t, b"whole").map(|()| 5), |e| e);
        assert_eq!(n.unwrap(), 5);
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        assert!(!tmp.exists());
    }

    #[tokio::test]
    async fn write_through_temp_async_leaves_nothing_when_dropped_half_way() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("disk");
        let tmp = dir.path().join("disk.tmp");
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let write = write_through_temp_async(
            &out,
            |t| async move {
                std::fs::write(&t, b"half")?;
                let _ = started_tx.send(());
                std::future::pending::<std::io::Result<()>>().await
            },
            |e| e,
        );
        tokio::select! {
            _ = write => unreachable!("the write never ends"),
            _ = started => {}
        }
        assert!(!out.exists() && !tmp.exists());
        let n =
            write_through_temp_async(&out, |t| async move { std::fs::write(t, b"whole") }, |e| e)
                .await;
        n.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"whole");
        assert!(!tmp.exists());
    }
}
