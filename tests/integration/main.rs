//! Integration tests: the CLI and end-to-end builds under real QEMU.

// Tests may panic on what they set up themselves; product code may not (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The shared corpus of public Packer templates: `KILN_CORPUS_DIR`, or `shared/corpus` beside
/// the repository or beside its directory of worktrees. `None`, with a note, when this machine
/// does not have it (the templates are not ours to copy into the repository).
pub fn corpus_dir() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = std::env::var_os("KILN_CORPUS_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo.join("../shared/corpus"),
            repo.join("../../shared/corpus"),
        ])
        .find(|d| d.join("bento/packer_templates").is_dir());
    if found.is_none() {
        eprintln!("note: the shared template corpus is not on this machine; set KILN_CORPUS_DIR to run the corpus tests");
    }
    found
}

/// The corpus directory, or return from the test when there is none.
macro_rules! corpus_or_skip {
    () => {
        match crate::corpus_dir() {
            Some(d) => d,
            None => return,
        }
    };
}

mod bridge;
mod cli;
mod cloud;
mod corpus;
mod download;
mod e2e;
mod floppy;
mod fmt;
mod functions;
mod legacy_json;
mod ova;
mod postprocessors;
mod provision;
mod ssh;
mod support;
mod templates;
mod vagrant;
