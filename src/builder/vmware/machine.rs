//! [`VmwareMachine`]: a `.vmx` started with `vmrun` as the shared steps see it ([`Machine`]).
//! VMware runs the VM in its own process, so its state comes from polling `vmrun list` (the
//! VM runs while its `.vmx` is listed), in the background for [`Machine::exited`] and on
//! demand while waiting for it to stop. `kill` is `vmrun stop <vmx> hard`. The keyboard is
//! VMware's VNC server (`RemoteDisplay.vnc.*` in the `.vmx`), typed into with the shared VNC
//! client, as Packer types into VMware.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use boot_commands::{KeySink, Transport, VncKeyboard};

use super::driver::{running_vms, Driver, StopMode, VmwareError, VmwareOp};
use crate::pipeline::context::VncEndpoint;
use crate::pipeline::{Machine, MachineError};

/// How often `vmrun list` is asked while waiting for the VM to stop.
const POLL: Duration = Duration::from_millis(500);

/// A VM kiln started with `vmrun`.
pub struct VmwareMachine {
    driver: Arc<dyn Driver>,
    vmx: PathBuf,
    vnc: Option<VncEndpoint>,
    started: Instant,
    stopped: Arc<Mutex<Option<String>>>,
    poller: tokio::task::AbortHandle,
}

/// `Some(reason)` when `vmx` is not among the running VMs.
async fn poll_once(driver: &dyn Driver, vmx: &PathBuf) -> Result<Option<String>, VmwareError> {
    let list = driver.run(&VmwareOp::List).await?;
    Ok((!running_vms(&list).iter().any(|p| p == vmx)).then(|| "the VM powered off".to_owned()))
}

/// The background poll behind [`Machine::exited`]; a failed poll is not a stop.
async fn watch(driver: Arc<dyn Driver>, vmx: PathBuf, stopped: Arc<Mutex<Option<String>>>) {
    loop {
        tokio::time::sleep(POLL * 4).await;
        if stopped.lock().map(|s| s.is_some()).unwrap_or(true) {
            return;
        }
        match poll_once(driver.as_ref(), &vmx).await {
            Ok(Some(reason)) => {
                if let Ok(mut s) = stopped.lock() {
                    s.get_or_insert(reason);
                }
                return;
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot list the running VMs: {e}"),
        }
    }
}

impl VmwareMachine {
    /// The machine for the started `vmx`, typed into over `vnc`; starts the background poll.
    pub fn new(driver: Arc<dyn Driver>, vmx: PathBuf, vnc: Option<VncEndpoint>) -> Self {
        let stopped = Arc::new(Mutex::new(None));
        let poller = tokio::spawn(watch(driver.clone(), vmx.clone(), stopped.clone()));
        Self {
            driver,
            vmx,
            vnc,
            started: Instant::now(),
            stopped,
            poller: poller.abort_handle(),
        }
    }

    fn set_stopped(&self, reason: &str) {
        if let Ok(mut s) = self.stopped.lock() {
            s.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl Drop for VmwareMachine {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

#[async_trait]
impl Machine for VmwareMachine {
    fn exited(&self) -> Option<String> {
        self.stopped.lock().ok().and_then(|s| s.clone())
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited().is_some() {
                return true;
            }
            match poll_once(self.driver.as_ref(), &self.vmx).await {
                Ok(Some(reason)) => {
                    self.set_stopped(&reason);
                    return true;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!("cannot list the running VMs: {e}"),
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
        let stop = VmwareOp::Stop {
            vmx: self.vmx.clone(),
            mode: StopMode::Hard,
        };
        if let Err(e) = self.driver.run(&stop).await {
            // As Packer: a failed stop of a VM that is no longer listed is no failure.
            if !matches!(
                poll_once(self.driver.as_ref(), &self.vmx).await,
                Ok(Some(_))
            ) {
                tracing::warn!("cannot stop the VM: {e}");
                return;
            }
        }
        self.set_stopped("the VM was stopped (vmrun stop hard)");
    }

    fn started(&self) -> Instant {
        self.started
    }

    fn default_transport(&self) -> Transport {
        Transport::Vnc
    }

    async fn keyboard(&self, transport: Transport) -> Result<Box<dyn KeySink>, MachineError> {
        if transport != Transport::Vnc {
            return Err(MachineError::Unsupported(
                "VMware types the boot command over VNC only".into(),
            ));
        }
        let vnc = self.vnc.as_ref().ok_or_else(|| {
            MachineError::Unsupported("typing needs VMware's VNC server, which is off".into())
        })?;
        let kb = VncKeyboard::connect((vnc.host.as_str(), vnc.port), vnc.password.as_deref())
            .await
            .map_err(|e| MachineError::Control {
                what: format!(
                    "cannot connect to VMware's VNC server on {}:{}",
                    vnc.host, vnc.port
                ),
                source: Box::new(e),
            })?;
        Ok(Box::new(kb))
    }
}

#[cfg(test)]
mod tests {
    use super::super::driver::testing::FakeDriver;
    use super::*;

    #[tokio::test]
    async fn the_vm_runs_while_vmrun_lists_it_and_kill_stops_it_hard() {
        let d = Arc::new(FakeDriver::default());
        *d.running.lock().unwrap() = true;
        let m = VmwareMachine::new(d.clone(), "/out/vm.vmx".into(), None);
        assert!(!m.wait_exit(Duration::from_millis(1)).await);
        assert!(m.exited().is_none());
        m.kill().await;
        assert!(m.exited().is_some());
        let calls = d.calls();
        assert_eq!(calls.last().unwrap(), "vmrun -T ws stop /out/vm.vmx hard");
        // Stopped already: nothing more is sent.
        m.kill().await;
        assert_eq!(d.calls().len(), calls.len());
    }

    #[tokio::test]
    async fn a_vm_that_left_the_list_has_stopped() {
        let d = Arc::new(FakeDriver::default());
        let m = VmwareMachine::new(d.clone(), "/out/vm.vmx".into(), None);
        assert!(m.wait_exit(Duration::from_secs(5)).await);
        assert_eq!(m.exited().as_deref(), Some("the VM powered off"));
        assert_eq!(d.calls(), ["vmrun -T ws list"]);
    }

    #[tokio::test]
    async fn typing_needs_vnc() {
        let d = Arc::new(FakeDriver::default());
        let m = VmwareMachine::new(d, "/out/vm.vmx".into(), None);
        assert!(m.keyboard(Transport::Qmp).await.is_err());
        assert!(m.keyboard(Transport::Vnc).await.is_err());
    }
}
