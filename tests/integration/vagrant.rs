//! Vagrant boxes judged by the real consumers: `vagrant box add` must take every box kiln writes and
//! `vagrant box list` must show it with the right provider; `qemu-img` must accept and compare the
//! disks inside. metadata.json and Vagrantfile are pinned by golden files (`KILN_BLESS=1` rewrites
//! them after a deliberate change).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::postprocessor::vagrant::{self, BoxContents, BoxOptions, VirtualboxMachine};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

fn qcow2(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg(size));
    run(Command::new("qemu-io")
        .args(["-c", "write -P 0x33 0 256k"])
        .arg(&path));
    path
}

const TEMPLATE: &str = "Vagrant.configure(\"2\") do |config|\n  config.vm.synced_folder \".\", \"/vagrant\", disabled: true\nend\n";

fn opts(template: Option<&'static str>) -> BoxOptions<'static> {
    BoxOptions {
        architecture: "amd64",
        vagrantfile_template: template,
        include: &[],
        compression_level: 6,
    }
}

fn check_golden(name: &str, contents: &BoxContents) {
    let dir = repo().join("fixtures/golden").join(name);
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metadata.json"), &contents.metadata).unwrap();
        std::fs::write(dir.join("Vagrantfile"), &contents.vagrantfile).unwrap();
    }
    assert_eq!(
        contents.metadata,
        std::fs::read_to_string(dir.join("metadata.json")).unwrap()
    );
    assert_eq!(
        contents.vagrantfile,
        std::fs::read_to_string(dir.join("Vagrantfile")).unwrap()
    );
}

fn vagrant_box_add(dir: &Path, boxfile: &Path) -> String {
    let home = dir.join("vagrant-home");
    let vagrant = |args: &[&str]| {
        run(Command::new("vagrant")
            .args(args)
            .env("VAGRANT_HOME", &home)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1"))
    };
    let added = vagrant(&[
        "box",
        "add",
        "--name",
        "kiln-test",
        &boxfile.to_string_lossy(),
    ]);
    assert!(
        added.contains("Successfully added box 'kiln-test'"),
        "{added}"
    );
    vagrant(&["box", "list"]).trim().to_string()
}

fn unpack(dir: &Path, boxfile: &Path) -> PathBuf {
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(boxfile)
        .arg("-C")
        .arg(&unpacked));
    unpacked
}

#[test]
fn libvirt_box_is_accepted_by_vagrant_and_matches_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let disks = [
        qcow2(dir.path(), "disk.qcow2", "64M"),
        qcow2(dir.path(), "disk-1.qcow2", "32M"),
    ];
    let contents = vagrant::libvirt(&disks, "tcg", &opts(Some(TEMPLATE))).unwrap();
    check_golden("vagrant-libvirt", &contents);
    let boxfile = dir.path().join("packer_test_libvirt_amd64.box");
    contents.write(&boxfile, 6).unwrap();

    let unpacked = unpack(dir.path(), &boxfile);
    for (disk, source) in ["box_0.img", "box_1.img"].iter().zip(&disks) {
        let same = run(Command::new("qemu-img")
            .arg("compare")
            .arg(source)
            .arg(unpacked.join(disk)));
        assert!(same.contains("Images are identical"), "{disk}: {same}");
    }
    assert_eq!(
        vagrant_box_add(dir.path(), &boxfile),
        "kiln-test (libvirt, 0)"
    );
}

#[test]
fn virtualbox_box_from_qemu_is_accepted_by_vagrant() {
    let dir = tempfile::tempdir().unwrap();
    let disks = [qcow2(dir.path(), "disk.qcow2", "48M")];
    let machine = VirtualboxMachine {
        name: "kiln-test",
        cpus: 2,
        memory_mb: 1024,
    };
    let contents =
        vagrant::virtualbox_from_qcow2(&disks, &machine, &dir.path().join("work"), &opts(None))
            .unwrap();
    check_golden("vagrant-virtualbox", &contents);
    let boxfile = dir.path().join("packer_test_virtualbox_amd64.box");
    contents.write(&boxfile, 6).unwrap();

    let unpacked = unpack(dir.path(), &boxfile);
    let listing = run(Command::new("tar").arg("-tzf").arg(&boxfile));
    assert_eq!(
        listing,
        "metadata.json\nVagrantfile\nbox.ovf\nkiln-test-disk001.vmdk\n"
    );
    run(Command::new("xmllint")
        .arg("--noout")
        .arg(unpacked.join("box.ovf")));
    let ovf = std::fs::read_to_string(unpacked.join("box.ovf")).unwrap();
    // Vagrant's VirtualBox provider takes base_mac from the OVF's first adapter: they must agree.
    assert!(
        ovf.contains("<rasd:Address>080027C0FFEE</rasd:Address>"),
        "{ovf}"
    );
    assert!(contents
        .vagrantfile
        .contains("config.vm.base_mac = \"080027C0FFEE\""));
    let same = run(Command::new("qemu-img")
        .arg("compare")
        .arg(&disks[0])
        .arg(unpacked.join("kiln-test-disk001.vmdk")));
    assert!(same.contains("Images are identical"), "{same}");
    assert_eq!(
        vagrant_box_add(dir.path(), &boxfile),
        "kiln-test (virtualbox, 0)"
    );
}

#[test]
fn boxes_are_byte_identical_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let disks = [qcow2(dir.path(), "disk.qcow2", "16M")];
    let (a, b) = (dir.path().join("a.box"), dir.path().join("b.box"));
    vagrant::libvirt(&disks, "kvm", &opts(None))
        .unwrap()
        .write(&a, 6)
        .unwrap();
    // A later mtime on the input must not change the box.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    run(Command::new("touch").arg(&disks[0]));
    vagrant::libvirt(&disks, "kvm", &opts(None))
        .unwrap()
        .write(&b, 6)
        .unwrap();
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap());
}
