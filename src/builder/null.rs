//! The `null` builder: no VM, just a communicator to an existing host (`ssh_host`), so
//! provisioners can run against a machine that already exists, as with Packer's.

use super::steps::{connect::Connect, provision::Provision};
use super::SetupError;
use crate::artifact::Artifact;
use crate::config::common::CommConfig;
use crate::pipeline::{BuildContext, Step, StepError};
use crate::template::PlannedBuild;
use async_trait::async_trait;

/// Packer's id for the null builder's artifact.
pub const BUILDER_ID: &str = "fnord";

impl super::Source for CommConfig {
    /// The steps of a `null` build: only the communicator's options apply.
    fn steps(
        self: Box<Self>,
        build: &PlannedBuild,
        _run: &super::RunOptions,
    ) -> Result<Vec<Box<dyn Step>>, SetupError> {
        let comm = *self;
        Ok(vec![
            Box::new(Address(comm.clone())),
            Box::new(Connect::new(
                comm,
                None,
                "check ssh_host, ssh_port and the credentials",
            )),
            Box::new(Provision::new(
                build.provisioners.clone(),
                build.error_cleanup.clone(),
                &build.source_type,
                &build.source_name,
            )),
            Box::new(Done(build.source_name.clone())),
        ])
    }
}

/// Points the communicator at `ssh_host:ssh_port`.
struct Address(CommConfig);

#[async_trait]
impl Step for Address {
    fn name(&self) -> &'static str {
        "address"
    }
    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.0.communicator != "none" {
            let host = self.0.ssh_host.clone().ok_or_else(|| {
                StepError::msg("the null builder needs ssh_host (or communicator = \"none\")")
            })?;
            ctx.ssh_address = Some((host, self.0.ssh_port));
        }
        Ok(())
    }
}

/// The null builder's artifact: nothing.
struct Done(String);

#[async_trait]
impl Step for Done {
    fn name(&self) -> &'static str {
        "artifact"
    }
    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        ctx.artifact = Some(Artifact {
            builder_id: BUILDER_ID.into(),
            build_name: self.0.clone(),
            builder_type: "null".into(),
            id: "Null".into(),
            description: "Did not export anything. This is the null builder".into(),
            ..Artifact::default()
        });
        Ok(())
    }
}
