//! Post-processors: what happens to an artifact after the build (checksum, compress; manifest,
//! vagrant, shell-local and artifice as they are added).

pub mod checksum;
pub mod compress;
pub mod manifest;
pub mod vagrant;
