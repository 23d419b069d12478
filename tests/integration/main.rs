//! Integration tests: the CLI and end-to-end builds under real QEMU.

// Tests may panic on what they set up themselves; product code may not (see clippy.toml).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The shared corpus of public Packer templates: `KILN_CORPUS_DIR`, or `shared/corpus` beside
/// the repository or beside its directory of worktrees. `None`, with a visible note, when this
/// machine does not have it (the templates are not ours to copy into the repository); in CI
/// (`CI` set) a missing corpus is a failure, since there it must be present.
pub fn corpus_dir() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // An explicit KILN_CORPUS_DIR is the only place looked at.
    let candidates = match std::env::var_os("KILN_CORPUS_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => vec![
            repo.join("../shared/corpus"),
            repo.join("../../shared/corpus"),
        ],
    };
    let found = candidates
        .into_iter()
        .find(|d| d.join("bento/packer_templates").is_dir());
    if found.is_none() {
        assert!(
            !in_ci(),
            "the shared template corpus is missing, and CI must run the corpus tests: set KILN_CORPUS_DIR or put shared/corpus beside the repository"
        );
        eprintln!("SKIPPED: the shared template corpus is not on this machine; set KILN_CORPUS_DIR to run the corpus tests");
    }
    found
}

/// True under CI (`CI` set to anything but `false` or empty), where skipping is not allowed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
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

mod architecture;
mod bridge;
mod cli;
mod cloud;
mod corpus;
mod download;
mod e2e;
mod floppy;
mod fmt;
mod functions;
mod golden;
mod layers;
mod legacy_json;
mod netns;
mod ova;
mod postprocessors;
mod provision;
mod regression;
mod secrets;
mod ssh;
mod support;
mod templates;
mod typing;
mod typing_guest;

#[test]
fn a_missing_corpus_fails_in_ci_and_skips_visibly_elsewhere() {
    // Run the locator in a child process with the corpus hidden, once as CI and once not.
    let exe = std::env::current_exe().unwrap();
    let run = |ci: &str| {
        std::process::Command::new(&exe)
            .args(["corpus_probe_child", "--exact", "--ignored", "--nocapture"])
            .env("KILN_CORPUS_PROBE", "1")
            .env("KILN_CORPUS_DIR", "/nonexistent")
            .env("CI", ci)
            .output()
            .unwrap()
    };
    let ci = run("true");
    assert!(!ci.status.success(), "CI must fail without the corpus");
    assert!(
        String::from_utf8_lossy(&ci.stderr).contains("corpus is missing"),
        "{ci:?}"
    );
    let dev = run("");
    assert!(dev.status.success(), "{dev:?}");
    assert!(String::from_utf8_lossy(&dev.stderr).contains("SKIPPED"));
}

/// The child of the test above; ignored in normal runs.
#[test]
#[ignore]
fn corpus_probe_child() {
    if std::env::var_os("KILN_CORPUS_PROBE").is_none() {
        return;
    }
    assert!(corpus_dir().is_none());
}
mod vagrant;
mod virtualbox;
mod virtualbox_golden;
mod vmware;
mod vmware_golden;
mod vmware_leases;
mod vmware_ovf;
mod vmware_vmx;
mod vmware_vmx_template;
mod vmx;
