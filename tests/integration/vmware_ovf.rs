//! `vmware-iso` with `format = "ova"` on a host without `ovftool` (kiln issue 15): through the
//! VMware stand-ins with ovftool hidden from `PATH`, kiln packs the OVA itself from the VM's
//! twoGbMaxExtentSparse disks (made by the vdiskmanager stand-in with qemu-img, then written to
//! by a shell-local provisioner while the null guest "runs"). Checked by independent tools:
//! `tar` lists the package, `xmllint` parses the descriptor, `sha256sum` agrees with the
//! manifest and `qemu-img` says each disk in the OVA equals the VM's.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;
use std::process::Command;

use super::support::{check_ova_package, repo, run};

const TEMPLATE: &str = r#"source "vmware-iso" "vm" {
  iso_url              = "a.iso"
  iso_checksum         = "none"
  communicator         = "none"
  guest_os_type        = "ubuntu-64"
  version              = 19
  cpus                 = 2
  memory               = 1024
  disk_size            = 64
  disk_additional_size = [32]
  disk_adapter_type    = "sata"
  disk_type_id         = "1"
  network              = "nat"
  network_adapter_type = "vmxnet3"
  headless             = true
  boot_wait            = "0s"
  format               = "ova"
  ovftool_options      = ["--compress=9", "--noSSLVerify"]
}
build {
  sources = ["source.vmware-iso.vm"]
  provisioner "shell-local" {
    inline = [
      "qemu-io -f vmdk -c 'write -P 0x5a 1M 2M' -c 'write -P 0xa5 63M 1M' output-vm/disk.vmdk",
      "qemu-io -f vmdk -c 'write -P 0x33 0 64k' output-vm/disk-1.vmdk",
    ]
  }
}
"#;

fn vmx_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn build_without_ovftool(dir: &Path) -> String {
    std::fs::write(dir.join("a.iso"), b"an installer").unwrap();
    std::fs::write(dir.join("t.pkr.hcl"), TEMPLATE).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["vmrun", "vmware-vdiskmanager"] {
        std::os::unix::fs::symlink(repo().join("tests/standins").join(tool), bin.join(tool))
            .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("KILN_VMWARE_STANDIN_DIR", dir)
        .env("KILN_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("KILN_VMWARE_STANDIN_QEMU")
        .env_remove("KILN_BOOT_TRANSPORT")
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn without_ovftool_kiln_packs_the_ova_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = build_without_ovftool(dir);
    // The options ovftool would have taken are named as ignored.
    assert!(
        text.contains("ovftool_options do not apply")
            && text.contains("--compress=9 --noSSLVerify"),
        "{text}"
    );
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert!(!calls.contains("\"ovftool\""), "{calls}");

    let out = dir.join("output-vm");
    let ova = out.join("packer-vm.ova");
    // Nothing but files is left beside it: no work directory, no temporary file.
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        assert!(path.is_file(), "{} left behind", path.display());
        assert!(
            !path.to_string_lossy().ends_with(".tmp"),
            "{}",
            path.display()
        );
    }
    let unpacked = dir.join("unpacked");
    check_ova_package(
        &ova,
        &[
            "packer-vm.ovf",
            "packer-vm.mf",
            "packer-vm-disk001.vmdk",
            "packer-vm-disk002.vmdk",
        ],
        &unpacked,
    );
    let ovf_path = unpacked.join("packer-vm.ovf");

    // Each disk in the OVA is the VM's (split sparse VMDKs, with the data written).
    let vmx = std::fs::read_to_string(out.join("packer-vm.vmx")).unwrap();
    for (theirs, ours) in [
        ("disk.vmdk", "packer-vm-disk001.vmdk"),
        ("disk-1.vmdk", "packer-vm-disk002.vmdk"),
    ] {
        let descriptor = std::fs::read_to_string(out.join(theirs)).unwrap();
        assert!(descriptor.contains("twoGbMaxExtentSparse"), "{descriptor}");
        let same = run(Command::new("qemu-img")
            .arg("compare")
            .arg(out.join(theirs))
            .arg(unpacked.join(ours)));
        assert!(same.contains("Images are identical"), "{theirs}: {same}");
        let info = run(Command::new("qemu-img")
            .arg("info")
            .arg(unpacked.join(ours)));
        assert!(info.contains("create type: streamOptimized"), "{info}");
    }
    let raw = dir.join("raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(unpacked.join("packer-vm-disk001.vmdk"))
        .arg(&raw));
    let bytes = std::fs::read(&raw).unwrap();
    assert!(bytes[1 << 20..3 << 20].iter().all(|&b| b == 0x5a));

    // The descriptor describes the .vmx's machine.
    let ovf = std::fs::read_to_string(&ovf_path).unwrap();
    let memory = vmx_value(&vmx, "memsize").unwrap();
    // The second disk's unit on its SATA controller, as the .vmx has it.
    let unit = vmx
        .lines()
        .find(|l| l.contains("\"disk-1.vmdk\""))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, rest)| rest.split_once('.'))
        .map(|(unit, _)| unit.to_owned())
        .unwrap();
    for expected in [
        "<OperatingSystemSection ovf:id=\"94\">".to_string(),
        "<vssd:VirtualSystemType>vmx-19</vssd:VirtualSystemType>".into(),
        "<rasd:VirtualQuantity>2</rasd:VirtualQuantity>".into(),
        format!("<rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity>"),
        "<rasd:Caption>sataController0</rasd:Caption>".into(),
        "<rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>".into(),
        format!("<rasd:AddressOnParent>{unit}</rasd:AddressOnParent>"),
        "ovf:capacity=\"67108864\"".into(),
        "ovf:capacity=\"33554432\"".into(),
    ] {
        assert!(ovf.contains(&expected), "{expected} in {ovf}");
    }
}
