//! A running QEMU (or a helper of it, such as swtpm): spawned in its own process group (so a
//! terminal's Ctrl-C reaches kiln, which then stops it itself), stderr kept for error
//! messages, exit watched by a task. Stopping sends SIGTERM (QEMU flushes its disks and
//! exits) and SIGKILL if that is ignored.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long QEMU gets to exit after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How much of QEMU's stderr is kept for messages.
const STDERR_KEEP: usize = 4096;

/// A QEMU process started by kiln.
pub struct QemuProcess {
    pid: u32,
    exit: watch::Receiver<Option<String>>,
    stop: CancellationToken,
    stderr: Arc<Mutex<String>>,
}

impl QemuProcess {
    /// Start QEMU: `program args…`.
    pub fn spawn(program: &str, args: &[String]) -> std::io::Result<Self> {
        Self::spawn_as("QEMU", program, args)
    }

    /// Start `program args…`, called `what` in messages.
    pub fn spawn_as(what: &'static str, program: &str, args: &[String]) -> std::io::Result<Self> {
        let mut cmd = crate::child::command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = crate::child::spawn(cmd)?;
        let pid = child.id().unwrap_or(0);
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(err) = child.stderr.take() {
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "kiln::qemu", "{what} stderr: {line}");
                    if let Ok(mut k) = keep.lock() {
                        k.push_str(&line);
                        k.push('\n');
                        if k.len() > STDERR_KEEP {
                            let cut = k.len() - STDERR_KEEP;
                            let cut = (cut..k.len()).find(|&i| k.is_char_boundary(i)).unwrap_or(0);
                            k.drain(..cut);
                        }
                    }
                }
            });
        }
        let (tx, exit) = watch::channel(None);
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                () = stopping.cancelled() => {
                    signal(pid, rustix::process::Signal::TERM);
                    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    }
                }
            };
            let text = match status {
                Ok(s) if s.success() => format!("{what} exited"),
                Ok(s) => format!("{what} exited with {s}"),
                Err(e) => format!("cannot wait for {what}: {e}"),
            };
            let _ = tx.send(Some(text));
        });
        Ok(Self {
            pid,
            exit,
            stop,
            stderr,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What QEMU printed on stderr (the last few KiB).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

impl QemuProcess {
    /// `Some(reason)` once the process has exited, with the end of its stderr.
    pub fn exited(&self) -> Option<String> {
        let status = self.exit.borrow().clone()?;
        // stderr is read by another task; give it a moment to catch the last lines.
        std::thread::sleep(Duration::from_millis(50));
        let err = self.stderr();
        Some(if err.trim().is_empty() {
            status
        } else {
            format!("{status}; its stderr:\n{}", err.trim_end())
        })
    }

    /// Wait up to `timeout` for the process to exit; true if it did.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.exit.clone();
        let done = tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok());
        done
    }

    /// SIGTERM, then SIGKILL after a grace period; returns once the process is gone.
    pub async fn kill(&self) {
        self.stop.cancel();
        let _ = self.wait_exit(TERM_GRACE + Duration::from_secs(5)).await;
    }
}
