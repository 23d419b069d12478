//! The russh client handler kiln connects with ([`Client`]: records the host key, serves
//! agent-forwarding channels from the local agent) and the outcome of one connection attempt
//! ([`Attempt`]), shared by the transport and the login.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client::{self, Msg, Session};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use tokio::net::UnixStream;

/// One failed attempt, sorted by what to do next.
pub(super) enum Attempt {
    /// TCP to the guest failed.
    Tcp(io::Error),
    /// The bastion failed (unreachable, login rejected, tunnel refused).
    Bastion(BastionError),
    /// The SSH handshake failed or the connection dropped.
    Handshake(String),
    /// Every credential was rejected.
    Auth,
}

/// Accepts any host key (guests are new each build) and records its fingerprint; opens
/// agent-forwarding channels to the local agent when forwarding is on.
pub(super) struct Client {
    pub(super) host_key: Arc<Mutex<Option<String>>>,
    pub(super) agent: Option<PathBuf>,
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

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(socket) = &self.agent else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        match UnixStream::connect(socket).await {
            Ok(mut local) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut remote = channel.into_stream();
                    if let Err(e) = tokio::io::copy_bidirectional(&mut remote, &mut local).await {
                        tracing::debug!("forwarded agent connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(
                    "the guest asked for the forwarded agent, but {} cannot be reached: {e}",
                    socket.display()
                );
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }
}

/// Why the bastion could not be used, for `LastSeen::Bastion`.
#[derive(Debug, thiserror::Error)]
pub(super) enum BastionError {
    /// TCP to the bastion failed.
    #[error("cannot reach {at}")]
    Unreachable {
        /// host:port.
        at: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bastion's SSH handshake failed.
    #[error("SSH handshake with {at} failed")]
    Handshake {
        /// host:port.
        at: String,
        /// Why.
        #[source]
        source: russh::Error,
    },
    /// Every credential was rejected.
    #[error("{at} rejected user {user:?} with {methods}")]
    Rejected {
        /// host:port.
        at: String,
        /// `ssh_bastion_username`.
        user: String,
        /// The methods tried.
        methods: String,
    },
    /// The login failed for another reason (the connection dropped, …).
    #[error("login to {at} failed ({why})")]
    Login {
        /// host:port.
        at: String,
        /// What the login saw.
        why: String,
    },
    /// The login's connection failed.
    #[error("login to {at} failed")]
    LoginIo {
        /// host:port.
        at: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bastion would not forward to the guest.
    #[error("it could not open a tunnel to {to}")]
    Tunnel {
        /// The guest's host:port.
        to: String,
        /// Why.
        #[source]
        source: russh::Error,
    },
}
