//! A communicator that survives the guest rebooting: [`Reconnecting`] holds the current SSH
//! session and, when an operation finds it closed (a script rebooted the guest with
//! `expect_disconnect`, or `ssh_read_write_timeout` dropped a dead connection), waits for SSH
//! again with the build's options (up to `ssh_timeout`) and runs the operation on the new
//! session. Like Packer's communicator, it only retries what never started: a command cut off
//! mid-way still ends as [`ExitStatus::Lost`], and the provisioner decides what that means.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use super::ssh::{self, ConnectError, SshCommunicator, SshConfig};
use super::{Communicator, CommunicatorError, ExitStatus, Output};

/// Says something to the build's output (e.g. "Reconnected to SSH").
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;
/// Says why the guest is gone for good (its VM exited), so reconnecting stops waiting.
pub type GoneCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// An SSH communicator that reconnects when its session has closed.
pub struct Reconnecting {
    config: SshConfig,
    current: Mutex<Arc<SshCommunicator>>,
    notify: Notify,
    gone: GoneCheck,
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Reconnecting {
    /// Wrap the session `first`, made with `config`, which is used again to reconnect.
    pub fn new(first: SshCommunicator, config: SshConfig) -> Self {
        Self {
            config,
            current: Mutex::new(Arc::new(first)),
            notify: Arc::new(|_| {}),
            gone: Arc::new(|| None),
        }
    }

    /// Report reconnections through `notify`.
    pub fn with_notify(mut self, notify: Notify) -> Self {
        self.notify = notify;
        self
    }

    /// Stop waiting when `gone` says the guest is gone for good.
    pub fn with_gone_check(mut self, gone: GoneCheck) -> Self {
        self.gone = gone;
        self
    }

    /// The session to use now: the current one, or a new one if it has closed.
    pub async fn session(&self) -> Result<Arc<SshCommunicator>, CommunicatorError> {
        let current = Arc::clone(&*self.current.lock().await);
        if current.is_closed() {
            return self.reconnect(&current).await;
        }
        Ok(current)
    }

    /// Replace `stale` with a new session, unless another caller already did.
    async fn reconnect(
        &self,
        stale: &Arc<SshCommunicator>,
    ) -> Result<Arc<SshCommunicator>, CommunicatorError> {
        let mut current = self.current.lock().await;
        if !Arc::ptr_eq(&current, stale) {
            return Ok(Arc::clone(&current));
        }
        let why = if stale.stalled() {
            " (no data for ssh_read_write_timeout)"
        } else {
            ""
        };
        (self.notify)(&format!(
            "The SSH connection to {} was lost{why}: waiting for SSH to come back...",
            stale.addr()
        ));
        let fresh = tokio::select! {
            r = ssh::connect(&self.config) => r,
            reason = watch(Arc::clone(&self.gone)) => Err(ConnectError::Gone(reason)),
        }
        .map_err(|source| CommunicatorError::Reconnect {
            addr: stale.addr().to_owned(),
            source,
        })?;
        (self.notify)(&format!(
            "Reconnected to SSH (host key {})",
            fresh.host_key_fingerprint()
        ));
        *current = Arc::new(fresh);
        Ok(Arc::clone(&current))
    }
}

/// Resolve with the reason once `gone` reports one.
async fn watch(gone: GoneCheck) -> String {
    loop {
        if let Some(reason) = gone() {
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Run `$op` on the session; if the connection turned out to be gone before anything started,
/// run it once more on a new one.
macro_rules! retried {
    ($self:ident, |$s:ident| $op:expr) => {{
        let $s = $self.session().await?;
        match $op {
            Err(CommunicatorError::Disconnected { .. }) => {
                let $s = $self.reconnect(&$s).await?;
                $op
            }
            other => other,
        }
    }};
}

#[async_trait]
impl Communicator for Reconnecting {
    async fn exec(&self, cmd: &str, out: &mut dyn Output) -> Result<ExitStatus, CommunicatorError> {
        retried!(self, |s| s.exec(cmd, out).await)
    }

    async fn upload(
        &self,
        src: &mut (dyn AsyncRead + Send + Unpin),
        dst: &str,
        mode: u32,
    ) -> Result<(), CommunicatorError> {
        // Retrying is safe: a Disconnected upload has not read from `src` yet.
        retried!(self, |s| s.upload(src, dst, mode).await)
    }

    async fn upload_dir(&self, src: &Path, dst: &str) -> Result<(), CommunicatorError> {
        retried!(self, |s| s.upload_dir(src, dst).await)
    }

    async fn download(
        &self,
        src: &str,
        dst: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), CommunicatorError> {
        retried!(self, |s| s.download(src, dst).await)
    }
}
