//! Type the boot command: wait out `boot_wait` (counted from the VM's start), render
//! `boot_command` (or each of `boot_steps`) with the build's template values, parse it, and
//! type it into the machine's keyboard with Packer's timing. The machine chooses how keys
//! reach the guest ([`Machine::keyboard`](crate::pipeline::Machine::keyboard)): QEMU over QMP
//! or VNC, VirtualBox as scancodes, VMware over VNC.

use async_trait::async_trait;
use boot_commands::{SerialWatch, Timing, Transport};

use crate::config::common::BootConfig;
use crate::pipeline::{BuildContext, Machine, Step, StepError};

/// Types `boot_command` / `boot_steps` into the running machine.
pub struct TypeBootCommand {
    boot: BootConfig,
    /// `KILN_BOOT_TRANSPORT`, read at the edge; `None` keeps the machine's default.
    transport: Option<Transport>,
    /// `PACKER_KEY_INTERVAL`, read at the edge.
    key_interval: Option<String>,
}

impl TypeBootCommand {
    /// The step for `boot`, with the command line's overrides.
    pub fn new(
        boot: BootConfig,
        transport: Option<Transport>,
        key_interval: Option<String>,
    ) -> Self {
        Self {
            boot,
            transport,
            key_interval,
        }
    }

    /// `(text, description)` of each group to type.
    fn groups(&self) -> Vec<(String, Option<String>)> {
        if self.boot.boot_steps.is_empty() {
            if self.boot.boot_command.is_empty() {
                return Vec::new();
            }
            return vec![(self.boot.boot_command.concat(), None)];
        }
        self.boot
            .boot_steps
            .iter()
            .map(|s| (s.first().cloned().unwrap_or_default(), s.get(1).cloned()))
            .collect()
    }
}

#[async_trait]
impl Step for TypeBootCommand {
    fn name(&self) -> &'static str {
        "type boot command"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let groups = self.groups();
        if groups.is_empty() {
            return Ok(());
        }
        let machine = ctx.require_machine()?;
        // Parse everything before waiting, so a typo fails at once, not after boot_wait.
        let values = ctx.template_values();
        let mut parsed = Vec::new();
        for (text, description) in &groups {
            let rendered = boot_commands::render(text, &values)
                .map_err(|e| StepError::with("cannot render boot_command", e))?;
            let p = boot_commands::parse(&rendered)
                .map_err(|e| StepError::with("invalid boot_command", e))?;
            for w in &p.warnings {
                ctx.ui
                    .warn(&format!("boot_command at {}: {}", w.position, w.message));
            }
            parsed.push((p.actions, description.clone()));
        }
        let transport = self
            .transport
            .unwrap_or_else(|| machine.default_transport());
        let boot_wait = self.boot.boot_wait.clamped();
        if !boot_wait.is_zero() {
            ctx.ui
                .say(&format!("Waiting {} for boot...", self.boot.boot_wait));
            let wait = boot_wait.saturating_sub(machine.started().elapsed());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            }
        }
        let mut keyboard = machine
            .keyboard(transport)
            .await
            .map_err(|e| StepError::with("cannot type the boot command", e))?;
        let timing = Timing::resolve(
            keyboard.default_key_interval(),
            self.key_interval.as_deref(),
            self.boot.boot_key_interval.as_ref().map(|d| d.clamped()),
            self.boot
                .boot_keygroup_interval
                .as_ref()
                .map(|d| d.clamped()),
        )
        .map_err(|e| StepError::with("invalid key interval", e))?;
        let mut serial = machine.serial_log().map(|log| SerialWatch::new(log, 0));
        ctx.ui.say(&format!(
            "Typing the boot command over {}...",
            keyboard.name()
        ));
        for (actions, description) in &parsed {
            if let Some(d) = description {
                ctx.ui.message(d);
            }
            boot_commands::type_actions(
                actions,
                &boot_commands::US,
                keyboard.as_mut(),
                &timing,
                serial.as_mut(),
                &ctx.cancel,
            )
            .await
            .map_err(|e| type_error(machine.as_ref(), e))?;
        }
        Ok(())
    }
}

fn type_error(machine: &dyn Machine, e: boot_commands::TypeError) -> StepError {
    if matches!(e, boot_commands::TypeError::Cancelled) {
        return StepError::Cancelled;
    }
    match machine.exited() {
        Some(reason) => StepError::msg(format!(
            "the VM stopped while the boot command was typed: {reason}"
        )),
        None => StepError::with("error typing the boot command", e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::weak::GoDuration;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::machine::testing::FakeMachine;
    use crate::pipeline::HttpInfo;

    fn boot(cmd: &[&str]) -> BootConfig {
        BootConfig {
            boot_wait: GoDuration::secs(0),
            boot_command: cmd.iter().map(|s| (*s).to_owned()).collect(),
            boot_key_interval: Some(GoDuration::secs(0)),
            ..BootConfig::default()
        }
    }

    #[tokio::test]
    async fn types_the_rendered_command_into_the_machines_keyboard() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        ctx.machine = Some(m.clone());
        ctx.http = Some(HttpInfo {
            ip: "10.0.2.2".into(),
            port: 8,
            dir: String::new(),
        });
        let mut step = TypeBootCommand::new(boot(&["a{{ .HTTPPort }}", "<enter>"]), None, None);
        step.run(&mut ctx).await.unwrap();
        assert_eq!(m.pressed(), ["a", "8", "ret"]);
        assert_eq!(m.calls(), ["keyboard Qmp"]);
    }

    #[tokio::test]
    async fn the_command_line_transport_overrides_the_machines_default() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        ctx.machine = Some(m.clone());
        let mut step = TypeBootCommand::new(boot(&["a"]), Some(Transport::Vnc), None);
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(e.contains("no VNC here"), "{e}");
        assert_eq!(m.calls(), ["keyboard Vnc"]);
    }

    #[tokio::test]
    async fn no_command_needs_no_machine() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        TypeBootCommand::new(boot(&[]), None, None)
            .run(&mut ctx)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_missing_machine_names_the_start_step() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let e = TypeBootCommand::new(boot(&["a"]), None, None)
            .run(&mut ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StepError::MissingState {
                    producer: "start VM",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_bad_command_fails_before_any_key_and_a_bad_interval_is_named() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        ctx.machine = Some(m.clone());
        let e = TypeBootCommand::new(boot(&["{{ .HTTPIP"]), None, None)
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot render boot_command"), "{e}");
        let mut b = boot(&["a"]);
        b.boot_key_interval = None;
        let e = TypeBootCommand::new(b, None, Some("fast".into()))
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("PACKER_KEY_INTERVAL"), "{e}");
        assert!(m.pressed().is_empty());
    }

    #[tokio::test]
    async fn cancellation_during_boot_wait_stops_the_step() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        ctx.machine = Some(Arc::new(FakeMachine::default()));
        let mut b = boot(&["a"]);
        b.boot_wait = GoDuration::secs(3600);
        ctx.cancel.cancel();
        let e = TypeBootCommand::new(b, None, None)
            .run(&mut ctx)
            .await
            .unwrap_err();
        assert!(matches!(e, StepError::Cancelled));
    }

    #[tokio::test]
    async fn boot_steps_are_typed_in_order() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        ctx.machine = Some(m.clone());
        let mut b = boot(&[]);
        b.boot_steps = vec![vec!["x".into(), "first".into()], vec!["<tab>".into()]];
        TypeBootCommand::new(b, None, None)
            .run(&mut ctx)
            .await
            .unwrap();
        assert_eq!(m.pressed(), ["x", "tab"]);
    }

    #[tokio::test]
    async fn a_machine_that_stopped_while_typing_is_reported_as_such() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine::default());
        *m.exited.lock().unwrap() = Some("QEMU exited with signal 9".into());
        let e = type_error(m.as_ref(), boot_commands::TypeError::NoSerial).report();
        assert!(
            e.contains("the VM stopped while the boot command was typed: QEMU exited"),
            "{e}"
        );
        ctx.machine = Some(m);
    }
}
