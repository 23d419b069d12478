//! Regression tests for differences from Packer that users noticed, each named after the item
//! of the issue that reported it (ripgrep's `tests/regression.rs` is the model): `issue16_1_…` is
//! item 1 of "Run like Packer where users notice".

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use std::path::Path;

fn kiln(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("kiln").unwrap();
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

/// `timestamp,target,type,data…` lines of a `-machine-readable` run: (target, type).
fn targets(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ',');
            let _ts = f.next()?;
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

const LEGACY: &str = r#"{
  "builders": [
    {"type": "null", "communicator": "none"},
    {"type": "null", "name": "second", "communicator": "none"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo {{build_name}}/{{build_type}} >> names.txt"]}
  ],
  "post-processors": [{"type": "manifest", "output": "manifest.json"}]
}"#;

/// A legacy JSON builder without `name` is named by its type, as in Packer: `-only=qemu` as
/// boxcutter's Makefiles pass it selects it, and the machine-readable target, the
/// manifest's `name` and `{{build_name}}` are that name.
#[test]
fn issue16_1_legacy_json_builds_are_named_by_type_or_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.json"), LEGACY).unwrap();
    let out = kiln(dir.path())
        .args(["-machine-readable", "build", "-only=null", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = targets(&out.stdout);
    assert!(t.iter().any(|(target, _)| target == "null"), "{t:?}");
    assert!(t.iter().all(|(target, _)| target != "second"), "{t:?}");
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "null/null\n");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["builds"][0]["name"], "null");
    assert_eq!(manifest["builds"][0]["builder_type"], "null");

    // A named builder goes by its name; kiln's `type.*` globs match JSON builds too.
    let out = kiln(dir.path())
        .args(["build", "-only=second", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "null/null\nsecond/null\n");
    let out = kiln(dir.path())
        .args(["inspect", "-only=null.*", "t.json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  > null:") && text.contains("  > second:"),
        "{text}"
    );
}

/// A named HCL2 build is `name.type.source` in Packer's output; `{{build_name}}` and
/// `{{build_type}}` in a provisioner are the source's name and type (they were left literal).
#[test]
fn issue16_1_2_named_hcl_builds_and_build_name_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        r#"source "null" "a" { communicator = "none" }
build {
  name    = "mybuild"
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["echo {{build_name}}/{{ build_type }} > names.txt"]
  }
}
"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .args([
            "-machine-readable",
            "build",
            "-only=mybuild.null.a",
            "t.pkr.hcl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = targets(&out.stdout);
    assert!(
        t.iter().any(|(target, _)| target == "mybuild.null.a"),
        "{t:?}"
    );
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "a/null\n");
}
