//! The layer cache end to end (`kiln build -cache`) with the real `kiln` binary under QEMU
//! (TCG), on `fixtures/templates/layers`: the Debian cloud image of `fixtures/cloud-image`, its
//! cloud-init seed, then three provisioners (a shell command, a directory upload, a script).
//! A cold build saves four layers; an unchanged rebuild resumes the VM from the last one and
//! runs no provisioner, also two at once; editing the last script reruns only it. Each artifact's file tree is
//! read out of its disk with `debugfs` (no mount, no guest boot) and compared: the cached
//! rebuild's tree equals the cold build's. `kiln cache list` and `prune -max-size` close it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{fixture, repo, text};

/// A copy of the template in `dir` (its script is edited by the test).
fn template(dir: &Path) -> PathBuf {
    let t = dir.join("template");
    std::fs::create_dir_all(t.join("files/etc")).unwrap();
    let src = repo().join("fixtures/templates/layers");
    for f in [
        "layers.pkr.hcl",
        "last.sh",
        "files/b.txt",
        "files/etc/note.txt",
    ] {
        std::fs::copy(src.join(f), t.join(f)).unwrap();
    }
    t
}

fn kiln(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .args(args)
        .output()
        .unwrap();
    (o.status.success(), text(&o))
}

fn build(dir: &Path, out: &str) -> String {
    let base = fixture("cloud-image").join("debian-cloud.qcow2");
    let seed = repo().join("fixtures/templates/cloud/seed");
    let (ok, t) = kiln(
        dir,
        &[
            "build",
            "-cache",
            &format!("-var=base_image={}", base.display()),
            &format!("-var=seed_dir={}", seed.display()),
            &format!("-var=output_directory={out}"),
            "template",
        ],
    );
    assert!(ok, "{t}");
    t
}

/// Paths whose contents change with every boot or shutdown (logs, random seeds, timers), left
/// out of the comparison of two builds' trees.
const VOLATILE: &[&str] = &[
    "./var/log/",
    "./var/lib/systemd/",
    "./var/cache/",
    "./var/tmp/",
    "./tmp/",
    "./var/lib/dhcp/",
    "./var/lib/cloud/data/",
];

/// Every file of the root file system of the disk `qcow2`: path → (mode, size, content hash).
fn guest_tree(work: &Path, qcow2: &Path) -> BTreeMap<String, String> {
    let raw = work.join("tree.raw");
    let dump = work.join("tree");
    let _ = std::fs::remove_dir_all(&dump);
    std::fs::create_dir_all(&dump).unwrap();
    let o = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(qcow2)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new("sfdisk").arg("-J").arg(&raw).output().unwrap();
    let table: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let root = table["partitiontable"]["partitions"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p["start"].as_u64())
        .expect("a root partition");
    let o = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", dump.display()))
        .arg(format!("{}?offset={}", raw.display(), root * 512))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut out = BTreeMap::new();
    walk(&dump, &dump, &mut out);
    assert!(out.len() > 1000, "a whole Debian tree: {} files", out.len());
    std::fs::remove_file(&raw).unwrap();
    std::fs::remove_dir_all(&dump).unwrap();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = format!("./{}", p.strip_prefix(root).unwrap().display());
        let m = std::fs::symlink_metadata(&p).unwrap();
        if VOLATILE.iter().any(|v| rel.starts_with(v)) {
            continue;
        }
        let mode = m.permissions().mode();
        if m.is_dir() {
            out.insert(rel.clone(), format!("dir {mode:o}"));
            walk(root, &p, out);
        } else if m.file_type().is_symlink() {
            let target = std::fs::read_link(&p).unwrap();
            out.insert(rel, format!("link {}", target.display()));
        } else {
            let sum = Sha256::digest(std::fs::read(&p).unwrap());
            out.insert(rel, format!("file {mode:o} {} {sum:x}", m.len()));
        }
    }
}

/// The entries where two trees differ, for the failure message.
fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {:?} vs {:?}", a.get(k), b.get(k)))
        .collect()
}

#[test]
fn a_cached_rebuild_resumes_from_the_layer_that_still_matches_and_builds_the_same_guest() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let t = template(dir);

    // Cold: every layer is saved.
    let cold = build(dir, "out-cold");
    assert!(
        cold.contains("No cached layer matches: building from scratch and saving 4 layers"),
        "{cold}"
    );
    for step in [
        "install",
        "provisioner 1 (shell)",
        "provisioner 2 (file)",
        "provisioner 3 (shell)",
    ] {
        assert!(
            cold.contains(&format!("Saved the layer after {step}")),
            "{step}: {cold}"
        );
    }

    // Unchanged: the VM resumes after the last provisioner; nothing is provisioned.
    let warm = build(dir, "out-warm");
    assert!(
        warm.contains("Using cached layer after provisioner 3 (shell)"),
        "{warm}"
    );
    assert!(warm.contains("no provisioner to run"), "{warm}");
    assert!(warm.contains("resuming it from the cached layer"), "{warm}");
    assert!(!warm.contains("Provisioning with"), "{warm}");

    // Two builds at once share the layers: both resume from the same one.
    let parallel: Vec<_> = ["out-a", "out-b"]
        .into_iter()
        .map(|out| {
            let dir = dir.to_owned();
            std::thread::spawn(move || build(&dir, out))
        })
        .collect();
    for t in parallel {
        let out = t.join().unwrap();
        assert!(
            out.contains("Using cached layer after provisioner 3 (shell)"),
            "{out}"
        );
    }

    // The last script edited (same name, new bytes): only it runs again.
    let script = t.join("last.sh");
    let mut s = std::fs::read_to_string(&script).unwrap();
    s.push_str("echo edited > /opt/kiln/edited\n");
    std::fs::write(&script, s).unwrap();
    let edit = build(dir, "out-edit");
    assert!(
        edit.contains("Using cached layer after provisioner 2 (file)"),
        "{edit}"
    );
    assert_eq!(
        edit.matches("Provisioning with shell...").count(),
        1,
        "{edit}"
    );
    assert!(!edit.contains("Provisioning with file"), "{edit}");
    assert!(
        edit.contains("Saved the layer after provisioner 3 (shell)"),
        "{edit}"
    );

    // The cached rebuild's guest is the cold build's; the edited one differs by the edit.
    let cold_tree = guest_tree(dir, &dir.join("out-cold/layers.qcow2"));
    let warm_tree = guest_tree(dir, &dir.join("out-warm/layers.qcow2"));
    let diff = differences(&cold_tree, &warm_tree);
    assert!(
        diff.is_empty(),
        "cold and cached trees differ:\n{}",
        diff.join("\n")
    );
    for f in ["./opt/kiln/one", "./opt/kiln/greeting", "./opt/kiln/files"] {
        assert!(cold_tree.contains_key(f), "{f} is in the image");
    }
    let edit_tree = guest_tree(dir, &dir.join("out-edit/layers.qcow2"));
    let diff = differences(&cold_tree, &edit_tree);
    assert!(
        diff.iter().any(|d| d.starts_with("./opt/kiln/edited:")),
        "{}",
        diff.join("\n")
    );
    assert!(
        diff.iter()
            .all(|d| d.starts_with("./opt/kiln/edited:") || d.starts_with("./opt/kiln:")),
        "only the edit differs:\n{}",
        diff.join("\n")
    );

    // The layers are listed with their steps and uses, and go with prune -max-size.
    let (ok, list) = kiln(dir, &["cache", "list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains("after provisioner 3 (shell)") && list.contains("1 hit"),
        "{list}"
    );
    let (ok, pruned) = kiln(dir, &["cache", "prune", "-max-size=0"]);
    assert!(ok, "{pruned}");
    assert_eq!(pruned.matches("Removed layer").count(), 5, "{pruned}");
    let (_, list) = kiln(dir, &["cache", "list"]);
    assert!(!list.contains("after install"), "{list}");
}
