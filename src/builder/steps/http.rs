//! Start the built-in HTTP server (crate `http-preseed`) when the template has
//! `http_directory` or `http_content`, report each request to the user, stop it at cleanup.

use std::net::IpAddr;

use async_trait::async_trait;
use http_preseed::{HttpConfig, HttpServer};

use crate::config::common::HttpConfig as HttpOptions;
use crate::pipeline::{BuildContext, CleanupError, HttpInfo, Step, StepError};

/// Why a host interface's address is not available.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The host's interfaces could not be listed.
    #[error("cannot list the host's network interfaces")]
    List(#[source] std::io::Error),
    /// No interface has that name.
    #[error("no network interface {0:?} on this host")]
    Missing(String),
    /// The interface has no IPv4 address.
    #[error("network interface {0:?} has no IPv4 address")]
    NoAddress(String),
}

/// The first IPv4 address of the host interface `name`.
pub fn interface_ipv4(name: &str) -> Result<String, InterfaceError> {
    let addrs = if_addrs::get_if_addrs().map_err(InterfaceError::List)?;
    if !addrs.iter().any(|a| a.name == name) {
        return Err(InterfaceError::Missing(name.to_owned()));
    }
    addrs
        .iter()
        .filter(|a| a.name == name)
        .find_map(|a| match a.ip() {
            IpAddr::V4(ip) => Some(ip.to_string()),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| InterfaceError::NoAddress(name.to_owned()))
}

/// Serves `http_directory` / `http_content` for the build.
pub struct StartHttpServer {
    options: HttpOptions,
    /// The address the guest uses to reach the host (10.0.2.2 under QEMU user networking).
    guest_ip: String,
    server: Option<HttpServer>,
}

impl StartHttpServer {
    /// A step serving `options`, announced to the guest as `guest_ip`.
    pub fn new(options: HttpOptions, guest_ip: &str) -> Self {
        Self {
            options,
            guest_ip: guest_ip.to_owned(),
            server: None,
        }
    }
}

#[async_trait]
impl Step for StartHttpServer {
    fn name(&self) -> &'static str {
        "start HTTP server"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let o = &self.options;
        if o.http_directory.is_none() && o.http_content.is_empty() {
            return Ok(());
        }
        // `http_network_protocol = "tcp6"` with the default address listens on IPv6's.
        let address = match o.http_network_protocol.as_deref() {
            Some("tcp6") if o.http_bind_address == "0.0.0.0" => "::",
            _ => o.http_bind_address.as_str(),
        };
        let bind: IpAddr = address.parse().map_err(|_| {
            StepError::msg(format!(
                "http_bind_address {:?} is not an IP address",
                o.http_bind_address
            ))
        })?;
        // `http_interface`: the guest is told that interface's address, as Packer does.
        let guest_ip = match &o.http_interface {
            Some(name) => {
                interface_ipv4(name).map_err(|e| StepError::with("cannot use http_interface", e))?
            }
            None => self.guest_ip.clone(),
        };
        let config = HttpConfig {
            directory: o.http_directory.as_ref().map(Into::into),
            content: o.http_content.clone(),
            bind_address: bind,
            port_min: o.http_port_min,
            port_max: o.http_port_max,
            ..HttpConfig::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server = HttpServer::start(config, Some(tx))
            .await
            .map_err(|e| StepError::with("cannot start the HTTP server", e))?;
        let port = server.port();
        ctx.ui.say(&format!("Starting HTTP server on port {port}"));
        let ui = ctx.ui.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let file = ev.path.rsplit('/').next().unwrap_or(&ev.path).to_owned();
                if ev.status < 400 {
                    ui.message(&format!(
                        "HTTP: served {file} to {} ({} bytes)",
                        ev.client.ip(),
                        ev.bytes
                    ));
                } else {
                    ui.message(&format!(
                        "HTTP: {} {} from {} -> {}",
                        ev.method,
                        ev.path,
                        ev.client.ip(),
                        ev.status
                    ));
                }
            }
        });
        ctx.http = Some(HttpInfo {
            ip: guest_ip.clone(),
            port,
            dir: o.http_directory.clone().unwrap_or_default(),
        });
        ctx.generated
            .insert("PackerHTTPIP".into(), guest_ip.clone());
        ctx.generated
            .insert("PackerHTTPPort".into(), port.to_string());
        ctx.generated
            .insert("PackerHTTPAddr".into(), format!("{guest_ip}:{port}"));
        self.server = Some(server);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        ctx.http = None;
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pipeline::context::testing::context;

    #[tokio::test]
    async fn serves_the_content_announces_it_to_the_guest_and_stops_at_cleanup() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = StartHttpServer::new(
            HttpOptions {
                http_content: BTreeMap::from([("/ks.cfg".into(), "text".into())]),
                http_bind_address: "127.0.0.1".into(),
                ..HttpOptions::default()
            },
            "10.0.2.2",
        );
        step.run(&mut ctx).await.unwrap();
        let http = ctx.http.clone().unwrap();
        assert_eq!(http.ip, "10.0.2.2");
        assert!((8000..=9000).contains(&http.port));
        assert_eq!(
            ctx.generated["PackerHTTPAddr"],
            format!("10.0.2.2:{}", http.port)
        );
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", http.port)).unwrap();
            s.write_all(b"GET /ks.cfg HTTP/1.0\r\n\r\n").unwrap();
            let mut r = String::new();
            s.read_to_string(&mut r).unwrap();
            r
        })
        .await
        .unwrap();
        assert!(
            body.starts_with("HTTP/1.") && body.ends_with("text"),
            "{body}"
        );
        step.cleanup(&mut ctx).await.unwrap();
        assert!(ctx.http.is_none());
        assert!(std::net::TcpStream::connect(("127.0.0.1", http.port)).is_err());
    }

    /// `http_interface` announces that interface's address (Packer's StepHTTPIPDiscover), and
    /// `http_network_protocol = "tcp6"` listens on IPv6; an unknown interface is named.
    #[tokio::test]
    async fn http_interface_and_tcp6_are_acted_on() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let content = BTreeMap::from([("/ks.cfg".into(), "text".into())]);
        // A container may have no IPv6; then only the interface part is checked.
        let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        let mut step = StartHttpServer::new(
            HttpOptions {
                http_content: content.clone(),
                http_interface: Some("lo".into()),
                http_network_protocol: ipv6.then(|| "tcp6".into()),
                ..HttpOptions::default()
            },
            "10.0.2.2",
        );
        step.run(&mut ctx).await.unwrap();
        let http = ctx.http.clone().unwrap();
        assert_eq!(http.ip, "127.0.0.1");
        if ipv6 {
            assert!(std::net::TcpStream::connect(("::1", http.port)).is_ok());
        }
        step.cleanup(&mut ctx).await.unwrap();

        let mut step = StartHttpServer::new(
            HttpOptions {
                http_content: content,
                http_interface: Some("kiln-no-such-if0".into()),
                ..HttpOptions::default()
            },
            "10.0.2.2",
        );
        let e = crate::report::report(&step.run(&mut ctx).await.unwrap_err());
        assert!(
            e.contains("no network interface \"kiln-no-such-if0\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn nothing_to_serve_starts_nothing_and_a_bad_address_is_named() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        StartHttpServer::new(HttpOptions::default(), "10.0.2.2")
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.http.is_none());
        let e = StartHttpServer::new(
            HttpOptions {
                http_directory: Some(".".into()),
                http_bind_address: "not-an-ip".into(),
                ..HttpOptions::default()
            },
            "10.0.2.2",
        )
        .run(&mut ctx)
        .await
        .unwrap_err()
        .report();
        assert!(e.contains("http_bind_address \"not-an-ip\""), "{e}");
    }
}
