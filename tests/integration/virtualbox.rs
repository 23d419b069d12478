//! `kiln build` of a `virtualbox-iso` template through the VBoxManage stand-in
//! (`tests/standins/VBoxManage`, not VirtualBox: it records every call and refuses what the real
//! VBoxManage's grammar does not have). The guest is a null one: these tests check what kiln
//! asks VirtualBox to do, in order, and that a failure undoes it.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use std::path::Path;

use super::support::{repo, QemuStandin};

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

/// The VBoxManage stand-in in its QEMU mode.
fn qemu_vbox() -> QemuStandin {
    QemuStandin::new("KILN_VBOX_STANDIN", &["VBoxManage"], &[])
}

/// Runs the stand-in's VBoxManage; it must succeed.
fn vboxmanage(vbox: &QemuStandin, args: &[&str]) {
    let out = std::process::Command::new(vbox.bin().join("VBoxManage"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "VBoxManage {args:?}: {out:?}");
}

/// Every printable ASCII character, typed by kiln's VirtualBox keyboard (PC-XT scancodes through
/// `VBoxManage controlvm keyboardputscancode`, in Packer's groups) into a real guest: the
/// stand-in hands each byte to QEMU's PS/2 keyboard, and isolinux echoes the line on the serial
/// console exactly as typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printable_ascii_typed_as_vboxmanage_scancodes_arrives_exactly() {
    use kiln::builder::virtualbox::driver::{HostDriver, Retry};
    use kiln::builder::virtualbox::machine::VBoxMachine;
    use kiln::builder::Machine;

    let vbox = qemu_vbox();
    let iso = super::typing_guest::boot_echo_iso();
    vboxmanage(&vbox, &["createvm", "--name", "echo", "--register"]);
    vboxmanage(
        &vbox,
        &["storagectl", "echo", "--name", "IDE", "--add", "ide"],
    );
    vboxmanage(
        &vbox,
        &[
            "storageattach",
            "echo",
            "--storagectl",
            "IDE",
            "--port",
            "0",
            "--device",
            "0",
            "--type",
            "dvddrive",
            "--medium",
            &iso.to_string_lossy(),
        ],
    );
    vboxmanage(&vbox, &["startvm", "echo", "--type", "headless"]);

    let driver = std::sync::Arc::new(HostDriver::new(
        vbox.bin().join("VBoxManage"),
        Retry::default(),
    ));
    let machine = VBoxMachine::new(driver, "echo");
    let mut keyboard = machine
        .keyboard(boot_commands::Transport::Qmp)
        .await
        .unwrap();
    let cmd = super::typing_guest::printable_command();
    let parsed = boot_commands::parse(&cmd).unwrap();
    let timing =
        boot_commands::Timing::resolve(keyboard.default_key_interval(), None, None, None).unwrap();
    boot_commands::type_actions(
        &parsed.actions,
        &boot_commands::US,
        keyboard.as_mut(),
        &timing,
        None,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    // The calls return once QEMU has the keys; the guest echoes them a moment later.
    let mut typed = String::new();
    for _ in 0..100 {
        typed = vbox.typed("echo");
        if typed.len() >= cmd.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(typed, cmd);
    vboxmanage(&vbox, &["controlvm", "echo", "poweroff"]);
    assert!(vbox.qemu_pids().is_empty(), "poweroff leaves QEMU running");
}

/// The installer fixture built end to end as a `virtualbox-iso` template
/// (fixtures/templates/virtualbox/installer.pkr.hcl) through the stand-in's QEMU mode: the boot
/// command reaches isolinux as scancodes, the kickstart is served, the system is installed on
/// the NVMe disk VirtualBox was told to attach, SSH goes through the NAT port forward, the
/// provisioners run, the VM is exported to OVF + VMDK, and the `virtualbox` Vagrant box made
/// from that export is accepted by `vagrant box add`.
#[test]
fn virtualbox_iso_installs_the_fixture_and_vagrant_takes_its_box() {
    let vbox = qemu_vbox();
    let work = vbox.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let path = vbox.path_var();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(&work)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("VBOX_INSTALL_PATH")
        .args(["build", "-var", "boot_wait=1s", "-var"])
        .arg(format!("iso_path={}", super::e2e::iso().display()))
        .arg(repo().join("fixtures/templates/virtualbox/installer.pkr.hcl"))
        .output()
        .unwrap();
    let t = super::support::text(&out);
    assert!(out.status.success(), "{t}");

    // The boot command arrived exactly, and the URL it names is the one kiln served.
    let typed = vbox.typed("packer-installer");
    let line = typed.split(['\r', '\n', '\u{1b}']).next().unwrap();
    let port = line
        .strip_prefix("install ks=http://10.0.2.2:")
        .and_then(|rest| rest.strip_suffix("/ks.cfg"))
        .unwrap_or_else(|| panic!("typed {line:?}"));
    assert!(port.parse::<u16>().is_ok(), "typed {line:?}");
    assert!(t.contains("HTTP: served ks.cfg"), "{t}");
    // Installed on the NVMe disk and booted from it; provisioned over the forwarded port.
    let facts = std::fs::read_to_string(work.join("facts-virtualbox.txt")).unwrap();
    assert_eq!(facts.trim(), "root=/dev/nvme0n1p1");
    let calls = calls(vbox.path());
    let forward = calls
        .iter()
        .find(|c| c.join(" ").contains("--natpf1 packercomm,tcp,127.0.0.1,"))
        .unwrap();
    assert!(t.contains("Connected to SSH!"), "{t}");
    assert_eq!(calls.last().unwrap()[0], "unregistervm", "{forward:?}");
    assert!(vbox.qemu_pids().is_empty(), "QEMU still runs");

    // The box: VirtualBox's export (OVF + streamOptimized VMDK) with the base MAC.
    let boxfile = work.join("output-box/installer_virtualbox.box");
    let unpacked = work.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&boxfile)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(tar.success());
    let mut names: Vec<String> = std::fs::read_dir(&unpacked)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Vagrantfile",
            "box.ovf",
            "metadata.json",
            "packer-installer-disk001.vmdk"
        ]
    );
    let vagrantfile = std::fs::read_to_string(unpacked.join("Vagrantfile")).unwrap();
    assert!(
        vagrantfile.contains("config.vm.base_mac = \"080027C0FFEE\""),
        "{vagrantfile}"
    );
    let listed = super::vagrant::vagrant_box_add(vbox.path(), &boxfile);
    assert!(listed.contains("kiln-test (virtualbox"), "{listed}");
}

const OVF_TEMPLATE: &str = r#"source "virtualbox-ovf" "vm" {
  source_path          = "base.ovf"
  checksum             = "CHECKSUM"
  import_opts          = "keepallmacs"
  communicator         = "none"
  acpi_shutdown        = true
  guest_additions_mode = "disable"
  headless             = true
}
build { sources = ["source.virtualbox-ovf.vm"] }
"#;

/// A directory with `base.ovf` and a `virtualbox-ovf` template importing it with `checksum`.
fn ovf_setup(checksum: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.ovf"), b"<Envelope/>\n").unwrap();
    let template = OVF_TEMPLATE.replace("CHECKSUM", checksum);
    std::fs::write(dir.path().join("t.pkr.hcl"), template).unwrap();
    dir
}

/// The calls but the state polls and modifyvm, `controlvm` as its action.
fn verbs(calls: &[Vec<String>]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c[0] != "modifyvm" && c[0] != "showvminfo")
        .map(|c| match c[0].as_str() {
            "controlvm" => c[2].clone(),
            "snapshot" => format!("snapshot {}", c[2..].join(" ")),
            other => other.to_owned(),
        })
        .collect()
}

/// `virtualbox-ovf`: the verified OVF is imported under the VM name with `import_opts`,
/// started, stopped, exported and deleted, in Packer's order.
#[test]
fn virtualbox_ovf_imports_builds_exports_and_deletes_the_vm() {
    let sum = {
        use sha2::Digest;
        format!("sha256:{:x}", sha2::Sha256::digest(b"<Envelope/>\n"))
    };
    let dir = ovf_setup(&sum);
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let calls = calls(dir.path());
    assert_eq!(
        verbs(&calls),
        [
            "import",
            "startvm",
            "acpipowerbutton",
            "export",
            "unregistervm"
        ],
        "{calls:?}"
    );
    let ovf = std::fs::canonicalize(dir.path().join("base.ovf")).unwrap();
    let import = calls.iter().find(|c| c[0] == "import").unwrap();
    assert_eq!(
        import[1..],
        [
            ovf.display().to_string().as_str(),
            "--vsys",
            "0",
            "--vmname",
            "packer-vm",
            "--options",
            "keepallmacs"
        ]
    );
    assert!(dir.path().join("output-vm/packer-vm.ovf").exists());
}

/// A `source_path` that does not match its `checksum` stops the build before anything is
/// imported.
#[test]
fn virtualbox_ovf_with_a_wrong_checksum_fails_before_import() {
    let dir = ovf_setup(&format!("sha256:{}", "0".repeat(64)));
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OVF/OVA") && err.contains("checksum"), "{err}");
    assert!(!calls(dir.path()).iter().any(|c| c[0] == "import"));
    assert!(!dir.path().join("output-vm").exists());
}

const VM_TEMPLATE: &str = r#"source "virtualbox-vm" "vm" {
  vm_name              = "VM_NAME"
  attach_snapshot      = "clean"
  target_snapshot      = "provisioned"
  communicator         = "none"
  acpi_shutdown        = true
  guest_additions_mode = "disable"
  skip_export          = true
  post_shutdown_delay  = "0s"
  headless             = true
}
build { sources = ["source.virtualbox-vm.vm"] }
"#;

/// A directory where VirtualBox has the VM `base` in `state`, on its one snapshot `clean`,
/// and a `virtualbox-vm` template for the VM `vm_name`.
fn vm_setup(vm_name: &str, state: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let vms = serde_json::json!({
        "vms": {"base": {"state": state, "natpf": [], "disks": [],
            "snapshots": [{"name": "clean", "uuid": "u-clean", "parent": null}],
            "current": "u-clean"}},
        "faults_used": {}
    });
    std::fs::write(dir.path().join("vms.json"), vms.to_string()).unwrap();
    let template = VM_TEMPLATE.replace("VM_NAME", vm_name);
    std::fs::write(dir.path().join("t.pkr.hcl"), template).unwrap();
    dir
}

/// `virtualbox-vm`: `attach_snapshot` is restored before the VM starts, `target_snapshot`
/// taken after it stopped; the VM is never deleted and stays registered, with the new
/// snapshot, and the build goes back to the snapshot the VM was on (Packer's revert without
/// `keep_registered`).
#[test]
fn virtualbox_vm_restores_and_takes_snapshots_and_keeps_the_vm() {
    let dir = vm_setup("base", "poweroff");
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let calls = calls(dir.path());
    assert_eq!(
        verbs(&calls),
        [
            "snapshot restore clean",
            "startvm",
            "acpipowerbutton",
            "snapshot take provisioned",
            "snapshot restore u-clean",
        ],
        "{calls:?}"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("vms.json")).unwrap())
            .unwrap();
    let snapshots = &state["vms"]["base"]["snapshots"];
    assert_eq!(snapshots[1]["name"], "provisioned", "{state}");
    assert_eq!(snapshots[1]["parent"], "u-clean", "{state}");
    // skip_export: no output directory, as Packer.
    assert!(!dir.path().join("output-vm").exists());
}

/// `virtualbox-vm` on a VM VirtualBox does not have fails with a clear error and touches
/// nothing.
#[test]
fn virtualbox_vm_on_a_missing_vm_says_so() {
    let dir = vm_setup("nope", "poweroff");
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VM \"nope\" does not exist"), "{err}");
    assert_eq!(verbs(&calls(dir.path())), Vec::<String>::new());
}

/// `virtualbox-vm` on a running VM refuses to start it or change its snapshots.
#[test]
fn virtualbox_vm_on_a_running_vm_is_refused() {
    let dir = vm_setup("base", "running");
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VM \"base\" is running") && err.contains("needs it stopped"),
        "{err}"
    );
    assert_eq!(verbs(&calls(dir.path())), Vec::<String>::new());
}
