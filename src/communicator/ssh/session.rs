//! An authenticated SSH session to the guest: commands run on their own channel with output
//! streamed as it arrives (with a pty under `ssh_pty`, and the local agent forwarded unless
//! `ssh_disable_agent_forwarding`). Transfers are routed by [`super::methods`].

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, Pty, Sig};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::handler::Client;
use super::{SshConfig, TransferMethod};
use crate::communicator::{Captured, CommunicatorError, ExitStatus, Output};

/// Size of the chunks fed to a command's stdin.
pub(super) const CHUNK: usize = 64 * 1024;

/// An authenticated SSH session to the guest.
pub struct SshCommunicator {
    handle: Handle<Client>,
    /// The bastion's session, kept open while the tunnel through it is used.
    _jump: Option<Handle<Client>>,
    addr: String,
    host_key: String,
    pub(super) pty: bool,
    agent_forwarding: bool,
    pub(super) transfer: TransferMethod,
    stalled: Arc<AtomicBool>,
    /// The SFTP session, once a transfer needed one.
    pub(super) sftp: tokio::sync::Mutex<Option<Arc<russh_sftp::client::SftpSession>>>,
}

impl fmt::Debug for SshCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshCommunicator")
            .field("addr", &self.addr)
            .field("host_key", &self.host_key)
            .field("transfer", &self.transfer)
            .finish_non_exhaustive()
    }
}

/// What feeds a remote command's stdin.
pub(super) enum Stdin {
    Nothing,
    Chunks(mpsc::Receiver<io::Result<Vec<u8>>>),
}

impl Stdin {
    /// The next chunk, `None` at the end.
    async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Stdin::Nothing => Ok(None),
            Stdin::Chunks(rx) => rx.recv().await.transpose(),
        }
    }
}

impl SshCommunicator {
    pub(super) fn new(
        handle: Handle<Client>,
        jump: Option<Handle<Client>>,
        config: &SshConfig,
        host_key: String,
        stalled: Arc<AtomicBool>,
    ) -> Self {
        Self {
            handle,
            _jump: jump,
            addr: format!("{}:{}", config.host, config.port),
            host_key,
            pty: config.pty,
            agent_forwarding: config.agent_forwarding && config.agent_socket.is_some(),
            transfer: config.file_transfer,
            stalled,
            sftp: tokio::sync::Mutex::new(None),
        }
    }

    /// host:port this session is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The guest's host key as `algorithm SHA256:…`.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key
    }

    /// True once the connection has ended (the guest rebooted, the network dropped, or
    /// `ssh_read_write_timeout` fired).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// True when `ssh_read_write_timeout` ended this connection.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Close the session politely (the guest may already be gone; that is not an error).
    pub async fn disconnect(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    pub(super) fn ssh_err(
        &self,
        doing: &'static str,
    ) -> impl Fn(russh::Error) -> CommunicatorError + '_ {
        move |source| CommunicatorError::Ssh {
            addr: self.addr.clone(),
            doing,
            source,
        }
    }

    /// A new session channel. A connection that is already gone gives
    /// [`CommunicatorError::Disconnected`]: nothing was started, so the operation can be
    /// retried on a new connection.
    pub(super) async fn channel(&self) -> Result<Channel<Msg>, CommunicatorError> {
        match self.handle.channel_open_session().await {
            Ok(c) => Ok(c),
            Err(e @ russh::Error::ChannelOpenFailure(_)) => {
                Err(self.ssh_err("opening a channel")(e))
            }
            Err(source) => Err(CommunicatorError::Disconnected {
                addr: self.addr.clone(),
                source,
            }),
        }
    }

    /// A channel running `cmd`, with the agent forwarded when that is on.
    pub(super) async fn start(
        &self,
        cmd: &str,
        pty: bool,
    ) -> Result<Channel<Msg>, CommunicatorError> {
        let channel = self.channel().await?;
        if self.agent_forwarding {
            // Per channel: dropbear scopes the forwarded socket to the session asking for it.
            channel
                .agent_forward(false)
                .await
                .map_err(self.ssh_err("requesting agent forwarding"))?;
        }
        if pty {
            // Packer's terminal: xterm, 80x40, no echo.
            let modes = [
                (Pty::ECHO, 0),
                (Pty::TTY_OP_ISPEED, 14400),
                (Pty::TTY_OP_OSPEED, 14400),
            ];
            channel
                .request_pty(false, "xterm", 80, 40, 0, 0, &modes)
                .await
                .map_err(self.ssh_err("requesting a pty"))?;
        }
        channel
            .exec(true, cmd)
            .await
            .map_err(self.ssh_err("starting a command"))?;
        Ok(channel)
    }

    /// Run `cmd` with `stdin` fed to it and stdout/stderr sent to `out`.
    pub(super) async fn run(
        &self,
        cmd: &str,
        mut stdin: Stdin,
        out: &mut dyn Output,
        pty: bool,
    ) -> Result<ExitStatus, CommunicatorError> {
        let channel = self.start(cmd, pty).await?;
        let (mut reader, writer) = channel.split();

        // Feed stdin and drain output at once: a command that writes a lot before reading
        // would otherwise stall on flow control.
        let send = async {
            loop {
                match stdin.next().await {
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
                    ChannelMsg::Data { data } => out.stdout(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = ExitStatus::Code(exit_status);
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = signal(signal_name);
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            status
        };
        let (sent, received) = tokio::join!(send, recv);
        let status = received;
        sent.map_err(|e| CommunicatorError::Stream(cmd_name(cmd), e))?;
        if status == ExitStatus::Lost && self.stalled() {
            tracing::warn!(
                "{}: the command's connection was dropped by ssh_read_write_timeout",
                self.addr
            );
        }
        Ok(status)
    }

    /// Run a transfer helper (never under a pty, which would mangle the data) and turn a
    /// failure into an error carrying its stderr.
    pub(super) async fn helper(
        &self,
        what: String,
        cmd: &str,
        stdin: Stdin,
    ) -> Result<(), CommunicatorError> {
        let mut out = Captured::default();
        let status = self.run(cmd, stdin, &mut out, false).await?;
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

/// An exit signal as kiln reports it: the name without `SIG`.
pub(super) fn signal(name: Sig) -> ExitStatus {
    ExitStatus::Signal(match name {
        Sig::Custom(name) => name,
        other => format!("{other:?}"),
    })
}

/// A short label for a command in errors: its first word, so no inline secret leaks.
fn cmd_name(cmd: &str) -> String {
    let first = cmd.split_whitespace().next().unwrap_or("");
    format!("remote command {first}")
}

/// A command's stdout read as a byte stream, for protocols spoken over it (scp), with its
/// stderr and exit status collected on the side.
pub(super) struct Incoming {
    rx: ChannelReadHalf,
    buf: Vec<u8>,
    pos: usize,
    pub(super) stderr: Vec<u8>,
    pub(super) status: ExitStatus,
    closed: bool,
}

impl Incoming {
    pub(super) fn new(rx: ChannelReadHalf) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
            stderr: Vec::new(),
            status: ExitStatus::Lost,
            closed: false,
        }
    }

    /// Wait for more stdout; false when there is none left.
    async fn fill(&mut self) -> bool {
        while self.pos >= self.buf.len() {
            if self.closed {
                return false;
            }
            match self.rx.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.buf = data.to_vec();
                    self.pos = 0;
                }
                Some(msg) => self.side(msg),
                None => self.closed = true,
            }
        }
        true
    }

    fn side(&mut self, msg: ChannelMsg) {
        match msg {
            ChannelMsg::ExtendedData { data, ext: 1 } => self.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => self.status = ExitStatus::Code(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => self.status = signal(signal_name),
            ChannelMsg::Eof | ChannelMsg::Close => self.closed = true,
            _ => {}
        }
    }

    /// One byte; `None` at the end of the output.
    pub(super) async fn byte(&mut self) -> Option<u8> {
        if !self.fill().await {
            return None;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Some(b)
    }

    /// Up to and without the next `\n` (a line cut short by the end is returned as is).
    pub(super) async fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        while let Some(b) = self.byte().await {
            if b == b'\n' {
                break;
            }
            line.push(b);
        }
        line
    }

    /// Copy exactly `n` bytes to `dst`; false if the output ended first.
    pub(super) async fn copy_to(
        &mut self,
        mut n: u64,
        dst: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<bool> {
        while n > 0 {
            if !self.fill().await {
                return Ok(false);
            }
            let take = (self.buf.len() - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            dst.write_all(&self.buf[self.pos..self.pos + take]).await?;
            self.pos += take;
            n -= take as u64;
        }
        Ok(true)
    }

    /// Read to the end of the channel and return how the command ended.
    pub(super) async fn finish(mut self) -> (ExitStatus, Vec<u8>) {
        loop {
            match self.rx.wait().await {
                Some(ChannelMsg::Close) | None => break,
                Some(ChannelMsg::Data { .. }) => {}
                Some(msg) => self.side(msg),
            }
        }
        (self.status, self.stderr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_label_keeps_only_the_program() {
        assert_eq!(cmd_name("echo secret | sudo -S x"), "remote command echo");
    }
}
