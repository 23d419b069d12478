//! Integration tests: the CLI and end-to-end builds under real QEMU.

mod cli;
mod corpus;
mod fmt;
mod functions;
mod legacy_json;
mod templates;
