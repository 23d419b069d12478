//! `ssh_file_transfer_method = "sftp"`: one file at a time through the guest's SFTP subsystem
//! (russh-sftp client), with writes pipelined. One SFTP session serves the whole connection:
//! starting a server per file costs a round trip, and dropbear can lose a command channel
//! opened while the previous sftp-server exits. A guest without an SFTP server gets an error
//! that says to use scp.

use std::sync::Arc;

use russh::ChannelMsg;
use russh_sftp::client::{Config, SftpSession};
use russh_sftp::protocol::FileAttributes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::SshCommunicator;
use crate::communicator::CommunicatorError;

/// Per-request limit: a loaded TCG guest can take seconds to answer one.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// The connection's SFTP session, started on first use.
async fn session(comm: &SshCommunicator) -> Result<Arc<SftpSession>, CommunicatorError> {
    let mut slot = comm.sftp.lock().await;
    if let Some(s) = &*slot {
        return Ok(Arc::clone(s));
    }
    let s = Arc::new(open(comm).await?);
    *slot = Some(Arc::clone(&s));
    Ok(s)
}

/// Forget a session whose server or channel failed, so the next transfer starts a new one.
async fn forget(comm: &SshCommunicator, e: &russh_sftp::client::error::Error) {
    if !matches!(e, russh_sftp::client::error::Error::Status(_)) {
        *comm.sftp.lock().await = None;
    }
}

/// Start the guest's SFTP subsystem.
async fn open(comm: &SshCommunicator) -> Result<SftpSession, CommunicatorError> {
    let no_sftp = |why: String| CommunicatorError::NoSftp {
        addr: comm.addr().to_owned(),
        why,
    };
    let mut channel = comm.channel().await?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(comm.ssh_err("starting the SFTP subsystem"))?;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => break,
            Some(ChannelMsg::Failure) => {
                return Err(no_sftp("the sftp subsystem was refused".into()))
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                return Err(no_sftp(format!(
                    "the sftp subsystem exited with code {exit_status}"
                )))
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                return Err(no_sftp("the sftp subsystem closed at once".into()))
            }
            Some(_) => {}
        }
    }
    let config = Config {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Config::default()
    };
    SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|e| no_sftp(format!("the SFTP server did not start ({e})")))
}

fn failed(what: &str) -> impl Fn(russh_sftp::client::error::Error) -> CommunicatorError + '_ {
    move |e| CommunicatorError::Sftp {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

/// Upload `src` to the file `dst`, then set `mode`.
pub(super) async fn upload(
    comm: &SshCommunicator,
    src: &mut (dyn AsyncRead + Send + Unpin),
    dst: &str,
    mode: u32,
) -> Result<(), CommunicatorError> {
    let what = format!("upload to {dst}");
    let sftp = session(comm).await?;
    let mut file = match sftp.create(dst).await {
        Ok(f) => f,
        Err(e) => {
            forget(comm, &e).await;
            return Err(failed(&what)(e));
        }
    };
    let copied = tokio::io::copy(src, &mut file).await;
    // close waits for the pending writes and reports their errors.
    let closed = file.close().await;
    if let Err(e) = copied.and(closed) {
        *comm.sftp.lock().await = None;
        return Err(CommunicatorError::Stream(what, e));
    }
    let attrs = FileAttributes {
        permissions: Some(mode & 0o7777),
        ..FileAttributes::empty()
    };
    if let Err(e) = sftp.set_metadata(dst, attrs).await {
        forget(comm, &e).await;
        return Err(failed(&what)(e));
    }
    Ok(())
}

/// Download the file `src` into `dst`.
pub(super) async fn download(
    comm: &SshCommunicator,
    src: &str,
    dst: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<(), CommunicatorError> {
    let what = format!("download of {src}");
    let sftp = session(comm).await?;
    let mut file = match sftp.open(src).await {
        Ok(f) => f,
        Err(e) => {
            forget(comm, &e).await;
            return Err(failed(&what)(e));
        }
    };
    let copied = tokio::io::copy(&mut file, dst).await;
    drop(file);
    if let Err(e) = copied {
        *comm.sftp.lock().await = None;
        return Err(CommunicatorError::Stream(what, e));
    }
    dst.flush()
        .await
        .map_err(|e| CommunicatorError::Stream(what.clone(), e))
}
