//! Typed option structs for builders, provisioners and post-processors, decoded from the
//! evaluated template values in a [`crate::template::PlannedBuild`] with [`decode`], which turns
//! serde errors into template diagnostics pointing at the offending attribute.

pub mod common;
mod decode;
pub mod qemu;
pub mod weak;

pub use decode::decode;
