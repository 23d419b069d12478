//! Provisioners: what runs against the guest (or the host) once the builder has it up.
//! [`run_all`] runs a build's provisioners in order, applying Packer's meta-arguments
//! (`pause_before`, `max_retries`, `timeout`); each type lives in its own module.
//!
//! NOTE(lead): interface sketch; the provisioner helper owns this module and may refine it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::communicator::Communicator;
use crate::template::PlannedStep;
use crate::ui::BuildUi;

/// What a provisioner gets from the build.
pub struct ProvisionContext<'a> {
    /// Output of the build.
    pub ui: &'a BuildUi,
    /// The guest's communicator; `None` with `communicator = "none"`.
    pub communicator: Option<Arc<dyn Communicator>>,
    /// Ctrl-C.
    pub cancel: &'a CancellationToken,
    /// Relative script paths are resolved against it.
    pub template_dir: &'a Path,
    /// Source name (`PACKER_BUILD_NAME`).
    pub build_name: &'a str,
    /// Source type (`PACKER_BUILDER_TYPE`).
    pub build_type: &'a str,
    /// `build.*` values: `Host`, `Port`, `User`, `Password`, `SSHPublicKey`, `PackerHTTPAddr`,
    /// `PackerHTTPIP`, `PackerHTTPPort`, `ID`… (Packer's names).
    pub generated: &'a BTreeMap<String, String>,
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A provisioner failed.
    #[error("provisioner {kind} failed: {message}")]
    Failed {
        /// Its type.
        kind: String,
        /// What went wrong.
        message: String,
    },
    /// The build was cancelled.
    #[error("provisioning was cancelled")]
    Cancelled,
}

/// Run `steps` in order against the guest.
#[allow(clippy::never_loop)] // placeholder until the provisioners land
pub async fn run_all(
    steps: &[PlannedStep],
    ctx: &ProvisionContext<'_>,
) -> Result<(), ProvisionError> {
    for s in steps {
        if ctx.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        ctx.ui.say(&format!("Provisioning with {}...", s.kind));
        return Err(ProvisionError::Failed {
            kind: s.kind.clone(),
            message: "not implemented yet".into(),
        });
    }
    Ok(())
}
