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
