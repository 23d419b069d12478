//! Helpers the end-to-end build tests share: the repository path, fixture scripts, a command's
//! output as text, and booting a built disk with plain QEMU to run a command in it over
//! OpenSSH's client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run `fixtures/<name>/build.sh` (cached by its inputs) and return the directory it prints.
pub fn fixture(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("fixtures").join(name).join("build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run fixtures/{name}/build.sh: {e}"));
    assert!(out.status.success(), "fixture {name} failed to build");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether process `pid` still runs (a zombie counts as gone: kiln reaps QEMU).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Run `cmd` on 127.0.0.1:`port` over OpenSSH as `user` with the fixtures' insecure key.
pub fn ssh(port: u16, user: &str, cmd: &str) -> Output {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("key");
    std::fs::copy(repo().join("fixtures/installer/insecure_ed25519"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Command::new("ssh")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-i"])
        .arg(&key)
        .args(["-p", &port.to_string(), &format!("{user}@127.0.0.1"), cmd])
        .output()
        .unwrap()
}

/// Boot `disk` (qcow2) with plain QEMU under TCG, changes discarded (`-snapshot`), and run
/// `cmd` over OpenSSH as `user` with the fixtures' insecure key; returns its stdout.
pub fn boot_and_run(disk: &Path, user: &str, cmd: &str) -> String {
    let port = free_port();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=tcg", "-m", "1024", "-display", "none"])
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
        ])
        .args(["-device", "virtio-net,netdev=n0", "-snapshot"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Generous: a systemd guest under TCG on a loaded two-core host takes minutes.
    let deadline = Instant::now() + Duration::from_secs(600);
    let result = loop {
        let out = ssh(port, user, cmd);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let _ = qemu.kill();
            panic!("the built image never answered SSH: {}", text(&out));
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    result
}

/// The lines a spawned child writes to its (piped) stdout, forwarded by a thread as they come,
/// so a test can act on one (interrupt the build, type Enter) while the child runs. Join the
/// thread once the child has exited; lines not received yet are still in the channel.
/// Collect lines from `rx` into `seen` until `stop` says so (true when it did, false when the
/// child's stdout ended first).
pub fn read_until(
    rx: &Receiver<String>,
    seen: &mut String,
    mut stop: impl FnMut(&str) -> bool,
) -> bool {
    for line in rx.iter() {
        seen.push_str(&line);
        seen.push('\n');
        if stop(&line) {
            return true;
        }
    }
    false
}

/// The QEMU PID in a machine-readable `vm-pid` line.
pub fn vm_pid(line: &str) -> Option<u32> {
    line.split(",vm-pid,")
        .nth(1)
        .and_then(|p| p.trim().parse().ok())
}

pub fn stdout_lines(child: &mut Child) -> (Receiver<String>, JoinHandle<()>) {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            // A line that is not UTF-8 (or a failed read) fails the test when it joins this.
            if tx
                .send(line.expect("kiln's stdout is readable UTF-8"))
                .is_err()
            {
                break;
            }
        }
    });
    (rx, reader)
}

/// Send `signal` (`-INT`, `-TERM`) to `target` (a PID, or `-PGID` for the whole process group,
/// as a terminal's Ctrl-C does), wait for `child`, and return its exit with everything it
/// printed: the lines already `seen`, the rest of its stdout, then its stderr.
pub fn signal_and_collect(
    child: Child,
    signal: &str,
    target: &str,
    rx: &Receiver<String>,
    reader: JoinHandle<()>,
    seen: &mut String,
) -> (std::process::ExitStatus, String) {
    Command::new("kill")
        .args([signal, "--", target])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("the child's output");
    reader.join().expect("the stdout reader");
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    (out.status, format!("{seen}{}", text(&out)))
}

/// A hypervisor stand-in of `tests/standins/` in its QEMU mode: a private directory for its
/// state and QEMU's files, with a `bin/` of wrappers that run each of its `tools` there with
/// `<prefix>_DIR`, `<prefix>_QEMU=1`, `<prefix>_READY='boot:'` (a start returns at isolinux's
/// prompt) and `extra` set. Dropping it kills any QEMU still running, so a failed test leaves
/// none behind.
pub struct QemuStandin {
    dir: tempfile::TempDir,
}

impl QemuStandin {
    /// The stand-in's `tools`, their variables named with `prefix`.
    pub fn new(prefix: &str, tools: &[&str], extra: &[(&str, String)]) -> Self {
        use std::fmt::Write as _;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let mut env = format!(
            "{prefix}_DIR='{}' {prefix}_QEMU=1 {prefix}_READY='boot:'",
            dir.path().display()
        );
        for (k, v) in extra {
            write!(env, " {k}='{v}'").unwrap();
        }
        for tool in tools {
            let wrapper = bin.join(tool);
            let target = repo().join("tests/standins").join(tool);
            let script = format!("#!/bin/sh\n{env} exec '{}' \"$@\"\n", target.display());
            std::fs::write(&wrapper, script).unwrap();
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        QemuStandin { dir }
    }

    /// The directory of the wrappers.
    pub fn bin(&self) -> PathBuf {
        self.path().join("bin")
    }

    /// The stand-in's own directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `PATH` with the wrappers first.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// What VM `vm`'s serial console showed after its first `boot: ` prompt, without the
    /// line-redraw sequences isolinux sends when a line wraps.
    pub fn typed(&self, vm: &str) -> String {
        let all = std::fs::read(self.path().join(format!("{vm}.serial.log"))).unwrap_or_default();
        let all = String::from_utf8_lossy(&all);
        all.split_once("boot: ")
            .map(|(_, t)| t.replace("\r\r\n\u{1b}[K", ""))
            .unwrap_or_default()
    }

    /// The QEMU processes of the stand-in's VMs still alive.
    pub fn qemu_pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|s| s.trim().parse().ok())
            .filter(|&pid| alive(pid))
            .collect()
    }
}

impl Drop for QemuStandin {
    fn drop(&mut self) {
        for pid in self.qemu_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Runs `cmd`, failing the test with its output unless it succeeds; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The manifest `mf` of the package in `dir` (OVF's `SHA256(name)= hex` lines, `entries` of
/// them) checked by `sha256sum -c`, once in its own format.
pub fn check_manifest(dir: &Path, mf: &str, entries: usize) {
    let text = std::fs::read_to_string(dir.join(mf)).unwrap();
    let sums: String = text
        .lines()
        .map(|l| {
            let (name, hex) = l
                .strip_prefix("SHA256(")
                .and_then(|l| l.split_once(")= "))
                .unwrap_or_else(|| panic!("bad manifest line {l}"));
            format!("{hex}  {name}\n")
        })
        .collect();
    assert_eq!(sums.lines().count(), entries, "{text}");
    std::fs::write(dir.join("sums"), sums).unwrap();
    run(Command::new("sha256sum")
        .args(["-c", "sums"])
        .current_dir(dir));
    std::fs::remove_file(dir.join("sums")).unwrap();
}

/// The OVA at `ova` as independent tools read it: `tar` lists `members` in that order (the
/// descriptor, the manifest, the disks), it unpacks into `into`, `xmllint` parses the
/// descriptor and `sha256sum` agrees with the manifest (of every other member).
pub fn check_ova_package(ova: &Path, members: &[&str], into: &Path) {
    let listing = run(Command::new("tar").arg("-tf").arg(ova));
    assert_eq!(
        listing,
        members.iter().map(|m| format!("{m}\n")).collect::<String>()
    );
    std::fs::create_dir_all(into).unwrap();
    run(Command::new("tar").arg("-xf").arg(ova).arg("-C").arg(into));
    run(Command::new("xmllint")
        .arg("--noout")
        .arg(into.join(members[0])));
    check_manifest(into, members[1], members.len() - 1);
}
