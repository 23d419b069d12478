//! `kiln build` of a `virtualbox-iso` template through the VBoxManage stand-in
//! (`tests/standins/VBoxManage`, not VirtualBox: it records every call and refuses what the real
//! VBoxManage's grammar does not have). The guest is a null one: these tests check what kiln
//! asks VirtualBox to do, in order, and that a failure undoes it.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use std::path::Path;

use super::support::repo;

const TEMPLATE: &str = r#"source "virtualbox-iso" "vm" {
  iso_url              = "a.iso"
  iso_checksum         = "none"
  communicator         = "none"
  acpi_shutdown        = true
  guest_os_type        = "Debian_64"
  guest_additions_mode = "disable"
  boot_wait            = "0s"
  boot_command         = ["A<enter>"]
  headless             = true
}
build { sources = ["source.virtualbox-iso.vm"] }
"#;

fn kiln(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("kiln").unwrap();
    let path = format!(
        "{}:{}",
        repo().join("tests/standins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.current_dir(dir)
        .env("PATH", path)
        .env("KILN_VBOX_STANDIN_DIR", dir)
        .env("NO_COLOR", "1")
        .env_remove("VBOX_INSTALL_PATH");
    c
}

fn calls(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.iso"), b"an installer").unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), TEMPLATE).unwrap();
    dir
}

/// The build creates, starts, types into, shuts down, exports and deletes the VM, in Packer's
/// order, every call accepted by VBoxManage's grammar; the boot command arrives as PC-XT
/// scancodes (shift wrapped, make then break).
#[test]
fn virtualbox_iso_builds_through_the_vboxmanage_standin() {
    let dir = setup();
    builds_through_the_standin(kiln(dir.path()), dir.path());
}

/// Built with the C API but without its library (an empty `VBOX_APP_HOME`, the only place then
/// searched), kiln says so once, naming where it looked, and types and polls through
/// VBoxManage as without the feature.
#[cfg(feature = "virtualbox-capi")]
#[test]
fn without_the_c_api_library_kiln_says_so_once_and_uses_vboxmanage() {
    let dir = setup();
    let home = tempfile::tempdir().unwrap();
    let mut kiln = kiln(dir.path());
    kiln.env("VBOX_APP_HOME", home.path())
        .env("KILN_LOG", "kiln=info");
    let out = builds_through_the_standin(kiln, dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("VirtualBox C API not available").count(),
        1,
        "{err}"
    );
    let searched = home.path().join("VBoxXPCOMC.so");
    assert!(err.contains(&searched.display().to_string()), "{err}");
    assert!(calls(dir.path()).iter().any(|c| c[0] == "showvminfo"));
}

/// Runs `kiln` (a `build` of `t.pkr.hcl` in `dir`) and checks the VBoxManage calls of a whole
/// build; its output, for more checks.
fn builds_through_the_standin(mut kiln: Command, dir: &Path) -> std::process::Output {
    let out = kiln.args(["build", "t.pkr.hcl"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let calls = calls(dir);
    let verbs: Vec<&str> = calls
        .iter()
        .map(|c| match c[0].as_str() {
            "controlvm" => c[2].as_str(),
            other => other,
        })
        .filter(|v| *v != "modifyvm" && *v != "showvminfo")
        .collect();
    assert_eq!(
        verbs,
        [
            "createvm",
            "createhd",
            "storagectl",
            "storageattach",
            "storageattach",
            "startvm",
            "keyboardputscancode",
            "acpipowerbutton",
            "storageattach",
            "export",
            "unregistervm",
        ],
        "{calls:?}"
    );
    let typed = calls
        .iter()
        .find(|c| c.get(2).map(String::as_str) == Some("keyboardputscancode"))
        .unwrap();
    // Shift down, A down, A up, shift up, Enter down, Enter up.
    assert_eq!(typed[3..], ["2a", "1e", "9e", "aa", "1c", "9c"]);
    assert!(dir.join("output-vm/packer-vm.ovf").exists());
    out
}

/// A VM that fails to start is undone: the disk and VM deleted, the output directory removed,
/// and the build reports VBoxManage's own error.
#[test]
fn a_failed_start_unregisters_the_vm_and_leaves_no_output() {
    let dir = setup();
    std::fs::write(
        dir.path().join("faults.json"),
        r#"[{"match": "startvm", "exit": 1, "stderr": "VBoxManage: error: The virtual machine 'packer-vm' has terminated unexpectedly during startup", "times": 9}]"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .env("KILN_VBOX_STANDIN_FAULTS", dir.path().join("faults.json"))
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has terminated unexpectedly during startup"),
        "{err}"
    );
    let calls = calls(dir.path());
    assert_eq!(
        calls.last().map(|c| c[0].as_str()),
        Some("unregistervm"),
        "{calls:?}"
    );
    assert!(!dir.path().join("output-vm").exists());
}

/// `guest_additions_mode = "attach"` with a local `guest_additions_url` and its sha256: the
/// ISO goes into a second DVD drive (IDE port 1, device 0) before the VM starts, and is taken
/// out after shutdown, before the export.
#[test]
fn attached_guest_additions_are_a_second_dvd_removed_before_export() {
    let dir = setup();
    std::fs::write(dir.path().join("ga.iso"), b"additions").unwrap();
    let template = TEMPLATE.replace(
        r#"guest_additions_mode = "disable""#,
        r#"guest_additions_mode = "attach"
  guest_additions_url    = "ga.iso"
  guest_additions_sha256 = "ea32cae4a7df15489a854dc00b48b335f764f62d9132db100e03e65f957d975a""#,
    );
    std::fs::write(dir.path().join("t.pkr.hcl"), template).unwrap();
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let drive = |c: &Vec<String>| {
        c[0] == "storageattach" && c.join(" ").contains("--storagectl IDE --port 1 --device 0")
    };
    let calls = calls(dir.path());
    let at = |verb: &str| calls.iter().position(|c| c[0] == verb).unwrap();
    let ga: Vec<(usize, &str)> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| drive(c))
        .map(|(i, c)| (i, c.last().unwrap().as_str()))
        .collect();
    assert_eq!(ga.len(), 2, "{calls:?}");
    assert!(ga[0].1.ends_with("/ga.iso") && ga[1].1 == "none", "{ga:?}");
    assert!(ga[0].0 < at("startvm") && at("startvm") < ga[1].0 && ga[1].0 < at("export"));
}

/// Offline, with no guest additions in the cache and none shipped by VirtualBox, the build
/// stops before it makes a VM, and says how to get the file in.
#[test]
fn offline_without_cached_guest_additions_fails_before_creating_the_vm() {
    let dir = setup();
    let template = TEMPLATE.replace(
        r#"guest_additions_mode = "disable""#,
        r#"guest_additions_mode = "attach""#,
    );
    std::fs::write(dir.path().join("t.pkr.hcl"), template).unwrap();
    let out = kiln(dir.path())
        .env("KILN_OFFLINE", "1")
        .env("KILN_CACHE_DIR", dir.path().join("cache"))
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot get the guest additions")
            && err.contains(
                "forbids fetching https://download.virtualbox.org/virtualbox/7.1.4/SHA256SUMS"
            ),
        "{err}"
    );
    let verbs: Vec<String> = calls(dir.path()).into_iter().map(|c| c.join(" ")).collect();
    assert_eq!(verbs, ["list systemproperties"]);
}
