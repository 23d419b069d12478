//! Shared by the boot-typing tests ([`super::typing`]) and the bench example
//! (`bench/boot_command/type_bench.rs`): builds the boot-echo fixture and boots it
//! under QEMU (TCG, no display, serial console to a file, QMP socket, VNC on localhost), killing
//! QEMU when the [`Guest`] is dropped, on every path.

// Test and bench harness: failing loudly is the point.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use boot_commands::SerialWatch;
use kiln::builder::qemu::qmp::QmpClient;
use tokio_util::sync::CancellationToken;

/// Builds (or reuses) the boot-echo ISO and returns its path.
pub fn boot_echo_iso() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/boot-echo/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run fixtures/boot-echo/build.sh");
    assert!(out.status.success(), "fixtures/boot-echo/build.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("boot-echo.iso")
}

/// A running QEMU guest at the isolinux `boot:` prompt.
pub struct Guest {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
    pub qmp: QmpClient,
    pub qmp_path: PathBuf,
    pub serial_path: PathBuf,
    pub vnc_port: u16,
    /// Offset just past the `boot: ` prompt in the serial file.
    pub prompt_end: u64,
}

impl Drop for Guest {
    fn drop(&mut self) {
        // kill_on_drop is set too; this makes the intent explicit and works before the Child drops.
        let _ = self.child.start_kill();
    }
}

/// A VNC display whose port is free now. Tests of one process get different displays; another
/// process may still take the port first, which `Guest::boot` handles by retrying.
fn free_vnc_display() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 100 + (std::process::id() % 400) as u16;
    loop {
        let d = start + NEXT.fetch_add(1, Ordering::Relaxed) % 500;
        if TcpListener::bind(("127.0.0.1", 5900 + d)).is_ok() {
            return d;
        }
    }
}

impl Guest {
    /// Boots the ISO and waits for the `boot:` prompt. `vnc_password` turns on VNC password auth.
    pub async fn boot(iso: &Path, vnc_password: bool) -> Guest {
        for _ in 0..5 {
            if let Some(guest) = Self::try_boot(iso, vnc_password).await {
                return guest;
            }
        }
        panic!("qemu-system-x86_64 exited early five times; run it by hand to see why");
    }

    /// `None` when QEMU exits before its QMP socket answers (such as a VNC port taken meanwhile).
    async fn try_boot(iso: &Path, vnc_password: bool) -> Option<Guest> {
        let dir = tempfile::tempdir().unwrap();
        let qmp_path = dir.path().join("qmp.sock");
        let serial_path = dir.path().join("serial.log");
        let display = free_vnc_display();
        let vnc = format!(
            "127.0.0.1:{display}{}",
            if vnc_password { ",password=on" } else { "" }
        );
        let child = tokio::process::Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-display",
                "none",
                "-m",
                "64",
                "-no-reboot",
            ])
            .arg("-cdrom")
            .arg(iso)
            .arg("-serial")
            .arg(format!("file:{}", serial_path.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
            .args(["-vnc", &vnc])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start qemu-system-x86_64");
        let mut guest_child = Some(child);
        let mut qmp = None;
        for _ in 0..600 {
            if let Ok(c) = QmpClient::connect(&qmp_path).await {
                qmp = Some(c);
                break;
            }
            if let Some(Ok(Some(status))) = guest_child.as_mut().map(|c| c.try_wait()) {
                eprintln!("qemu exited early ({status}); retrying with another VNC port");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let child = guest_child.take().unwrap();
        let mut guest = Guest {
            child,
            _dir: dir,
            qmp: qmp.expect("QMP socket never accepted a connection"),
            qmp_path,
            serial_path,
            vnc_port: 5900 + display,
            prompt_end: 0,
        };
        let mut watch = SerialWatch::new(&guest.serial_path, 0);
        watch
            .wait_for(
                "boot: ",
                Duration::from_secs(180),
                &CancellationToken::new(),
            )
            .await
            .expect("isolinux boot: prompt");
        guest.prompt_end = watch.offset();
        Some(guest)
    }

    /// Everything echoed on the serial console after the prompt, without the line-wrap sequence
    /// isolinux emits after every 80 typed characters (`\r\r\n` then ESC `[K`, erase to end of line).
    pub fn typed(&self) -> String {
        let all = std::fs::read(&self.serial_path).unwrap();
        String::from_utf8_lossy(&all[self.prompt_end as usize..]).replace("\r\r\n\u{1b}[K", "")
    }

    /// Waits until at least `len` characters were echoed, or nothing new arrived for 5 s (keys were
    /// lost), and returns what was echoed.
    pub async fn wait_typed(&self, len: usize) -> String {
        let mut last = String::new();
        let mut still = 0;
        loop {
            let now = self.typed();
            if now.chars().count() >= len || still >= 50 {
                return now;
            }
            if now == last {
                still += 1;
            } else {
                still = 0;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// 250 characters containing every printable ASCII character (0x20–0x7E), as a boot command that
/// types exactly itself.
pub fn printable_command() -> String {
    let printable: String = (0x20u8..=0x7e).map(char::from).collect();
    let mut s = printable.repeat(3);
    s.truncate(250);
    s
}
