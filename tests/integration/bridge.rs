//! `net_bridge` end to end: the installer fixture is installed with the guest on a Linux
//! bridge instead of QEMU's user network. The test makes its own network namespace holding
//! the bridge (10.77.0.1/24) and a DHCP server (dnsmasq), and gives qemu-bridge-helper an
//! ACL allowing the bridge through a private mount of /etc/qemu, so nothing on the host's
//! network changes. Needs root (CI runs as root); elsewhere it says why and returns.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::e2e::iso;
use crate::support::{repo, text};

const NS_PREFIX: &str = "kiln-br";
const BRIDGE: &str = "kilnbr0";

/// The namespace and its DHCP server, removed when dropped.
struct Netns {
    name: String,
    dhcp: Option<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut d) = self.dhcp.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

fn setup(work: &Path) -> Netns {
    let name = format!("{NS_PREFIX}-{}", std::process::id());
    ip(&["netns", "add", &name]);
    let mut ns = Netns { name, dhcp: None };
    let n = ns.name.clone();
    ip(&["-n", &n, "link", "set", "lo", "up"]);
    ip(&["-n", &n, "link", "add", BRIDGE, "type", "bridge"]);
    ip(&["-n", &n, "addr", "add", "10.77.0.1/24", "dev", BRIDGE]);
    ip(&["-n", &n, "link", "set", BRIDGE, "up"]);
    let dhcp = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n,
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args(["--interface", BRIDGE, "--bind-interfaces", "--port=0"])
        .args(["--dhcp-range=10.77.0.50,10.77.0.99,12h"])
        .arg(format!(
            "--dhcp-leasefile={}",
            work.join("leases").display()
        ))
        .arg(format!("--pid-file={}", work.join("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian's dnsmasq-base)");
    ns.dhcp = Some(dhcp);
    ns
}

#[test]
fn net_bridge_installs_over_the_bridge_and_finds_the_guest_by_arp() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: net_bridge test needs root (network namespace, bridge): not run");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ns = setup(work.path());
    // qemu-bridge-helper reads /etc/qemu/bridge.conf; give it ours in a private mount.
    let acl = work.path().join("etc-qemu");
    std::fs::create_dir(&acl).unwrap();
    std::fs::write(acl.join("bridge.conf"), format!("allow {BRIDGE}\n")).unwrap();
    std::fs::create_dir_all("/etc/qemu").unwrap();
    let script = format!("mount --bind {} /etc/qemu && exec \"$@\"", acl.display());
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "unshare", "--mount", "sh", "-c", &script, "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_kiln"))
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
