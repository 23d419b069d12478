//! The SSH communicator against real servers on 127.0.0.1 with throwaway configs: OpenSSH's
//! sshd (also as a bastion, with an ssh-agent, a user CA, and without an SFTP subsystem) and
//! dropbear. The "guest" is this machine, so results are checked on the local filesystem.
//! Password logins and dropbear need a system user, so they run only with
//! KILN_TEST_SYSTEM_USERS=1 as root (CI sets it).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln::communicator::keys::TemporaryKeyPair;
use kiln::communicator::reconnect::Reconnecting;
use kiln::communicator::ssh::{
    connect, BastionConfig, ConnectError, LastSeen, Prompter, SshCommunicator, SshConfig,
    TransferMethod,
};
use kiln::communicator::{Captured, Communicator, CommunicatorError, ExitStatus, Output};
use tempfile::TempDir;

const METHODS: [TransferMethod; 2] = [TransferMethod::Scp, TransferMethod::Sftp];

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn keygen(path: &Path, kind: &str) -> PathBuf {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "kiln-test", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    let status = cmd
        .status()
        .expect("ssh-keygen must be installed (openssh-client)");
    assert!(status.success());
    path.to_path_buf()
}

fn read_pub(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A server process, stopped with its children when the test ends, also when it fails.
struct Server(Child);

impl Server {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.stdin(Stdio::null()).spawn().unwrap())
    }
}

/// The processes whose parent is `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

impl Drop for Server {
    fn drop(&mut self) {
        // sshd's per-connection processes start their own sessions: kill them by pid, so a
        // stopped server takes its connections with it, like a guest that goes down.
        let mut pids = vec![self.0.id()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        for pid in pids.iter().rev() {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.0.wait();
    }
}

/// An OpenSSH sshd serving on a random port until dropped.
struct Sshd {
    _server: Server,
    port: u16,
    dir: TempDir,
}

const SFTP: &str = "Subsystem sftp /usr/lib/openssh/sftp-server\n";

impl Sshd {
    /// An sshd accepting `authorized_keys`, with an SFTP subsystem.
    fn start(authorized_keys: &[String]) -> Self {
        Self::custom(authorized_keys, SFTP)
    }

    /// An sshd with `extra` config lines, which win over the defaults (sshd takes the first).
    fn custom(authorized_keys: &[String], extra: &str) -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "these tests need OpenSSH's sshd (package openssh-server)"
        );
        // sshd refuses to start as root without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let host_key = keygen(&dir.path().join("host_ed25519"), "ed25519");
        let auth = dir.path().join("authorized_keys");
        std::fs::write(&auth, authorized_keys.join("")).unwrap();
        let port = free_port();
        let cfg = dir.path().join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPidFile none\nLogLevel VERBOSE\n",
                host_key.display(),
                auth.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let server = Server::spawn(
            Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .stderr(log),
        );
        Self {
            _server: server,
            port,
            dir,
        }
    }

    fn config(&self, user: &str) -> SshConfig {
        SshConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            username: user.into(),
            timeout: Some(Duration::from_secs(30)),
            agent_socket: None,
            ..SshConfig::default()
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sshd log:\n{}", self.log());
        }
    }
}

/// A new `kind` key (in the returned directory) and an sshd with `extra` config accepting it.
fn keyed_sshd(kind: &str, extra: &str) -> (Sshd, PathBuf, TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(&keys.path().join("id"), kind);
    let sshd = Sshd::custom(&[read_pub(&key)], extra);
    (sshd, key, keys)
}

/// An sshd that accepts a new `kind` key, and the config to log in as root with it.
fn sshd_with_key(kind: &str) -> (Sshd, SshConfig, TempDir) {
    let (sshd, key, keys) = keyed_sshd(kind, SFTP);
    let config = SshConfig {
        private_key_files: vec![key],
        ..sshd.config("root")
    };
    (sshd, config, keys)
}

async fn session_with_key(kind: &str) -> (Sshd, SshCommunicator, TempDir) {
    let (sshd, config, keys) = sshd_with_key(kind);
    let comm = connect(&config).await.unwrap();
    (sshd, comm, keys)
}

async fn stdout_of(comm: &dyn Communicator, cmd: &str) -> (ExitStatus, String) {
    let mut out = Captured::default();
    let status = comm.exec(cmd, &mut out).await.unwrap();
    (status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Exec, upload (mode kept), download and a directory upload into `guest_dir`, which the
/// logged-in user can write: what every server × credential × transfer method must do.
async fn exercise(comm: &dyn Communicator, guest_dir: &Path, label: &str) {
    let (status, out) = stdout_of(comm, "echo hi; exit 4").await;
    assert_eq!(
        (status, out.as_str()),
        (ExitStatus::Code(4), "hi\n"),
        "{label}"
    );

    let dst = guest_dir.join(format!("{label} it's.sh"));
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    comm.upload(&mut data.as_slice(), dst.to_str().unwrap(), 0o750)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(std::fs::read(&dst).unwrap(), data, "{label}");
    let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "{label}");

    let mut back = Vec::new();
    comm.download(dst.to_str().unwrap(), &mut back)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(back, data, "{label}");

    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("sub")).unwrap();
    std::fs::write(tree.path().join("sub/f"), label).unwrap();
    let dst = guest_dir.join(format!("{label} tree"));
    comm.upload_dir(tree.path(), dst.to_str().unwrap())
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(std::fs::read_to_string(dst.join("sub/f")).unwrap(), label);
}

#[tokio::test]
async fn ssh_openssh_keys_with_scp_and_sftp() {
    let guest = tempfile::tempdir().unwrap();
    for kind in ["ed25519", "rsa"] {
        let (_sshd, config, _keys) = sshd_with_key(kind);
        for method in METHODS {
            let comm = connect(&SshConfig {
                file_transfer: method,
                ..config.clone()
            })
            .await
            .unwrap();
            exercise(&comm, guest.path(), &format!("openssh {kind} {method:?}")).await;
        }
    }
}

#[tokio::test]
async fn ssh_exec_reports_exit_codes_and_separates_stderr() {
    let (sshd, comm, _k) = session_with_key("ed25519").await;
    let mut out = Captured::default();
    let status = comm
        .exec("echo out; echo err >&2; exit 3", &mut out)
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(out.stdout, b"out\n");
    // The login shell's rc files may also write to stderr on this host; only the end is ours.
    assert!(
        out.stderr.ends_with(b"err\n"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.windows(3).any(|w| w == b"err"));

    let mut out = Captured::default();
    assert!(comm.exec("true", &mut out).await.unwrap().success());
    let status = comm.exec("kill -KILL $$", &mut out).await.unwrap();
    assert_eq!(status, ExitStatus::Signal("KILL".into()));
    let listed = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("host_ed25519.pub")));
    let fingerprint = listed.split_whitespace().nth(1).unwrap();
    assert_eq!(
        comm.host_key_fingerprint(),
        format!("ssh-ed25519 {fingerprint}")
    );
}

/// Forwards each stdout chunk as it arrives.
struct Forward(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);

impl Output for Forward {
    fn stdout(&mut self, data: &[u8]) {
        let _ = self.0.send(data.to_vec());
    }
    fn stderr(&mut self, _: &[u8]) {}
}

#[tokio::test]
async fn ssh_exec_streams_output_before_the_command_ends() {
    let (_sshd, comm, _k) = session_with_key("ed25519").await;
    let comm = Arc::new(comm);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let comm = Arc::clone(&comm);
        tokio::spawn(async move {
            let mut out = Forward(tx);
            comm.exec("echo first; sleep 3; echo second", &mut out)
                .await
        })
    };
    let first = rx.recv().await.unwrap();
    assert_eq!(first, b"first\n");
    assert!(
        !task.is_finished(),
        "output arrived only after the command ended"
    );
    assert_eq!(task.await.unwrap().unwrap(), ExitStatus::Code(0));
    assert_eq!(rx.recv().await.unwrap(), b"second\n");
}

#[tokio::test]
async fn ssh_pty_is_requested_only_with_ssh_pty() {
    let (_sshd, config, _k) = sshd_with_key("ed25519");
    let plain = connect(&config).await.unwrap();
    assert_eq!(stdout_of(&plain, "tty -s").await.0, ExitStatus::Code(1));
    let with_pty = connect(&SshConfig {
        pty: true,
        ..config
    })
    .await
    .unwrap();
    let (status, term) = stdout_of(&with_pty, "tty -s && echo $TERM").await;
    assert!(status.success());
    assert_eq!(term.trim(), "xterm");
    // Transfers never go through the pty (it would mangle the data).
    let dst = tempfile::tempdir().unwrap();
    let file = dst.path().join("f");
    let data = b"line\r\nbinary\x00\x03\x04".to_vec();
    with_pty
        .upload(&mut data.as_slice(), file.to_str().unwrap(), 0o600)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), data);
}

#[tokio::test]
async fn ssh_transfer_errors_name_the_path_and_the_cause() {
    let (_sshd, config, _k) = sshd_with_key("ed25519");
    let guest = tempfile::tempdir().unwrap();
    let missing = guest.path().join("no/such/dir/file");
    let missing = missing.to_str().unwrap();
    for method in METHODS {
        let comm = connect(&SshConfig {
            file_transfer: method,
            ..config.clone()
        })
        .await
        .unwrap();
        let err = comm
            .upload(&mut &b"x"[..], missing, 0o644)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("upload to {missing}")),
            "{method:?}: {msg}"
        );
        let err = comm.download(missing, &mut Vec::new()).await.unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.contains(&format!("download of {missing}")),
            "{method:?}: {msg}"
        );
        assert!(
            msg.contains("No such file") || msg.contains("NoSuchFile"),
            "{method:?}: {msg}"
        );
        // The session is still usable after a failed transfer.
        assert!(stdout_of(&comm, "true").await.0.success());
    }
    let scp = connect(&config).await.unwrap();
    let err = scp
        .download(guest.path().to_str().unwrap(), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn ssh_sftp_missing_says_to_use_scp() {
    let (sshd, key, keys) = keyed_sshd("ed25519", "");
    let comm = connect(&SshConfig {
        private_key_files: vec![key],
        file_transfer: TransferMethod::Sftp,
        ..sshd.config("root")
    })
    .await
    .unwrap();
    let dst = keys.path().join("x");
    let err = comm
        .upload(&mut &b"x"[..], dst.to_str().unwrap(), 0o644)
        .await
        .unwrap_err();
    assert!(matches!(err, CommunicatorError::NoSftp { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no SFTP server"), "{msg}");
    assert!(msg.contains("ssh_file_transfer_method = \"scp\""), "{msg}");
}

#[tokio::test]
async fn ssh_upload_dir_keeps_tree_modes_and_symlinks() {
    let (_sshd, comm, _k) = session_with_key("ed25519").await;
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    std::fs::create_dir_all(s.join("a/b")).unwrap();
    std::fs::write(s.join("a/b/secret.txt"), "deep").unwrap();
    std::fs::set_permissions(s.join("a/b/secret.txt"), PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(s.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(s.join("run.sh"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.join("a/b"), PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("a/b/secret.txt", s.join("link")).unwrap();

    let guest = tempfile::tempdir().unwrap();
    let dst = guest.path().join("new dir/nested");
    comm.upload_dir(s, dst.to_str().unwrap()).await.unwrap();

    assert_eq!(
        std::fs::read_to_string(dst.join("a/b/secret.txt")).unwrap(),
        "deep"
    );
    let mode = |p: &str| std::fs::metadata(dst.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("a/b/secret.txt"), 0o600);
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("a/b"), 0o700);
    // The source root's own mode (a 0700 temp dir) is not applied to the destination.
    assert_eq!(mode(""), 0o755);
    let link = std::fs::symlink_metadata(dst.join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        Path::new("a/b/secret.txt")
    );

    let err = comm
        .upload_dir(&s.join("run.sh"), "/tmp/x")
        .await
        .unwrap_err();
    assert!(matches!(err, CommunicatorError::Local(..)), "{err}");
}

#[tokio::test]
async fn ssh_temporary_key_pairs_of_each_type_log_in() {
    for (kind, bits) in [("rsa", Some(2048)), ("ecdsa", None), ("ed25519", None)] {
        let pair = TemporaryKeyPair::generate(kind, bits, "kiln test").unwrap();
        let sshd = Sshd::start(&[format!("{}\n", pair.public_openssh())]);
        let config = SshConfig {
            private_keys: vec![pair.private_key()],
            ..sshd.config("root")
        };
        let comm = connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(stdout_of(&comm, "true").await.0.success(), "{kind}");
    }
}

#[tokio::test]
async fn ssh_wrong_key_or_unreadable_key_file_is_a_clear_error() {
    let keys = tempfile::tempdir().unwrap();
    let allowed = keygen(&keys.path().join("allowed"), "ed25519");
    let other = keygen(&keys.path().join("other"), "ed25519");
    let sshd = Sshd::start(&[read_pub(&allowed)]);
    let config = SshConfig {
        private_key_files: vec![other],
        handshake_attempts: 2,
        ..sshd.config("root")
    };
    let err = connect(&config).await.unwrap_err();
    assert!(
        matches!(err, ConnectError::AuthRejected { attempts: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{}", sshd.port)), "{msg}");
    assert!(msg.contains("\"root\""), "{msg}");
    assert!(msg.contains("publickey ssh-ed25519"), "{msg}");

    let unreadable = keys.path().join("unreadable");
    std::fs::write(&unreadable, "not a key").unwrap();
    for path in [keys.path().join("missing"), unreadable] {
        let err = connect(&SshConfig {
            private_key_files: vec![path.clone()],
            ..sshd.config("root")
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ConnectError::KeyFile { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn ssh_certificate_signed_by_a_trusted_ca_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = keygen(&dir.path().join("ca"), "ed25519");
    let key = keygen(&dir.path().join("id"), "ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "kiln-test", "-n", "root"])
        .arg(key.with_extension("pub")));
    let cert = dir.path().join("id-cert.pub");
    // No authorized keys: only the certificate can log in.
    let sshd = Sshd::custom(
        &[],
        &format!("TrustedUserCAKeys {}\n", ca.with_extension("pub").display()),
    );
    let base = SshConfig {
        private_key_files: vec![key.clone()],
        handshake_attempts: 1,
        ..sshd.config("root")
    };
    let err = connect(&base).await.unwrap_err();
    assert!(matches!(err, ConnectError::AuthRejected { .. }), "{err}");
    let comm = connect(&SshConfig {
        certificate_file: Some(cert),
        ..base.clone()
    })
    .await
    .unwrap();
    assert!(stdout_of(&comm, "true").await.0.success());

    // A certificate for another key is refused before connecting.
    let other = keygen(&dir.path().join("other"), "ed25519");
    let err = connect(&SshConfig {
        private_key_files: vec![other],
        certificate_file: Some(dir.path().join("id-cert.pub")),
        ..base
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certifies another key"), "{err}");
}

#[tokio::test]
async fn ssh_ciphers_and_key_exchange_lists_are_what_is_offered() {
    let (sshd, key, _keys) = keyed_sshd(
        "ed25519",
        "LogLevel DEBUG1\nCiphers aes256-gcm@openssh.com\nKexAlgorithms ecdh-sha2-nistp256\n",
    );
    let base = SshConfig {
        private_key_files: vec![key],
        timeout: Some(Duration::from_secs(3)),
        ..sshd.config("root")
    };
    let err = connect(&SshConfig {
        ciphers: vec!["aes128-ctr".into()],
        ..base.clone()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            ConnectError::Timeout {
                last: LastSeen::Handshake(_),
                ..
            }
        ),
        "{err}"
    );
    let comm = connect(&SshConfig {
        ciphers: vec!["aes128-ctr".into(), "aes256-gcm@openssh.com".into()],
        key_exchange_algorithms: vec!["ecdh-sha2-nistp256".into()],
        ..base
    })
    .await
    .unwrap();
    assert!(stdout_of(&comm, "true").await.0.success());
    assert!(
        sshd.log().contains("cipher: aes256-gcm@openssh.com"),
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn ssh_timeout_names_the_address_and_what_was_seen() {
    let port = free_port();
    let config = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: "root".into(),
        password: Some("never-shown".into()),
        timeout: Some(Duration::from_secs(2)),
        ..SshConfig::default()
    };
    let err = connect(&config).await.unwrap_err();
    let ConnectError::Timeout { ref last, .. } = err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(matches!(last, LastSeen::Tcp(_)), "{last:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("ssh_timeout"), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(!msg.contains("never-shown"), "{msg}");
}

#[tokio::test]
async fn ssh_dropped_connections_are_retried_not_counted_as_handshake_attempts() {
    // Like QEMU's port forward before the guest's sshd listens: TCP accepts, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let config = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: "root".into(),
        password: Some("x".into()),
        handshake_attempts: 1,
        timeout: Some(Duration::from_secs(3)),
        ..SshConfig::default()
    };
    let err = connect(&config).await.unwrap_err();
    let ConnectError::Timeout { ref last, .. } = err else {
        panic!("expected a timeout, got {err}");
    };
    assert!(matches!(last, LastSeen::Handshake(_)), "{last:?}");
    assert!(err.to_string().contains("handshake failed"), "{err}");
    accepts.abort();
}

/// An ssh-agent on a private socket holding `keys`.
struct Agent {
    _server: Server,
    socket: PathBuf,
    _dir: TempDir,
}

impl Agent {
    fn start(keys: &[&Path]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let server = Server::spawn(
            Command::new("ssh-agent")
                .arg("-D")
                .arg("-a")
                .arg(&socket)
                .stdout(Stdio::null()),
        );
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &socket)
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-add: {out:?}");
        }
        Self {
            _server: server,
            socket,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn ssh_agent_auth_and_forwarding() {
    let (sshd, key, _keys) = keyed_sshd("ed25519", SFTP);
    let agent = Agent::start(&[&key]);
    let base = SshConfig {
        agent_auth: true,
        agent_socket: Some(agent.socket.clone()),
        ..sshd.config("root")
    };
    // Logs in with the agent's key alone (no key file, no password), and the guest's
    // commands see that key through the forwarded agent.
    let comm = connect(&base).await.unwrap();
    let (status, listed) = stdout_of(&comm, "ssh-add -l").await;
    assert!(
        status.success(),
        "ssh-add -l through the forwarded agent: {listed}"
    );
    let fingerprint = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    assert!(
        listed.contains(fingerprint.split_whitespace().nth(1).unwrap()),
        "{listed} / {fingerprint}"
    );
    // ssh_disable_agent_forwarding: the guest gets no agent.
    let comm = connect(&SshConfig {
        agent_forwarding: false,
        ..base.clone()
    })
    .await
    .unwrap();
    let (status, _) = stdout_of(&comm, "ssh-add -l").await;
    assert_eq!(status, ExitStatus::Code(2), "no agent expected");

    // No agent: a clear error before connecting.
    let err = connect(&SshConfig {
        agent_socket: None,
        ..base
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ssh_agent_auth is set but no SSH agent"),
        "{msg}"
    );
    assert!(msg.contains("SSH_AUTH_SOCK"), "{msg}");
}

#[tokio::test]
async fn ssh_bastion_tunnels_to_the_guest() {
    let keys = tempfile::tempdir().unwrap();
    let guest_key = keygen(&keys.path().join("guest"), "ed25519");
    let jump_key = keygen(&keys.path().join("jump"), "rsa");
    let guest = Sshd::start(&[read_pub(&guest_key)]);
    let jump = Sshd::custom(&[read_pub(&jump_key)], "LogLevel DEBUG1\n");
    let bastion = BastionConfig {
        host: "127.0.0.1".into(),
        port: jump.port,
        username: "root".into(),
        private_key_files: vec![jump_key.clone()],
        ..BastionConfig::default()
    };
    let config = SshConfig {
        private_key_files: vec![guest_key],
        bastion: Some(bastion.clone()),
        ..guest.config("root")
    };
    let comm = connect(&config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    exercise(&comm, dir.path(), "through the bastion").await;
    let log = jump.log();
    assert!(
        log.contains(&format!("target 127.0.0.1 port {}", guest.port)),
        "the bastion did not tunnel: {log}"
    );

    // The bastion's own key is not the guest's: the guest refuses it, and says so.
    let err = connect(&SshConfig {
        private_key_files: vec![jump_key],
        handshake_attempts: 1,
        ..config.clone()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::AuthRejected { .. }), "{err}");

    // Nothing listens where the bastion should be.
    let err = connect(&SshConfig {
        timeout: Some(Duration::from_secs(2)),
        bastion: Some(BastionConfig {
            port: free_port(),
            ..bastion.clone()
        }),
        ..config.clone()
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            &err,
            ConnectError::Timeout {
                last: LastSeen::Bastion(_),
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("cannot reach 127.0.0.1"), "{msg}");
    assert!(msg.contains("ssh_bastion_host"), "{msg}");

    // The bastion refuses its login.
    let err = connect(&SshConfig {
        timeout: Some(Duration::from_secs(2)),
        bastion: Some(BastionConfig {
            private_key_files: vec![keys.path().join("guest")],
            ..bastion
        }),
        ..config
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("rejected user \"root\""), "{err}");
}

/// A TCP relay in front of a server whose existing connections can be frozen: bytes stop
/// moving but the sockets stay open, like a guest that vanished without closing them.
struct Relay {
    port: u16,
    generation: Arc<AtomicU64>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let current = Arc::clone(&generation);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = current.load(Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue; // not listening yet: the client sees the connection close
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [(cr, sw), (sr, cw)].map(|(r, w)| (r, w)) {
                    let current = Arc::clone(&current);
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let n = match from.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if current.load(Ordering::SeqCst) != born {
                                // Frozen: hold both sockets open, move nothing.
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { port, generation }
    }

    fn freeze(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn ssh_read_write_timeout_drops_a_dead_connection_and_the_next_operation_reconnects() {
    let (sshd, config, _k) = sshd_with_key("ed25519");
    let relay = Relay::start(sshd.port).await;
    let config = SshConfig {
        port: relay.port,
        keep_alive_interval: Some(Duration::from_secs(1)),
        read_write_timeout: Some(Duration::from_secs(5)),
        ..config
    };
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let notes = Arc::clone(&said);
    let comm = Reconnecting::new(connect(&config).await.unwrap(), config)
        .with_notify(Arc::new(move |t| notes.lock().unwrap().push(t.to_owned())));
    // Quiet but alive for longer than the timeout: keep-alive replies keep it open.
    assert!(stdout_of(&comm, "sleep 8").await.0.success());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cut = async {
        let mut out = Forward(tx);
        comm.exec("echo started; sleep 120", &mut out).await
    };
    let freeze = async {
        assert_eq!(rx.recv().await.unwrap(), b"started\n");
        relay.freeze();
    };
    let (status, ()) = tokio::join!(cut, freeze);
    assert_eq!(status.unwrap(), ExitStatus::Lost);
    assert!(comm.session().await.is_ok());
    let (status, out) = stdout_of(&comm, "echo back").await;
    assert_eq!((status, out.as_str()), (ExitStatus::Code(0), "back\n"));
    let said = said.lock().unwrap().join("\n");
    assert!(
        said.contains("no data for ssh_read_write_timeout"),
        "{said}"
    );
    assert!(
        said.contains("Reconnected to SSH (host key ssh-ed25519 SHA256:"),
        "{said}"
    );
}

#[tokio::test]
async fn ssh_reconnects_after_the_server_restarts_unless_the_guest_is_gone() {
    let (sshd, key, _keys) = keyed_sshd("ed25519", SFTP);
    let config = SshConfig {
        private_key_files: vec![key.clone()],
        ..sshd.config("root")
    };
    let gone = Arc::new(AtomicBool::new(false));
    let is_gone = Arc::clone(&gone);
    let said = Arc::new(Mutex::new(Vec::<String>::new()));
    let notes = Arc::clone(&said);
    let comm = Reconnecting::new(connect(&config).await.unwrap(), config.clone())
        .with_notify(Arc::new(move |t| notes.lock().unwrap().push(t.to_owned())))
        .with_gone_check(Arc::new(move || {
            is_gone
                .load(Ordering::SeqCst)
                .then(|| "the VM stopped".to_owned())
        }));
    let guest = tempfile::tempdir().unwrap();
    // Like a reboot: the server and its sessions go away, and another one comes up.
    let port = sshd.port;
    drop(sshd);
    let restarted = Sshd::custom(&[read_pub(&key)], &format!("{SFTP}Port {port}\n"));
    exercise(&comm, guest.path(), "after a restart").await;
    let notes = said.lock().unwrap().join("\n");
    assert!(notes.contains("was lost: waiting for SSH"), "{notes}");
    assert!(notes.contains("Reconnected to SSH"), "{notes}");

    gone.store(true, Ordering::SeqCst);
    drop(restarted);
    let err = loop {
        // The first command may still find the old session open and end as Lost.
        match comm.exec("true", &mut Captured::default()).await {
            Err(e) => break e,
            Ok(ExitStatus::Lost) => continue,
            Ok(other) => panic!("the server is gone, yet: {other}"),
        }
    };
    assert!(matches!(err, CommunicatorError::Reconnect { .. }), "{err}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("the VM stopped"), "{chain}");
}

/// A system user with a password and a temporary home, removed on drop.
struct SystemUser {
    name: String,
    home: TempDir,
}

impl SystemUser {
    /// `None` (with the reason printed) unless root and KILN_TEST_SYSTEM_USERS=1.
    /// `tag` keeps names apart between tests running at once in this process.
    fn create(tag: &str, password: &str) -> Option<Self> {
        if std::env::var("KILN_TEST_SYSTEM_USERS").as_deref() != Ok("1") {
            eprintln!("skipped: set KILN_TEST_SYSTEM_USERS=1 (as root) to test password logins with a throwaway user");
            return None;
        }
        if run(Command::new("id").arg("-u")) != "0\n" {
            eprintln!("skipped: password tests need root to create a user");
            return None;
        }
        let name = format!("kilnt{tag}{}", std::process::id() % 100_000);
        let home = tempfile::tempdir().unwrap();
        let _ = Command::new("userdel")
            .arg("-f")
            .arg(&name)
            .stderr(Stdio::null())
            .status();
        run(Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(home.path())
            .arg(&name));
        let user = Self { name, home };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(chpasswd.stdin.take().unwrap(), "{}:{password}", user.name).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        user.chown(user.home.path());
        Some(user)
    }

    fn chown(&self, path: &Path) {
        run(Command::new("chown").arg(&self.name).arg(path));
    }

    /// `~/.ssh/authorized_keys` with `keys` (dropbear reads only the real home's).
    fn authorize(&self, keys: &[String]) {
        let ssh_dir = self.home.path().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::write(ssh_dir.join("authorized_keys"), keys.join("")).unwrap();
        self.chown(&ssh_dir);
        self.chown(&ssh_dir.join("authorized_keys"));
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        // -f: the session of the server just stopped may not have exited yet.
        let ok = Command::new("userdel").arg("-f").arg(&self.name).status();
        if !ok.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not remove test user {}", self.name);
        }
    }
}

/// Answers every keyboard-interactive prompt with one fixed text, recording the prompts.
struct Answer(String, Mutex<Vec<String>>);

impl Prompter for Answer {
    fn answer(&self, _: &str, prompts: &[(String, bool)]) -> std::io::Result<Vec<String>> {
        let mut seen = self.1.lock().unwrap();
        seen.extend(prompts.iter().map(|(p, _)| p.clone()));
        Ok(prompts.iter().map(|_| self.0.clone()).collect())
    }
}

#[tokio::test]
async fn ssh_openssh_password_with_scp_and_sftp_and_an_interactive_bastion() {
    let Some(user) = SystemUser::create("p", "correct horse") else {
        return;
    };
    let sshd = Sshd::start(&[]);
    for method in METHODS {
        let comm = connect(&SshConfig {
            password: Some("correct horse".into()),
            file_transfer: method,
            ..sshd.config(&user.name)
        })
        .await
        .unwrap();
        let (_, who) = stdout_of(&comm, "id -un").await;
        assert_eq!(who.trim(), user.name);
        exercise(
            &comm,
            user.home.path(),
            &format!("openssh password {method:?}"),
        )
        .await;
    }

    let wrong = SshConfig {
        password: Some("wrong horse".into()),
        handshake_attempts: 1,
        ..sshd.config(&user.name)
    };
    let err = connect(&wrong).await.unwrap_err();
    assert!(matches!(err, ConnectError::AuthRejected { .. }), "{err}");
    assert!(err.to_string().contains("password"), "{err}");
    assert!(!err.to_string().contains("wrong horse"), "{err}");

    // ssh_bastion_interactive: the bastion asks through PAM, a person answers.
    let jump = Sshd::custom(
        &[],
        "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n",
    );
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(&keys.path().join("id"), "ed25519");
    let guest = Sshd::start(&[read_pub(&key)]);
    let prompter = Arc::new(Answer("correct horse".into(), Mutex::new(Vec::new())));
    let comm = connect(&SshConfig {
        private_key_files: vec![key],
        bastion: Some(BastionConfig {
            host: "127.0.0.1".into(),
            port: jump.port,
            username: user.name.clone(),
            interactive: Some(Arc::clone(&prompter) as Arc<dyn Prompter>),
            ..BastionConfig::default()
        }),
        ..guest.config("root")
    })
    .await
    .unwrap();
    assert!(stdout_of(&comm, "true").await.0.success());
    let prompts = prompter.1.lock().unwrap().join("|");
    assert!(prompts.to_lowercase().contains("password"), "{prompts}");
}

#[tokio::test]
async fn ssh_dropbear_password_and_keys_with_scp() {
    if !Path::new("/usr/sbin/dropbear").exists() {
        eprintln!("skipped: dropbear is not installed (package dropbear-bin)");
        return;
    }
    let Some(user) = SystemUser::create("d", "db pass") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let ed25519 = keygen(&keys.path().join("ed"), "ed25519");
    let rsa = keygen(&keys.path().join("rsa"), "rsa");
    user.authorize(&[read_pub(&ed25519), read_pub(&rsa)]);
    let host_key = keys.path().join("dropbear_host");
    run(Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&host_key)
        .stderr(Stdio::null()));
    let port = free_port();
    let _dropbear = Server::spawn(
        Command::new("/usr/sbin/dropbear")
            .args(["-F", "-E", "-p", &format!("127.0.0.1:{port}"), "-r"])
            .arg(&host_key)
            .stderr(Stdio::null()),
    );
    let base = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: user.name.clone(),
        timeout: Some(Duration::from_secs(30)),
        agent_socket: None,
        ..SshConfig::default()
    };
    for (label, config) in [
        (
            "password",
            SshConfig {
                password: Some("db pass".into()),
                ..base.clone()
            },
        ),
        (
            "ed25519",
            SshConfig {
                private_key_files: vec![ed25519.clone()],
                ..base.clone()
            },
        ),
        (
            "rsa",
            SshConfig {
                private_key_files: vec![rsa.clone()],
                ..base.clone()
            },
        ),
    ] {
        let comm = connect(&config).await.unwrap();
        exercise(&comm, user.home.path(), &format!("dropbear {label}")).await;
    }
    // This host's dropbear looks for /usr/lib/sftp-server, which OpenSSH does not install
    // there (the test guest links it): the sftp method then says what to do.
    if !Path::new("/usr/lib/sftp-server").exists() {
        let comm = connect(&SshConfig {
            private_key_files: vec![ed25519],
            file_transfer: TransferMethod::Sftp,
            ..base
        })
        .await
        .unwrap();
        let dst = user.home.path().join("x");
        let err = comm
            .upload(&mut &b"x"[..], dst.to_str().unwrap(), 0o644)
            .await
            .unwrap_err();
        assert!(matches!(err, CommunicatorError::NoSftp { .. }), "{err}");
    }
}

#[test]
fn ssh_null_build_pauses_before_connecting_and_provisions_over_sftp() {
    let (sshd, key, keys) = keyed_sshd("ed25519", SFTP);
    let guest = tempfile::tempdir().unwrap();
    let template = keys.path().join("null.pkr.hcl");
    std::fs::write(
        &template,
        format!(
            r#"source "null" "loop" {{
  ssh_host                 = "127.0.0.1"
  ssh_port                 = {port}
  ssh_username             = "root"
  ssh_private_key_file     = "{key}"
  ssh_file_transfer_method = "sftp"
  pause_before_connecting  = "1s"
}}
build {{
  sources = ["source.null.loop"]
  provisioner "shell" {{
    inline = ["echo from-shell > {dir}/shell.txt"]
  }}
  provisioner "file" {{
    content     = "from-file"
    destination = "{dir}/file.txt"
  }}
}}
"#,
            port = sshd.port,
            key = key.display(),
            dir = guest.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("build")
        .arg(&template)
        .current_dir(keys.path())
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("pausing 1s before connecting again (pause_before_connecting)"),
        "{text}"
    );
    assert!(
        text.contains("Connected to SSH! (host key ssh-ed25519 SHA256:"),
        "{text}"
    );
    // Packer's way: connect, pause, connect again.
    assert_eq!(
        sshd.log().matches("Accepted publickey for root").count(),
        2,
        "{}",
        sshd.log()
    );
    let read = |f: &str| std::fs::read_to_string(guest.path().join(f)).unwrap();
    assert_eq!(read("shell.txt"), "from-shell\n");
    assert_eq!(read("file.txt"), "from-file");
}
