//! Disk sources: what kiln's VMDK writer and OVA/OVF packager read a disk through, so the same
//! conversion code serves the QEMU builder's qcow2 disks and the VMware builders' sparse VMDKs.
//! A [`DiskSource`] knows its guest size and hands its contents over in guest order, piece by
//! piece, saying which pieces are holes, so a conversion streams without a raw copy and skips
//! what was never written. `vmdk::open` tells the formats apart by their first bytes. The error
//! type of reading and writing disks, [`VmdkError`], lives here with the trait.

use std::path::PathBuf;

use super::qcow2::{Qcow2, Qcow2Error};
use super::stream::WriteError;

/// The callback of [`DiskSource::for_each_extent`]: `(guest offset, length, data)`.
pub type Each<'a> = dyn FnMut(u64, u64, Option<&[u8]>) -> Result<(), VmdkError> + 'a;

/// A disk image read as its guest sees it.
pub trait DiskSource {
    /// The guest-visible size in bytes.
    fn size(&self) -> u64;

    /// Calls `each(offset, len, data)` over the whole disk, in guest order and without gaps:
    /// `data` is `Some` (of `len` bytes) where the image holds data, `None` where the `len`
    /// bytes read as zeros without being stored. A piece is at most a cluster or a few grains,
    /// so memory stays bounded whatever the disk's size; an error from `each` stops the walk.
    fn for_each_extent(&mut self, each: &mut Each<'_>) -> Result<(), VmdkError>;
}

impl DiskSource for Qcow2 {
    fn size(&self) -> u64 {
        Qcow2::size(self)
    }

    fn for_each_extent(&mut self, each: &mut Each<'_>) -> Result<(), VmdkError> {
        let (size, cluster) = (Qcow2::size(self), self.cluster_size());
        self.for_each_cluster(|offset, data| each(offset, (size - offset).min(cluster), data))
    }
}

/// Why a VMDK could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    #[error(transparent)]
    Source(#[from] Qcow2Error),
    #[error("{path} is not a VMDK kiln can read: {what}")]
    Format { path: PathBuf, what: String },
    /// A VMDK could not be read back.
    #[error("could not read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the VMDK failed, or the build was cancelled.
    #[error(transparent)]
    Write(#[from] WriteError),
}
