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

#[test]
fn library_code_returns_typed_errors_not_strings() {
    // hcl-rs's function type is `fn(FuncArgs) -> Result<Value, String>`; Packer's function
    // library adapts to it at registration (`hcl_fn!`) without naming the type, so no exemption.
    let pattern = regex::Regex::new(r"Result<[^;{]*,\s*String>").unwrap();
    let mut found = Vec::new();
    for root in ["src", "boot-commands/src", "http-preseed/src"] {
        let mut stack = vec![repo().join(root)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for (n, line) in code.lines().enumerate() {
                    if pattern.is_match(line) && !line.trim_start().starts_with("//") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in library code:\n{}",
        found.join("\n")
    );
}
