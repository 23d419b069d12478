//! The `none` communicator: Packer's `communicator = "none"`. Builds with it skip waiting for
//! the guest; any provisioner that needs the guest fails with a clear error instead of hanging.

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Communicator, CommunicatorError, ExitStatus, Output};

/// A communicator that refuses every operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoneCommunicator;

#[async_trait]
impl Communicator for NoneCommunicator {
    async fn exec(&self, _: &str, _: &mut dyn Output) -> Result<ExitStatus, CommunicatorError> {
        Err(CommunicatorError::Unavailable)
    }

    async fn upload(
        &self,
        _: &mut (dyn AsyncRead + Send + Unpin),
        _: &str,
        _: u32,
    ) -> Result<(), CommunicatorError> {
        Err(CommunicatorError::Unavailable)
    }

    async fn upload_dir(&self, _: &Path, _: &str) -> Result<(), CommunicatorError> {
        Err(CommunicatorError::Unavailable)
    }

    async fn download(
        &self,
        _: &str,
        _: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), CommunicatorError> {
        Err(CommunicatorError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::communicator::Captured;

    #[tokio::test]
    async fn every_operation_says_there_is_no_communicator() {
        let c = NoneCommunicator;
        let err = c.exec("true", &mut Captured::default()).await.unwrap_err();
        assert!(matches!(err, CommunicatorError::Unavailable));
        assert!(err.to_string().contains("communicator = \"none\""));
        assert!(c.upload_dir(Path::new("."), "/tmp").await.is_err());
    }
}
