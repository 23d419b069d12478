//! The SSH communicator against a real OpenSSH sshd (and dropbear when installed) started on
//! 127.0.0.1 with a throwaway config. The "guest" is this machine, so results are checked on
//! the local filesystem. Password tests create a system user and run only with
//! KILN_TEST_SYSTEM_USERS=1 as root.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kiln::communicator::keys::TemporaryKeyPair;
use kiln::communicator::ssh::{connect, ConnectError, LastSeen, SshCommunicator, SshConfig};
use kiln::communicator::{Captured, Communicator, CommunicatorError, ExitStatus, Output};
use tempfile::TempDir;

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

/// An sshd serving on a random port until dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Sshd {
    fn start(authorized_keys: &[String]) -> Self {
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
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPidFile none\nLogLevel VERBOSE\n",
                host_key.display(),
                auth.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, port, dir }
    }

    fn config(&self, user: &str) -> SshConfig {
        SshConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            username: user.into(),
            timeout: Duration::from_secs(30),
            ..SshConfig::default()
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default();
            eprintln!("sshd log:\n{log}");
        }
    }
}

/// An sshd that accepts `key`, and a session to it as root.
async fn session_with_key(kind: &str) -> (Sshd, SshCommunicator, TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(&keys.path().join("id"), kind);
    let sshd = Sshd::start(&[read_pub(&key)]);
    let config = SshConfig {
        private_key_files: vec![key],
        ..sshd.config("root")
    };
    let comm = connect(&config).await.unwrap();
    (sshd, comm, keys)
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
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(sshd.dir.path().join("host_ed25519.pub"))
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
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
async fn ssh_pty_and_read_write_timeout() {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(&keys.path().join("id"), "ed25519");
    let sshd = Sshd::start(&[read_pub(&key)]);
    let base = SshConfig {
        private_key_files: vec![key],
        ..sshd.config("root")
    };
    let plain = connect(&base).await.unwrap();
    let mut out = Captured::default();
    assert_eq!(
        plain.exec("tty -s", &mut out).await.unwrap(),
        ExitStatus::Code(1)
    );

    let with_pty = connect(&SshConfig {
        pty: true,
        ..base.clone()
    })
    .await
    .unwrap();
    assert!(with_pty.exec("tty -s", &mut out).await.unwrap().success());

    // A limit, not a measurement: the command sleeps far longer than the timeout. The timeout
    // leaves room for root's shell rc files on this host (pyenv), so it fires during `sleep`.
    let limited = connect(&SshConfig {
        read_write_timeout: Some(Duration::from_secs(10)),
        ..base
    })
    .await
    .unwrap();
    let err = limited.exec("sleep 120", &mut out).await.unwrap_err();
    assert!(matches!(err, CommunicatorError::Timeout(_)), "{err}");
    assert!(err.to_string().contains("ssh_read_write_timeout"), "{err}");
}

#[tokio::test]
async fn ssh_upload_sets_mode_and_download_reads_back() {
    let (_sshd, comm, _k) = session_with_key("ed25519").await;
    let guest = tempfile::tempdir().unwrap();
    let dst = guest.path().join("it's a script.sh");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    comm.upload(&mut data.as_slice(), dst.to_str().unwrap(), 0o750)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);

    let mut back = Vec::new();
    comm.download(dst.to_str().unwrap(), &mut back)
        .await
        .unwrap();
    assert_eq!(back, data);

    let missing = guest.path().join("no/such/dir/file");
    let err = comm
        .upload(&mut &b"x"[..], missing.to_str().unwrap(), 0o644)
        .await
        .unwrap_err();
    assert!(matches!(err, CommunicatorError::Remote { .. }), "{err}");
    assert!(err.to_string().contains("upload to"), "{err}");

    let err = comm
        .download(missing.to_str().unwrap(), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
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
async fn ssh_rsa_key_auth() {
    let (_sshd, comm, _k) = session_with_key("rsa").await;
    let mut out = Captured::default();
    assert!(comm.exec("id -u", &mut out).await.unwrap().success());
    assert_eq!(out.stdout, b"0\n");
}

#[tokio::test]
async fn ssh_temporary_key_pair_auth() {
    let pair = TemporaryKeyPair::generate_ed25519("kiln test").unwrap();
    let sshd = Sshd::start(&[format!("{}\n", pair.public_openssh())]);
    let config = SshConfig {
        private_keys: vec![pair.private_key()],
        ..sshd.config("root")
    };
    let comm = connect(&config).await.unwrap();
    assert!(comm
        .exec("true", &mut Captured::default())
        .await
        .unwrap()
        .success());
}

#[tokio::test]
async fn ssh_wrong_key_is_rejected_with_a_clear_error() {
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

    let unreadable = SshConfig {
        private_key_files: vec![keys.path().join("missing")],
        ..sshd.config("root")
    };
    assert!(matches!(
        connect(&unreadable).await,
        Err(ConnectError::KeyFile(..))
    ));
}

#[tokio::test]
async fn ssh_timeout_names_the_address_and_what_was_seen() {
    let port = free_port();
    let config = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: "root".into(),
        password: Some("never-shown".into()),
        timeout: Duration::from_secs(2),
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
        let uid = Command::new("id").arg("-u").output().unwrap();
        if uid.stdout != b"0\n" {
            eprintln!("skipped: password tests need root to create a user");
            return None;
        }
        let name = format!("kilnt{tag}{}", std::process::id() % 100_000);
        let home = tempfile::tempdir().unwrap();
        let _ = Command::new("userdel").arg("-f").arg(&name).status();
        let ok = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-d"])
            .arg(home.path())
            .arg(&name)
            .status()
            .unwrap();
        assert!(ok.success(), "useradd failed");
        let user = Self { name, home };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(chpasswd.stdin.take().unwrap(), "{}:{password}", user.name).unwrap();
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        let chown = Command::new("chown")
            .arg(&user.name)
            .arg(user.home.path())
            .status()
            .unwrap();
        assert!(chown.success());
        Some(user)
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

#[tokio::test]
async fn ssh_password_auth_with_a_throwaway_user() {
    let Some(user) = SystemUser::create("p", "correct horse") else {
        return;
    };
    let sshd = Sshd::start(&[]);
    let config = SshConfig {
        password: Some("correct horse".into()),
        ..sshd.config(&user.name)
    };
    let comm = connect(&config).await.unwrap();
    let mut out = Captured::default();
    assert!(comm.exec("id -un", &mut out).await.unwrap().success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user.name);
    let dst = user.home.path().join("f");
    comm.upload(&mut &b"hi"[..], dst.to_str().unwrap(), 0o640)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"hi");

    let wrong = SshConfig {
        password: Some("wrong".into()),
        handshake_attempts: 1,
        ..sshd.config(&user.name)
    };
    let err = connect(&wrong).await.unwrap_err();
    assert!(matches!(err, ConnectError::AuthRejected { .. }), "{err}");
    assert!(!err.to_string().contains("wrong\""), "{err}");
}

#[tokio::test]
async fn dropbear_password_and_key_auth() {
    if !Path::new("/usr/sbin/dropbear").exists() {
        eprintln!("skipped: dropbear is not installed (package dropbear-bin)");
        return;
    }
    // dropbear reads authorized_keys only from the user's real home, so it is tested with
    // a throwaway user whose home is a temp dir.
    let Some(user) = SystemUser::create("d", "db pass") else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(&keys.path().join("id"), "ed25519");
    let ssh_dir = user.home.path().join(".ssh");
    std::fs::create_dir(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("authorized_keys"), read_pub(&key)).unwrap();
    for p in [&ssh_dir, &ssh_dir.join("authorized_keys")] {
        assert!(Command::new("chown")
            .arg(&user.name)
            .arg(p)
            .status()
            .unwrap()
            .success());
    }
    let host_key = keys.path().join("dropbear_host");
    let ok = Command::new("dropbearkey")
        .args(["-t", "ed25519", "-f"])
        .arg(&host_key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let port = free_port();
    let _dropbear = KillOnDrop(
        Command::new("/usr/sbin/dropbear")
            .args(["-F", "-E", "-p", &format!("127.0.0.1:{port}"), "-r"])
            .arg(&host_key)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: user.name.clone(),
        timeout: Duration::from_secs(30),
        ..SshConfig::default()
    };
    for config in [
        SshConfig {
            password: Some("db pass".into()),
            ..base.clone()
        },
        SshConfig {
            private_key_files: vec![key.clone()],
            ..base.clone()
        },
    ] {
        let comm = connect(&config).await.unwrap();
        let mut out = Captured::default();
        let status = comm.exec("echo hi; exit 4", &mut out).await.unwrap();
        assert_eq!(
            (status, out.stdout),
            (ExitStatus::Code(4), b"hi\n".to_vec())
        );
        let dst = user.home.path().join("tree");
        comm.upload_dir(keys.path(), dst.to_str().unwrap())
            .await
            .unwrap();
        assert!(dst.join("id.pub").exists());
    }
}

/// Stops a server process when the test ends, also when it fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn ssh_dropped_connections_are_retried_not_counted_as_handshake_attempts() {
    // Like QEMU's port forward before the guest's sshd listens: TCP accepts, then closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = tokio::spawn(async move {
        let mut n = 0u32;
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
            n += 1;
        }
        n
    });
    let config = SshConfig {
        host: "127.0.0.1".into(),
        port,
        username: "root".into(),
        password: Some("x".into()),
        handshake_attempts: 1,
        timeout: Duration::from_secs(3),
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
