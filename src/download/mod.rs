//! Getting a build's inputs: where an `iso_url` points (local path, `file://`, http), checksum
//! verification, fetching with resume, and the cache (`PACKER_CACHE_DIR`/`KILN_CACHE_DIR`) that
//! `kiln cache` manages. Progress goes through [`crate::ui::progress::Reporter`].

pub mod cache;
pub mod checksum;
pub mod fetch;
pub mod source;

pub use cache::Cache;
pub use checksum::{Algorithm, Checksum, ChecksumError, ChecksumSpec};
pub use fetch::{FetchError, Fetcher, Request};
pub use source::Source;
