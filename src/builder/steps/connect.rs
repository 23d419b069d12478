//! Wait for the guest's SSH server and log in, with Packer's `ssh_*` options. While waiting,
//! watch the VM: if it exits, fail at once with its reason instead of waiting out
//! `ssh_timeout`. A timeout names what to check (boot command, answer file, credentials).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::builder::Machine;
use crate::communicator::keys::TemporaryKeyPair;
use crate::communicator::ssh::{self, ConnectError, SshConfig};
use crate::communicator::Communicator;
use crate::config::common::CommConfig;
use crate::pipeline::{BuildContext, Step, StepError};

/// Connects the build's communicator.
pub struct Connect {
    comm: CommConfig,
    key: Option<Arc<TemporaryKeyPair>>,
    machine: Option<Arc<dyn Machine>>,
    /// What to suggest when SSH never answers (builder-specific).
    hint: &'static str,
}

impl Connect {
    /// A step connecting with `comm`, also offering `key` when set, while `machine` runs.
    pub fn new(
        comm: CommConfig,
        key: Option<Arc<TemporaryKeyPair>>,
        machine: Option<Arc<dyn Machine>>,
        hint: &'static str,
    ) -> Self {
        Self {
            comm,
            key,
            machine,
            hint,
        }
    }

    fn ssh_config(&self, host: &str, port: u16) -> SshConfig {
        let c = &self.comm;
        SshConfig {
            host: host.to_owned(),
            port,
            username: c.ssh_username.clone().unwrap_or_default(),
            password: c.ssh_password.as_ref().map(|s| s.0.clone()),
            private_key_files: c.ssh_private_key_file.iter().map(Into::into).collect(),
            private_keys: self.key.iter().map(|k| k.private_key()).collect(),
            timeout: c
                .ssh_wait_timeout
                .as_ref()
                .unwrap_or(&c.ssh_timeout)
                .clamped(),
            handshake_attempts: c.ssh_handshake_attempts,
            keep_alive_interval: Some(c.ssh_keep_alive_interval.clamped()).filter(|d| !d.is_zero()),
            read_write_timeout: Some(c.ssh_read_write_timeout.clamped()).filter(|d| !d.is_zero()),
            pty: c.ssh_pty,
        }
    }
}

#[async_trait]
impl Step for Connect {
    fn name(&self) -> &'static str {
        "connect"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.comm.communicator == "none" {
            ctx.ui.say("Communicator is \"none\": skipping SSH");
            return Ok(());
        }
        if self.comm.communicator != "ssh" {
            return Err(StepError::msg(format!(
                "communicator {:?} is not supported by kiln yet: use ssh or none",
                self.comm.communicator
            )));
        }
        if let Some(p) = &self.comm.pause_before_connecting {
            ctx.ui.say(&format!("Pausing {p} before connecting..."));
            tokio::time::sleep(p.clamped()).await;
        }
        let (host, port) = ctx
            .ssh_address
            .clone()
            .ok_or_else(|| StepError::msg("no SSH address for the guest (ssh_host is not set)"))?;
        let config = self.ssh_config(&host, port);
        ctx.ui.say("Waiting for SSH to become available...");
        let connecting = ssh::connect(&config);
        let machine = self.machine.clone();
        let died = async move {
            match machine {
                Some(m) => loop {
                    if let Some(reason) = m.exited() {
                        return reason;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                },
                None => std::future::pending().await,
            }
        };
        let comm = tokio::select! {
            r = connecting => r.map_err(|e| match e {
                ConnectError::Timeout { .. } => StepError::msg(format!("{e}\nhint: {}", self.hint)),
                e => StepError::with("cannot connect to the guest over SSH", &e),
            })?,
            reason = died => return Err(StepError::msg(format!(
                "the VM stopped before SSH came up: {reason}\nhint: {}", self.hint
            ))),
        };
        ctx.ui.say(&format!(
            "Connected to SSH! (host key {})",
            comm.host_key_fingerprint()
        ));
        ctx.generated.insert("Host".into(), host);
        ctx.generated.insert("Port".into(), port.to_string());
        ctx.generated.insert("User".into(), config.username.clone());
        if let Some(pw) = &config.password {
            ctx.ui.shared().add_secret(pw);
            ctx.generated.insert("Password".into(), pw.clone());
        }
        // Packer's build.SSHPrivateKey: the key the `ansible` provisioner hands on.
        let private = match (&self.comm.ssh_private_key_file, &self.key) {
            (Some(f), _) => std::fs::read_to_string(f).ok(),
            (None, Some(k)) => k
                .private_key()
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .ok()
                .map(|pem| pem.to_string()),
            (None, None) => None,
        };
        if let Some(pem) = private {
            ctx.ui.shared().add_secret(&pem);
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                ctx.ui.shared().add_secret(line);
            }
            ctx.generated.insert("SSHPrivateKey".into(), pem);
        }
        ctx.communicator = Some(Arc::new(comm) as Arc<dyn Communicator>);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) {
        ctx.communicator = None;
    }
}
