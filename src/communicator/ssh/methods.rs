//! [`Communicator`] for [`SshCommunicator`]: commands run on a session channel
//! ([`super::session`]); file transfers go by `ssh_file_transfer_method` to [`super::scp`] or
//! [`super::sftp`], directories as one tar stream ([`super::tar`]).

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::Stdin;
use super::{SshCommunicator, TransferMethod};
use crate::communicator::{Communicator, CommunicatorError, ExitStatus, Output};

#[async_trait]
impl Communicator for SshCommunicator {
    async fn exec(&self, cmd: &str, out: &mut dyn Output) -> Result<ExitStatus, CommunicatorError> {
        self.run(cmd, Stdin::Nothing, out, self.pty).await
    }

    async fn upload(
        &self,
        src: &mut (dyn AsyncRead + Send + Unpin),
        dst: &str,
        mode: u32,
    ) -> Result<(), CommunicatorError> {
        match self.transfer {
            TransferMethod::Scp => super::scp::upload(self, src, dst, mode).await,
            TransferMethod::Sftp => super::sftp::upload(self, src, dst, mode).await,
        }
    }

    async fn upload_dir(&self, src: &Path, dst: &str) -> Result<(), CommunicatorError> {
        super::tar::upload_dir(self, src, dst).await
    }

    async fn download(
        &self,
        src: &str,
        dst: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), CommunicatorError> {
        match self.transfer {
            TransferMethod::Scp => super::scp::download(self, src, dst).await,
            TransferMethod::Sftp => super::sftp::download(self, src, dst).await,
        }
    }
}
