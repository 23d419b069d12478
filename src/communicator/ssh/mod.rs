//! The SSH communicator (russh) with Packer's `ssh_*` options: [`connect`] waits for the guest's
//! sshd (directly or through an `ssh_bastion_host`) and returns an [`SshCommunicator`] that runs
//! commands and moves files.
//!
//! How files travel, by `ssh_file_transfer_method`:
//!
//! | operation | `scp` (Packer's default) | `sftp` |
//! |---|---|---|
//! | `upload` (one file) | the scp protocol with the guest's `scp -p -t` | an SFTP write + setstat |
//! | `download` (one file) | the scp protocol with the guest's `scp -f` | an SFTP read |
//! | `upload_dir` (a tree) | one tar stream into the guest's `tar -x` | the same tar stream |
//!
//! Directories always go as one tar stream: Packer sends them a file at a time, with a round
//! trip per file, which is what makes its file provisioner slow on many small files.
//!
//! Guests are new each build, so any host key is accepted; its fingerprint is logged once per
//! connection. Passwords and key material never reach a log or an error message.
//! `ssh_read_write_timeout` is Packer's: a connection that moves no bytes for that long is
//! dropped (a command then ends as [`ExitStatus::Lost`](super::ExitStatus::Lost)).
//! Reconnecting after a reboot is [`super::reconnect`]'s job.

mod auth;
mod handler;
mod methods;
mod scp;
mod session;
mod sftp;
mod tar;
mod transport;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::PrivateKey;

pub use crate::config::common::expand_home;
pub use auth::{Prompter, TerminalPrompter};
pub use session::SshCommunicator;

/// Pause between connection attempts: short, so a guest is used as soon as sshd answers.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// Longest single attempt (TCP connect + handshake + auth), like Packer's one-minute handshake
/// timeout, so one silently dropped SYN cannot use up the whole `ssh_timeout`.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(60);

/// `ssh_file_transfer_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferMethod {
    /// The scp protocol with the guest's `scp` (Packer's default).
    #[default]
    Scp,
    /// The guest's SFTP subsystem.
    Sftp,
}

impl std::str::FromStr for TransferMethod {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<Self, ConnectError> {
        match s {
            "" | "scp" => Ok(Self::Scp),
            "sftp" => Ok(Self::Sftp),
            other => Err(ConnectError::TransferMethod(other.to_owned())),
        }
    }
}

/// The bastion (jump) host a connection goes through: `ssh_bastion_*`.
#[derive(Clone, Default)]
pub struct BastionConfig {
    /// `ssh_bastion_host`.
    pub host: String,
    /// `ssh_bastion_port`, 22 by default.
    pub port: u16,
    /// `ssh_bastion_username`.
    pub username: String,
    /// `ssh_bastion_password`: tried with `password`, then `keyboard-interactive`.
    pub password: Option<String>,
    /// `ssh_bastion_private_key_file` (Packer falls back to `ssh_private_key_file`).
    pub private_key_files: Vec<PathBuf>,
    /// `ssh_bastion_certificate_file`, for the key file.
    pub certificate_file: Option<PathBuf>,
    /// `ssh_bastion_agent_auth`: log in with the keys of the local agent
    /// ([`SshConfig::agent_socket`]).
    pub agent_auth: bool,
    /// `ssh_bastion_interactive`: keyboard-interactive prompts answered by a person.
    pub interactive: Option<Arc<dyn Prompter>>,
}

impl fmt::Debug for BastionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BastionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("private_key_files", &self.private_key_files)
            .field("certificate_file", &self.certificate_file)
            .field("agent_auth", &self.agent_auth)
            .field("interactive", &self.interactive.is_some())
            .finish()
    }
}

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
    /// `ssh_certificate_file`: an OpenSSH certificate for the key file.
    pub certificate_file: Option<PathBuf>,
    /// `ssh_agent_auth`: log in with the keys of the local agent.
    pub agent_auth: bool,
    /// The local agent's socket: `SSH_AUTH_SOCK` by default. Used by `ssh_agent_auth`,
    /// `ssh_bastion_agent_auth` and agent forwarding.
    pub agent_socket: Option<PathBuf>,
    /// Forward the local agent to the guest's commands when `SSH_AUTH_SOCK` is set (Packer does
    /// unless `ssh_disable_agent_forwarding`).
    pub agent_forwarding: bool,
    /// `ssh_timeout`, 5 minutes by default; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// `ssh_handshake_attempts`, 10 by default (0: no limit): how many times authentication may
    /// be rejected before giving up (connections the guest drops before that do not count).
    pub handshake_attempts: u32,
    /// `ssh_keep_alive_interval`, 5 s by default; `None` turns keep-alives off.
    pub keep_alive_interval: Option<Duration>,
    /// `ssh_read_write_timeout`: drop a connection that moves no bytes for this long; `None`
    /// (default) never does.
    pub read_write_timeout: Option<Duration>,
    /// `ssh_pty`: request a pseudo-terminal for commands (stderr then arrives on stdout).
    pub pty: bool,
    /// `ssh_file_transfer_method`.
    pub file_transfer: TransferMethod,
    /// `ssh_ciphers`: replaces russh's preferred list when not empty.
    pub ciphers: Vec<String>,
    /// `ssh_key_exchange_algorithms`: replaces russh's preferred list when not empty.
    pub key_exchange_algorithms: Vec<String>,
    /// `ssh_bastion_host` and friends.
    pub bastion: Option<BastionConfig>,
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
            certificate_file: None,
            agent_auth: false,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
            agent_forwarding: true,
            timeout: Some(Duration::from_secs(300)),
            handshake_attempts: 10,
            keep_alive_interval: Some(Duration::from_secs(5)),
            read_write_timeout: None,
            pty: false,
            file_transfer: TransferMethod::Scp,
            ciphers: Vec::new(),
            key_exchange_algorithms: Vec::new(),
            bastion: None,
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
            .field("certificate_file", &self.certificate_file)
            .field("agent_auth", &self.agent_auth)
            .field("agent_socket", &self.agent_socket)
            .field("agent_forwarding", &self.agent_forwarding)
            .field("timeout", &self.timeout)
            .field("handshake_attempts", &self.handshake_attempts)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("read_write_timeout", &self.read_write_timeout)
            .field("pty", &self.pty)
            .field("file_transfer", &self.file_transfer)
            .field("ciphers", &self.ciphers)
            .field("key_exchange_algorithms", &self.key_exchange_algorithms)
            .field("bastion", &self.bastion)
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
    /// The bastion host could not be reached, refused the login, or could not open the tunnel.
    Bastion(String),
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
            LastSeen::Bastion(e) => write!(
                f,
                "the bastion host failed: {e}: check ssh_bastion_host, ssh_bastion_port and the bastion credentials"
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

/// Why [`connect`] gave up, or why the options cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No username.
    #[error("ssh_username is not set")]
    NoUsername,
    /// Nothing to authenticate with.
    #[error("no SSH credentials: set ssh_password, ssh_private_key_file or ssh_agent_auth, or let the builder make a temporary key pair")]
    NoCredentials,
    /// A bastion without credentials.
    #[error("ssh_bastion_password, ssh_bastion_private_key_file, ssh_bastion_agent_auth or ssh_bastion_interactive must be set with ssh_bastion_host")]
    NoBastionCredentials,
    /// A key file could not be read or parsed.
    #[error("cannot use {option} {path}: it must be a readable, unencrypted private key (OpenSSH or PEM)")]
    KeyFile {
        /// The option naming it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: russh::keys::Error,
    },
    /// A certificate file could not be read or parsed, or does not match the key.
    #[error("cannot use {option} {path}: {why}")]
    Certificate {
        /// The option naming it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `ssh_certificate_file` without a key.
    #[error("{0} needs a private key file to go with it")]
    CertificateWithoutKey(&'static str),
    /// Agent authentication without an agent.
    #[error("{option} is set but no SSH agent is reachable ({why})\nhint: start ssh-agent, add the key with ssh-add, and run kiln with SSH_AUTH_SOCK set")]
    NoAgent {
        /// The option asking for it.
        option: &'static str,
        /// Why it is not reachable.
        why: String,
    },
    /// `ssh_ciphers` / `ssh_key_exchange_algorithms` names an algorithm russh lacks.
    #[error("{option} names {name:?}, which kiln does not support; supported: {supported}")]
    UnknownAlgorithm {
        /// The option.
        option: &'static str,
        /// The name given.
        name: String,
        /// What would work.
        supported: String,
    },
    /// `ssh_file_transfer_method` is neither scp nor sftp.
    #[error("ssh_file_transfer_method ({0:?}) is invalid, valid methods: sftp, scp")]
    TransferMethod(String),
    /// `ssh_timeout` elapsed.
    #[error(
        "timed out after {} waiting for SSH on {addr} (ssh_timeout); last attempt: {last}",
        crate::template::duration::GoDuration::rounded(*.waited)
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
        /// Methods tried, e.g. "publickey ssh-ed25519, password".
        methods: String,
    },
    /// An option kiln does not implement (refused rather than ignored).
    #[error("{0} is not supported by kiln yet\nhint: use ssh_bastion_host to reach a guest through another machine")]
    Unsupported(&'static str),
    /// The target stopped being reachable for good (e.g. the VM exited) while reconnecting.
    #[error("{0}")]
    Gone(String),
}

/// Wait for the guest's sshd and log in: retry every half second until `ssh_timeout`, stop
/// early after `ssh_handshake_attempts` rejected logins. Options that cannot work (unreadable
/// key, unknown cipher, no agent) fail before the first attempt. Cancel by dropping the future.
pub async fn connect(config: &SshConfig) -> Result<SshCommunicator, ConnectError> {
    if config.username.is_empty() {
        return Err(ConnectError::NoUsername);
    }
    let target = auth::Credentials::target(config)?;
    let bastion = match &config.bastion {
        Some(b) => Some((
            b,
            auth::Credentials::bastion(b, config.agent_socket.as_deref())?,
        )),
        None => None,
    };
    let ssh_config = Arc::new(client::Config {
        keepalive_interval: config.keep_alive_interval,
        // Busy TCG guests can be slow to answer; 6 missed keep-alives is a dead guest.
        keepalive_max: 6,
        nodelay: true,
        preferred: transport::preferred(&config.ciphers, &config.key_exchange_algorithms)?,
        ..client::Config::default()
    });
    let addr = format!("{}:{}", config.host, config.port);
    let start = Instant::now();
    let deadline = config.timeout.map(|t| start + t);
    let mut last = LastSeen::Nothing;
    let mut rejected = 0;
    match &config.bastion {
        Some(b) => tracing::info!(
            "waiting for SSH on {addr} as {} through bastion {}:{}",
            config.username,
            b.host,
            b.port
        ),
        None => tracing::info!("waiting for SSH on {addr} as {}", config.username),
    }
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(ConnectError::Timeout {
                addr,
                waited: start.elapsed(),
                last,
            });
        }
        let limit = left.map_or(ATTEMPT_LIMIT, |l| l.min(ATTEMPT_LIMIT));
        let attempt = transport::attempt(config, &ssh_config, &target, bastion.as_ref());
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(comm)) => {
                tracing::info!(
                    "connected to SSH on {addr}; host key {}",
                    comm.host_key_fingerprint()
                );
                return Ok(comm);
            }
            Ok(Err(transport::Attempt::Tcp(e))) => last = LastSeen::Tcp(e.to_string()),
            Ok(Err(transport::Attempt::Bastion(e))) => {
                last = LastSeen::Bastion(crate::report::chain(&e));
            }
            Ok(Err(transport::Attempt::Handshake(e))) => last = LastSeen::Handshake(e),
            Ok(Err(transport::Attempt::Auth)) => {
                last = LastSeen::AuthRejected;
                rejected += 1;
                if config.handshake_attempts > 0 && rejected >= config.handshake_attempts {
                    return Err(ConnectError::AuthRejected {
                        addr,
                        user: config.username.clone(),
                        attempts: rejected,
                        methods: target.methods(),
                    });
                }
            }
            Err(_) => {}
        }
        tracing::debug!("SSH on {addr} not ready: {last}");
        let pause = deadline.map_or(RETRY_INTERVAL, |d| {
            RETRY_INTERVAL.min(d.saturating_duration_since(Instant::now()))
        });
        tokio::time::sleep(pause).await;
    }
}

/// [`expand_home`] for a path already parsed.
fn expand_home_path(path: &Path) -> PathBuf {
    match path.to_str() {
        Some(s) => expand_home(s),
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_passwords() {
        let config = SshConfig {
            password: Some("hunter2".into()),
            bastion: Some(BastionConfig {
                password: Some("bastion-secret".into()),
                ..BastionConfig::default()
            }),
            ..SshConfig::default()
        };
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("bastion-secret"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn packer_defaults() {
        let c = SshConfig::default();
        assert_eq!(c.port, 22);
        assert_eq!(c.timeout, Some(Duration::from_secs(300)));
        assert_eq!(c.handshake_attempts, 10);
        assert_eq!(c.keep_alive_interval, Some(Duration::from_secs(5)));
        assert_eq!(c.read_write_timeout, None);
        assert_eq!(c.file_transfer, TransferMethod::Scp);
        assert!(c.agent_forwarding);
        assert!(!c.pty);
    }

    #[test]
    fn transfer_methods() {
        assert_eq!(
            "sftp".parse::<TransferMethod>().unwrap(),
            TransferMethod::Sftp
        );
        assert_eq!("".parse::<TransferMethod>().unwrap(), TransferMethod::Scp);
        let err = "rsync".parse::<TransferMethod>().unwrap_err();
        assert!(
            err.to_string().contains("valid methods: sftp, scp"),
            "{err}"
        );
    }

    #[test]
    fn home_is_expanded() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_home("~/k"), Path::new(&home).join("k"));
        assert_eq!(expand_home("/abs/k"), Path::new("/abs/k"));
        assert_eq!(expand_home("~other/k"), Path::new("~other/k"));
    }

    #[tokio::test]
    async fn options_that_cannot_work_fail_before_connecting() {
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
        let c = SshConfig {
            username: "root".into(),
            password: Some("x".into()),
            ciphers: vec!["arcfour256".into()],
            ..SshConfig::default()
        };
        let err = connect(&c).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ssh_ciphers names \"arcfour256\""), "{msg}");
        assert!(msg.contains("aes128-ctr"), "{msg}");
        let c = SshConfig {
            username: "root".into(),
            password: Some("x".into()),
            bastion: Some(BastionConfig {
                host: "127.0.0.1".into(),
                port: 22,
                username: "jump".into(),
                ..BastionConfig::default()
            }),
            ..SshConfig::default()
        };
        assert!(matches!(
            connect(&c).await,
            Err(ConnectError::NoBastionCredentials)
        ));
    }
}
