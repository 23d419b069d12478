//! [`QemuMachine`]: a running QEMU as the shared steps see it ([`Machine`]): its process, its
//! QMP socket (the one way kiln connects to it, [`QemuMachine::qmp`]), its serial console log,
//! and its keyboards — QMP `input-send-event` (kiln's default) or VNC (Packer's way). A second
//! QMP socket stays connected for QEMU's events: when QEMU pauses the guest because the host
//! disk is full (a write failed with ENOSPC, and `werror=enospc`, QEMU's default, stops the
//! VM), the machine reports it as its [`fault`](Machine::fault), so the build fails at once
//! instead of waiting out `ssh_timeout` with a guest that will never answer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boot_commands::{KeySink, KeyStroke, SinkError, Transport, VncKeyboard};
use serde::Deserialize;
use tokio::sync::watch;

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
    /// The VM could not be resumed from a cached layer.
    #[error("cannot resume the VM from the cached layer\nhint: run again with -rebuild-from=install, or remove the layer with kiln cache prune")]
    Resume(#[source] super::layer::LayerSaveError),
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
    /// The second QMP socket they open, for events.
    pub event_socket: PathBuf,
    /// The socket the arguments serve the serial console on.
    pub serial_socket: PathBuf,
    /// The serial console log kiln writes from it, redacted.
    pub serial_log: PathBuf,
    /// The VNC password to set once QEMU answers (`vnc_use_password`).
    pub vnc_password: Option<String>,
    /// The VNC server, for typing over VNC.
    pub vnc: Option<crate::pipeline::VncEndpoint>,
    /// The disks, for the layer cache.
    pub disks: super::layer::Disks,
    /// The layer's RAM and device state to resume from (`-incoming defer` is in `argv`).
    pub incoming: Option<PathBuf>,
}

/// A QEMU started by kiln.
pub struct QemuMachine {
    process: QemuProcess,
    qmp_socket: PathBuf,
    serial_log: PathBuf,
    vnc: Option<VncEndpoint>,
    started: Instant,
    event_socket: PathBuf,
    /// Given to the event watcher once QEMU answers.
    fault_tx: Option<watch::Sender<Option<String>>>,
    fault: watch::Receiver<Option<String>>,
    disks: super::layer::Disks,
    /// The disks' freezes into layers (one at a time).
    layers_taken: tokio::sync::Mutex<super::layer::Freezes>,
}

/// Copy the guest's serial console from QEMU's socket to `log`, complete lines at a time (a
/// partial line after a pause, for prompts), with every secret the build knows redacted. Ends
/// when QEMU closes the socket.
async fn copy_console(socket: PathBuf, log: PathBuf) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = None;
    // QEMU creates the socket as it starts; the retries cover that moment.
    for _ in 0..400 {
        if let Ok(s) = tokio::net::UnixStream::connect(&socket).await {
            stream = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let Some(mut stream) = stream else {
        tracing::debug!(socket = %socket.display(), "no serial console to copy");
        return;
    };
    let Ok(mut file) = tokio::fs::OpenOptions::new().append(true).open(&log).await else {
        return;
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let read = tokio::select! {
            r = stream.read(&mut buf) => Some(r),
            () = tokio::time::sleep(Duration::from_millis(200)), if !pending.is_empty() => None,
        };
        let cut = match read {
            Some(Ok(n)) if n > 0 => {
                pending.extend_from_slice(&buf[..n]);
                match pending.iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None => continue,
                }
            }
            // Quiet for a while: a prompt without a line end.
            None => pending.len(),
            // QEMU closed the console (it exited).
            Some(_) => {
                let text = crate::ui::redact_known(&String::from_utf8_lossy(&pending));
                let _ = file.write_all(text.as_bytes()).await;
                return;
            }
        };
        let text = crate::ui::redact_known(&String::from_utf8_lossy(&pending[..cut]));
        pending.drain(..cut);
        if file.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

impl QemuMachine {
    /// The machine for a just-spawned `process` started from `spec`.
    pub fn new(process: QemuProcess, spec: &StartSpec) -> Self {
        let (fault_tx, fault) = watch::channel(None);
        tokio::spawn(copy_console(
            spec.serial_socket.clone(),
            spec.serial_log.clone(),
        ));
        Self {
            process,
            qmp_socket: spec.qmp_socket.clone(),
            serial_log: spec.serial_log.clone(),
            vnc: spec.vnc.clone(),
            started: Instant::now(),
            event_socket: spec.event_socket.clone(),
            fault_tx: Some(fault_tx),
            fault,
            disks: spec.disks.clone(),
            layers_taken: tokio::sync::Mutex::new(super::layer::Freezes::default()),
        }
    }

    /// The machine, with its start time set to now: `boot_wait` counts from QEMU's first QMP
    /// answer, when its arguments are checked and its files open (its event socket too, which
    /// is watched from now on).
    pub fn answered(mut self) -> Self {
        if let Some(tx) = self.fault_tx.take() {
            tokio::spawn(watch_events(self.event_socket.clone(), tx));
        }
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

/// The data of QEMU's `BLOCK_IO_ERROR` event.
#[derive(Debug, Deserialize)]
struct BlockIoError {
    /// The drive's id (`drive0`, `virtio0`…), empty for a drive without one.
    #[serde(default)]
    device: String,
    #[serde(rename = "node-name", default)]
    node_name: Option<String>,
    /// What QEMU did: `stop` (pause the guest), `report` or `ignore`.
    action: String,
    /// Whether the write failed for lack of space.
    #[serde(default)]
    nospace: bool,
}

/// A drive as `query-block` lists it.
#[derive(Debug, Deserialize)]
struct BlockInfo {
    device: String,
    inserted: Option<Inserted>,
}

#[derive(Debug, Deserialize)]
struct Inserted {
    file: String,
    #[serde(rename = "node-name", default)]
    node_name: Option<String>,
}

/// The error of a `BLOCK_IO_ERROR` event that paused the guest for lack of space.
fn paused_for_space(event: &super::qmp::QmpEvent) -> Option<BlockIoError> {
    if event.event != "BLOCK_IO_ERROR" {
        return None;
    }
    let e: BlockIoError = serde_json::from_value(event.data.clone()).ok()?;
    (e.nospace && e.action == "stop").then_some(e)
}

/// The fault for `error`: the host disk is full, naming the image file QEMU could not write
/// (`drives` is `query-block`'s answer; the drive's id when it does not list the drive).
fn disk_full(error: &BlockIoError, drives: &[BlockInfo]) -> String {
    let file = drives
        .iter()
        .find(|d| {
            (!error.device.is_empty() && d.device == error.device)
                || d.inserted
                    .as_ref()
                    .is_some_and(|i| i.node_name.is_some() && i.node_name == error.node_name)
        })
        .and_then(|d| d.inserted.as_ref())
        .map_or_else(|| format!("drive {}", error.device), |i| i.file.clone());
    format!(
        "the host disk is full ({file}): QEMU paused the VM when a write to its disk failed\nhint: free space on that filesystem, or set output_directory to one with room for disk_size"
    )
}

/// Read QEMU's events on `socket` until QEMU goes away; a guest paused on a full host disk is
/// sent to `fault`.
async fn watch_events(socket: PathBuf, fault: watch::Sender<Option<String>>) {
    let mut qmp = match QmpClient::connect(&socket).await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!("cannot watch QEMU's events: {}", crate::report::report(&e));
            return;
        }
    };
    while let Ok(event) = qmp.next_event().await {
        tracing::debug!(target: "kiln::qemu", "QMP event {}: {}", event.event, event.data);
        if let Some(error) = paused_for_space(&event) {
            let drives: Vec<BlockInfo> = qmp.execute("query-block").await.unwrap_or_default();
            fault.send_replace(Some(disk_full(&error, &drives)));
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
    fn name(&self) -> &'static str {
        "QMP"
    }

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

    async fn fault(&self) -> String {
        crate::pipeline::machine::wait_fault(self.fault.clone()).await
    }

    fn serial_log(&self) -> Option<PathBuf> {
        Some(self.serial_log.clone())
    }

    fn default_transport(&self) -> Transport {
        Transport::Qmp
    }

    async fn save_layer(
        &self,
        dir: &std::path::Path,
        parent: Option<&std::path::Path>,
    ) -> Result<(), MachineError> {
        let mut taken = self.layers_taken.lock().await;
        let mut qmp = self
            .qmp(Duration::from_secs(10))
            .await
            .map_err(|e| control("connecting to QEMU to save a layer".into(), e))?;
        super::layer::save(&mut qmp, &self.disks, &mut taken, dir, parent)
            .await
            .map_err(|e| control("saving a layer of the disks".into(), e))
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

#[cfg(test)]
mod tests {
    use super::super::qmp::QmpEvent;
    use super::*;

    fn event(json: &str) -> QmpEvent {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_guest_paused_on_a_full_host_disk_is_a_fault_naming_the_image() {
        let e = event(
            r##"{"event": "BLOCK_IO_ERROR", "data": {"device": "drive0", "node-name": "#block153",
                "operation": "write", "action": "stop", "nospace": true,
                "reason": "No space left on device"}}"##,
        );
        let error = paused_for_space(&e).unwrap();
        let drives: Vec<BlockInfo> = serde_json::from_str(
            r##"[{"device": "ide1-cd0", "inserted": {"file": "/i.iso", "node-name": "#block1"}},
                {"device": "drive0", "inserted": {"file": "/o/vm.partial", "node-name": "#block153"}}]"##,
        )
        .unwrap();
        let f = disk_full(&error, &drives);
        assert!(
            f.starts_with("the host disk is full (/o/vm.partial)"),
            "{f}"
        );
        // A drive without an id is found by its node.
        let e = event(
            r##"{"event": "BLOCK_IO_ERROR", "data": {"device": "", "node-name": "#block153",
                "operation": "write", "action": "stop", "nospace": true}}"##,
        );
        let f = disk_full(&paused_for_space(&e).unwrap(), &drives);
        assert!(f.contains("(/o/vm.partial)"), "{f}");
    }

    #[test]
    fn other_io_errors_and_events_are_not_a_full_disk() {
        for json in [
            // Not for lack of space.
            r#"{"event": "BLOCK_IO_ERROR", "data": {"device": "drive0", "operation": "write", "action": "stop", "nospace": false}}"#,
            // Reported to the guest (werror=report), which goes on and fails by itself.
            r#"{"event": "BLOCK_IO_ERROR", "data": {"device": "drive0", "operation": "write", "action": "report", "nospace": true}}"#,
            r#"{"event": "STOP"}"#,
        ] {
            assert!(paused_for_space(&event(json)).is_none(), "{json}");
        }
    }
}
