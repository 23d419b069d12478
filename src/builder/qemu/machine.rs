//! [`QemuMachine`]: a running QEMU as the shared steps see it ([`Machine`]): its process, its
//! QMP socket (the one way kiln connects to it, [`QemuMachine::qmp`]), its serial console log,
//! and its keyboards — QMP `input-send-event` (kiln's default) or VNC (Packer's way).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boot_commands::{KeySink, KeyStroke, SinkError, Transport, VncKeyboard};

use super::qmp::{QmpClient, QmpKeyboard};

use super::process::QemuProcess;
use crate::pipeline::{Machine, MachineError, VncEndpoint};

/// Why QEMU could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The binary could not be run.
    #[error("cannot start {binary}\nhint: install qemu-system-x86 or set qemu_binary")]
    Spawn {
        /// `qemu_binary`.
        binary: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited before it answered on QMP (its arguments or files were refused).
    #[error("QEMU exited right after starting: {0}")]
    Exited(String),
    /// QEMU never answered on its QMP socket.
    #[error("QEMU did not answer on its QMP socket {} within {:?}", .socket.display(), .waited)]
    NoQmp {
        /// The socket.
        socket: PathBuf,
        /// How long kiln waited.
        waited: Duration,
    },
    /// A QMP command right after the start failed.
    #[error("cannot {what} over QMP")]
    Qmp {
        /// What kiln asked (`set the VNC password`).
        what: &'static str,
        /// Why.
        #[source]
        source: super::qmp::QmpError,
    },
}

/// What [`Driver::start`] needs beyond the command line.
#[derive(Debug, Clone)]
pub struct StartSpec {
    /// `qemu_binary`.
    pub binary: String,
    /// Its arguments.
    pub argv: Vec<String>,
    /// The QMP socket the arguments open.
    pub qmp_socket: PathBuf,
    /// The serial console file the arguments write.
    pub serial_log: PathBuf,
    /// The VNC password to set once QEMU answers (`vnc_use_password`).
    pub vnc_password: Option<String>,
    /// The VNC server, for typing over VNC.
    pub vnc: Option<crate::pipeline::VncEndpoint>,
}

/// A QEMU started by kiln.
pub struct QemuMachine {
    process: QemuProcess,
    qmp_socket: PathBuf,
    serial_log: PathBuf,
    vnc: Option<VncEndpoint>,
    started: Instant,
}

impl QemuMachine {
    /// The machine for a just-spawned `process` started from `spec`.
    pub fn new(process: QemuProcess, spec: &StartSpec) -> Self {
        Self {
            process,
            qmp_socket: spec.qmp_socket.clone(),
            serial_log: spec.serial_log.clone(),
            vnc: spec.vnc.clone(),
            started: Instant::now(),
        }
    }

    /// The machine, with its start time set to now: `boot_wait` counts from QEMU's first QMP
    /// answer, when its arguments are checked and its files open.
    pub fn answered(self) -> Self {
        Self {
            started: Instant::now(),
            ..self
        }
    }

    /// Connect to QEMU's QMP socket, retrying while QEMU opens it, for at most `patience`;
    /// fails at once with QEMU's reason when it exits.
    pub async fn qmp(&self, patience: Duration) -> Result<QmpClient, StartError> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(reason) = self.process.exited() {
                return Err(StartError::Exited(reason));
            }
            if let Ok(Ok(c)) =
                tokio::time::timeout(Duration::from_secs(5), QmpClient::connect(&self.qmp_socket))
                    .await
            {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err(StartError::NoQmp {
                    socket: self.qmp_socket.clone(),
                    waited: patience,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn control(what: String, e: impl std::error::Error + Send + Sync + 'static) -> MachineError {
    MachineError::Control {
        what,
        source: Box::new(e),
    }
}

/// A QMP keyboard that owns its connection (the typing step keeps it for the whole command).
struct QmpTyping(QmpClient);

#[async_trait]
impl KeySink for QmpTyping {
    fn default_key_interval(&self) -> Duration {
        boot_commands::QMP_DEFAULT_KEY_INTERVAL
    }
    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
        QmpKeyboard(&mut self.0).send(strokes).await
    }
}

#[async_trait]
impl Machine for QemuMachine {
    fn exited(&self) -> Option<String> {
        self.process.exited()
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        self.process.wait_exit(timeout).await
    }

    async fn kill(&self) {
        self.process.kill().await;
    }

    fn started(&self) -> Instant {
        self.started
    }

    fn serial_log(&self) -> Option<PathBuf> {
        Some(self.serial_log.clone())
    }

    fn default_transport(&self) -> Transport {
        Transport::Qmp
    }

    async fn keyboard(&self, transport: Transport) -> Result<Box<dyn KeySink>, MachineError> {
        match transport {
            Transport::Qmp => {
                let client = self.qmp(Duration::from_secs(10)).await.map_err(|e| {
                    control(
                        format!(
                            "cannot connect to QEMU's QMP socket {}",
                            self.qmp_socket.display()
                        ),
                        e,
                    )
                })?;
                Ok(Box::new(QmpTyping(client)))
            }
            Transport::Vnc => {
                let vnc = self.vnc.as_ref().ok_or_else(|| {
                    MachineError::Unsupported(
                        "typing over VNC needs VNC, and disable_vnc is set".into(),
                    )
                })?;
                let kb =
                    VncKeyboard::connect((vnc.host.as_str(), vnc.port), vnc.password.as_deref())
                        .await
                        .map_err(|e| control("cannot connect to QEMU's VNC server".into(), e))?;
                Ok(Box::new(kb))
            }
        }
    }

    async fn mac_addresses(&self) -> Result<Vec<String>, MachineError> {
        let what = || "cannot ask QEMU for the guest's MAC over QMP".to_owned();
        let mut qmp = self
            .qmp(Duration::from_secs(10))
            .await
            .map_err(|e| control(what(), e))?;
        let info: String = qmp
            .execute_with(
                "human-monitor-command",
                &serde_json::json!({ "command-line": "info network" }),
            )
            .await
            .map_err(|e| control(what(), e))?;
        Ok(super::bridge::macs_in_info_network(&info))
    }
}
