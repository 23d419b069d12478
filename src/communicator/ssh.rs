//! The SSH communicator (russh): [`connect`] waits for the guest's sshd with Packer's
//! `ssh_*` options and returns an [`SshCommunicator`] that runs commands and moves files.
//!
//! Files travel through the command channel, not scp/sftp: `upload` is `cat > dst` with the data
//! on stdin, `upload_dir` is one tar stream into `tar -x`, `download` is `cat src`. Guests are
//! new each build, so any host key is accepted; its fingerprint is logged. Passwords and key
//! material never reach a log or an error message.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use russh::client::{self, Handle, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{shell_quote, Captured, Communicator, CommunicatorError, ExitStatus, Output};

/// Pause between connection attempts: short, so a guest is used as soon as sshd answers.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Longest single attempt (TCP connect + handshake + auth), so one silently dropped SYN
/// cannot use up the whole `ssh_timeout`.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 * 1024;

/// Packer's `ssh_*` options that kiln's SSH communicator uses.
#[derive(Clone)]
pub struct SshConfig {
    /// `ssh_host`.
    pub host: String,
    /// `ssh_port`, 22 by default (builders set the forwarded host port).
    pub port: u16,
    /// `ssh_username`.
    pub username: String,
    /// `ssh_password`: tried with `password`, then `keyboard-interactive`.
    pub password: Option<String>,
    /// `ssh_private_key_file` (unencrypted OpenSSH or PEM keys), read at connect time.
    pub private_key_files: Vec<PathBuf>,
    /// Keys already in memory, e.g. the build's [`super::keys::TemporaryKeyPair`].
    pub private_keys: Vec<Arc<PrivateKey>>,
    /// `ssh_timeout`, 5 minutes by default: how long to wait for the guest's sshd.
    pub timeout: Duration,
    /// `ssh_handshake_attempts`, 10 by default: how many times authentication may be rejected
    /// before giving up (connections the guest drops before that do not count, as in Packer).
    pub handshake_attempts: u32,
    /// `ssh_keep_alive_interval`, 5 s by default; `None` turns keep-alives off.
    pub keep_alive_interval: Option<Duration>,
    /// `ssh_read_write_timeout`: limit for each remote command or transfer; `None` (default) waits.
    pub read_write_timeout: Option<Duration>,
    /// `ssh_pty`: request a pseudo-terminal for commands (stderr then arrives on stdout).
    pub pty: bool,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 22,
            username: String::new(),
            password: None,
            private_key_files: Vec::new(),
            private_keys: Vec::new(),
            timeout: Duration::from_secs(300),
            handshake_attempts: 10,
            keep_alive_interval: Some(Duration::from_secs(5)),
            read_write_timeout: None,
            pty: false,
        }
    }
}

impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("private_key_files", &self.private_key_files)
            .field("private_keys", &self.private_keys.len())
            .field("timeout", &self.timeout)
            .field("handshake_attempts", &self.handshake_attempts)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("read_write_timeout", &self.read_write_timeout)
            .field("pty", &self.pty)
            .finish()
    }
}

/// What the last connection attempt ran into; shown when waiting for SSH times out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastSeen {
    /// No attempt finished (the TCP connect or handshake hung until the deadline).
    Nothing,
    /// The TCP connection failed (refused, unreachable, …).
    Tcp(String),
    /// TCP connected but the SSH handshake failed or the connection was dropped.
    Handshake(String),
    /// sshd answered but rejected every credential.
    AuthRejected,
}

impl fmt::Display for LastSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastSeen::Nothing => f.write_str(
                "no attempt finished: check that the address is reachable and nothing drops the packets",
            ),
            LastSeen::Tcp(e) => write!(
                f,
                "TCP connection failed ({e}): check that the guest booted, sshd runs, and the port (forward) is right"
            ),
            LastSeen::Handshake(e) => write!(
                f,
                "SSH handshake failed ({e}): sshd may still be starting (QEMU accepts forwarded connections before the guest listens); check the guest's console"
            ),
            LastSeen::AuthRejected => f.write_str(
                "authentication was rejected: check ssh_username and the password or key the guest was given",
            ),
        }
    }
}

/// Why [`connect`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No username.
    #[error("ssh_username is not set")]
    NoUsername,
    /// Nothing to authenticate with.
    #[error("no SSH credentials: set ssh_password or ssh_private_key_file, or let the builder make a temporary key pair")]
    NoCredentials,
    /// A key file could not be read or parsed.
    #[error(
        "cannot use ssh_private_key_file {0}: it must be an unencrypted private key kiln can read"
    )]
    KeyFile(PathBuf, #[source] russh::keys::Error),
    /// `ssh_timeout` elapsed.
    #[error(
        "timed out after {waited:?} waiting for SSH on {addr} (ssh_timeout); last attempt: {last}"
    )]
    Timeout {
        /// host:port.
        addr: String,
        /// How long kiln waited.
        waited: Duration,
        /// What the last attempt ran into.
        last: LastSeen,
    },
    /// Authentication failed `ssh_handshake_attempts` times.
    #[error("SSH on {addr} rejected user {user:?} {attempts} times (ssh_handshake_attempts) with {methods}: check ssh_username and the password or key the guest was given")]
    AuthRejected {
        /// host:port.
        addr: String,
        /// ssh_username.
        user: String,
        /// Rejections counted.
        attempts: u32,
        /// Methods tried, e.g. "publickey, password".
        methods: String,
    },
}

/// Accepts any host key (guests are new each build) and records its fingerprint.
struct Client {
    host_key: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let text = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
            }
            PublicKeyOrCertificate::Certificate(cert) => format!(
                "{} certificate {}",
                cert.algorithm(),
                cert.public_key().fingerprint(HashAlg::Sha256)
            ),
        };
        if let Ok(mut slot) = self.host_key.lock() {
            *slot = Some(text);
        }
        Ok(true)
    }
}

/// One failed attempt, sorted by what to do next.
enum Attempt {
    Tcp(io::Error),
    Handshake(russh::Error),
    Auth,
}

/// An authenticated SSH session to the guest.
pub struct SshCommunicator {
    handle: Handle<Client>,
    addr: String,
    host_key: String,
    pty: bool,
    read_write_timeout: Option<Duration>,
}

impl fmt::Debug for SshCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCommunicator")
            .field("addr", &self.addr)
            .field("host_key", &self.host_key)
            .finish_non_exhaustive()
    }
}

/// Wait for the guest's sshd and log in: retry every half second until `ssh_timeout`, stop
/// early after `ssh_handshake_attempts` rejected logins. Cancel by dropping the future.
pub async fn connect(config: &SshConfig) -> Result<SshCommunicator, ConnectError> {
    if config.username.is_empty() {
        return Err(ConnectError::NoUsername);
    }
    let mut keys = config.private_keys.clone();
    for path in &config.private_key_files {
        let key = russh::keys::load_secret_key(path, None)
            .map_err(|e| ConnectError::KeyFile(path.clone(), e))?;
        keys.push(Arc::new(key));
    }
    if keys.is_empty() && config.password.is_none() {
        return Err(ConnectError::NoCredentials);
    }
    let addr = format!("{}:{}", config.host, config.port);
    let ssh_config = Arc::new(client::Config {
        keepalive_interval: config.keep_alive_interval,
        // Busy TCG guests can be slow to answer; 6 missed keep-alives is a dead guest.
        keepalive_max: 6,
        nodelay: true,
        ..client::Config::default()
    });
    let start = Instant::now();
    let deadline = start + config.timeout;
    let mut last = LastSeen::Nothing;
    let mut rejected = 0;
    tracing::info!("waiting for SSH on {addr} as {}", config.username);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout {
                addr,
                waited: start.elapsed(),
                last,
            });
        }
        let host_key = Arc::new(Mutex::new(None));
        let attempt = attempt(
            config,
            &keys,
            Arc::clone(&ssh_config),
            Arc::clone(&host_key),
        );
        match tokio::time::timeout(left.min(ATTEMPT_LIMIT), attempt).await {
            Ok(Ok(handle)) => {
                let host_key = host_key
                    .lock()
                    .ok()
                    .and_then(|k| k.clone())
                    .unwrap_or_default();
                tracing::info!("connected to SSH on {addr}; host key {host_key}");
                return Ok(SshCommunicator {
                    handle,
                    addr,
                    host_key,
                    pty: config.pty,
                    read_write_timeout: config.read_write_timeout,
                });
            }
            Ok(Err(Attempt::Tcp(e))) => last = LastSeen::Tcp(e.to_string()),
            Ok(Err(Attempt::Handshake(e))) => last = LastSeen::Handshake(e.to_string()),
            Ok(Err(Attempt::Auth)) => {
                last = LastSeen::AuthRejected;
                rejected += 1;
                if rejected >= config.handshake_attempts.max(1) {
                    return Err(ConnectError::AuthRejected {
                        addr,
                        user: config.username.clone(),
                        attempts: rejected,
                        methods: methods(&keys, config.password.is_some()),
                    });
                }
            }
            Err(_) => {}
        }
        tracing::debug!("SSH on {addr} not ready: {last}");
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(RETRY_INTERVAL.min(left)).await;
    }
}

fn methods(keys: &[Arc<PrivateKey>], password: bool) -> String {
    let mut m: Vec<String> = keys
        .iter()
        .map(|k| format!("publickey {}", k.algorithm()))
        .collect();
    if password {
        m.push("password, keyboard-interactive".to_string());
    }
    m.join(", ")
}

async fn attempt(
    config: &SshConfig,
    keys: &[Arc<PrivateKey>],
    ssh_config: Arc<client::Config>,
    host_key: Arc<Mutex<Option<String>>>,
) -> Result<Handle<Client>, Attempt> {
    let stream = TcpStream::connect((config.host.as_str(), config.port))
        .await
        .map_err(Attempt::Tcp)?;
    let _ = stream.set_nodelay(true);
    let mut handle = client::connect_stream(ssh_config, stream, Client { host_key })
        .await
        .map_err(Attempt::Handshake)?;
    let user = config.username.as_str();
    for key in keys {
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(Attempt::Handshake)?
            .flatten();
        let signer = PrivateKeyWithHashAlg::new(Arc::clone(key), hash);
        let res = handle
            .authenticate_publickey(user, signer)
            .await
            .map_err(Attempt::Handshake)?;
        if res.success() {
            return Ok(handle);
        }
    }
    if let Some(password) = &config.password {
        let res = handle
            .authenticate_password(user, password.as_str())
            .await
            .map_err(Attempt::Handshake)?;
        if res.success() {
            return Ok(handle);
        }
        if keyboard_interactive(&mut handle, user, password).await? {
            return Ok(handle);
        }
    }
    Err(Attempt::Auth)
}

/// Answer every keyboard-interactive prompt with the password, as Packer does, for guests whose
/// sshd only allows that method.
async fn keyboard_interactive(
    handle: &mut Handle<Client>,
    user: &str,
    password: &str,
) -> Result<bool, Attempt> {
    let mut reply = handle
        .authenticate_keyboard_interactive_start(user, None::<String>)
        .await
        .map_err(Attempt::Handshake)?;
    // A server could ask forever; a few rounds cover real PAM conversations.
    for _ in 0..5 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                reply = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(Attempt::Handshake)?;
            }
        }
    }
    Ok(false)
}

/// What feeds a remote command's stdin.
enum Stdin<'a> {
    Nothing,
    Reader(&'a mut (dyn AsyncRead + Send + Unpin)),
    Chunks(mpsc::Receiver<io::Result<Vec<u8>>>),
}

impl Stdin<'_> {
    /// The next chunk, `None` at the end.
    async fn next(&mut self, buf: &mut [u8]) -> io::Result<Option<Vec<u8>>> {
        match self {
            Stdin::Nothing => Ok(None),
            Stdin::Reader(r) => {
                let n = r.read(buf).await?;
                Ok((n > 0).then(|| buf[..n].to_vec()))
            }
            Stdin::Chunks(rx) => rx.recv().await.transpose(),
        }
    }
}

/// Where a remote command's stdout goes.
enum Sink<'a> {
    Output(&'a mut dyn Output),
    Writer {
        dst: &'a mut (dyn AsyncWrite + Send + Unpin),
        stderr: &'a mut Vec<u8>,
    },
}

impl SshCommunicator {
    /// host:port this session is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The guest's host key as `algorithm SHA256:…`.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key
    }

    /// Close the session politely (the guest may already be gone; that is not an error).
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    fn ssh_err(&self, doing: &'static str) -> impl Fn(russh::Error) -> CommunicatorError + '_ {
        move |source| CommunicatorError::Ssh {
            addr: self.addr.clone(),
            doing,
            source,
        }
    }

    /// Run `cmd` with `stdin` fed to it and stdout/stderr sent to `sink`, under
    /// `ssh_read_write_timeout` when set.
    async fn run(
        &self,
        cmd: &str,
        stdin: Stdin<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<ExitStatus, CommunicatorError> {
        let fut = self.run_unlimited(cmd, stdin, sink);
        match self.read_write_timeout {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .map_err(|_| CommunicatorError::Timeout(limit))?,
            None => fut.await,
        }
    }

    async fn run_unlimited(
        &self,
        cmd: &str,
        mut stdin: Stdin<'_>,
        sink: &mut Sink<'_>,
    ) -> Result<ExitStatus, CommunicatorError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(self.ssh_err("opening a channel"))?;
        if self.pty {
            channel
                .request_pty(false, "vt100", 80, 24, 0, 0, &[])
                .await
                .map_err(self.ssh_err("requesting a pty"))?;
        }
        channel
            .exec(true, cmd)
            .await
            .map_err(self.ssh_err("starting a command"))?;
        let (mut reader, writer) = channel.split();

        // Feed stdin and drain output at once: a command that writes a lot before reading
        // would otherwise stall on flow control.
        let send = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match stdin.next(&mut buf).await {
                    Ok(Some(chunk)) => {
                        if writer.data_bytes(chunk).await.is_err() {
                            // The command closed its stdin; its exit status tells why.
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(e),
                }
            }
            let _ = writer.eof().await;
            Ok(())
        };
        let recv = async {
            let mut status = ExitStatus::Lost;
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => match sink {
                        Sink::Output(out) => out.stdout(&data),
                        Sink::Writer { dst, .. } => dst.write_all(&data).await?,
                    },
                    ChannelMsg::ExtendedData { data, ext: 1 } => match sink {
                        Sink::Output(out) => out.stderr(&data),
                        Sink::Writer { stderr, .. } => stderr.extend_from_slice(&data),
                    },
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = ExitStatus::Code(exit_status);
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = ExitStatus::Signal(match signal_name {
                            Sig::Custom(name) => name,
                            other => format!("{other:?}"),
                        });
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok::<_, io::Error>(status)
        };
        let (sent, received) = tokio::join!(send, recv);
        let status = received.map_err(|e| CommunicatorError::Stream(cmd_name(cmd), e))?;
        sent.map_err(|e| CommunicatorError::Stream(cmd_name(cmd), e))?;
        Ok(status)
    }

    /// Run a transfer helper and turn a failure into an error carrying its stderr.
    async fn helper(
        &self,
        what: String,
        cmd: &str,
        stdin: Stdin<'_>,
    ) -> Result<(), CommunicatorError> {
        let mut out = Captured::default();
        let status = self.run(cmd, stdin, &mut Sink::Output(&mut out)).await?;
        if status.success() {
            return Ok(());
        }
        Err(CommunicatorError::Remote {
            what,
            status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A short label for a command in errors: its first word, so no inline secret leaks.
fn cmd_name(cmd: &str) -> String {
    let first = cmd.split_whitespace().next().unwrap_or("");
    format!("remote command {first}")
}

#[async_trait]
impl Communicator for SshCommunicator {
    async fn exec(&self, cmd: &str, out: &mut dyn Output) -> Result<ExitStatus, CommunicatorError> {
        self.run(cmd, Stdin::Nothing, &mut Sink::Output(out)).await
    }

    async fn upload(
        &self,
        src: &mut (dyn AsyncRead + Send + Unpin),
        dst: &str,
        mode: u32,
    ) -> Result<(), CommunicatorError> {
        let q = shell_quote(dst);
        let cmd = format!("cat > {q} && chmod {:o} {q}", mode & 0o7777);
        self.helper(format!("upload to {dst}"), &cmd, Stdin::Reader(src))
            .await
    }

    async fn upload_dir(&self, src: &Path, dst: &str) -> Result<(), CommunicatorError> {
        let meta = tokio::fs::metadata(src)
            .await
            .map_err(|e| CommunicatorError::Local(src.to_path_buf(), e))?;
        if !meta.is_dir() {
            return Err(CommunicatorError::Local(
                src.to_path_buf(),
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let (tx, rx) = mpsc::channel(8);
        let root = src.to_path_buf();
        let producer = tokio::task::spawn_blocking(move || {
            let result = write_tar(&root, ChunkWriter(tx.clone()));
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            result
        });
        let q = shell_quote(dst);
        // umask 0 so tar restores the archived modes exactly, even for a non-root user;
        // -o leaves ownership to the login user instead of the host's uids.
        let cmd = format!("mkdir -p {q} && cd {q} && umask 0 && tar -x -o -f -");
        let sent = self
            .helper(
                format!("upload of {} to {dst}", src.display()),
                &cmd,
                Stdin::Chunks(rx),
            )
            .await;
        let produced = producer.await.map_err(|e| {
            CommunicatorError::Local(src.to_path_buf(), io::Error::other(e.to_string()))
        })?;
        match (produced, sent) {
            // A broken pipe in the producer only means the guest stopped reading: the guest's
            // error says why. Any other producer error is about the local files.
            (Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(CommunicatorError::Local(src.to_path_buf(), e))
            }
            (_, Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(CommunicatorError::Local(src.to_path_buf(), e)),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    async fn download(
        &self,
        src: &str,
        dst: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), CommunicatorError> {
        let cmd = format!("cat {}", shell_quote(src));
        let mut stderr = Vec::new();
        let mut sink = Sink::Writer {
            dst: &mut *dst,
            stderr: &mut stderr,
        };
        let status = self.run(&cmd, Stdin::Nothing, &mut sink).await?;
        dst.flush()
            .await
            .map_err(|e| CommunicatorError::Stream(format!("download of {src}"), e))?;
        if status.success() {
            return Ok(());
        }
        Err(CommunicatorError::Remote {
            what: format!("download of {src}"),
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        })
    }
}

/// Archive `root`'s contents (not following symlinks, keeping modes) into `out`. `root`
/// itself is left out so extracting never changes the mode of an existing `dst` like /tmp.
fn write_tar(root: &Path, out: ChunkWriter) -> io::Result<()> {
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(CHUNK, out));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut entries = std::fs::read_dir(root)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    builder.into_inner()?.flush()
}

/// A blocking writer that hands chunks to the async side.
struct ChunkWriter(mpsc::Sender<io::Result<Vec<u8>>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the guest stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let config = SshConfig {
            password: Some("hunter2".into()),
            ..SshConfig::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn packer_defaults() {
        let c = SshConfig::default();
        assert_eq!(c.port, 22);
        assert_eq!(c.timeout, Duration::from_secs(300));
        assert_eq!(c.handshake_attempts, 10);
        assert_eq!(c.keep_alive_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.read_write_timeout, None);
        assert!(!c.pty);
    }

    #[tokio::test]
    async fn missing_credentials_fail_before_connecting() {
        let c = SshConfig {
            host: "127.0.0.1".into(),
            username: "root".into(),
            ..SshConfig::default()
        };
        assert!(matches!(
            connect(&c).await,
            Err(ConnectError::NoCredentials)
        ));
        let c = SshConfig {
            password: Some("x".into()),
            ..SshConfig::default()
        };
        assert!(matches!(connect(&c).await, Err(ConnectError::NoUsername)));
    }

    #[test]
    fn command_label_keeps_only_the_program() {
        assert_eq!(cmd_name("echo secret | sudo -S x"), "remote command echo");
    }
}
