//! Run the build's provisioners over its communicator. When one fails and
//! `-on-error=run-cleanup-provisioner` is set, the `error-cleanup-provisioner` runs before the
//! build is cleaned up.

use async_trait::async_trait;

use crate::pipeline::{BuildContext, OnError, Step, StepError};
use crate::provisioner::{self, ProvisionContext, ProvisionError};
use crate::template::PlannedStep;

/// Runs the provisioners.
pub struct Provision {
    steps: Vec<PlannedStep>,
    error_cleanup: Option<PlannedStep>,
    source_name: String,
    source_type: String,
    failed: bool,
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
            failed: false,
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
            Err(e) => {
                self.failed = true;
                Err(StepError::msg(e))
            }
        }
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) {
        if !(self.failed && ctx.on_error == OnError::RunCleanupProvisioner) {
            return;
        }
        if let Some(step) = self.error_cleanup.take() {
            ctx.ui
                .say("Provisioning step had errors: running the cleanup provisioner");
            if let Err(e) = self.run_steps(ctx, std::slice::from_ref(&step)).await {
                ctx.ui
                    .error(&format!("error-cleanup-provisioner failed: {e}"));
            }
        }
    }
}
