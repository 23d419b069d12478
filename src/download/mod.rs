//! Getting a build's inputs: where an `iso_url` points (local path, `file://`, http), checksum
//! verification, and the content-addressed cache (`PACKER_CACHE_DIR`/`KILN_CACHE_DIR`).
//!
//! Network fetching lives beside this as it is added; what is here needs no network, which is what
//! air-gapped builds rely on.

pub mod cache;
pub mod checksum;
pub mod fetch;
pub mod source;

pub use cache::Cache;
pub use checksum::{Algorithm, Checksum, ChecksumError, ChecksumSpec};
pub use fetch::{FetchError, Fetcher, Reporter, Request};
pub use source::Source;
