//! `kiln build` of `vmware-vmx` templates through the VMware stand-ins (`tests/standins/vmrun`,
//! `vmware-vdiskmanager`, `ovftool`: not VMware; they record every call and refuse what the
//! real tools' grammar does not have). A source VM (a `.vmx` and a VMDK made with qemu-img)
//! is cloned full or linked into the output directory, then built on with a null guest; the
//! tests check what kiln asks VMware to do, in order, and what the output directory holds.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;
use std::process::{Command, Output};

use super::support::repo;

fn kiln(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    let path = format!(
        "{}:{}",
        repo().join("tests/standins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.current_dir(dir)
        .env("PATH", path)
        .env("KILN_VMWARE_STANDIN_DIR", dir)
        .env("NO_COLOR", "1")
        .env_remove("KILN_VMWARE_STANDIN_QEMU")
        .env_remove("KILN_BOOT_TRANSPORT");
    c
}

/// Every recorded call but `vmrun list` (polled while the VM runs).
fn calls(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap())
        .filter(|c| c[1..] != ["-T", "ws", "list"])
        .collect()
}

fn vmx_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// A directory with the source VM `src/base.vmx` (a 16 MiB SCSI disk `base.vmdk`) and the
/// template `t.pkr.hcl` (`source` is the `vmware-vmx` block's body).
fn setup(source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "vmdk"])
        .arg(src.join("base.vmdk"))
        .arg("16M")
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        src.join("base.vmx"),
        "displayName = \"base\"\nmemsize = \"768\"\nguestOS = \"ubuntu-64\"\n\
         scsi0.present = \"TRUE\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"base.vmdk\"\n\
         ethernet0.present = \"TRUE\"\nethernet0.generatedAddress = \"00:0c:29:00:00:01\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        format!(
            "source \"vmware-vmx\" \"vm\" {{\n{source}}}\nbuild {{ sources = [\"source.vmware-vmx.vm\"] }}\n"
        ),
    )
    .unwrap();
    dir
}

fn build(dir: &Path) -> Output {
    kiln(dir).args(["build", "t.pkr.hcl"]).output().unwrap()
}

/// A full clone built on in Packer's order: the extra disk made with vdiskmanager, the source
/// cloned with `vmrun clone … full`, the clone started headless with `vmx_data`, the extra disk
/// and VMware's VNC server in its `.vmx`, both disks compacted, the `.vmx` cleaned
/// (`vmx_data_post`, display name), the snapshot taken and the VM exported with ovftool. The
/// output directory holds the clone's own disk, not the source's.
#[test]
fn vmware_vmx_clones_and_builds_through_the_standins() {
    let dir = setup(
        r#"  source_path          = "src/base.vmx"
  communicator         = "none"
  headless             = true
  boot_wait            = "0s"
  display_name         = "built from base"
  disk_additional_size = [64]
  snapshot_name        = "built"
  vmx_data      = { "numvcpus" = "2" }
  vmx_data_post = { "memsize" = "2048" }
  format        = "ovf"
"#,
    );
    let out = build(dir.path());
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let out_dir = dir.path().join("output-vm");
    let vmx = out_dir.join("packer-vm.vmx").display().to_string();
    let source = dir.path().join("src/base.vmx").display().to_string();
    let clone_disk = out_dir.join("packer-vm-cl1.vmdk").display().to_string();
    let extra = out_dir.join("disk-1.vmdk").display().to_string();
    let ovf = out_dir.join("packer-vm.ovf").display().to_string();
    let want: Vec<Vec<&str>> = vec![
        vec![
            "vmware-vdiskmanager",
            "-c",
            "-s",
            "64MB",
            "-a",
            "lsilogic",
            "-t",
            "1",
            &extra,
        ],
        vec!["vmrun", "-T", "ws", "clone", &source, &vmx, "full"],
        vec!["vmrun", "-T", "ws", "start", &vmx, "nogui"],
        vec!["vmware-vdiskmanager", "-d", &clone_disk],
        vec!["vmware-vdiskmanager", "-k", &clone_disk],
        vec!["vmware-vdiskmanager", "-d", &extra],
        vec!["vmware-vdiskmanager", "-k", &extra],
        vec!["vmrun", "-T", "ws", "snapshot", &vmx, "built"],
        vec!["ovftool", &vmx, &ovf],
    ];
    assert_eq!(calls(dir.path()), want, "{text}");

    let started = std::fs::read_to_string(dir.path().join("packer-vm.started.vmx")).unwrap();
    for (k, v) in [
        ("numvcpus", "2"),
        ("memsize", "768"),
        ("scsi0:0.fileName", "packer-vm-cl1.vmdk"),
        ("scsi0:1.present", "TRUE"),
        ("scsi0:1.fileName", "disk-1.vmdk"),
        ("displayName", "built from base"),
        ("RemoteDisplay.vnc.enabled", "TRUE"),
    ] {
        assert_eq!(
            vmx_value(&started, k).as_deref(),
            Some(v),
            "{k} in {started}"
        );
    }
    // VMware writes a new MAC for the clone: the source's is not carried over.
    assert_eq!(vmx_value(&started, "ethernet0.generatedAddress"), None);
    let done = std::fs::read_to_string(&vmx).unwrap();
    assert_eq!(vmx_value(&done, "memsize").as_deref(), Some("2048"));
    assert_eq!(
        vmx_value(&done, "RemoteDisplay.vnc.enabled").as_deref(),
        Some("FALSE")
    );
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            // disk_type_id 1: a growable disk split in 2 GB extents.
            "disk-1-s001.vmdk",
            "disk-1.vmdk",
            "packer-vm-cl1.vmdk",
            "packer-vm-disk1.vmdk",
            "packer-vm-disk2.vmdk",
            "packer-vm.ovf",
            "packer-vm.vmx"
        ],
        "{text}"
    );
    // The source VM is untouched.
    let base = std::fs::read_to_string(dir.path().join("src/base.vmx")).unwrap();
    assert_eq!(vmx_value(&base, "displayName").as_deref(), Some("base"));
}

/// `linked = true` with `attach_snapshot`: `vmrun clone … linked -snapshot=<name>`, and the
/// clone's disk is a delta of the source's (its backing file).
#[test]
fn a_linked_clone_is_made_from_the_attached_snapshot() {
    let dir = setup(
        r#"  source_path     = "src/base.vmx"
  linked          = true
  attach_snapshot = "clean"
  communicator    = "none"
  headless        = true
  skip_compaction = true
"#,
    );
    let source = dir.path().join("src/base.vmx");
    let snap = Command::new(repo().join("tests/standins/vmrun"))
        .env("KILN_VMWARE_STANDIN_DIR", dir.path())
        .args(["-T", "ws", "snapshot"])
        .arg(&source)
        .arg("clean")
        .status()
        .unwrap();
    assert!(snap.success());
    let out = build(dir.path());
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let vmx = dir.path().join("output-vm/packer-vm.vmx");
    let clone = calls(dir.path())
        .into_iter()
        .find(|c| c.get(3).is_some_and(|v| v == "clone"))
        .unwrap();
    assert_eq!(
        clone[4..],
        [
            source.display().to_string(),
            vmx.display().to_string(),
            "linked".into(),
            "-snapshot=clean".into()
        ]
    );
    let info = Command::new("qemu-img")
        .arg("info")
        .arg(dir.path().join("output-vm/packer-vm-cl1.vmdk"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("backing file: "), "{info}");
    assert!(info.contains("src/base.vmdk"), "{info}");
}

/// A snapshot the source does not have: vmrun's error is the build's, and nothing is left.
#[test]
fn a_missing_snapshot_fails_the_clone_and_leaves_no_output() {
    let dir = setup(
        r#"  source_path     = "src/base.vmx"
  linked          = true
  attach_snapshot = "nope"
  communicator    = "none"
"#,
    );
    let out = build(dir.path());
    let text = super::support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("Invalid snapshot name 'nope'"), "{text}");
    assert!(!dir.path().join("output-vm").exists(), "{text}");
}

/// A `source_path` that does not exist is refused by `kiln validate`, at its line.
#[test]
fn a_missing_source_path_is_refused_at_validate_with_its_place() {
    let dir = setup("  communicator = \"none\"\n  source_path  = \"src/missing.vmx\"\n");
    let out = kiln(dir.path())
        .args(["validate", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("source_path \"src/missing.vmx\" is invalid"),
        "{text}"
    );
    assert!(text.contains("t.pkr.hcl:3:"), "{text}");
    assert!(calls(dir.path()).is_empty());
}

/// `src/base.ova`, exported from `src/base.vmx` by the ovftool stand-in (not recorded).
fn make_ova(dir: &Path) {
    let made = Command::new(repo().join("tests/standins/ovftool"))
        .current_dir(dir)
        .env("KILN_VMWARE_STANDIN_DIR", dir.join("src"))
        .args(["src/base.vmx", "src/base.ova"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", super::support::text(&made));
}

/// An OVA `source_path` is imported with ovftool as Packer imports it (`--lax`, the hardware
/// version, the VM's name, into the output directory), its files moved up into the output
/// directory, `guestOS` set to `guest_os_type`, then built on as a clone is.
#[test]
fn an_ova_source_is_imported_with_ovftool() {
    let dir = setup(
        r#"  source_path   = "src/base.ova"
  guest_os_type = "ubuntu-64"
  communicator  = "none"
  headless      = true
  boot_wait     = "0s"
  vmx_data      = { "numvcpus" = "2" }
"#,
    );
    make_ova(dir.path());
    let out = build(dir.path());
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let out_dir = dir.path().join("output-vm");
    let vmx = out_dir.join("packer-vm.vmx").display().to_string();
    let ova = dir.path().join("src/base.ova").display().to_string();
    let disk = out_dir.join("packer-vm-disk1.vmdk").display().to_string();
    let want: Vec<Vec<&str>> = vec![
        vec![
            "ovftool",
            "--lax",
            "--maxVirtualHardwareVersion=21",
            "--name=packer-vm",
            &ova,
            out_dir.to_str().unwrap(),
        ],
        vec!["vmrun", "-T", "ws", "start", &vmx, "nogui"],
        vec!["vmware-vdiskmanager", "-d", &disk],
        vec!["vmware-vdiskmanager", "-k", &disk],
    ];
    assert_eq!(calls(dir.path()), want, "{text}");
    let started = std::fs::read_to_string(dir.path().join("packer-vm.started.vmx")).unwrap();
    for (k, v) in [
        ("guestOS", "ubuntu-64"),
        ("numvcpus", "2"),
        ("scsi0:0.fileName", "packer-vm-disk1.vmdk"),
    ] {
        assert_eq!(
            vmx_value(&started, k).as_deref(),
            Some(v),
            "{k} in {started}"
        );
    }
    assert!(!out_dir.join("packer-vm").exists(), "{text}");
}

/// Without ovftool an OVA is not imported: the build stops naming ovftool, before any VM.
#[test]
fn an_ova_source_without_ovftool_stops_naming_it() {
    let dir = setup(
        "  source_path   = \"src/base.ova\"\n  guest_os_type = \"ubuntu-64\"\n  communicator  = \"none\"\n",
    );
    make_ova(dir.path());
    // vmrun and vmware-vdiskmanager, without ovftool.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["vmrun", "vmware-vdiskmanager"] {
        std::os::unix::fs::symlink(repo().join("tests/standins").join(tool), bin.join(tool))
            .unwrap();
    }
    let out = kiln(dir.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("is an OVF/OVA, which VMware imports with ovftool"),
        "{text}"
    );
    assert!(calls(dir.path()).is_empty(), "{text}");
}
