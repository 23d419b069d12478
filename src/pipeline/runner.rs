//! Runs a build's steps in order and cleans up in reverse. Cancellation (Ctrl-C) interrupts the
//! running step at its next await; cleanup still runs for it, so nothing it started is left.
//! A machine's fault (a guest paused on a full host disk) interrupts the running step the same
//! way, as its failure: whatever the step waits for (SSH, a provisioner's command, shutdown)
//! would otherwise only end with its timeout.

use std::io::{BufRead, IsTerminal, Write};

use super::{BuildContext, OnError, Step, StepError};

/// Run `steps`; on success, failure or cancellation, clean up each started step in reverse
/// order — except with `-on-error=abort` after a failure, which leaves everything in place.
pub async fn run(steps: Vec<Box<dyn Step>>, ctx: &mut BuildContext) -> Result<(), StepError> {
    let mut started: Vec<Box<dyn Step>> = Vec::with_capacity(steps.len());
    let mut result = Ok(());
    for mut step in steps {
        if ctx.cancel.is_cancelled() {
            result = Err(StepError::Cancelled);
            break;
        }
        if ctx.debug && !pause(ctx, step.name()) {
            result = Err(StepError::Cancelled);
            break;
        }
        tracing::debug!(build = %ctx.name, step = step.name(), "running step");
        let began = std::time::Instant::now();
        let cancel = ctx.cancel.clone();
        let r = loop {
            let machine = ctx.machine.clone();
            let fault = async move {
                match machine {
                    Some(m) => m.fault().await,
                    None => std::future::pending().await,
                }
            };
            let r = tokio::select! {
                r = step.run(ctx) => r,
                () = cancel.cancelled() => Err(StepError::Cancelled),
                f = fault => Err(StepError::msg(f)),
            };
            match r {
                Err(ref e) if e.is_failure() && ctx.on_error == OnError::Ask => {
                    match ask(ctx, &e.report()) {
                        Choice::Retry => continue,
                        Choice::Abort => {
                            started.push(step);
                            return abort(ctx, r);
                        }
                        Choice::Cleanup => break r,
                    }
                }
                r => break r,
            }
        };
        tracing::debug!(
            build = %ctx.name,
            step = step.name(),
            took = ?began.elapsed(),
            outcome = match &r {
                Ok(()) => "done",
                Err(StepError::Cancelled) => "cancelled",
                Err(_) => "failed",
            },
            "step ended"
        );
        started.push(step);
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    ctx.build_failed = result.as_ref().is_err_and(StepError::is_failure);
    if ctx.build_failed {
        match ctx.on_error {
            OnError::Abort => return abort(ctx, result),
            // Packer's run-cleanup-provisioner: abort, but let the provision step run the
            // error-cleanup-provisioner first.
            OnError::RunCleanupProvisioner => {
                for step in started.iter_mut().rev().filter(|s| s.name() == "provision") {
                    clean(step.as_mut(), ctx).await;
                }
                return abort(ctx, result);
            }
            OnError::Cleanup | OnError::Ask => {}
        }
    }
    for step in started.iter_mut().rev() {
        clean(step.as_mut(), ctx).await;
    }
    result
}

/// Clean up one step; a failure is shown and the caller goes on with the next.
async fn clean(step: &mut dyn Step, ctx: &mut BuildContext) {
    tracing::debug!(build = %ctx.name, step = step.name(), "cleaning up");
    if let Err(e) = step.cleanup(ctx).await {
        ctx.ui.error(&format!(
            "cleanup of step '{}' failed: {}",
            step.name(),
            crate::report::report(&e)
        ));
    }
}

fn abort(ctx: &mut BuildContext, result: Result<(), StepError>) -> Result<(), StepError> {
    ctx.left_running = true;
    let mut how =
        String::from("Aborting without cleanup: leaving everything in place for inspection");
    if let Some((host, port)) = &ctx.ssh_address {
        how.push_str(&format!("; the guest's SSH server is at {host}:{port}"));
        if let Some(user) = ctx.generated.get("User").filter(|u| !u.is_empty()) {
            how.push_str(&format!(" (ssh -p {port} {user}@{host})"));
        }
    }
    how.push_str("; stop the VM and delete the output directory yourself when done");
    ctx.ui.say(&how);
    result
}

enum Choice {
    Cleanup,
    Abort,
    Retry,
}

/// `-on-error=ask`: Packer's prompt, answered on standard input (a terminal or a pipe);
/// when stdin is closed, clean up.
fn ask(ctx: &BuildContext, message: &str) -> Choice {
    ctx.ui.error(message);
    ctx.ui
        .say("[c] Clean up and exit, [a] abort without cleanup, or [r] retry step (build may fail even if retry succeeds)?");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    loop {
        line.clear();
        if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
            ctx.ui
                .say("-on-error=ask: standard input is closed; cleaning up");
            return Choice::Cleanup;
        }
        match line.trim() {
            "c" | "C" => return Choice::Cleanup,
            "a" | "A" => return Choice::Abort,
            "r" | "R" => return Choice::Retry,
            _ => ctx.ui.say("Please answer c, a or r"),
        }
    }
}

/// `-debug`: wait for Enter before a step. False when stdin closed.
fn pause(ctx: &BuildContext, step: &str) -> bool {
    ctx.ui.say(&format!(
        "Pausing before step '{step}'. Press enter to continue."
    ));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 || !std::io::stdin().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::{Ui, UiOptions};
    use async_trait::async_trait;
    use std::sync::{Arc, Mutex};
    use tokio_util::sync::CancellationToken;

    struct Rec {
        name: &'static str,
        log: Arc<Mutex<Vec<String>>>,
        fail: bool,
        hang: bool,
        cleanup_fails: bool,
    }

    #[async_trait]
    impl Step for Rec {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn run(&mut self, _ctx: &mut BuildContext) -> Result<(), StepError> {
            self.log.lock().unwrap().push(format!("run {}", self.name));
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail {
                return Err(StepError::msg("boom"));
            }
            Ok(())
        }
        async fn cleanup(
            &mut self,
            _ctx: &mut BuildContext,
        ) -> Result<(), super::super::CleanupError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("cleanup {}", self.name));
            if self.cleanup_fails {
                return Err(super::super::CleanupError::msg("cannot remove x"));
            }
            Ok(())
        }
    }

    fn steps(
        log: &Arc<Mutex<Vec<String>>>,
        spec: &[(&'static str, bool, bool)],
    ) -> Vec<Box<dyn Step>> {
        spec.iter()
            .map(|&(name, fail, hang)| {
                Box::new(Rec {
                    name,
                    log: log.clone(),
                    fail,
                    hang,
                    cleanup_fails: false,
                }) as Box<dyn Step>
            })
            .collect()
    }

    fn ctx(cancel: CancellationToken) -> BuildContext {
        let ui = Ui::new(UiOptions::default());
        BuildContext::new("null.test", ui.build("null.test"), cancel, ".".into())
    }

    #[tokio::test]
    async fn failure_cleans_up_started_steps_in_reverse() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut c = ctx(CancellationToken::new());
        let r = run(
            steps(
                &log,
                &[("a", false, false), ("b", true, false), ("c", false, false)],
            ),
            &mut c,
        )
        .await;
        assert!(matches!(r, Err(StepError::Failed { ref context, .. }) if context == "boom"));
        assert_eq!(
            *log.lock().unwrap(),
            ["run a", "run b", "cleanup b", "cleanup a"]
        );
    }

    #[tokio::test]
    async fn a_failing_cleanup_is_reported_and_the_others_still_run() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut c = ctx(CancellationToken::new());
        let mut s = steps(&log, &[("a", false, false), ("b", false, false)]);
        s.push(Box::new(Rec {
            name: "c",
            log: log.clone(),
            fail: true,
            hang: false,
            cleanup_fails: true,
        }));
        let r = run(s, &mut c).await;
        assert!(r.is_err());
        assert_eq!(
            *log.lock().unwrap(),
            [
                "run a",
                "run b",
                "run c",
                "cleanup c",
                "cleanup b",
                "cleanup a"
            ]
        );
    }

    #[tokio::test]
    async fn abort_leaves_everything() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut c = ctx(CancellationToken::new());
        c.on_error = OnError::Abort;
        let r = run(
            steps(&log, &[("a", false, false), ("b", true, false)]),
            &mut c,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(*log.lock().unwrap(), ["run a", "run b"]);
    }

    #[tokio::test]
    async fn run_cleanup_provisioner_cleans_up_only_the_provision_step() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut c = ctx(CancellationToken::new());
        c.on_error = OnError::RunCleanupProvisioner;
        let r = run(
            steps(
                &log,
                &[
                    ("a", false, false),
                    ("provision", false, false),
                    ("b", true, false),
                ],
            ),
            &mut c,
        )
        .await;
        assert!(r.is_err() && c.build_failed);
        assert_eq!(
            *log.lock().unwrap(),
            ["run a", "run provision", "run b", "cleanup provision"]
        );
    }

    #[tokio::test]
    async fn a_machine_fault_fails_a_hanging_step_at_once_and_cleans_up() {
        use crate::pipeline::machine::testing::FakeMachine;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut c = ctx(CancellationToken::new());
        let m = Arc::new(FakeMachine::default());
        c.machine = Some(m.clone());
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            m.fault
                .send_replace(Some("the host disk is full (/o/vm)".into()));
        });
        let r = run(
            steps(
                &log,
                &[("a", false, false), ("b", false, true), ("c", false, false)],
            ),
            &mut c,
        )
        .await;
        t.await.unwrap();
        let e = r.unwrap_err();
        assert!(e.is_failure());
        assert_eq!(e.report(), "the host disk is full (/o/vm)");
        assert_eq!(
            *log.lock().unwrap(),
            ["run a", "run b", "cleanup b", "cleanup a"]
        );
    }

    #[tokio::test]
    async fn cancellation_interrupts_a_hanging_step_and_cleans_up() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let mut c = ctx(cancel.clone());
        c.on_error = OnError::Abort; // cancellation always cleans up, even with abort
        let t = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let r = run(
            steps(
                &log,
                &[("a", false, false), ("b", false, true), ("c", false, false)],
            ),
            &mut c,
        )
        .await;
        t.await.unwrap();
        assert!(matches!(r, Err(StepError::Cancelled)));
        assert_eq!(
            *log.lock().unwrap(),
            ["run a", "run b", "cleanup b", "cleanup a"]
        );
    }
}
