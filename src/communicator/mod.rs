//! Communicators: how kiln runs commands on the guest and moves files to and from it.
//!
//! [`Communicator`] is what provisioners and the shutdown step use; [`ssh`] implements it over
//! SSH (russh) with Packer's `ssh_*` options, [`reconnect`] wraps it so a guest that reboots
//! (a provisioner with `expect_disconnect`) is reconnected to on the next operation, and
//! [`keys`] makes the key pair a build can inject with `{{ .SSHPublicKey }}`. Packer's
//! `communicator = "none"` is no communicator at all (`BuildContext::communicator` stays unset). Waiting for the guest to come up is part of [`ssh::connect`]. WinRM
//! is not here.

pub mod keys;
pub mod reconnect;
pub mod ssh;

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// Receives a remote command's output as it arrives, in chunks that may split lines.
pub trait Output: Send {
    /// A chunk of the command's standard output.
    fn stdout(&mut self, data: &[u8]);
    /// A chunk of the command's standard error (never called when a pty merges the two).
    fn stderr(&mut self, data: &[u8]);
}

// Here rather than in `ui`, so that the UI does not depend on the communicator.
impl Output for crate::ui::LineOutput {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout_chunk(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr_chunk(data);
    }
}

/// An [`Output`] that keeps everything, for callers that want the text after the command ends.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Output for Captured {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout.extend_from_slice(data);
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by this signal (name without `SIG`, e.g. `KILL`).
    Signal(String),
    /// The channel closed without a status: typically the guest rebooted or shut down, which
    /// is expected for a `shutdown_command` and an error elsewhere.
    Lost,
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
            ExitStatus::Lost => f.write_str("no exit status (connection closed)"),
        }
    }
}

/// Why a communicator operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CommunicatorError {
    /// The build uses `communicator = "none"`.
    #[error("this build has no communicator (communicator = \"none\"): provisioners need ssh")]
    Unavailable,
    /// The SSH session failed under an operation.
    #[error("SSH session to {addr} failed while {doing}")]
    Ssh {
        /// host:port.
        addr: String,
        /// What was going on, e.g. "running a command".
        doing: &'static str,
        /// The SSH error.
        #[source]
        source: russh::Error,
    },
    /// The connection was already gone when the operation began; nothing was run or sent.
    #[error("the SSH connection to {addr} is closed")]
    Disconnected {
        /// host:port.
        addr: String,
        /// What russh said.
        #[source]
        source: russh::Error,
    },
    /// The connection was lost and a new one could not be made.
    #[error("lost the SSH connection to {addr} and could not reconnect")]
    Reconnect {
        /// host:port.
        addr: String,
        /// Why connecting again failed.
        #[source]
        source: ssh::ConnectError,
    },
    /// `ssh_file_transfer_method = "sftp"` on a guest without an SFTP server.
    #[error("the guest at {addr} has no SFTP server: {why}\nhint: set ssh_file_transfer_method = \"scp\" (Packer's default), or install an sftp-server on the guest")]
    NoSftp {
        /// host:port.
        addr: String,
        /// What happened when it was asked for.
        why: String,
    },
    /// The guest's SFTP server refused an operation.
    #[error("{what} failed on the guest's SFTP server: {message}")]
    Sftp {
        /// What was attempted, e.g. "upload to /tmp/x".
        what: String,
        /// The server's status, e.g. "NoSuchFile: No such file".
        message: String,
    },
    /// A transfer's helper command on the guest failed.
    #[error("{what} failed on the guest ({status}): {stderr}")]
    Remote {
        /// What was attempted, e.g. "upload to /tmp/script.sh".
        what: String,
        /// How the helper command ended.
        status: ExitStatus,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// A local file or directory could not be read or written.
    #[error("local file {0}")]
    Local(PathBuf, #[source] std::io::Error),
    /// The reader given to `upload` or the writer given to `download` failed.
    #[error("transfer stream for {0}")]
    Stream(String, #[source] std::io::Error),
}

/// Runs commands on the guest and transfers files. Remote paths are POSIX paths; the guest
/// needs `sh`, `scp` (or an SFTP server with `ssh_file_transfer_method = "sftp"`), `mkdir` and
/// `tar` (Packer's communicator needs the same tools, bar tar).
#[async_trait]
pub trait Communicator: Send + Sync {
    /// Run `cmd` through the guest's login shell, streaming its output to `out`.
    /// A non-zero exit is not an error: the caller decides from the status.
    async fn exec(&self, cmd: &str, out: &mut dyn Output) -> Result<ExitStatus, CommunicatorError>;

    /// Write everything `src` yields to the file `dst` on the guest and set its mode (e.g. 0o755).
    async fn upload(
        &self,
        src: &mut (dyn AsyncRead + Send + Unpin),
        dst: &str,
        mode: u32,
    ) -> Result<(), CommunicatorError>;

    /// Copy the contents of the local directory `src` into `dst` on the guest (created if
    /// missing) as one tar stream, keeping file modes and symlinks (which are not followed).
    /// Packer's trailing-slash rule (`src` vs `src/`) is the file provisioner's job.
    async fn upload_dir(&self, src: &Path, dst: &str) -> Result<(), CommunicatorError>;

    /// Stream the guest file `src` into `dst`.
    async fn download(
        &self,
        src: &str,
        dst: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), CommunicatorError>;
}

/// Quote `s` for a POSIX shell: single quotes, with embedded ones closed, escaped, reopened.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
pub mod testing {
    //! [`FakeCommunicator`]: records the commands run and answers with a set exit code.
    use std::sync::Mutex;

    use super::*;

    /// A communicator that records what it is asked to do.
    #[derive(Default)]
    pub struct FakeCommunicator {
        /// Commands run, in order.
        pub commands: Mutex<Vec<String>>,
        /// The exit code every command returns.
        pub code: u32,
    }

    impl FakeCommunicator {
        /// The commands run so far.
        pub fn commands(&self) -> Vec<String> {
            self.commands.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    #[async_trait::async_trait]
    impl Communicator for FakeCommunicator {
        async fn exec(
            &self,
            cmd: &str,
            _out: &mut dyn Output,
        ) -> Result<ExitStatus, CommunicatorError> {
            if let Ok(mut c) = self.commands.lock() {
                c.push(cmd.to_owned());
            }
            Ok(ExitStatus::Code(self.code))
        }
        async fn upload(
            &self,
            _src: &mut (dyn AsyncRead + Send + Unpin),
            dst: &str,
            _mode: u32,
        ) -> Result<(), CommunicatorError> {
            if let Ok(mut c) = self.commands.lock() {
                c.push(format!("upload {dst}"));
            }
            Ok(())
        }
        async fn upload_dir(&self, _src: &Path, dst: &str) -> Result<(), CommunicatorError> {
            if let Ok(mut c) = self.commands.lock() {
                c.push(format!("upload_dir {dst}"));
            }
            Ok(())
        }
        async fn download(
            &self,
            src: &str,
            _dst: &mut (dyn AsyncWrite + Send + Unpin),
        ) -> Result<(), CommunicatorError> {
            if let Ok(mut c) = self.commands.lock() {
                c.push(format!("download {src}"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn only_code_zero_is_success() {
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Code(1).success());
        assert!(!ExitStatus::Lost.success());
        assert!(!ExitStatus::Signal("KILL".into()).success());
    }
}
