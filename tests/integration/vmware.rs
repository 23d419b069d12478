//! `kiln build` of `vmware-iso` templates through the VMware stand-ins (`tests/standins/vmrun`,
//! `vmware-vdiskmanager`, `ovftool`: not VMware; they record every call and refuse what the
//! real tools' grammar does not have). With a null guest, the tests check what kiln asks
//! VMware to do, in order, the `.vmx` it writes, and that a failure undoes the build; in the
//! stand-ins' QEMU mode the installer fixture is built end to end, typed into over VNC.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;
use std::process::{Command, Output};

use super::support::{repo, QemuStandin};

const TEMPLATE: &str = r#"source "vmware-iso" "vm" {
  iso_url              = "a.iso"
  iso_checksum         = "none"
  communicator         = "none"
  guest_os_type        = "ubuntu-64"
  version              = 19
  cpus                 = 2
  memory               = 1024
  disk_size            = 2048
  disk_adapter_type    = "sata"
  network              = "nat"
  network_adapter_type = "e1000e"
  headless             = true
  boot_wait            = "0s"
  vmx_data = {
    "ethernet0.pciSlotNumber" = "32"
  }
  vmx_data_post = {
    "memsize" = "2048"
  }
  vmx_remove_ethernet_interfaces = true
  format                         = "ova"
}
build { sources = ["source.vmware-iso.vm"] }
"#;

fn standins_path() -> String {
    format!(
        "{}:{}",
        repo().join("tests/standins").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

pub(super) fn kiln(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .env("PATH", standins_path())
        .env("KILN_VMWARE_STANDIN_DIR", dir)
        .env("NO_COLOR", "1")
        .env_remove("KILN_VMWARE_STANDIN_QEMU")
        .env_remove("KILN_BOOT_TRANSPORT");
    c
}

fn calls(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of `key` in the `.vmx` text (case-insensitive keys, as VMware reads them).
pub(super) fn vmx_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn setup(template: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.iso"), b"an installer").unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), template).unwrap();
    dir
}

fn build(dir: &Path) -> Output {
    kiln(dir).args(["build", "t.pkr.hcl"]).output().unwrap()
}

/// A `vmware-iso` build in Packer's order: the disk made with vdiskmanager on an adapter it
/// knows, the VM started headless with the `.vmx` kiln wrote (Packer's hardware keys,
/// `vmx_data`, VMware's VNC server on a port in range with a password), stopped by itself,
/// the disk compacted (`-d` then `-k`), the `.vmx` cleaned (`vmx_data_post`, ISO detached, VNC
/// off, Ethernet removed) and the VM exported to an OVA with ovftool.
#[test]
fn vmware_iso_builds_through_the_vmware_standins() {
    let dir = setup(TEMPLATE);
    let out = build(dir.path());
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let out_dir = dir.path().join("output-vm");
    let vmx = out_dir.join("packer-vm.vmx");
    let vmx_arg = vmx.display().to_string();
    let calls: Vec<Vec<String>> = calls(dir.path())
        .into_iter()
        .filter(|c| c[1..] != ["-T", "ws", "list"])
        .collect();
    let disk = out_dir.join("disk.vmdk").display().to_string();
    let ova = out_dir.join("packer-vm.ova").display().to_string();
    let want: Vec<Vec<&str>> = vec![
        vec![
            "vmware-vdiskmanager",
            "-c",
            "-s",
            "2048MB",
            "-a",
            "lsilogic",
            "-t",
            "1",
            &disk,
        ],
        vec!["vmrun", "-T", "ws", "start", &vmx_arg, "nogui"],
        vec!["vmware-vdiskmanager", "-d", &disk],
        vec!["vmware-vdiskmanager", "-k", &disk],
        vec!["ovftool", &vmx_arg, &ova],
    ];
    assert_eq!(calls, want, "{text}");

    // The .vmx VMware was started with.
    let started = std::fs::read_to_string(dir.path().join("packer-vm.started.vmx")).unwrap();
    let at_start = |k: &str| vmx_value(&started, k);
    for (k, v) in [
        ("guestOS", "ubuntu-64"),
        ("numvcpus", "2"),
        ("memsize", "1024"),
        ("virtualHW.version", "19"),
        ("ethernet0.connectionType", "nat"),
        ("ethernet0.virtualDev", "e1000e"),
        ("ethernet0.pciSlotNumber", "32"),
        ("sata0.present", "TRUE"),
        ("sata0:0.fileName", "disk.vmdk"),
        ("sata0:1.deviceType", "cdrom-image"),
        ("RemoteDisplay.vnc.enabled", "TRUE"),
        ("RemoteDisplay.vnc.ip", "127.0.0.1"),
    ] {
        assert_eq!(at_start(k).as_deref(), Some(v), "{k} in {started}");
    }
    let iso = at_start("sata0:1.fileName").unwrap();
    assert!(
        Path::new(&iso).is_absolute() && iso.ends_with("a.iso"),
        "{iso}"
    );
    let port: u16 = at_start("RemoteDisplay.vnc.port").unwrap().parse().unwrap();
    assert!((5900..=6000).contains(&port));
    assert_eq!(
        at_start("RemoteDisplay.vnc.password").map(|p| p.len()),
        Some(8)
    );

    // The .vmx of the artifact.
    let done = std::fs::read_to_string(&vmx).unwrap();
    let at_end = |k: &str| vmx_value(&done, k);
    assert_eq!(at_end("memsize").as_deref(), Some("2048"));
    assert_eq!(at_end("sata0:1.fileName").as_deref(), Some("auto detect"));
    assert_eq!(at_end("sata0:1.deviceType").as_deref(), Some("cdrom-raw"));
    assert_eq!(
        at_end("RemoteDisplay.vnc.enabled").as_deref(),
        Some("FALSE")
    );
    assert_eq!(at_end("RemoteDisplay.vnc.password"), None);
    assert!(
        !done.to_ascii_lowercase().contains("ethernet"),
        "ethernet keys left: {done}"
    );
    assert!(out_dir.join("packer-vm.ova").is_file());
    assert!(text.contains("VM files in directory"), "{text}");
}

/// `vmrun start` failing: the build reports vmrun's error and removes the output directory
/// (disks and `.vmx`); no VM is left to stop.
#[test]
fn a_failed_start_leaves_no_output() {
    let dir = setup(TEMPLATE);
    std::fs::write(
        dir.path().join("faults.json"),
        r#"[{"match": " start ", "exit": 255, "output": "Error: The virtual machine could not start: not enough physical memory", "times": 9}]"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .env("KILN_VMWARE_STANDIN_FAULTS", dir.path().join("faults.json"))
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not enough physical memory"), "{text}");
    assert!(!dir.path().join("output-vm").exists());
    let verbs: Vec<String> = calls(dir.path())
        .into_iter()
        .map(|c| c[..2].join(" "))
        .collect();
    assert_eq!(verbs, ["vmware-vdiskmanager -c", "vmrun -T"], "{text}");
}

/// Without vmware-vdiskmanager (VMware Player on Linux lacks it), kiln writes the disk itself as
/// a sparse VMDK, skips compaction, and the build goes on: ovftool's stand-in converts that
/// disk with qemu-img, which would refuse a broken one.
#[test]
fn without_vdiskmanager_kiln_makes_the_disk_itself() {
    let dir = setup(TEMPLATE);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["vmrun", "ovftool"] {
        std::os::unix::fs::symlink(repo().join("tests/standins").join(tool), bin.join(tool))
            .unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = kiln(dir.path())
        .env("PATH", path)
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let tools: Vec<String> = calls(dir.path())
        .into_iter()
        .map(|c| c[0].clone())
        .collect();
    assert!(
        !tools.iter().any(|t| t == "vmware-vdiskmanager"),
        "{tools:?}"
    );
    assert_eq!(
        tools.last().map(String::as_str),
        Some("ovftool"),
        "{tools:?}"
    );
    let vmx = std::fs::read_to_string(dir.path().join("packer-vm.started.vmx")).unwrap();
    assert_eq!(
        vmx_value(&vmx, "sata0:0.fileName").as_deref(),
        Some("disk.vmdk")
    );
    assert!(dir.path().join("output-vm/packer-vm.ova").is_file());
}

/// Without the tools on PATH, kiln finds them in the Fusion app that FUSION_APP_PATH names
/// (Packer's variable) and drives vmrun as Fusion's (`-T fusion`).
#[test]
fn fusion_app_path_from_the_environment_finds_the_tools() {
    let dir = setup(TEMPLATE);
    let library = dir.path().join("VMware Fusion.app/Contents/Library");
    std::fs::create_dir_all(&library).unwrap();
    for tool in ["vmrun", "vmware-vdiskmanager", "ovftool"] {
        std::os::unix::fs::symlink(repo().join("tests/standins").join(tool), library.join(tool))
            .unwrap();
    }
    let out = kiln(dir.path())
        .env("PATH", "/usr/bin:/bin")
        .env("FUSION_APP_PATH", dir.path().join("VMware Fusion.app"))
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let vmrun: Vec<Vec<String>> = calls(dir.path())
        .into_iter()
        .filter(|c| c[0] == "vmrun")
        .collect();
    assert!(!vmrun.is_empty());
    assert!(
        vmrun.iter().all(|c| c[1..3] == ["-T", "fusion"]),
        "{vmrun:?}"
    );
}

/// The VMware stand-ins in their QEMU mode, the guest's SSH port forwarded from `ssh_port`.
fn qemu_vmware(ssh_port: u16) -> QemuStandin {
    QemuStandin::new(
        "KILN_VMWARE_STANDIN",
        &["vmrun", "vmware-vdiskmanager", "ovftool"],
        &[("KILN_VMWARE_STANDIN_SSH_PORT", ssh_port.to_string())],
    )
}

/// The installer fixture built end to end as a `vmware-iso` template
/// (fixtures/templates/vmware/installer.pkr.hcl) through the stand-ins' QEMU mode: the boot
/// command is typed over the VNC server the `.vmx` turns on (with its password) and arrives
/// exactly on the guest's console, the kickstart is served, the system is installed on the
/// NVMe disk vdiskmanager made, SSH reaches the address vmrun reports, the provisioners run,
/// the VM shuts down, the disk is compacted and ovftool exports it.
#[test]
fn vmware_iso_installs_the_fixture_through_the_qemu_backed_standins() {
    let ssh_port = super::support::free_port();
    let vmw = qemu_vmware(ssh_port);
    let work = vmw.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let path = vmw.path_var();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(&work)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("KILN_BOOT_TRANSPORT")
        .args(["build", "-var", "boot_wait=1s", "-var"])
        .arg(format!("ssh_port={ssh_port}"))
        .arg("-var")
        .arg(format!("iso_path={}", super::e2e::iso().display()))
        .arg(repo().join("fixtures/templates/vmware/installer.pkr.hcl"))
        .output()
        .unwrap();
    let t = super::support::text(&out);
    assert!(out.status.success(), "{t}");

    // The boot command arrived exactly, and the URL it names is the one kiln served.
    let typed = vmw.typed("packer-installer");
    let line = typed.split(['\r', '\n', '\u{1b}']).next().unwrap();
    let (ip, port) = line
        .strip_prefix("install ks=http://")
        .and_then(|rest| rest.strip_suffix("/ks.cfg"))
        .and_then(|addr| addr.rsplit_once(':'))
        .unwrap_or_else(|| panic!("typed {line:?}"));
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "typed {line:?}");
    assert!(port.parse::<u16>().is_ok(), "typed {line:?}");
    assert!(t.contains("HTTP: served ks.cfg"), "{t}");
    let facts = std::fs::read_to_string(work.join("facts-vmware.txt")).unwrap();
    assert_eq!(facts.trim(), "root=/dev/nvme0n1p1");
    assert!(t.contains("The guest's IP address is 127.0.0.1"), "{t}");
    assert!(vmw.qemu_pids().is_empty(), "QEMU still runs");

    let verbs: Vec<String> = calls(vmw.path())
        .into_iter()
        .map(|c| match c[0].as_str() {
            "vmrun" => c[3].clone(),
            tool => format!("{tool} {}", c[1]),
        })
        .filter(|v| v != "list")
        .collect();
    let ovftool = format!(
        "ovftool {}",
        work.join("output-installer/packer-installer.vmx").display()
    );
    assert_eq!(
        verbs,
        [
            "vmware-vdiskmanager -c",
            "start",
            "getGuestIPAddress",
            "vmware-vdiskmanager -d",
            "vmware-vdiskmanager -k",
            ovftool.as_str(),
        ],
        "{t}"
    );
    let mut files: Vec<String> = std::fs::read_dir(work.join("output-installer"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.contains(&"packer-installer.ovf".to_owned())
            && files.contains(&"packer-installer-disk1.vmdk".to_owned())
            && files.contains(&"packer-installer.vmx".to_owned()),
        "{files:?}"
    );
    // The vagrant post-processor's vmware_desktop box of the build, which Vagrant takes.
    let boxfile = work.join("output-box/installer_vmware.box");
    let listed = crate::vagrant::vagrant_box_add(vmw.path(), &boxfile);
    assert!(listed.contains("kiln-test (vmware_desktop"), "{listed}");
}

/// Every printable ASCII character, typed by kiln's VMware machine over the VNC server the
/// `.vmx` turns on (with its password, which the stand-in sets on QEMU's VNC server), into a
/// real guest: isolinux echoes the line on the serial console exactly as typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printable_ascii_typed_over_vmwares_vnc_server_arrives_exactly() {
    use kiln::builder::vmware::driver::{Driver, HostDriver, Product, VmwareOp};
    use kiln::builder::vmware::machine::VmwareMachine;
    use kiln::builder::Machine;
    use kiln::pipeline::VncEndpoint;

    let vmw = qemu_vmware(super::support::free_port());
    let iso = super::typing_guest::boot_echo_iso();
    let port = super::support::free_port();
    let vmx = vmw.path().join("echo.vmx");
    std::fs::write(
        &vmx,
        format!(
            "memsize = \"256\"\nide0:0.present = \"TRUE\"\nide0:0.deviceType = \"cdrom-image\"\n\
             ide0:0.fileName = \"{}\"\nRemoteDisplay.vnc.enabled = \"TRUE\"\n\
             RemoteDisplay.vnc.port = \"{port}\"\nRemoteDisplay.vnc.ip = \"127.0.0.1\"\n\
             RemoteDisplay.vnc.password = \"s3cret|7C\"\n",
            iso.display()
        ),
    )
    .unwrap();
    let driver = std::sync::Arc::new(HostDriver::new(
        vmw.bin().join("vmrun"),
        None,
        None,
        Product::Workstation,
    ));
    let start = VmwareOp::Start {
        vmx: vmx.clone(),
        gui: false,
    };
    driver.run(&start).await.unwrap();
    let vnc = VncEndpoint {
        host: "127.0.0.1".into(),
        port,
        password: Some("s3cret|".into()),
    };
    let machine = VmwareMachine::new(driver.clone(), vmx.clone(), Some(vnc));
    let mut keyboard = machine
        .keyboard(boot_commands::Transport::Vnc)
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
    let mut typed = String::new();
    for _ in 0..100 {
        typed = vmw.typed("echo");
        if typed.len() >= cmd.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(typed, cmd);
    machine.kill().await;
    assert!(machine.exited().is_some());
    assert!(
        vmw.qemu_pids().is_empty(),
        "vmrun stop hard leaves QEMU running"
    );
}
