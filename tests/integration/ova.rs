//! OVA export checked by independent tools: system `tar` lists the OVF specification's order,
//! `xmllint` parses the descriptor, `sha256sum` agrees with the manifest, and `qemu-img compare`
//! says the disk inside equals the build's qcow2. (virt-v2v, Debian's other OVA reader, converts only
//! an inspectable installed OS, so it cannot judge a test disk; VirtualBox is not in Debian.)

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::artifact::ova::{export, OvaSpec};
use kiln::artifact::ovf::{OvfDisk, OvfMachine};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("40M"));
    run(Command::new("qemu-io")
        .args(["-c", "write -P 0x61 1M 3M"])
        .arg(&disk));
    disk
}

fn spec() -> OvaSpec<'static> {
    OvaSpec {
        name: "kiln-test",
        cpus: 2,
        memory_mb: 1024,
        mac: Some("080027AABBCC".into()),
        system_type: "virtualbox-2.2",
    }
}

#[test]
fn ova_layout_manifest_and_disk_are_what_readers_expect() {
    let dir = tempfile::tempdir().unwrap();
    let source = disk(dir.path());
    let ova = dir.path().join("out.ova");
    export(
        &spec(),
        std::slice::from_ref(&source),
        &dir.path().join("work"),
        &ova,
    )
    .unwrap();

    let listing = run(Command::new("tar").arg("-tf").arg(&ova));
    assert_eq!(
        listing,
        "kiln-test.ovf\nkiln-test.mf\nkiln-test-disk001.vmdk\n"
    );

    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&ova)
        .arg("-C")
        .arg(&unpacked));
    run(Command::new("xmllint")
        .arg("--noout")
        .arg(unpacked.join("kiln-test.ovf")));

    let manifest = std::fs::read_to_string(unpacked.join("kiln-test.mf")).unwrap();
    let lines: Vec<_> = manifest.lines().collect();
    assert_eq!(lines.len(), 2, "{manifest}");
    for line in lines {
        let (name, hex) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .unwrap_or_else(|| panic!("bad manifest line {line}"));
        let sum = run(Command::new("sha256sum").arg(unpacked.join(name)));
        assert_eq!(sum.split_whitespace().next(), Some(hex), "{name}");
    }

    let vmdk = unpacked.join("kiln-test-disk001.vmdk");
    let same = run(Command::new("qemu-img")
        .arg("compare")
        .arg(&source)
        .arg(&vmdk));
    assert!(same.contains("Images are identical"), "{same}");
    let ovf = std::fs::read_to_string(unpacked.join("kiln-test.ovf")).unwrap();
    let size = std::fs::metadata(&vmdk).unwrap().len();
    assert!(
        ovf.contains(&format!(
            "ovf:href=\"kiln-test-disk001.vmdk\" ovf:id=\"file1\" ovf:size=\"{size}\""
        )),
        "{ovf}"
    );
    assert!(ovf.contains("ovf:capacity=\"41943040\""), "{ovf}");
    assert!(!dir.path().join("out.ova.tmp").exists());
}

#[test]
fn two_exports_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let source = disk(dir.path());
    let (a, b) = (dir.path().join("a.ova"), dir.path().join("b.ova"));
    export(
        &spec(),
        std::slice::from_ref(&source),
        &dir.path().join("wa"),
        &a,
    )
    .unwrap();
    export(
        &spec(),
        std::slice::from_ref(&source),
        &dir.path().join("wb"),
        &b,
    )
    .unwrap();
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap());
}

#[test]
fn ovf_descriptor_matches_golden_file() {
    let machine = OvfMachine {
        name: "kiln-test".into(),
        cpus: 2,
        memory_mb: 1024,
        disks: vec![
            OvfDisk {
                file_name: "kiln-test-disk001.vmdk".into(),
                file_size: 1_234_944,
                capacity: 41_943_040,
            },
            OvfDisk {
                file_name: "kiln-test-disk002.vmdk".into(),
                file_size: 66_560,
                capacity: 1_073_741_824,
            },
        ],
        mac: Some("080027AABBCC".into()),
        system_type: "virtualbox-2.2".into(),
    };
    let golden =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/ovf/kiln-test.ovf");
    let text = machine.descriptor();
    if std::env::var_os("KILN_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(&golden).unwrap(),
        "run with KILN_BLESS=1 to update after a deliberate change"
    );
}
