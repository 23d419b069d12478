//! Artifact formats and packaging: reproducible archives now; disk formats (qcow2, streamOptimized
//! VMDK), OVF and OVA as they are added.

pub mod archive;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod vmdk;
