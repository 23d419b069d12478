//! `vtpm`: a software TPM for the guest. kiln starts `swtpm socket` with its state in a
//! temporary directory (TPM 2.0, or 1.2 with `use_tpm1`) before QEMU, QEMU connects to its
//! control socket, and the step's cleanup stops it. swtpm also exits by itself when QEMU
//! closes the connection (`--terminate`), so it cannot outlive the VM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::process::QemuProcess;
use crate::config::qemu::QemuConfig;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// The `swtpm` command line for a state directory and control socket.
pub fn swtpm_args(state: &Path, socket: &Path, tpm1: bool) -> Vec<String> {
    let mut a = vec![
        "socket".to_owned(),
        "--tpmstate".into(),
        format!("dir={}", state.display()),
        "--ctrl".into(),
        format!("type=unixio,path={}", socket.display()),
        "--terminate".into(),
    ];
    if !tpm1 {
        a.push("--tpm2".into());
    }
    a
}

/// Start swtpm when the template sets `vtpm`.
pub struct StartTpm {
    cfg: Arc<QemuConfig>,
    process: Option<QemuProcess>,
    dir: Option<tempfile::TempDir>,
}

impl StartTpm {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>) -> Self {
        Self {
            cfg,
            process: None,
            dir: None,
        }
    }
}

#[async_trait]
impl Step for StartTpm {
    fn name(&self) -> &'static str {
        "vtpm"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if !self.cfg.vtpm {
            return Ok(());
        }
        ctx.ui.say("Starting the software TPM (swtpm)...");
        let dir = crate::child::private_tempdir("kiln-swtpm")
            .map_err(|e| StepError::with("cannot create a temporary directory", e))?;
        let socket = dir.path().join("swtpm.sock");
        let args = swtpm_args(dir.path(), &socket, self.cfg.use_tpm1);
        tracing::info!(target: "kiln::qemu", "swtpm {}", args.join(" "));
        let p = QemuProcess::spawn_as("swtpm", "swtpm", &args).map_err(|e| {
            StepError::with(
                "cannot start swtpm for vtpm\nhint: install swtpm, or remove vtpm",
                e,
            )
        })?;
        self.dir = Some(dir);
        let ready = wait_for(&socket, &p).await;
        self.process = Some(p);
        ready?;
        ctx.tpm_socket = Some(socket);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if let Some(p) = self.process.take() {
            p.kill().await;
        }
        ctx.tpm_socket = None;
        self.dir = None;
        Ok(())
    }
}

/// swtpm creates its socket a moment after starting; fail with its stderr if it exits first.
async fn wait_for(socket: &Path, p: &QemuProcess) -> Result<(), StepError> {
    for _ in 0..100 {
        if socket.exists() {
            return Ok(());
        }
        if p.wait_exit(Duration::from_millis(50)).await {
            return Err(StepError::msg(format!(
                "swtpm stopped right after starting: {}",
                p.exited().unwrap_or_default()
            )));
        }
    }
    Err(StepError::msg(format!(
        "swtpm did not create its socket {} within 5 s",
        socket.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::testing::context;

    /// A real swtpm (Debian's package, installed by .ci/setup-host) starts, hands its socket to
    /// the context, and is stopped by the cleanup.
    #[tokio::test]
    async fn start_tpm_runs_swtpm_until_cleanup() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = StartTpm::new(Arc::new(QemuConfig {
            vtpm: true,
            ..QemuConfig::default()
        }));
        step.run(&mut ctx).await.unwrap();
        let socket = ctx.tpm_socket.clone().unwrap();
        assert!(socket.exists());
        step.cleanup(&mut ctx).await.unwrap();
        assert!(ctx.tpm_socket.is_none());
        assert!(!socket.exists(), "swtpm's directory is removed");
    }

    #[tokio::test]
    async fn no_vtpm_starts_nothing() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        StartTpm::new(Arc::new(QemuConfig::default()))
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.tpm_socket.is_none());
    }

    #[test]
    fn tpm2_unless_use_tpm1() {
        let a = swtpm_args("/s".as_ref(), "/s/sock".as_ref(), false);
        assert_eq!(
            a.join(" "),
            "socket --tpmstate dir=/s --ctrl type=unixio,path=/s/sock --terminate --tpm2"
        );
        let a = swtpm_args("/s".as_ref(), "/s/sock".as_ref(), true);
        assert!(!a.contains(&"--tpm2".to_owned()));
    }
}
