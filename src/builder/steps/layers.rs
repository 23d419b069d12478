//! The layer cache's own steps ([`crate::layers`]): [`Announce`] says at the start what the
//! cache decided (the layer the build starts from, or why it is not used), [`SaveLayer`]
//! saves the layer after the install once the communicator works. The layers after each
//! provisioner are saved by the provision step.

use std::sync::Arc;

use async_trait::async_trait;

use crate::layers::LayerPlan;
use crate::pipeline::{BuildContext, Step, StepError};

/// Says what the layer cache does for this build.
pub struct Announce {
    message: String,
}

impl Announce {
    /// The step for a build using `plan`.
    pub fn plan(plan: &LayerPlan) -> Self {
        Self {
            message: plan.describe(),
        }
    }

    /// The step for a build the cache cannot serve, and why.
    pub fn unused(why: &str) -> Self {
        Self {
            message: format!("The layer cache is not used for this build: {why}"),
        }
    }
}

#[async_trait]
impl Step for Announce {
    fn name(&self) -> &'static str {
        "layer cache"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        ctx.ui.say(&self.message);
        Ok(())
    }
}

/// Saves the layer after the install.
pub struct SaveLayer {
    plan: Arc<LayerPlan>,
}

impl SaveLayer {
    /// The step saving `plan`'s install layer.
    pub fn install(plan: Arc<LayerPlan>) -> Self {
        Self { plan }
    }
}

#[async_trait]
impl Step for SaveLayer {
    fn name(&self) -> &'static str {
        "save layer"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        self.plan.save(0, ctx).await;
        Ok(())
    }
}
