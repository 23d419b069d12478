//! Pick the host ports a VM is reached on before it starts: the port forwarded to the guest's
//! SSH (or WinRM) server, from `host_port_min..=host_port_max`, and the VNC display port, from
//! `vnc_port_min..=vnc_port_max`, with a random password when asked. Each search starts at a
//! random offset so parallel builds rarely try the same port.

use std::net::TcpListener;

use async_trait::async_trait;

use crate::pipeline::{BuildContext, CleanupError, Step, StepError, VncEndpoint};

/// Ports handed out to this kiln's builds and not yet released: a port is only bound by QEMU
/// (or VirtualBox, VMware) later, so parallel builds must not rely on the bind test alone.
fn reserved() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    static RESERVED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    RESERVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A free TCP port in `min..=max` on `host`, starting at a random offset, that no other build of
/// this kiln holds; it stays reserved until [`release`].
pub fn free_port(host: &str, min: u16, max: u16) -> Option<u16> {
    let (min, max) = (min.min(max), max.max(min));
    let span = u32::from(max - min) + 1;
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    let mut held = reserved();
    let port = (0..span)
        .map(|i| min + ((start + i) % span) as u16)
        .find(|&p| !held.contains(&p) && TcpListener::bind((host, p)).is_ok())?;
    held.insert(port);
    Some(port)
}

/// Give back a port from [`free_port`].
pub fn release(port: u16) {
    reserved().remove(&port);
}

/// Which ports to pick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRequest {
    /// `host_port_min`/`host_port_max`, when the guest's SSH port is forwarded from the host
    /// (not with `skip_nat_mapping`, a bridge, or `communicator = "none"`).
    pub ssh: Option<(u16, u16)>,
    /// `vnc_bind_address`, `vnc_port_min`, `vnc_port_max`, `vnc_use_password`, unless
    /// `disable_vnc`.
    pub vnc: Option<VncRequest>,
}

/// The VNC part of a [`PortRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncRequest {
    /// `vnc_bind_address`.
    pub bind: String,
    /// `vnc_port_min`.
    pub min: u16,
    /// `vnc_port_max`.
    pub max: u16,
    /// `vnc_use_password`.
    pub password: bool,
    /// The password to use (`vnc_password`) instead of a random one.
    pub fixed_password: Option<String>,
}

/// Sets `ctx.ssh_host_port` and `ctx.vnc`; cleanup gives the ports back.
pub struct PickPorts {
    request: PortRequest,
    picked: Vec<u16>,
}

impl PickPorts {
    /// The step for `request`.
    pub fn new(request: PortRequest) -> Self {
        Self {
            request,
            picked: Vec::new(),
        }
    }
}

#[async_trait]
impl Step for PickPorts {
    fn name(&self) -> &'static str {
        "pick ports"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if let Some((min, max)) = self.request.ssh {
            let port = free_port("127.0.0.1", min, max).ok_or_else(|| {
                StepError::msg(format!(
                    "no free host port for SSH between {min} and {max}\nhint: widen host_port_min/host_port_max"
                ))
            })?;
            self.picked.push(port);
            ctx.ssh_host_port = Some(port);
        }
        if let Some(v) = &self.request.vnc {
            let port = free_port(&v.bind, v.min, v.max).ok_or_else(|| {
                StepError::msg(format!(
                    "no free VNC port between {} and {}\nhint: widen vnc_port_min/vnc_port_max, or set disable_vnc",
                    v.min, v.max
                ))
            })?;
            self.picked.push(port);
            ctx.vnc = Some(VncEndpoint {
                host: v.bind.clone(),
                port,
                password: v.password.then(|| {
                    v.fixed_password.clone().unwrap_or_else(|| {
                        uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
                    })
                }),
            });
        }
        Ok(())
    }

    async fn cleanup(&mut self, _ctx: &mut BuildContext) -> Result<(), CleanupError> {
        for port in self.picked.drain(..) {
            release(port);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::testing::context;

    #[test]
    fn free_port_skips_ports_in_use() {
        let busy = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = busy.local_addr().unwrap().port();
        assert_eq!(free_port("127.0.0.1", p, p), None);
        let other = free_port("127.0.0.1", 20000, 20100).unwrap();
        assert!((20000..=20100).contains(&other));
    }

    #[tokio::test]
    async fn parallel_builds_never_get_the_same_port_before_it_is_bound() {
        // Two free ports; nothing binds them (QEMU would, later). The first pick holds its
        // port until cleanup, so the second gets the other one and a third finds none.
        let a = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        drop(a);
        let t = tempfile::tempdir().unwrap();
        let request = PortRequest {
            ssh: Some((p, p)),
            vnc: None,
        };
        let mut ctx = context(t.path());
        let mut first = PickPorts::new(request.clone());
        first.run(&mut ctx).await.unwrap();
        assert_eq!(ctx.ssh_host_port, Some(p));
        let mut second = PickPorts::new(request.clone());
        assert!(second.run(&mut context(t.path())).await.is_err());
        first.cleanup(&mut ctx).await.unwrap();
        second.run(&mut ctx).await.unwrap();
        assert_eq!(ctx.ssh_host_port, Some(p));
        second.cleanup(&mut ctx).await.unwrap();
    }

    #[tokio::test]
    async fn picks_an_ssh_port_and_a_vnc_port_with_a_password() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = PickPorts::new(PortRequest {
            ssh: Some((21000, 21100)),
            vnc: Some(VncRequest {
                bind: "127.0.0.1".into(),
                min: 25900,
                max: 25999,
                password: true,
                fixed_password: None,
            }),
        });
        step.run(&mut ctx).await.unwrap();
        assert!((21000..=21100).contains(&ctx.ssh_host_port.unwrap()));
        let vnc = ctx.vnc.clone().unwrap();
        assert!((25900..=25999).contains(&vnc.port));
        assert_eq!(vnc.password.map(|p| p.len()), Some(8));
    }

    /// Packer's TestVNCPasswordSetWhenVNCPasswordNotEmpty: `vnc_password` is the password,
    /// and without `vnc_use_password` there is none.
    #[tokio::test]
    async fn vnc_password_is_used_only_with_vnc_use_password() {
        let t = tempfile::tempdir().unwrap();
        for (password, want) in [(true, Some("s3cret")), (false, None)] {
            let mut ctx = context(t.path());
            let mut step = PickPorts::new(PortRequest {
                ssh: None,
                vnc: Some(VncRequest {
                    bind: "127.0.0.1".into(),
                    min: 25900,
                    max: 25999,
                    password,
                    fixed_password: Some("s3cret".into()),
                }),
            });
            step.run(&mut ctx).await.unwrap();
            assert_eq!(ctx.vnc.clone().unwrap().password.as_deref(), want);
            step.cleanup(&mut ctx).await.unwrap();
        }
    }

    #[tokio::test]
    async fn nothing_asked_sets_nothing() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        PickPorts::new(PortRequest::default())
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.ssh_host_port.is_none() && ctx.vnc.is_none());
    }

    #[tokio::test]
    async fn a_full_range_is_an_error_naming_the_options() {
        let busy = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let p = busy.local_addr().unwrap().port();
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let e = PickPorts::new(PortRequest {
            ssh: Some((p, p)),
            vnc: None,
        })
        .run(&mut ctx)
        .await
        .unwrap_err()
        .report();
        assert!(e.contains("host_port_min/host_port_max"), "{e}");
    }
}
