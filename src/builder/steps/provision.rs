//! Run the build's provisioners over its communicator. When the build fails (at this step or
//! a later one), this step's cleanup runs the `error-cleanup-provisioner`, as Packer does: with
//! `-on-error=cleanup` and `ask` before the rest is cleaned up, with
//! `run-cleanup-provisioner` before the build is left as it is; never with `abort`.

use async_trait::async_trait;

use crate::pipeline::{BuildContext, CleanupError, Step, StepError};
use crate::provisioner::{self, ProvisionContext, ProvisionError};
use crate::template::PlannedStep;

/// Runs the provisioners.
pub struct Provision {
    steps: Vec<PlannedStep>,
    error_cleanup: Option<PlannedStep>,
    source_name: String,
    source_type: String,
}

impl Provision {
    /// A step running `steps` for the build of `source_type.source_name`.
    pub fn new(
        steps: Vec<PlannedStep>,
        error_cleanup: Option<PlannedStep>,
        source_type: &str,
        source_name: &str,
    ) -> Self {
        Self {
            steps,
            error_cleanup,
            source_name: source_name.to_owned(),
            source_type: source_type.to_owned(),
        }
    }

    async fn run_steps(
        &self,
        ctx: &BuildContext,
        steps: &[PlannedStep],
    ) -> Result<(), ProvisionError> {
        let pctx = ProvisionContext {
            ui: &ctx.ui,
            communicator: ctx.communicator.clone(),
            cancel: &ctx.cancel,
            template_dir: &ctx.template_dir,
            build_name: &self.source_name,
            build_type: &self.source_type,
            generated: &ctx.generated,
        };
        provisioner::run_all(steps, &pctx).await
    }
}

#[async_trait]
impl Step for Provision {
    fn name(&self) -> &'static str {
        "provision"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        match self.run_steps(ctx, &self.steps).await {
            Ok(()) => Ok(()),
            Err(ProvisionError::Cancelled) => Err(StepError::Cancelled),
            Err(e) => Err(StepError::wrap(e)),
        }
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if !ctx.build_failed {
            return Ok(());
        }
        if let Some(step) = self.error_cleanup.take() {
            ctx.ui.say(
                "Provisioning step had errors: Running the cleanup provisioner, if present...",
            );
            self.run_steps(ctx, std::slice::from_ref(&step))
                .await
                .map_err(|e| CleanupError::new("error-cleanup-provisioner failed", e))?;
        }
        Ok(())
    }
}
