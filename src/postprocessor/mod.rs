//! Post-processors: what happens to an artifact after the build. [`run_chains`] runs a build's
//! post-processor chains (each chain in order on the previous artifact, honouring
//! `keep_input_artifact`); each type's core lives in its own module.
//!
//! NOTE(lead): interface sketch; the post-processor helper owns this module and may refine it.

pub mod checksum;
pub mod compress;
pub mod manifest;
pub mod vagrant;

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::artifact::Artifact;
use crate::template::PlannedStep;
use crate::ui::BuildUi;

/// What a post-processor gets from the build.
pub struct PostProcessContext<'a> {
    /// Output of the build.
    pub ui: &'a BuildUi,
    /// Ctrl-C.
    pub cancel: &'a CancellationToken,
    /// Relative paths are resolved against it.
    pub template_dir: &'a Path,
}

/// Why a post-processor failed.
#[derive(Debug, thiserror::Error)]
pub enum PostProcessError {
    /// A post-processor failed.
    #[error("post-processor {kind} failed: {message}")]
    Failed {
        /// Its type.
        kind: String,
        /// What went wrong.
        message: String,
    },
}

/// Run each chain on `artifact`; returns the artifacts to report (the builder's own unless a
/// chain discarded it, plus each chain's last).
pub async fn run_chains(
    chains: &[Vec<PlannedStep>],
    artifact: Artifact,
    _ctx: &PostProcessContext<'_>,
) -> Result<Vec<Artifact>, PostProcessError> {
    if let Some(step) = chains.iter().flatten().next() {
        return Err(PostProcessError::Failed {
            kind: step.kind.clone(),
            message: "not wired yet".into(),
        });
    }
    Ok(vec![artifact])
}
