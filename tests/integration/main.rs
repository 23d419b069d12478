//! Integration tests: the CLI and end-to-end builds under real QEMU.

// Tests may panic on what they set up themselves; product code may not (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod corpus;
mod e2e;
mod fmt;
mod functions;
mod legacy_json;
mod ova;
mod ssh;
mod templates;
mod vagrant;
