//! `net_bridge` end to end: the installer fixture is installed with the guest on a Linux
//! bridge instead of QEMU's user network. The test makes its own network namespace holding
//! the bridge (10.77.0.1/24) and a DHCP server (dnsmasq), and gives qemu-bridge-helper an
//! ACL allowing the bridge through a private mount of /etc/qemu, so nothing on the host's
//! network changes. Needs root (CI runs as root); elsewhere it says why and returns.

use std::path::{Path, PathBuf};

use crate::e2e::iso;
use crate::netns::{can_run, Netns};
use crate::support::{repo, text};

const BRIDGE: &str = "kilnbr0";

/// The namespace with the bridge and dnsmasq serving DHCP on it.
fn setup(work: &Path) -> Netns {
    let mut ns = Netns::with_bridge("kiln-br", BRIDGE, "10.77.0.1/24");
    let args = [
        "--no-daemon".to_owned(),
        "--conf-file=/dev/null".to_owned(),
        format!("--interface={BRIDGE}"),
        "--bind-interfaces".to_owned(),
        "--port=0".to_owned(),
        "--dhcp-range=10.77.0.50,10.77.0.99,12h".to_owned(),
        format!("--dhcp-leasefile={}", work.join("leases").display()),
        format!("--pid-file={}", work.join("dnsmasq.pid").display()),
    ];
    // Debian's dnsmasq-base.
    ns.serve(Path::new("dnsmasq"), &args, &work.join("dnsmasq.log"));
    ns
}

#[test]
fn net_bridge_installs_over_the_bridge_and_finds_the_guest_by_arp() {
    if !can_run("net_bridge test") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ns = setup(work.path());
    // qemu-bridge-helper reads /etc/qemu/bridge.conf; give it ours in a private mount.
    let acl = work.path().join("etc-qemu");
    std::fs::create_dir(&acl).unwrap();
    std::fs::write(acl.join("bridge.conf"), format!("allow {BRIDGE}\n")).unwrap();
    std::fs::create_dir_all("/etc/qemu").unwrap();
    let binds: [(PathBuf, &str); 1] = [(acl, "/etc/qemu")];
    let o = ns
        .command(&binds, Path::new(env!("CARGO_BIN_EXE_kiln")))
        .arg("build")
        .arg(format!("-var=iso_path={}", iso().display()))
        .arg(format!("-var=bridge={BRIDGE}"))
        .arg(repo().join("fixtures/templates/bridge"))
        .current_dir(work.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("br=kilnbr0"), "QEMU is on the bridge: {t}");
    assert!(t.contains("HTTP: served ks.cfg to 10.77.0."), "{t}");
    let found = t
        .lines()
        .find_map(|l| l.split("Found guest address ").nth(1))
        .unwrap_or_else(|| panic!("no guest address line: {t}"))
        .trim()
        .to_owned();
    let guest = std::fs::read_to_string(work.path().join("guest-address.txt")).unwrap();
    assert_eq!(
        guest.trim().split('/').next(),
        Some(found.as_str()),
        "kiln connected to the address the guest has"
    );
    assert!(
        found.starts_with("10.77.0."),
        "a DHCP lease on the bridge: {found}"
    );
    assert!(work.path().join("output-bridge/bridge.qcow2").exists());
}
