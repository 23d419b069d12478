//! Start the built-in HTTP server (crate `http-preseed`) when the template has
//! `http_directory` or `http_content`, report each request to the user, stop it at cleanup.

use std::net::IpAddr;

use async_trait::async_trait;
use http_preseed::{HttpConfig, HttpServer};

use crate::config::common::HttpConfig as HttpOptions;
use crate::pipeline::{BuildContext, CleanupError, HttpInfo, Step, StepError};

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
        let bind: IpAddr = o.http_bind_address.parse().map_err(|_| {
            StepError::msg(format!(
                "http_bind_address {:?} is not an IP address",
                o.http_bind_address
            ))
        })?;
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
            ip: self.guest_ip.clone(),
            port,
            dir: o.http_directory.clone().unwrap_or_default(),
        });
        ctx.generated
            .insert("PackerHTTPIP".into(), self.guest_ip.clone());
        ctx.generated
            .insert("PackerHTTPPort".into(), port.to_string());
        ctx.generated
            .insert("PackerHTTPAddr".into(), format!("{}:{port}", self.guest_ip));
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
