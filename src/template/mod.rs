//! Templates: HCL2 and legacy JSON loading, Packer's function library, formatting.

pub mod format;
pub mod functions;
pub mod json;
