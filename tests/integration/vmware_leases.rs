//! The VMware guest's address from a real DHCP server's leases (kiln issue 15). A network
//! namespace of the test's own (see netns.rs) holds a bridge standing for vmnet8 and ISC dhcpd
//! (fixtures/dhcpd, Debian's isc-dhcp-server unpacked) serving it, writing its ISC-format
//! leases to `<etc-vmware>/vmnet8/dhcpd/dhcpd.leases` beside a `netmap.conf` naming vmnet8 NAT.
//! kiln runs in the namespace with that directory bound over `/etc/vmware` in a private mount
//! namespace, so it reads VMware's real paths and the host's `/etc/vmware` is not touched (an
//! empty mount point is made when the host has none, and removed after). The QEMU-backed
//! `vmrun` stand-in puts the guest's NIC, with the `.vmx`'s MAC, on the bridge and fails
//! `getGuestIPAddress` as without VMware Tools, so only the lease can tell kiln the address it
//! connects to by SSH. Needs root (CI runs as root); elsewhere it says why and returns.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;

use crate::netns::{can_run, Netns};
use crate::support::{fixture, repo, text, QemuStandin};

/// `/etc/vmware` exists for the test's bind mount; removed on drop when the test made it.
struct MountPoint(Option<&'static str>);

impl MountPoint {
    fn make(path: &'static str) -> Self {
        if Path::new(path).exists() {
            return MountPoint(None);
        }
        std::fs::create_dir(path).unwrap();
        MountPoint(Some(path))
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            // Only when still empty: never anything someone else put there.
            let _ = std::fs::remove_dir(p);
        }
    }
}

#[test]
fn vmware_iso_finds_the_guest_by_its_lease_from_a_real_isc_dhcpd() {
    if !can_run("vmware lease test") {
        return;
    }
    let dhcpd = fixture("dhcpd").join("dhcpd");
    let iso = crate::e2e::iso();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut ns = Netns::with_bridge("kiln-vmw", "vmnet8", "10.78.0.1/24");

    // VMware's configuration directory: vmnet8 is NAT, and its DHCP server's leases.
    let etc = w.join("etc-vmware");
    let leases = etc.join("vmnet8/dhcpd/dhcpd.leases");
    std::fs::create_dir_all(leases.parent().unwrap()).unwrap();
    std::fs::write(
        etc.join("netmap.conf"),
        "# As VMware Workstation writes it.\nnetwork0.name = \"Bridged\"\nnetwork0.device = \"vmnet0\"\nnetwork1.name = \"HostOnly\"\nnetwork1.device = \"vmnet1\"\nnetwork8.name = \"NAT\"\nnetwork8.device = \"vmnet8\"\n",
    )
    .unwrap();
    std::fs::write(&leases, "").unwrap();
    let conf = w.join("dhcpd.conf");
    std::fs::write(
        &conf,
        "default-lease-time 1800;\nmax-lease-time 7200;\nauthoritative;\nsubnet 10.78.0.0 netmask 255.255.255.0 {\n  range 10.78.0.128 10.78.0.254;\n  option routers 10.78.0.1;\n}\n",
    )
    .unwrap();
    let dhcpd_log = w.join("dhcpd.log");
    let args = [
        "-4",
        "-f",
        "-d",
        "-cf",
        &conf.display().to_string(),
        "-lf",
        &leases.display().to_string(),
        "-pf",
        &w.join("dhcpd.pid").display().to_string(),
        ns.bridge,
    ]
    .map(str::to_owned);
    ns.serve(&dhcpd, &args, &dhcpd_log);

    // The QEMU-backed stand-ins with the guest's NIC on the bridge.
    let standin = QemuStandin::new(
        "KILN_VMWARE_STANDIN",
        &["vmrun", "vmware-vdiskmanager", "ovftool"],
        &[("KILN_VMWARE_STANDIN_BRIDGE", ns.bridge.to_owned())],
    );
    let vmw = standin.path();
    // qemu-bridge-helper's ACL, and VMware's directory, for kiln and what it runs alone.
    let acl = w.join("etc-qemu");
    std::fs::create_dir(&acl).unwrap();
    std::fs::write(acl.join("bridge.conf"), format!("allow {}\n", ns.bridge)).unwrap();
    std::fs::create_dir_all("/etc/qemu").unwrap();
    let _mount_point = MountPoint::make("/etc/vmware");
    let binds = [(acl, "/etc/qemu"), (etc.clone(), "/etc/vmware")];
    let build = w.join("build");
    std::fs::create_dir(&build).unwrap();
    let path = standin.path_var();
    let o = ns
        .command(&binds, Path::new(env!("CARGO_BIN_EXE_kiln")))
        .current_dir(&build)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("KILN_BOOT_TRANSPORT")
        .args(["build", "-var", "boot_wait=1s", "-var"])
        .arg(format!("iso_path={}", iso.display()))
        .arg(repo().join("fixtures/templates/vmware/installer.pkr.hcl"))
        .output()
        .unwrap();
    let t = text(&o);
    let log = std::fs::read_to_string(&dhcpd_log).unwrap_or_default();
    assert!(o.status.success(), "{t}\ndhcpd:\n{log}");

    // The address kiln took, from the leases file at VMware's path...
    let found = t
        .lines()
        .find_map(|l| l.split("The guest's IP address is ").nth(1))
        .unwrap_or_else(|| panic!("no address line: {t}"));
    let (ip, source) = found.split_once(' ').unwrap();
    assert_eq!(
        source.trim(),
        "(DHCP lease in /etc/vmware/vmnet8/dhcpd/dhcpd.leases)",
        "{t}"
    );
    // ...is the one dhcpd acknowledged to the .vmx's MAC (its log, not kiln's parser),
    let vmx = std::fs::read_to_string(build.join("output-installer/packer-installer.vmx"))
        .unwrap()
        .to_ascii_lowercase();
    let mac = vmx
        .lines()
        .find_map(|l| l.strip_prefix("ethernet0.generatedaddress = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no generated MAC in the .vmx: {vmx}"));
    assert!(
        log.contains(&format!("DHCPACK on {ip} to {mac}")),
        "dhcpd leased {ip} to {mac}:\n{log}"
    );
    // ...and vmrun could not have told it (the stand-in refused every time it was asked).
    let calls = std::fs::read_to_string(vmw.join("calls.log")).unwrap();
    assert!(calls.contains("\"start\""), "{calls}");
    // The build went through on that address: SSH, provisioning, export.
    assert!(ip.starts_with("10.78.0."), "{ip}");
    assert_eq!(
        std::fs::read_to_string(build.join("facts-vmware.txt"))
            .unwrap()
            .trim(),
        "root=/dev/nvme0n1p1"
    );
    assert!(build.join("output-installer/packer-installer.ovf").exists());
}
