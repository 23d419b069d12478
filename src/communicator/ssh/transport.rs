//! One connection attempt: the TCP stream (direct, or a `direct-tcpip` channel through the
//! bastion), Packer's `ssh_read_write_timeout` on it, the SSH handshake with the preferred
//! algorithms (`ssh_ciphers`, `ssh_key_exchange_algorithms`), and the client handler that
//! records the host key and serves agent-forwarding channels from the local agent.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::Preferred;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::auth::Credentials;
pub(super) use super::handler::{Attempt, BastionError, Client};
use super::{BastionConfig, ConnectError, SshCommunicator, SshConfig};

/// Connect, shake hands and log in once.
pub(super) async fn attempt(
    config: &SshConfig,
    ssh_config: &Arc<client::Config>,
    target: &Credentials,
    bastion: Option<&(&BastionConfig, Credentials)>,
) -> Result<SshCommunicator, Attempt> {
    let host_key = Arc::new(Mutex::new(None));
    let stalled = Arc::new(AtomicBool::new(false));
    let client = Client {
        host_key: Arc::clone(&host_key),
        agent: config
            .agent_forwarding
            .then(|| config.agent_socket.clone())
            .flatten(),
    };
    let limit = config.read_write_timeout;
    let handshake = |e: russh::Error| Attempt::Handshake(e.to_string());
    let (mut handle, jump) = match bastion {
        None => {
            let tcp = TcpStream::connect((config.host.as_str(), config.port))
                .await
                .map_err(Attempt::Tcp)?;
            let _ = tcp.set_nodelay(true);
            let handle = client::connect_stream(
                Arc::clone(ssh_config),
                Deadline::new(tcp, limit, Arc::clone(&stalled)),
                client,
            )
            .await
            .map_err(handshake)?;
            (handle, None)
        }
        Some((b, creds)) => {
            let jump = connect_bastion(b, creds, ssh_config)
                .await
                .map_err(Attempt::Bastion)?;
            let tunnel = jump
                .channel_open_direct_tcpip(
                    config.host.as_str(),
                    u32::from(config.port),
                    "127.0.0.1",
                    0,
                )
                .await
                .map_err(|source| {
                    Attempt::Bastion(BastionError::Tunnel {
                        to: format!("{}:{}", config.host, config.port),
                        source,
                    })
                })?;
            let stream = Deadline::new(tunnel.into_stream(), limit, Arc::clone(&stalled));
            let handle = client::connect_stream(Arc::clone(ssh_config), stream, client)
                .await
                .map_err(handshake)?;
            (handle, Some(jump))
        }
    };
    target.login(&mut handle).await?;
    let host_key = host_key
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .unwrap_or_default();
    Ok(SshCommunicator::new(
        handle, jump, config, host_key, stalled,
    ))
}

/// Log in to the bastion.
async fn connect_bastion(
    b: &BastionConfig,
    creds: &Credentials,
    ssh_config: &Arc<client::Config>,
) -> Result<Handle<Client>, BastionError> {
    let at = format!("{}:{}", b.host, b.port);
    let tcp = TcpStream::connect((b.host.as_str(), b.port))
        .await
        .map_err(|source| BastionError::Unreachable {
            at: at.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let host_key = Arc::new(Mutex::new(None));
    let client = Client {
        host_key: Arc::clone(&host_key),
        agent: None,
    };
    let mut handle = client::connect_stream(Arc::clone(ssh_config), tcp, client)
        .await
        .map_err(|source| BastionError::Handshake {
            at: at.clone(),
            source,
        })?;
    match creds.login(&mut handle).await {
        Ok(()) => {}
        Err(Attempt::Auth) => {
            return Err(BastionError::Rejected {
                at,
                user: b.username.clone(),
                methods: creds.methods(),
            })
        }
        Err(Attempt::Handshake(why)) => return Err(BastionError::Login { at, why }),
        Err(Attempt::Bastion(e)) => return Err(e),
        Err(Attempt::Tcp(source)) => return Err(BastionError::LoginIo { at, source }),
    }
    if let Some(k) = host_key.lock().ok().and_then(|k| k.clone()) {
        tracing::info!("connected to the bastion {at}; host key {k}");
    }
    Ok(handle)
}

/// russh's preferred algorithms with `ssh_ciphers` / `ssh_key_exchange_algorithms` in place of
/// its defaults when given; an unknown name is an error that lists the supported ones.
pub(super) fn preferred(ciphers: &[String], kex: &[String]) -> Result<Preferred, ConnectError> {
    let mut preferred = Preferred::default();
    if !ciphers.is_empty() {
        let known: Vec<russh::cipher::Name> = russh::cipher::ALL_CIPHERS
            .iter()
            .map(|n| **n)
            .filter(|n| !matches!(n.as_ref(), "none" | "clear"))
            .collect();
        preferred.cipher = Cow::Owned(pick("ssh_ciphers", ciphers, &known)?);
    }
    if !kex.is_empty() {
        let known: Vec<russh::kex::Name> = russh::kex::ALL_KEX_ALGORITHMS
            .iter()
            .map(|n| **n)
            .filter(|n| n.as_ref() != "none")
            .collect();
        let mut list = pick("ssh_key_exchange_algorithms", kex, &known)?;
        // Not algorithms but protocol extensions russh announces in the same list.
        list.push(russh::kex::EXTENSION_SUPPORT_AS_CLIENT);
        list.push(russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT);
        preferred.kex = Cow::Owned(list);
    }
    Ok(preferred)
}

fn pick<N: AsRef<str> + Copy>(
    option: &'static str,
    names: &[String],
    known: &[N],
) -> Result<Vec<N>, ConnectError> {
    names
        .iter()
        .map(|name| {
            known
                .iter()
                .find(|k| k.as_ref() == name)
                .copied()
                .ok_or_else(|| ConnectError::UnknownAlgorithm {
                    option,
                    name: name.clone(),
                    supported: known
                        .iter()
                        .map(AsRef::as_ref)
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// Packer's `ssh_read_write_timeout` on a stream: a read or write that waits longer than the
/// limit fails, which ends the SSH session (keep-alive replies count as reads, so a live but
/// quiet guest is not dropped while keep-alives run). `stalled` remembers that it happened.
pub(super) struct Deadline<S> {
    inner: S,
    limit: Option<Duration>,
    read: Option<Pin<Box<Sleep>>>,
    write: Option<Pin<Box<Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl<S> Deadline<S> {
    pub(super) fn new(inner: S, limit: Option<Duration>, stalled: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            read: None,
            write: None,
            stalled,
        }
    }
}

/// Poll `op`; while it is pending, run a timer of `limit` and fail when it fires.
fn limited<T>(
    timer: &mut Option<Pin<Box<Sleep>>>,
    limit: Option<Duration>,
    stalled: &AtomicBool,
    cx: &mut Context<'_>,
    op: Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    let Some(limit) = limit else {
        return op;
    };
    if op.is_ready() {
        *timer = None;
        return op;
    }
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    match t.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *timer = None;
            stalled.store(true, Ordering::SeqCst);
            tracing::warn!(
                "no data moved on the SSH connection for {limit:?} (ssh_read_write_timeout): dropping it"
            );
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "ssh_read_write_timeout elapsed",
            )))
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let op = Pin::new(&mut this.inner).poll_read(cx, buf);
        limited(&mut this.read, this.limit, &this.stalled, cx, op)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let op = Pin::new(&mut this.inner).poll_write(cx, buf);
        limited(&mut this.write, this.limit, &this.stalled, cx, op)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let op = Pin::new(&mut this.inner).poll_flush(cx);
        limited(&mut this.write, this.limit, &this.stalled, cx, op)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn algorithm_names_map_to_russh_and_unknown_ones_are_refused() {
        let p = preferred(
            &["aes256-ctr".into(), "chacha20-poly1305@openssh.com".into()],
            &["curve25519-sha256@libssh.org".into()],
        )
        .unwrap();
        let ciphers: Vec<&str> = p.cipher.iter().map(AsRef::as_ref).collect();
        assert_eq!(ciphers, ["aes256-ctr", "chacha20-poly1305@openssh.com"]);
        let kex: Vec<&str> = p.kex.iter().map(AsRef::as_ref).collect();
        assert_eq!(kex[0], "curve25519-sha256@libssh.org");
        assert!(kex.contains(&"ext-info-c"));

        let err = preferred(&[], &["diffie-hellman-group1-sha256".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ssh_key_exchange_algorithms"), "{msg}");
        assert!(msg.contains("curve25519-sha256"), "{msg}");
        assert!(!msg.contains("none"), "{msg}");
        assert!(preferred(&["none".into()], &[]).is_err());
        let default = preferred(&[], &[]).unwrap();
        assert_eq!(default.cipher, Preferred::default().cipher);
    }

    #[tokio::test]
    async fn a_stalled_stream_fails_after_the_limit_and_a_live_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let stalled = Arc::new(AtomicBool::new(false));
        let mut s = Deadline::new(a, Some(Duration::from_millis(50)), Arc::clone(&stalled));
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert!(!stalled.load(Ordering::SeqCst));
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(stalled.load(Ordering::SeqCst));

        let (a, _b) = tokio::io::duplex(64);
        let mut s = Deadline::new(a, None, Arc::new(AtomicBool::new(false)));
        let quiet = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
        assert!(quiet.is_err(), "without a limit a quiet stream just waits");
    }
}
