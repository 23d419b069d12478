//! `kiln build`: run the planned builds (in parallel up to `-parallel-builds`), each as a
//! pipeline of steps, then their post-processor chains; Ctrl-C / SIGTERM cancel every build,
//! which then cleans up (no VM, server or partial artifact left). Prints Packer's summary
//! and exits 1 when any build failed or was cancelled.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::BuildArgs;
use crate::artifact::Artifact;
use crate::builder::{RunOptions, Source};
use crate::pipeline::{self, BuildContext, StepError};
use crate::postprocessor::{self, PostProcessContext};
use crate::template::{Plan, PlannedBuild};
use crate::ui::{Ui, UiOptions};

/// Run the builds of `plan`, whose sources [`crate::kinds::prepare`] decoded (one per build, in
/// order).
/// `stale`: what [`crate::child::remove_stale_roots`] removed before the template was checked
/// (a check that fails must not leave them), reported here.
pub fn run(
    args: &BuildArgs,
    plan: Plan,
    sources: Vec<Box<dyn Source>>,
    stale: Vec<crate::child::StaleRoot>,
) -> ExitCode {
    let ui = Ui::new(UiOptions {
        machine_readable: args.machine_readable,
        timestamps: args.timestamp_ui,
        color: args.color && std::env::var_os("PACKER_NO_COLOR").is_none(),
    });
    for s in plan.sensitive_values() {
        ui.add_secret(s);
    }
    for s in stale {
        ui.say(&s.to_string());
    }
    if args.on_error != crate::pipeline::OnError::Cleanup {
        // These modes may leave the VM running after kiln exits, on purpose.
        crate::child::keep_children();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            ui.error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_all(args, plan, sources, ui));
    if LEFT_RUNNING.load(Ordering::SeqCst) {
        // Dropping the runtime would drop the tasks that own the VM processes, which stops
        // them; -on-error=abort asked to leave them running.
        std::mem::forget(runtime);
    } else {
        crate::child::remove_root();
    }
    code
}

/// Some build ended with `-on-error=abort` (or `ask` → abort) and left its VM running.
static LEFT_RUNNING: AtomicBool = AtomicBool::new(false);

/// How one build ended.
enum Outcome {
    Done(Vec<Artifact>),
    Failed(String),
    Cancelled,
}

async fn run_all(args: &BuildArgs, plan: Plan, sources: Vec<Box<dyn Source>>, ui: Ui) -> ExitCode {
    if plan.builds.is_empty() {
        ui.error("error: no builds to run (check -only/-except and the template's build blocks)");
        return ExitCode::FAILURE;
    }
    let cancel = CancellationToken::new();
    tokio::spawn(watch_signals(cancel.clone(), ui.clone()));
    let limit = if args.parallel_builds == 0 {
        plan.builds.len()
    } else {
        args.parallel_builds
    };
    let slots = Arc::new(Semaphore::new(limit));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (build, source) in plan.builds.iter().cloned().zip(sources) {
        let (ui, cancel, slots) = (ui.clone(), cancel.clone(), slots.clone());
        let args = args.clone();
        let root = plan.path_root.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let began = Instant::now();
            let outcome = run_one(&args, &build, source, &ui, cancel, root).await;
            (build.name.clone(), began.elapsed(), outcome)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => results.push(r),
            Err(e) => ui.error(&format!("a build task failed: {e}")),
        }
    }
    summarize(&ui, &results, start, cancel.is_cancelled())
}

async fn run_one(
    args: &BuildArgs,
    build: &PlannedBuild,
    source: Box<dyn Source>,
    ui: &Ui,
    cancel: CancellationToken,
    root: std::path::PathBuf,
) -> Outcome {
    let bui = ui.build(&build.name);
    let steps = match source.steps(build, &run_options(args)) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(crate::report::report(&e)),
    };
    bui.machine(
        "ui",
        &[
            "say",
            &format!("{} output will be in this color.", build.name),
        ],
    );
    let mut ctx = BuildContext::new(&build.name, bui.clone(), cancel.clone(), root.clone());
    ctx.debug = args.debug;
    ctx.on_error = args.on_error;
    let result = pipeline::run(steps, &mut ctx).await;
    if ctx.left_running {
        LEFT_RUNNING.store(true, Ordering::SeqCst);
    }
    match result {
        Ok(()) => {}
        Err(StepError::Cancelled) => return Outcome::Cancelled,
        Err(e) => return Outcome::Failed(e.report()),
    }
    let Some(artifact) = ctx.artifact.take() else {
        return Outcome::Done(Vec::new());
    };
    let pctx = PostProcessContext {
        ui: &bui,
        cancel: &cancel,
        template_dir: &root,
        force: args.force,
    };
    match postprocessor::run_chains(&build.post_processors, artifact, &pctx).await {
        Ok(a) => Outcome::Done(a),
        Err(e) if e.is_cancelled() => Outcome::Cancelled,
        Err(e) => Outcome::Failed(crate::report::report(&e)),
    }
}

/// What the builders take from the command line and its environment (read here, at the edge).
fn run_options(args: &BuildArgs) -> RunOptions {
    let cwd = std::env::current_dir().unwrap_or_default();
    RunOptions {
        layers: args.cache.then(|| crate::layers::LayerSettings {
            store: crate::layers::store::LayerStore::new(
                crate::download::Cache::from_env(&cwd).dir().join("layers"),
            ),
            template: args.template.template.display().to_string(),
            rebuild_from: args.rebuild_from.clone(),
            // Relative paths in options are relative to the working directory, as in Packer.
            base: cwd.clone(),
        }),
        force: args.force,
        boot_transport: match std::env::var("KILN_BOOT_TRANSPORT").as_deref() {
            Ok("vnc") => Some(boot_commands::Transport::Vnc),
            Ok("qmp") => Some(boot_commands::Transport::Qmp),
            _ => None,
        },
        key_interval: std::env::var("PACKER_KEY_INTERVAL").ok(),
    }
}

/// First SIGINT/SIGTERM cancels every build (they clean up); a second one is left to the
/// default action only after cleanup had its chance, so kiln never leaves QEMU behind.
async fn watch_signals(cancel: CancellationToken, ui: Ui) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if !cancel.is_cancelled() {
            ui.error("Interrupt received. Cancelling builds and cleaning up...");
            cancel.cancel();
        } else {
            ui.error(
                "Still cleaning up; please wait (kiln stops every VM it started before exiting).",
            );
        }
    }
}

fn summarize(
    ui: &Ui,
    results: &[(String, std::time::Duration, Outcome)],
    start: Instant,
    interrupted: bool,
) -> ExitCode {
    let mut failed = false;
    for (name, took, outcome) in results {
        match outcome {
            Outcome::Failed(m) => {
                failed = true;
                ui.error(&format!(
                    "Build '{name}' errored after {}: {m}",
                    human(*took)
                ));
                ui.machine(name, "error", &[m]);
            }
            Outcome::Cancelled => {
                failed = true;
                ui.error(&format!(
                    "Build '{name}' was cancelled after {}",
                    human(*took)
                ));
                ui.machine(name, "error", &["build was cancelled"]);
            }
            Outcome::Done(_) => ui.say(&format!("Build '{name}' finished after {}.", human(*took))),
        }
    }
    ui.say(&format!(
        "\n==> Wait completed after {}",
        human(start.elapsed())
    ));
    if interrupted {
        ui.say("Cleanly cancelled builds after being interrupted.");
        return ExitCode::FAILURE;
    }
    if failed {
        ui.error("\n==> Some builds didn't complete successfully and had errors:");
        for (name, _, outcome) in results {
            match outcome {
                // The whole report (console tail and all) was shown above; once is enough.
                Outcome::Failed(m) => ui.error(&format!(
                    "--> {name}: {}",
                    m.lines().next().unwrap_or_default()
                )),
                Outcome::Cancelled => ui.error(&format!("--> {name}: build was cancelled")),
                Outcome::Done(_) => {}
            }
        }
    }
    let done: Vec<_> = results
        .iter()
        .filter_map(|(n, _, o)| match o {
            Outcome::Done(a) if !a.is_empty() => Some((n, a)),
            _ => None,
        })
        .collect();
    if !done.is_empty() {
        ui.say("\n==> Builds finished. The artifacts of successful builds are:");
        for (name, artifacts) in done {
            ui.machine(name, "artifact-count", &[&artifacts.len().to_string()]);
            for (i, a) in artifacts.iter().enumerate() {
                ui.say(&format!("--> {name}: {}", a.description));
                let i = i.to_string();
                ui.machine(name, "artifact", &[&i, "builder-id", &a.builder_id]);
                ui.machine(name, "artifact", &[&i, "id", &a.id]);
                ui.machine(name, "artifact", &[&i, "string", &a.description]);
                ui.machine(
                    name,
                    "artifact",
                    &[&i, "files-count", &a.files.len().to_string()],
                );
                for (j, f) in a.files.iter().enumerate() {
                    ui.machine(
                        name,
                        "artifact",
                        &[&i, "file", &j.to_string(), &f.display().to_string()],
                    );
                }
                ui.machine(name, "artifact", &[&i, "end"]);
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `1 minute 2 seconds`, as Packer prints durations.
fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (m, s) = (s / 60, s % 60);
    let unit = |n: u64, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match m {
        0 if s == 0 => format!("{} milliseconds", d.as_millis()),
        0 => unit(s, "second"),
        _ => format!("{} {}", unit(m, "minute"), unit(s, "second")),
    }
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_like_packer() {
        assert_eq!(human(Duration::from_secs(62)), "1 minute 2 seconds");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_millis(5)), "5 milliseconds");
    }
}
