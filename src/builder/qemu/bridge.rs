//! `net_bridge`: the guest sits on a host bridge (through QEMU's `qemu-bridge-helper`)
//! instead of QEMU's user network. As in Packer, `{{ .HTTPIP }}` is the bridge's first IPv4
//! address, and the guest's address is found by its MAC in the host's ARP table once the
//! guest has talked on the bridge (DHCP, the answer file); SSH then goes to that address
//! directly. kiln gives the default NIC a random MAC (QEMU's default is the same for every
//! VM, so two builds on one bridge would collide) and reads the MACs QEMU reports, so a NIC
//! from `qemuargs` is found too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::config::qemu::QemuConfig;
use crate::pipeline::{BuildContext, Step, StepError};

/// Why the bridge's address for the guest could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The host's interfaces could not be listed.
    #[error("cannot list the host's network interfaces")]
    List(#[source] std::io::Error),
    /// No interface has that name.
    #[error("net_bridge {0:?}: no such network interface on this host\nhint: create the bridge (ip link add {0} type bridge) and allow it in /etc/qemu/bridge.conf")]
    Missing(String),
    /// The interface has no IPv4 address.
    #[error("net_bridge {0:?} has no IPv4 address for the guest to reach the HTTP server")]
    NoAddress(String),
}

/// The first IPv4 address of the host interface `bridge`.
pub fn bridge_ipv4(bridge: &str) -> Result<String, BridgeError> {
    use crate::builder::steps::http::{interface_ipv4, InterfaceError};
    interface_ipv4(bridge).map_err(|e| match e {
        InterfaceError::List(e) => BridgeError::List(e),
        InterfaceError::Missing(n) => BridgeError::Missing(n),
        InterfaceError::NoAddress(n) => BridgeError::NoAddress(n),
    })
}

/// A locally administered unicast MAC in QEMU's 52:54:00 range.
pub fn random_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// The MACs in QEMU's `info network` output (`macaddr=52:54:00:…`).
pub fn macs_in_info_network(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|w| w.strip_prefix("macaddr="))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The IPv4 address `/proc/net/arp` gives for one of `macs` on `device`, if the entry is
/// complete (flag ATF_COM).
pub fn address_in_arp(arp: &str, device: &str, macs: &[String]) -> Option<String> {
    arp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (ip, flags, mac, dev) = (f.first()?, f.get(2)?, f.get(3)?, f.get(5)?);
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        (*dev == device && flags & 0x2 != 0 && macs.iter().any(|m| m.eq_ignore_ascii_case(mac)))
            .then(|| (*ip).to_owned())
    })
}

/// With `net_bridge`, wait until the guest has an address on the bridge and point the
/// communicator at it (Packer's "wait for guest address" step).
pub struct WaitGuestAddress {
    cfg: Arc<QemuConfig>,
}

impl WaitGuestAddress {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>) -> Self {
        Self { cfg }
    }
}

#[async_trait]
impl Step for WaitGuestAddress {
    fn name(&self) -> &'static str {
        "wait for guest address"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let Some(bridge) = cfg.net_bridge.as_deref() else {
            return Ok(());
        };
        if cfg.comm.communicator == "none" {
            return Ok(());
        }
        let machine = ctx.require_machine()?;
        let macs = machine
            .mac_addresses()
            .await
            .map_err(|e| StepError::with("cannot find the guest's network card", e))?;
        if macs.is_empty() {
            return Err(StepError::msg(
                "QEMU reports no network card with a MAC address",
            ));
        }
        ctx.ui.say(&format!(
            "Waiting for the guest address to become available in the {bridge} network bridge..."
        ));
        // The same limit as waiting for SSH (none when the template sets none).
        let timeout = cfg.comm.ssh_timeout().unwrap_or(Duration::MAX);
        let start = Instant::now();
        loop {
            let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
            if let Some(ip) = address_in_arp(&arp, bridge, &macs) {
                ctx.ui.message(&format!("Found guest address {ip}"));
                ctx.ssh_address = Some((ip, cfg.comm.ssh_port));
                return Ok(());
            }
            if let Some(reason) = machine.exited() {
                return Err(StepError::msg(format!(
                    "the VM stopped before it had an address on {bridge}: {reason}"
                )));
            }
            if start.elapsed() >= timeout {
                return Err(StepError::msg(format!(
                    "the guest (MAC {}) got no address on bridge {bridge} within ssh_timeout ({:?})\nhint: check that a DHCP server answers on the bridge and that the guest's network comes up",
                    macs.join(", "),
                    timeout
                )));
            }
            tokio::select! {
                () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::machine::testing::FakeMachine;

    fn bridged() -> Arc<QemuConfig> {
        Arc::new(QemuConfig {
            net_bridge: Some("kiln-no-such-br".into()),
            ..QemuConfig::default()
        })
    }

    #[tokio::test]
    async fn wait_guest_address_does_nothing_without_a_bridge() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        WaitGuestAddress::new(Arc::new(QemuConfig::default()))
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.ssh_address.is_none());
    }

    #[tokio::test]
    async fn wait_guest_address_needs_the_machine_and_a_mac() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let e = WaitGuestAddress::new(bridged())
            .run(&mut ctx)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "start VM",
                ..
            }
        ));
        ctx.machine = Some(Arc::new(FakeMachine::default()));
        let e = WaitGuestAddress::new(bridged())
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("no network card"), "{e}");
    }

    #[tokio::test]
    async fn wait_guest_address_stops_when_the_vm_stops() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine {
            macs: vec!["52:54:00:00:00:01".into()],
            ..FakeMachine::default()
        });
        *m.exited.lock().unwrap() = Some("QEMU exited".into());
        ctx.machine = Some(m);
        let e = WaitGuestAddress::new(bridged())
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("stopped before it had an address on kiln-no-such-br"),
            "{e}"
        );
    }

    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
10.77.0.60       0x1         0x0         52:54:00:aa:bb:cc     *        kilnbr0
10.77.0.61       0x1         0x2         52:54:00:aa:bb:cd     *        kilnbr0
10.0.0.9         0x1         0x2         52:54:00:aa:bb:ce     *        eth0
";

    #[test]
    fn arp_lookup_wants_a_complete_entry_on_the_bridge() {
        let m = |s: &str| vec![s.to_owned()];
        assert_eq!(
            address_in_arp(ARP, "kilnbr0", &m("52:54:00:aa:bb:cc")),
            None
        );
        assert_eq!(
            address_in_arp(ARP, "kilnbr0", &m("52:54:00:AA:BB:CD")).as_deref(),
            Some("10.77.0.61")
        );
        assert_eq!(
            address_in_arp(ARP, "kilnbr0", &m("52:54:00:aa:bb:ce")),
            None
        );
    }

    #[test]
    fn macs_from_info_network() {
        let info = "hub 0\r\n \\ user.0: index=0,type=tap,helper=/usr/lib/qemu/qemu-bridge-helper,br=kilnbr0\r\nvirtio-net-pci.0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:ab:9f\r\n";
        assert_eq!(macs_in_info_network(info), ["52:54:00:12:ab:9f"]);
        let mac = random_mac();
        assert!(mac.starts_with("52:54:00:") && mac.len() == 17, "{mac}");
    }

    #[test]
    fn a_missing_bridge_is_named_with_a_hint() {
        let e = bridge_ipv4("kiln-no-such-br").unwrap_err().to_string();
        assert!(
            e.contains("kiln-no-such-br") && e.contains("bridge.conf"),
            "{e}"
        );
        assert_eq!(bridge_ipv4("lo").unwrap(), "127.0.0.1");
    }
}
