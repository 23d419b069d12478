//! What a build produces ([`Artifact`]: the files and facts a builder hands to post-processors)
//! and the formats kiln writes itself: reproducible archives, ISO 9660 images (CD seeds), qcow2
//! reading, streamOptimized VMDK, OVF descriptors, OVA packages and VMware vmx files.

pub mod archive;
pub mod floppy;
pub mod iso;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod vmdk;
pub mod vmx;

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Facts later stages use: for QEMU `diskName`, `diskType` (qcow2/raw), `diskSize` (MiB),
    /// `domainType` (kvm/qemu, the vagrant libvirt driver).
    pub state: BTreeMap<String, String>,
}
