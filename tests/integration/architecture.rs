//! The workspace's shape, checked: no module import cycles (ARCHITECTURE.md) and no
//! `Result<_, String>` in library code.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_import_cycles_in_any_crate() {
    for src in ["src", "boot-commands/src", "http-preseed/src", "ffi/src"] {
        let out = Command::new("python3")
            .arg(repo().join(".ci/cycles.py"))
            .arg(repo().join(src))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{src}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    // So that the test above cannot pass by finding nothing at all.
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(t.path().join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(t.path().join("b.rs"), "use crate::a::A;\npub struct B;\n").unwrap();
    let out = Command::new("python3")
        .arg(repo().join(".ci/cycles.py"))
        .arg(t.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("a <-> b"));
}
