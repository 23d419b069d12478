//! [`VBoxMachine`]: a registered VirtualBox VM as the shared steps see it ([`Machine`]). Its
//! state comes from polling `showvminfo --machinereadable` (VirtualBox runs the VM in its own
//! process, so there is no child to wait on): a background task keeps [`Machine::exited`]
//! current for the steps that watch it while they wait (SSH). Its keyboard types PC-XT
//! scancodes with `controlvm keyboardputscancode`, in Packer's batches ([`VBoxKeyboard`]). Both
//! go through [`Driver::vm_state`] and [`Driver::put_scancodes`], which the host driver sends
//! through VirtualBox's C API when kiln is built with it and the library loads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boot_commands::{Batching, KeySink, KeyStroke, SinkError, Transport, PCXT_BATCH};

use super::driver::{Control, Driver, VBoxError, VBoxOp};
use crate::pipeline::{Machine, MachineError};

/// Packer's pause after each `keyboardputscancode` call when neither `boot_keygroup_interval`
/// nor `PACKER_KEY_INTERVAL` is set.
pub const DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

/// How often the VM's state is asked while waiting for it to stop (Packer: 500 ms) and in the
/// background.
const POLL: Duration = Duration::from_millis(500);

/// Whether a VM in `state` still runs. As Packer, a VM that is stopping or paused has not
/// stopped yet; `starting` is counted as running too (a poll right after `startvm`).
pub(super) fn running(state: &str) -> bool {
    matches!(state, "running" | "stopping" | "paused" | "starting")
}

/// Why a VM in a stopped `state` stopped, for the user.
fn stop_reason(state: &str) -> String {
    match state {
        "poweroff" => "the VM powered off".into(),
        "aborted" => "the VM aborted (VirtualBox's VM process died; see its VBox.log)".into(),
        "gurumeditation" => "the VM crashed (guru meditation; see its VBox.log)".into(),
        other => format!("the VM is {other}"),
    }
}

/// A VM kiln registered and started.
pub struct VBoxMachine {
    driver: Arc<dyn Driver>,
    vm: String,
    started: Instant,
    /// `Some(reason)` once a poll saw the VM stopped (or kiln stopped it).
    stopped: Arc<Mutex<Option<String>>>,
    poller: tokio::task::AbortHandle,
}

impl VBoxMachine {
    /// The machine for the running VM `vm`; starts the background state poll (in the caller's
    /// runtime), which ends when the VM stops or the machine is dropped.
    pub fn new(driver: Arc<dyn Driver>, vm: &str) -> Self {
        let stopped = Arc::new(Mutex::new(None));
        let poller = tokio::spawn(watch(driver.clone(), vm.to_owned(), stopped.clone()));
        Self {
            driver,
            vm: vm.to_owned(),
            started: Instant::now(),
            stopped,
            poller: poller.abort_handle(),
        }
    }

    fn set_stopped(&self, reason: String) {
        if let Ok(mut s) = self.stopped.lock() {
            s.get_or_insert(reason);
        }
    }

    /// Ask VirtualBox once; `Some(reason)` when the VM has stopped.
    async fn poll(&self) -> Result<Option<String>, VBoxError> {
        let stopped = poll_once(self.driver.as_ref(), &self.vm).await?;
        if let Some(r) = &stopped {
            self.set_stopped(r.clone());
        }
        Ok(stopped)
    }
}

async fn poll_once(driver: &dyn Driver, vm: &str) -> Result<Option<String>, VBoxError> {
    Ok(match driver.vm_state(vm).await?.as_deref() {
        Some(s) if !running(s) => Some(stop_reason(s)),
        _ => None,
    })
}

/// The background poll behind [`Machine::exited`]; a failing poll (VirtualBox busy) is not a
/// stop, so it is only logged.
async fn watch(driver: Arc<dyn Driver>, vm: String, stopped: Arc<Mutex<Option<String>>>) {
    loop {
        tokio::time::sleep(POLL * 4).await;
        if stopped.lock().map(|s| s.is_some()).unwrap_or(true) {
            return;
        }
        match poll_once(driver.as_ref(), &vm).await {
            Ok(Some(reason)) => {
                if let Ok(mut s) = stopped.lock() {
                    s.get_or_insert(reason);
                }
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot poll the VM's state: {e}"),
        }
    }
}

impl Drop for VBoxMachine {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

#[async_trait]
impl Machine for VBoxMachine {
    fn exited(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited().is_some() {
                return true;
            }
            match self.poll().await {
                Ok(Some(_)) => return true,
                Ok(None) => {}
                Err(e) => tracing::debug!("cannot poll the VM's state: {e}"),
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn kill(&self) {
        if self.exited().is_some() {
            return;
        }
        let off = VBoxOp::ControlVm {
            vm: self.vm.clone(),
            control: Control::PowerOff,
        };
        if let Err(e) = self.driver.run(&off).await {
            // The VM may have stopped since the last poll; anything else is for the log, since
            // unregistering the VM comes next and reports its own failure.
            tracing::info!("cannot power off the VM: {e}");
        }
        // `controlvm poweroff` returns once the VM is off; a last look records how it ended.
        if !matches!(self.poll().await, Ok(Some(_))) {
            self.set_stopped("the VM was powered off".into());
        }
    }

    fn started(&self) -> Instant {
        self.started
    }

    fn default_transport(&self) -> Transport {
        // VirtualBox has one way to type (scancodes, whatever the transport names); the shared
        // step only names the transport in its message.
        Transport::Qmp
    }

    async fn keyboard(&self, _transport: Transport) -> Result<Box<dyn KeySink>, MachineError> {
        Ok(Box::new(VBoxKeyboard {
            driver: self.driver.clone(),
            vm: self.vm.clone(),
        }))
    }
}

/// Types into a VM with [`Driver::put_scancodes`] (`controlvm VM keyboardputscancode`, or the C
/// API): PC-XT set-1 bytes, at most [`PCXT_BATCH`] per call as Packer sends them.
pub struct VBoxKeyboard {
    driver: Arc<dyn Driver>,
    vm: String,
}

#[async_trait]
impl KeySink for VBoxKeyboard {
    fn name(&self) -> &'static str {
        "VirtualBox keyboard scancodes"
    }

    fn default_key_interval(&self) -> Duration {
        DEFAULT_KEY_INTERVAL
    }

    fn batching(&self) -> Batching {
        Batching::Scancodes {
            max_bytes: PCXT_BATCH,
        }
    }

    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
        let codes = boot_commands::pcxt_scancodes(strokes);
        self.driver
            .put_scancodes(&self.vm, codes)
            .await
            .map_err(SinkError::new)
    }
}

#[cfg(test)]
mod tests {
    use boot_commands::Timing;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::builder::virtualbox::driver::testing::FakeDriver;

    async fn typed(command: &str) -> Vec<String> {
        let d = Arc::new(FakeDriver::default());
        let m = VBoxMachine::new(d.clone(), "vm");
        let mut kb = m.keyboard(Transport::Qmp).await.unwrap();
        let parsed = boot_commands::parse(command).unwrap();
        let timing = Timing {
            key_interval: Duration::ZERO,
            keygroup_interval: Duration::ZERO,
        };
        boot_commands::type_actions(
            &parsed.actions,
            &boot_commands::US,
            kb.as_mut(),
            &timing,
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        d.commands()
    }

    #[tokio::test]
    async fn a_boot_command_is_typed_as_packers_scancode_calls() {
        // `A` is Shift (2a) + a (1e), `<enter>` 1c, `<up>` the e0-prefixed 48, `<leftAltOn>`
        // only the make code 38 (the key stays held).
        assert_eq!(
            typed("A<enter><up><leftAltOn>").await,
            ["controlvm vm keyboardputscancode 2a 1e 9e aa 1c 9c e0 48 e0 c8 38"]
        );
    }

    #[tokio::test]
    async fn long_commands_go_in_calls_of_at_most_25_bytes_and_waits_split_them() {
        // 13 two-byte keys: 12 fit in 24 bytes, the 13th starts a new call.
        let calls = typed("abcdefghijklm<wait1ms>x").await;
        assert_eq!(
            calls,
            [
                "controlvm vm keyboardputscancode 1e 9e 30 b0 2e ae 20 a0 12 92 21 a1 22 a2 23 a3 17 97 24 a4 25 a5 26 a6",
                "controlvm vm keyboardputscancode 32 b2",
                "controlvm vm keyboardputscancode 2d ad",
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_call_stops_typing_with_vboxmanages_error() {
        let d = Arc::new(FakeDriver::default());
        d.fail_on(
            "keyboardputscancode",
            "VBoxManage: error: Machine 'vm' is not running",
        );
        let m = VBoxMachine::new(d.clone(), "vm");
        let mut kb = m.keyboard(Transport::Qmp).await.unwrap();
        let actions = boot_commands::parse("a").unwrap().actions;
        let strokes: Vec<KeyStroke> = boot_commands::encode(&actions, &boot_commands::US)
            .unwrap()
            .concat();
        let e = kb.send(&strokes).await.unwrap_err();
        assert!(e.to_string().contains("is not running"), "{e}");
    }

    #[tokio::test]
    async fn wait_exit_polls_until_the_vm_powers_off() {
        let d = Arc::new(FakeDriver::default());
        d.set_states(&["running", "stopping", "poweroff"]);
        let m = VBoxMachine::new(d.clone(), "vm");
        assert!(m.exited().is_none());
        assert!(m.wait_exit(Duration::from_secs(30)).await);
        assert_eq!(m.exited().as_deref(), Some("the VM powered off"));
        let polls = d.calls();
        assert!(
            polls.len() >= 3 && polls.iter().all(|c| c == "showvminfo vm --machinereadable"),
            "{polls:?}"
        );
    }

    #[tokio::test]
    async fn wait_exit_gives_up_at_the_timeout_and_kill_powers_off() {
        let d = Arc::new(FakeDriver::default());
        let m = VBoxMachine::new(d.clone(), "vm");
        assert!(!m.wait_exit(Duration::from_millis(1)).await);
        assert!(m.exited().is_none());
        d.set_states(&["poweroff"]);
        m.kill().await;
        assert_eq!(d.commands(), ["controlvm vm poweroff"]);
        assert!(m.exited().is_some());
        // Stopped already: nothing more is sent.
        m.kill().await;
        assert_eq!(d.commands(), ["controlvm vm poweroff"]);
    }

    #[tokio::test]
    async fn an_aborted_vm_is_reported_as_such() {
        let d = Arc::new(FakeDriver::default());
        d.set_states(&["aborted"]);
        let m = VBoxMachine::new(d, "vm");
        assert!(m.wait_exit(Duration::from_secs(1)).await);
        assert!(m.exited().unwrap().contains("aborted"));
    }

    #[test]
    fn vm_state_is_read_from_machine_readable_output() {
        let info = "name=\"vm\"\r\nVMState=\"poweroff\"\r\nVMStateChangeTime=\"x\"";
        assert_eq!(super::super::driver::vm_state(info), Some("poweroff"));
        assert_eq!(super::super::driver::vm_state("name=\"vm\""), None);
    }
}
