//! Shut the guest down: run `shutdown_command` over the communicator and wait up to
//! `shutdown_timeout` for the VM to stop; without a command, stop it hard, as Packer does.

use std::time::Duration;

use async_trait::async_trait;

use crate::communicator::ExitStatus;
use crate::config::common::ShutdownConfig;
use crate::pipeline::{BuildContext, Step, StepError};
use crate::template::duration::GoDuration;

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
                    "timed out after {} waiting for the VM to shut down (shutdown_timeout)\nhint: with communicator = \"none\" the guest must power off by itself (e.g. poweroff at the end of the answer file)",
                    GoDuration::rounded(timeout)
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
            "timed out after {} waiting for the VM to shut down (shutdown_timeout)\nhint: check that shutdown_command ({cmd:?}) powers the guest off; it may need sudo or a password",
            GoDuration::rounded(timeout)
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::communicator::testing::FakeCommunicator;
    use crate::config::weak::GoDuration;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::machine::testing::FakeMachine;

    fn config(cmd: Option<&str>) -> ShutdownConfig {
        ShutdownConfig {
            shutdown_command: cmd.map(str::to_owned),
            shutdown_timeout: GoDuration::secs(1),
        }
    }

    #[tokio::test]
    async fn runs_the_shutdown_command_and_waits_for_the_vm_to_stop() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        let comm = Arc::new(FakeCommunicator::default());
        ctx.machine = Some(m.clone());
        ctx.communicator = Some(comm.clone());
        Shutdown::new(config(Some("sudo poweroff")))
            .run(&mut ctx)
            .await
            .unwrap();
        assert_eq!(comm.commands(), ["sudo poweroff"]);
        assert_eq!(m.calls(), ["wait_exit"]);
        assert!(ctx.communicator.is_none(), "the connection is dropped");
    }

    #[tokio::test]
    async fn a_guest_that_does_not_stop_is_killed_and_the_timeout_named() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine {
            stops_by_itself: false,
            ..FakeMachine::default()
        });
        ctx.machine = Some(m.clone());
        ctx.communicator = Some(Arc::new(FakeCommunicator {
            code: 1,
            ..FakeCommunicator::default()
        }));
        let e = Shutdown::new(config(Some("halt")))
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("shutdown_timeout") && e.contains("\"halt\""),
            "{e}"
        );
        assert_eq!(m.calls(), ["wait_exit", "kill"]);
    }

    #[tokio::test]
    async fn without_a_command_the_vm_is_stopped_hard() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        ctx.machine = Some(m.clone());
        ctx.communicator = Some(Arc::new(FakeCommunicator::default()));
        Shutdown::new(config(None)).run(&mut ctx).await.unwrap();
        assert_eq!(m.calls(), ["kill"]);
    }

    #[tokio::test]
    async fn communicator_none_waits_for_the_guest_to_power_off_by_itself() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine {
            stops_by_itself: false,
            ..FakeMachine::default()
        });
        ctx.machine = Some(m.clone());
        let e = Shutdown::new(config(None))
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("must power off by itself"), "{e}");
        assert_eq!(m.calls(), ["wait_exit", "kill"]);
    }

    #[tokio::test]
    async fn no_machine_is_a_missing_state_error() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let e = Shutdown::new(config(None)).run(&mut ctx).await.unwrap_err();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "start VM",
                ..
            }
        ));
    }
}
