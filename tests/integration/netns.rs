//! A network namespace of the test's own holding a Linux bridge with the host side's address,
//! for tests that put a guest on a real network (bridge.rs, vmware_leases.rs) without changing
//! the host's. Servers started in it (DHCP) are killed and the namespace deleted on drop.
//! [`Netns::command`] runs a program in the namespace with a private mount namespace, so
//! directories can be bound over system paths (`/etc/qemu` for qemu-bridge-helper's ACL,
//! `/etc/vmware`) for that program alone. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::text;

/// The namespace and its servers.
pub struct Netns {
    pub name: String,
    pub bridge: &'static str,
    servers: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for mut s in self.servers.drain(..) {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

impl Netns {
    /// A namespace `<prefix>-<pid>` with `lo` up and `bridge` up at `address` (`a.b.c.d/n`),
    /// also its default route, so the host side's "own address" (kiln's HTTP address) is it.
    pub fn with_bridge(prefix: &str, bridge: &'static str, address: &str) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            bridge,
            servers: Vec::new(),
        };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"]);
        ip(&["-n", n, "link", "add", bridge, "type", "bridge"]);
        ip(&["-n", n, "addr", "add", address, "dev", bridge]);
        ip(&["-n", n, "link", "set", bridge, "up"]);
        ip(&["-n", n, "route", "add", "default", "dev", bridge]);
        ns
    }

    /// Start `program args…` in the namespace as a server, output to `log`.
    pub fn serve(&mut self, program: &Path, args: &[String], log: &Path) {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        self.servers.push(child);
    }

    /// `program` run in the namespace with each `(directory, mount point)` of `binds` bound
    /// over its mount point in a private mount namespace; the mount points must exist.
    pub fn command(&self, binds: &[(PathBuf, &str)], program: &Path) -> Command {
        let mounts: String = binds
            .iter()
            .map(|(dir, at)| format!("mount --bind '{}' '{at}' && ", dir.display()))
            .collect();
        let mut c = Command::new("ip");
        c.args([
            "netns", "exec", &self.name, "unshare", "--mount", "sh", "-c",
        ])
        .arg(format!("{mounts}exec \"$@\""))
        .arg("sh")
        .arg(program);
        c
    }
}

/// Whether the test can make namespaces; says why not when it cannot.
pub fn can_run(test: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("note: {test} needs root (network namespace, bridge): not run");
    }
    root
}
