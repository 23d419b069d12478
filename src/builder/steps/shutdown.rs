//! Shut the guest down: run `shutdown_command` over the communicator and wait up to
//! `shutdown_timeout` for the VM to stop; without a command, stop it hard, as Packer does.

use std::time::Duration;

use async_trait::async_trait;

use crate::communicator::ExitStatus;
use crate::config::common::ShutdownConfig;
use crate::pipeline::{BuildContext, Step, StepError};

/// Stops the VM at the end of a successful build.
pub struct Shutdown {
    config: ShutdownConfig,
}

impl Shutdown {
    /// A step stopping the build's machine as `config` says.
    pub fn new(config: ShutdownConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Step for Shutdown {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let timeout = self.config.shutdown_timeout.clamped();
        let machine = ctx.require_machine()?;
        let (Some(cmd), Some(comm)) = (&self.config.shutdown_command, ctx.communicator.clone())
        else {
            if ctx.communicator.is_none() {
                // communicator = "none": the guest is expected to power itself off.
                ctx.ui.say("Waiting for the VM to shut down by itself...");
                if machine.wait_exit(timeout).await {
                    return Ok(());
                }
                machine.kill().await;
                return Err(StepError::msg(format!(
                    "timed out after {timeout:?} waiting for the VM to shut down (shutdown_timeout)\nhint: with communicator = \"none\" the guest must power off by itself (e.g. poweroff at the end of the answer file)"
                )));
            }
            ctx.ui.say("No shutdown command: stopping the VM");
            machine.kill().await;
            return Ok(());
        };
        ctx.ui.say("Gracefully halting virtual machine...");
        let mut out = ctx.ui.output();
        // The guest may drop the connection as it goes down; that is what we want.
        let status = tokio::time::timeout(Duration::from_secs(60), comm.exec(cmd, &mut out)).await;
        drop(out);
        match status {
            Ok(Ok(ExitStatus::Code(c))) if c != 0 => {
                ctx.ui.warn(&format!(
                    "shutdown_command exited with code {c}; waiting for the VM to stop anyway"
                ));
            }
            Ok(Err(e)) => tracing::debug!("shutdown command: {e}"),
            _ => {}
        }
        ctx.communicator = None;
        if machine.wait_exit(timeout).await {
            return Ok(());
        }
        machine.kill().await;
        Err(StepError::msg(format!(
            "timed out after {timeout:?} waiting for the VM to shut down (shutdown_timeout)\nhint: check that shutdown_command ({cmd:?}) powers the guest off; it may need sudo or a password"
        )))
    }
}
