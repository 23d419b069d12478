//! Run the build's provisioners over its communicator. When the build fails (at this step or
//! a later one), this step's cleanup runs the `error-cleanup-provisioner`, as Packer does: with
//! `-on-error=cleanup` and `ask` before the rest is cleaned up, with
//! `run-cleanup-provisioner` before the build is left as it is; never with `abort`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::layers::LayerPlan;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};
use crate::provisioner::{self, ProvisionContext, ProvisionError};
use crate::template::PlannedStep;

/// Runs the provisioners.
pub struct Provision {
    steps: Vec<PlannedStep>,
    error_cleanup: Option<PlannedStep>,
    source_name: String,
    source_type: String,
    layers: Option<Arc<LayerPlan>>,
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
            layers: None,
        }
    }

    /// The step, with the layer cache: the provisioners before the layer the build starts
    /// from are skipped, and the layer after each one run is saved.
    pub fn with_layers(mut self, plan: Arc<LayerPlan>) -> Self {
        self.layers = Some(plan);
        self
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

    /// One provisioner at a time, each followed by its layer; those the starting layer holds
    /// are skipped.
    async fn run_layered(
        &self,
        ctx: &BuildContext,
        plan: &LayerPlan,
    ) -> Result<(), ProvisionError> {
        let done = plan.start_index().unwrap_or(0);
        for (i, step) in self.steps.iter().enumerate() {
            if i < done {
                continue;
            }
            self.run_steps(ctx, std::slice::from_ref(step)).await?;
            plan.save(i + 1, ctx).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Step for Provision {
    fn name(&self) -> &'static str {
        "provision"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let result = match &self.layers {
            None => self.run_steps(ctx, &self.steps).await,
            Some(plan) => self.run_layered(ctx, plan).await,
        };
        match result {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::communicator::testing::FakeCommunicator;
    use crate::pipeline::context::testing::context;
    use crate::template::diagnostics::SpanTable;
    use crate::template::StepMeta;

    fn shell(inline: &str) -> PlannedStep {
        PlannedStep {
            kind: "shell".into(),
            name: None,
            config: serde_json::json!({ "inline": [inline] }),
            spans: SpanTable::default(),
            meta: StepMeta::default(),
        }
    }

    fn ran(comm: &FakeCommunicator, text: &str) -> bool {
        comm.commands().iter().any(|c| c.contains(text))
    }

    #[tokio::test]
    async fn runs_the_provisioners_over_the_communicator() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let comm = Arc::new(FakeCommunicator::default());
        ctx.communicator = Some(comm.clone());
        let mut step = Provision::new(
            vec![shell("echo one")],
            Some(shell("echo cleanup")),
            "qemu",
            "x",
        );
        step.run(&mut ctx).await.unwrap();
        assert!(
            comm.commands().iter().any(|c| c.starts_with("upload ")),
            "{:?}",
            comm.commands()
        );
        assert!(ran(&comm, "chmod"), "{:?}", comm.commands());
        // A build that succeeded does not run the error-cleanup provisioner.
        let before = comm.commands().len();
        step.cleanup(&mut ctx).await.unwrap();
        assert_eq!(comm.commands().len(), before);
    }

    #[tokio::test]
    async fn a_failing_provisioner_fails_the_step_and_the_cleanup_provisioner_runs_after_a_failure()
    {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let comm = Arc::new(FakeCommunicator {
            code: 3,
            ..FakeCommunicator::default()
        });
        ctx.communicator = Some(comm.clone());
        let mut step = Provision::new(
            vec![shell("false")],
            Some(shell("echo cleanup")),
            "qemu",
            "x",
        );
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(e.contains('3'), "{e}");
        let before = comm.commands().len();
        ctx.build_failed = true;
        // The cleanup provisioner fails too here (every command exits 3): that is reported.
        let e = step.cleanup(&mut ctx).await.unwrap_err();
        assert!(crate::report::report(&e).contains("error-cleanup-provisioner failed"));
        assert!(
            comm.commands().len() > before,
            "the cleanup provisioner ran"
        );
    }

    #[tokio::test]
    async fn cancellation_stops_provisioning() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        ctx.communicator = Some(Arc::new(FakeCommunicator::default()));
        ctx.cancel.cancel();
        let e = Provision::new(vec![shell("echo")], None, "qemu", "x")
            .run(&mut ctx)
            .await
            .unwrap_err();
        assert!(matches!(e, StepError::Cancelled));
    }
}
