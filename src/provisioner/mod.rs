//! Provisioners: what runs against the guest (or the host) once the builder has it up. Each
//! kind is declared once in [`PROVISIONERS`] (type name, plugin, typed config, how it runs).
//! [`run_all`] runs a build's provisioners in order, applying Packer's meta-arguments
//! (`pause_before`, `max_retries`, `timeout`, `continue_on_error`); each type lives in its own
//! module. Build-time placeholders left in the options (``{{ build `Host` }}``,
//! `{{ .HTTPIP }}`) are rendered just before a provisioner runs. The shell environment shared
//! by `shell`, `shell-local` and `ansible` is in [`env`].

pub mod ansible;
pub mod breakpoint;
pub mod env;
pub mod file;
pub mod shell;
pub mod shell_local;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::communicator::Communicator;
use crate::config::provisioners::{
    AnsibleConfig, AnsibleLocalConfig, BreakpointConfig, FileConfig, PowershellConfig, ShellConfig,
    ShellLocalConfig, SleepConfig, WindowsRestartConfig, WindowsShellConfig,
};
use crate::config::Checked;
use crate::report::report;
use crate::template::PlannedStep;
use crate::ui::BuildUi;

/// What a provisioner gets from the build.
pub struct ProvisionContext<'a> {
    /// Output of the build.
    pub ui: &'a BuildUi,
    /// The guest's communicator; `None` with `communicator = "none"`.
    pub communicator: Option<Arc<dyn Communicator>>,
    /// Ctrl-C.
    pub cancel: &'a CancellationToken,
    /// The template's directory.
    pub template_dir: &'a Path,
    /// Source name (`PACKER_BUILD_NAME`).
    pub build_name: &'a str,
    /// Source type (`PACKER_BUILDER_TYPE`).
    pub build_type: &'a str,
    /// `build.*` values: `Host`, `Port`, `User`, `Password`, `SSHPublicKey`, `PackerHTTPAddr`,
    /// `PackerHTTPIP`, `PackerHTTPPort`, `ID`… (Packer's names).
    pub generated: &'a BTreeMap<String, String>,
}

impl ProvisionContext<'_> {
    /// The communicator, or an error for provisioners that need one.
    pub fn comm(&self, kind: &'static str) -> Result<Arc<dyn Communicator>, ProvisionError> {
        self.communicator
            .clone()
            .ok_or(ProvisionError::NoCommunicator(kind))
    }
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A provisioner failed (after its retries), for the reason in `source`.
    #[error("provisioner {} failed", crate::template::label(kind))]
    Failed {
        /// Its type.
        kind: String,
        /// What went wrong.
        #[source]
        source: Box<ProvisionError>,
    },
    /// A provisioner type kiln does not run.
    #[error("provisioner type {0:?} is not supported by kiln yet")]
    Unsupported(String),
    /// The build was cancelled.
    #[error("provisioning was cancelled")]
    Cancelled,
    /// A provisioner that talks to the guest in a build with `communicator = "none"`.
    #[error(
        "the {0} provisioner needs a communicator, but this build has communicator = \"none\""
    )]
    NoCommunicator(&'static str),
    /// The provisioner's options do not decode.
    #[error("invalid {kind} provisioner options")]
    Options {
        /// Its type.
        kind: String,
        /// What is wrong with them.
        #[source]
        source: Box<crate::template::diagnostics::Diagnostic>,
    },
    /// The provisioner ran longer than its `timeout`.
    #[error("timed out after {0} (timeout)")]
    TimedOut(crate::config::weak::GoDuration),
    /// The breakpoint's wait for Enter did not finish.
    #[error("breakpoint")]
    Breakpoint(#[source] tokio::task::JoinError),
    /// The shell environment could not be built.
    #[error(transparent)]
    Env(#[from] env::EnvError),
    /// The `shell` provisioner failed.
    #[error(transparent)]
    Shell(#[from] shell::ShellError),
    /// The `file` provisioner failed.
    #[error(transparent)]
    File(#[from] file::FileError),
    /// `shell-local` failed.
    #[error(transparent)]
    ShellLocal(#[from] shell_local::ShellLocalError),
    /// `ansible` or `ansible-local` failed.
    #[error(transparent)]
    Ansible(#[from] ansible::AnsibleError),
}

/// Run `steps` in order against the guest.
pub async fn run_all(
    steps: &[PlannedStep],
    ctx: &ProvisionContext<'_>,
) -> Result<(), ProvisionError> {
    for step in steps {
        if ctx.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        if let Some(p) = &step.meta.pause_before {
            ctx.ui
                .say(&format!("Pausing {p} before the next provisioner..."));
            tokio::select! {
                () = tokio::time::sleep(p.clamped()) => {}
                () = ctx.cancel.cancelled() => return Err(ProvisionError::Cancelled),
            }
        }
        let mut attempt = 0;
        loop {
            ctx.ui.say(&format!(
                "Provisioning with {}...",
                crate::template::label(&step.kind)
            ));
            let run = run_one(step, ctx);
            let result = tokio::select! {
                r = async {
                    match &step.meta.timeout {
                        Some(t) => tokio::time::timeout(t.clamped(), run).await.unwrap_or_else(|_| {
                            Err(ProvisionError::TimedOut(*t))
                        }),
                        None => run.await,
                    }
                } => r,
                () = ctx.cancel.cancelled() => return Err(ProvisionError::Cancelled),
            };
            match result {
                Ok(()) => break,
                // Cancelled inside the provisioner (a retry loop saw Ctrl-C): not a failure.
                Err(ProvisionError::Cancelled) => return Err(ProvisionError::Cancelled),
                Err(err) if attempt < step.meta.max_retries => {
                    attempt += 1;
                    ctx.ui.error(&format!(
                        "Provisioner {} failed: {}; retrying ({attempt}/{})",
                        step.kind,
                        report(&err),
                        step.meta.max_retries
                    ));
                }
                Err(err) if step.meta.continue_on_error => {
                    ctx.ui.error(&format!(
                        "Provisioner {} failed: {}; continuing (continue_on_error)",
                        step.kind,
                        report(&err)
                    ));
                    break;
                }
                Err(err) => {
                    return Err(ProvisionError::Failed {
                        kind: step.kind.clone(),
                        source: Box::new(err),
                    })
                }
            }
        }
    }
    Ok(())
}

/// A provisioner's decoded options: how that kind runs.
#[async_trait]
pub trait Provisioner: Checked + Send + Sync {
    /// Run it against the build.
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError>;
}

/// A running provisioner.
type Running<'a> = Pin<Box<dyn Future<Output = Result<(), ProvisionError>> + Send + 'a>>;

/// One provisioner kind: its type name, the plugin Packer has it in, its typed config and, when
/// kiln runs it, how.
pub struct ProvisionerKind {
    /// The type (`provisioner "shell"`).
    pub name: &'static str,
    /// The last part of the Packer plugin's address that holds it; `None` for Packer's own.
    pub plugin: Option<&'static str>,
    /// Decode and check its options, adding problems to the list.
    pub check: crate::config::Validate,
    /// Decode the (rendered) options and run; `None` when kiln validates but cannot run it.
    run: Option<
        for<'a> fn(&'a serde_json::Value, &'a PlannedStep, &'a ProvisionContext<'a>) -> Running<'a>,
    >,
}

impl ProvisionerKind {
    const fn runs<T: Provisioner + 'static>(
        name: &'static str,
        plugin: Option<&'static str>,
    ) -> Self {
        Self {
            name,
            plugin,
            check: crate::config::validate::<T>,
            run: Some(run::<T>),
        }
    }

    const fn validates<T: Checked>(name: &'static str) -> Self {
        Self {
            name,
            plugin: None,
            check: crate::config::validate::<T>,
            run: None,
        }
    }
}

fn run<'a, T: Provisioner + 'static>(
    config: &'a serde_json::Value,
    step: &'a PlannedStep,
    ctx: &'a ProvisionContext<'a>,
) -> Running<'a> {
    Box::pin(async move {
        let c: T = crate::config::decode(config, &step.spans).map_err(|source| {
            ProvisionError::Options {
                kind: step.kind.clone(),
                source: Box::new(source),
            }
        })?;
        c.run(ctx).await
    })
}

/// Every provisioner kiln has.
pub const PROVISIONERS: &[ProvisionerKind] = &[
    ProvisionerKind::runs::<ShellConfig>("shell", None),
    ProvisionerKind::runs::<FileConfig>("file", None),
    ProvisionerKind::runs::<ShellLocalConfig>("shell-local", None),
    ProvisionerKind::runs::<BreakpointConfig>("breakpoint", None),
    ProvisionerKind::runs::<SleepConfig>("sleep", None),
    ProvisionerKind::runs::<AnsibleConfig>("ansible", Some("ansible")),
    ProvisionerKind::runs::<AnsibleLocalConfig>("ansible-local", Some("ansible")),
    ProvisionerKind::validates::<PowershellConfig>("powershell"),
    ProvisionerKind::validates::<WindowsRestartConfig>("windows-restart"),
    ProvisionerKind::validates::<WindowsShellConfig>("windows-shell"),
];

#[async_trait]
impl Provisioner for ShellConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        shell::run(self, ctx).await
    }
}

#[async_trait]
impl Provisioner for FileConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        file::run(self, ctx).await
    }
}

#[async_trait]
impl Provisioner for ShellLocalConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        shell_local::run(self, ctx, &BTreeMap::new()).await
    }
}

#[async_trait]
impl Provisioner for BreakpointConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        breakpoint::run(self, ctx).await
    }
}

#[async_trait]
impl Provisioner for SleepConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        tokio::select! {
            () = tokio::time::sleep(self.duration.clamped()) => Ok(()),
            () = ctx.cancel.cancelled() => Err(ProvisionError::Cancelled),
        }
    }
}

#[async_trait]
impl Provisioner for AnsibleConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        ansible::run(self, ctx).await
    }
}

#[async_trait]
impl Provisioner for AnsibleLocalConfig {
    async fn run(&self, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
        ansible::run_local_provisioner(self, ctx).await
    }
}

/// Run one provisioner, with the build's values rendered into its options.
async fn run_one(step: &PlannedStep, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
    let mut config = step.config.clone();
    let mut values = ctx.generated.clone();
    values.insert("build_name".into(), ctx.build_name.to_owned());
    values.insert("build_type".into(), ctx.build_type.to_owned());
    env::render_build_values(&mut config, &values);
    match PROVISIONERS
        .iter()
        .find(|k| k.name == step.kind)
        .and_then(|k| k.run)
    {
        Some(run) => run(&config, step, ctx).await,
        None => Err(ProvisionError::Unsupported(step.kind.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure is reported once, as before errors were typed: the provisioner, then each
    /// cause in turn.
    #[test]
    fn a_failure_reports_the_provisioner_then_each_cause() {
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = ProvisionError::Failed {
            kind: "shell".into(),
            source: Box::new(
                shell::ShellError::ReadScript {
                    path: "x.sh".into(),
                    source: gone,
                }
                .into(),
            ),
        };
        // As the UI shows it: redaction removes the marks around kiln's own words.
        assert_eq!(
            crate::template::redact(&report(&err), &["shell".to_owned()]),
            "provisioner shell failed: cannot read script x.sh: gone"
        );
    }
}
