//! Vagrant boxes judged by the real consumers: `vagrant box add` must take every box kiln writes and
//! `vagrant box list` must show it with the right provider; `qemu-img check` must accept the disk
//! inside. The generated metadata.json and Vagrantfile are pinned by golden files.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::postprocessor::vagrant::LibvirtBox;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn qcow2(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size)
        .output()
        .expect("qemu-img is installed (.ci/setup-host)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn spec<'a>(disks: &'a [PathBuf], template: Option<&'a str>) -> LibvirtBox<'a> {
    LibvirtBox {
        disks,
        accelerator: "tcg",
        architecture: "amd64",
        vagrantfile_template: template,
        include: &[],
        compression_level: 6,
    }
}

#[test]
fn libvirt_metadata_and_vagrantfile_match_golden_files() {
    let disks = [PathBuf::from("a.qcow2"), PathBuf::from("b.qcow2")];
    let golden = repo().join("fixtures/golden/vagrant-libvirt");
    let spec = spec(
        &disks,
        Some(
        "Vagrant.configure(\"2\") do |config|\n  config.vm.synced_folder \".\", \"/vagrant\", disabled: true\nend\n",
    ),
    );
    assert_eq!(
        spec.metadata(),
        std::fs::read_to_string(golden.join("metadata.json")).unwrap()
    );
    assert_eq!(
        spec.vagrantfile().unwrap(),
        std::fs::read_to_string(golden.join("Vagrantfile")).unwrap()
    );
}

#[test]
fn vagrant_box_add_accepts_a_libvirt_box() {
    let dir = tempfile::tempdir().unwrap();
    let disks = [
        qcow2(dir.path(), "disk.qcow2", "64M"),
        qcow2(dir.path(), "disk-1.qcow2", "32M"),
    ];
    let boxfile = dir.path().join("packer_test_libvirt_amd64.box");
    spec(&disks, None).write(&boxfile).unwrap();

    // What Vagrant unpacks: the layout, and disks qemu-img accepts.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&boxfile)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    for disk in ["box_0.img", "box_1.img"] {
        let check = Command::new("qemu-img")
            .arg("check")
            .arg(unpacked.join(disk))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{disk}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }

    let home = dir.path().join("vagrant-home");
    let vagrant = |args: &[&str]| {
        Command::new("vagrant")
            .args(args)
            .env("VAGRANT_HOME", &home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .output()
            .expect("vagrant is installed (.ci/setup-host)")
    };
    let boxpath = boxfile.to_string_lossy().into_owned();
    let added = vagrant(&["box", "add", "--name", "kiln-test", &boxpath]);
    let text = String::from_utf8_lossy(&added.stdout).into_owned()
        + &String::from_utf8_lossy(&added.stderr);
    assert!(added.status.success(), "{text}");
    assert!(
        text.contains("Successfully added box 'kiln-test'"),
        "{text}"
    );
    let list = vagrant(&["box", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "kiln-test (libvirt, 0)"
    );
}

#[test]
fn boxes_are_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let disks = [qcow2(dir.path(), "disk.qcow2", "16M")];
    let (a, b) = (dir.path().join("a.box"), dir.path().join("b.box"));
    spec(&disks, None).write(&a).unwrap();
    // A later mtime on the input must not change the box.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let _ = Command::new("touch").arg(&disks[0]).status();
    spec(&disks, None).write(&b).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}
