//! [`Machine`]: a running virtual machine as the shared steps see it, whatever the hypervisor.
//! Each builder's driver implements it (QEMU: a process with QMP; VirtualBox: a registered VM
//! driven by `VBoxManage`; VMware: a `.vmx` driven by `vmrun`). Shared steps (boot typing, the
//! SSH wait, shutdown) take the machine from the [`BuildContext`](super::BuildContext).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boot_commands::{KeySink, Transport};

/// Why a machine could not do what a shared step asked.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The machine cannot type over this transport (`disable_vnc` with VNC typing…).
    #[error("{0}")]
    Unsupported(String),
    /// The hypervisor's control channel failed.
    #[error("{what}")]
    Control {
        /// What kiln tried (`connecting to QEMU's QMP socket /tmp/…`).
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A running virtual machine.
#[async_trait]
pub trait Machine: Send + Sync {
    /// `Some(reason)` once the VM has stopped (with what the hypervisor said).
    fn exited(&self) -> Option<String>;
    /// Wait up to `timeout` for the VM to stop by itself; true if it did.
    async fn wait_exit(&self, timeout: Duration) -> bool;
    /// Stop the VM now (power off) and wait until it is gone.
    async fn kill(&self);
    /// When the VM started: `boot_wait` counts from here.
    fn started(&self) -> Instant;
    /// Resolves, with what happened, once the VM is stuck without having stopped (QEMU paused
    /// the guest because the host disk is full): the pipeline fails the running step with it
    /// at once instead of letting it wait out its timeout. Never resolves by default.
    async fn fault(&self) -> String {
        std::future::pending().await
    }
    /// The file the guest's serial console is written to (kiln's `<waitFor>` reads it).
    fn serial_log(&self) -> Option<PathBuf> {
        None
    }
    /// The last lines the guest printed on its console, when the builder records it.
    fn console_tail(&self) -> Option<String> {
        let log = self.serial_log()?;
        let mut f = std::fs::File::open(log).ok()?;
        // The last few KiB hold the last lines; the log can be megabytes of boot messages.
        let len = f.metadata().ok()?.len();
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        tail_lines(&buf, 12)
    }
    /// The transport the boot command is typed over when nothing overrides it.
    fn default_transport(&self) -> Transport;
    /// A keyboard into the guest over `transport`.
    async fn keyboard(&self, transport: Transport) -> Result<Box<dyn KeySink>, MachineError>;
    /// Freeze the VM's disks as they are now (the guest has synced) and write them into `dir`
    /// as one layer of kiln's layer cache: whole when `parent` is `None`, else only what
    /// changed since the layer `parent` (a path relative to `dir`) was saved or started from.
    /// The VM keeps running.
    async fn save_layer(
        &self,
        _dir: &std::path::Path,
        _parent: Option<&std::path::Path>,
    ) -> Result<(), MachineError> {
        Err(MachineError::Unsupported(
            "this builder cannot save layers yet (the layer cache works with qemu)".into(),
        ))
    }
    /// The MAC addresses of the guest's network cards (to find its address on a bridge).
    async fn mac_addresses(&self) -> Result<Vec<String>, MachineError> {
        Err(MachineError::Unsupported(
            "this hypervisor cannot report the guest's MAC addresses".into(),
        ))
    }
}

/// The last `lines` non-empty lines of a console log, or `None` when there are none.
pub fn tail_lines(log: &[u8], lines: usize) -> Option<String> {
    let text = strip_escapes(&String::from_utf8_lossy(log));
    let kept: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = kept.len().saturating_sub(lines);
    (!kept.is_empty()).then(|| kept[start..].join("\n"))
}

/// The first fault posted on `rx` (a [`Machine::fault`] for machines whose watcher posts
/// into a channel); never resolves once the watcher is gone without one.
pub async fn wait_fault(mut rx: tokio::sync::watch::Receiver<Option<String>>) -> String {
    let fault = rx
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|f| f.clone());
    match fault {
        Some(f) => f,
        // The watcher is gone (the machine exited): no fault can come any more.
        None => std::future::pending().await,
    }
}

/// `text` without terminal escape sequences, each removed whole (a guest's `\x1b[0;32m  OK
/// \x1b[0m` is `  OK  `), and without other control characters but tabs and line ends.
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC and other strings: up to BEL or ST (ESC \\).
                Some(']' | 'P' | '_' | '^') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                // Charset designations take one more character; others are two-character.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub mod testing {
    //! [`FakeMachine`]: a machine that records the keys typed into it and stops when told,
    //! for unit tests of the shared steps.
    use std::sync::{Arc, Mutex};

    use boot_commands::{KeyStroke, SinkError};

    use super::*;

    /// A recording machine.
    pub struct FakeMachine {
        /// Set to a reason to make the machine look stopped.
        pub exited: Mutex<Option<String>>,
        /// Whether the machine stops by itself when asked to wait (a guest that powers off).
        pub stops_by_itself: bool,
        /// The keys typed, as `(qcode, down)`.
        pub keys: Arc<Mutex<Vec<(String, bool)>>>,
        /// Every call (`kill`, `keyboard Qmp`, `wait_exit`), in order.
        pub calls: Mutex<Vec<String>>,
        /// The serial console file, if any.
        pub serial: Option<PathBuf>,
        /// When it "started".
        pub started: Instant,
        /// The MACs it reports.
        pub macs: Vec<String>,
        /// Set to a message to make the machine report a fault.
        pub fault: tokio::sync::watch::Sender<Option<String>>,
    }

    impl Default for FakeMachine {
        fn default() -> Self {
            Self {
                exited: Mutex::new(None),
                stops_by_itself: true,
                keys: Arc::default(),
                calls: Mutex::default(),
                serial: None,
                started: Instant::now(),
                macs: Vec::new(),
                fault: tokio::sync::watch::Sender::new(None),
            }
        }
    }

    impl FakeMachine {
        fn record(&self, call: impl Into<String>) {
            if let Ok(mut c) = self.calls.lock() {
                c.push(call.into());
            }
        }
        /// The calls so far.
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        /// The keys pressed so far (down events only), as qcodes.
        pub fn pressed(&self) -> Vec<String> {
            self.keys
                .lock()
                .map(|k| {
                    k.iter()
                        .filter(|(_, d)| *d)
                        .map(|(q, _)| q.clone())
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    struct Keys(Arc<Mutex<Vec<(String, bool)>>>);

    #[async_trait]
    impl KeySink for Keys {
        fn default_key_interval(&self) -> Duration {
            Duration::from_millis(1)
        }
        async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
            if let Ok(mut k) = self.0.lock() {
                k.extend(strokes.iter().map(|s| (s.qcode.to_string(), s.down)));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl Machine for FakeMachine {
        fn exited(&self) -> Option<String> {
            self.exited.lock().ok().and_then(|e| e.clone())
        }
        async fn wait_exit(&self, _timeout: Duration) -> bool {
            self.record("wait_exit");
            if self.stops_by_itself {
                if let Ok(mut e) = self.exited.lock() {
                    e.get_or_insert_with(|| "powered off".into());
                }
            }
            self.stops_by_itself
        }
        async fn kill(&self) {
            self.record("kill");
            if let Ok(mut e) = self.exited.lock() {
                e.get_or_insert_with(|| "killed".into());
            }
        }
        fn started(&self) -> Instant {
            self.started
        }
        async fn fault(&self) -> String {
            wait_fault(self.fault.subscribe()).await
        }
        fn serial_log(&self) -> Option<PathBuf> {
            self.serial.clone()
        }
        fn default_transport(&self) -> Transport {
            Transport::Qmp
        }
        async fn keyboard(&self, transport: Transport) -> Result<Box<dyn KeySink>, MachineError> {
            self.record(format!("keyboard {transport:?}"));
            if transport == Transport::Vnc {
                return Err(MachineError::Unsupported("no VNC here".into()));
            }
            Ok(Box::new(Keys(self.keys.clone())))
        }
        async fn mac_addresses(&self) -> Result<Vec<String>, MachineError> {
            Ok(self.macs.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_keeps_the_last_non_empty_lines() {
        let log = b"one\r\n\r\ntwo\nthree\n\n";
        assert_eq!(tail_lines(log, 2).as_deref(), Some("two\nthree"));
        assert_eq!(tail_lines(log, 9).as_deref(), Some("one\ntwo\nthree"));
        assert_eq!(tail_lines(b"\n\n", 3), None);
    }

    #[test]
    fn the_console_tail_has_no_escape_sequences() {
        let log =
            b"\x1b[0;32m  OK  \x1b[0m] Started ssh.\r\n\x1b]0;title\x07\x1b(Bplain\x07 bell\n";
        assert_eq!(
            tail_lines(log, 5).unwrap(),
            "  OK  ] Started ssh.\nplain bell"
        );
    }
}
