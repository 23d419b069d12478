//! Post-processors: what happens to an artifact after the build. [`run_chains`] runs a build's
//! post-processor chains the way Packer's core does (each chain in order on the previous artifact;
//! `keep_input_artifact` against each post-processor's own default; a failed chain does not stop
//! the others); each kind is declared once in [`POST_PROCESSORS`] (type name, plugin, typed
//! config, how it runs) and its work lives in its own module. `ova` is kiln's addition.

pub mod artifice;
pub mod checksum;
pub mod compress;
pub mod manifest;
pub mod ova;
pub mod shell_local;
pub mod vagrant;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::artifact::Artifact;
use crate::config::post_processors::{
    ArtificeConfig, ChecksumConfig, CompressConfig, ManifestConfig, OvaConfig, VagrantConfig,
};
use crate::config::provisioners::ShellLocalConfig;
use crate::config::Checked;
use crate::report::report;
use crate::template::PlannedStep;
use crate::ui::BuildUi;

/// What a post-processor gets from the build.
pub struct PostProcessContext<'a> {
    /// Output of the build.
    pub ui: &'a BuildUi,
    /// Ctrl-C.
    pub cancel: &'a CancellationToken,
    /// The template's directory (relative output paths are relative to the working directory,
    /// as in Packer).
    pub template_dir: &'a Path,
    /// `-force`: the manifest starts afresh when it was written by another run.
    pub force: bool,
}

/// Why a post-processor failed.
#[derive(Debug, thiserror::Error)]
pub enum PostProcessError {
    /// A post-processor failed, for the reason in `source`.
    #[error("post-processor {} failed", crate::template::label(kind))]
    Failed {
        /// Its type.
        kind: String,
        /// What went wrong.
        #[source]
        source: Box<PostProcessError>,
    },
    /// Several chains failed: each one's whole report, a line each.
    #[error("{}", .0.iter().map(|e| report(e)).collect::<Vec<_>>().join("\n"))]
    Several(Vec<PostProcessError>),
    /// The build was cancelled before or while the post-processor ran.
    #[error("cancelled")]
    Cancelled,
    /// A post-processor type kiln does not run.
    #[error("post-processor type {0:?} is not supported by kiln yet")]
    Unsupported(String),
    /// The post-processor's options do not decode.
    #[error(transparent)]
    Options(Box<crate::template::diagnostics::Diagnostic>),
    /// `artifice` failed.
    #[error(transparent)]
    Artifice(#[from] artifice::ArtificeError),
    /// `checksum` failed.
    #[error(transparent)]
    Checksum(#[from] checksum::ChecksumPpError),
    /// `compress` failed.
    #[error(transparent)]
    Compress(#[from] compress::CompressError),
    /// `manifest` failed.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// `ova` failed.
    #[error(transparent)]
    Ova(#[from] ova::OvaPpError),
    /// `vagrant` failed.
    #[error(transparent)]
    Vagrant(#[from] vagrant::VagrantError),
    /// `shell-local` failed.
    #[error(transparent)]
    ShellLocal(#[from] crate::provisioner::ProvisionError),
    /// A post-processor's worker thread died.
    #[error("post-processor worker")]
    Worker(#[from] tokio::task::JoinError),
}

impl PostProcessError {
    /// Whether the post-processors stopped because the build was cancelled (the build summary
    /// then says cancelled, not failed).
    pub fn is_cancelled(&self) -> bool {
        match self {
            PostProcessError::Cancelled => true,
            PostProcessError::Failed { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }
}

/// What one post-processor returns, as Packer's `PostProcess` does: the new artifact, whether the
/// input is kept when the template does not say, and whether that keep cannot be overridden.
pub(crate) struct Outcome {
    pub artifact: Artifact,
    pub keep_default: bool,
    pub force_keep: bool,
}

impl Outcome {
    /// Whether the input artifact survives, given the template's `keep_input_artifact`: the
    /// template decides, except that it cannot drop an input the post-processor must keep.
    fn keep(&self, asked: Option<bool>) -> bool {
        match asked {
            Some(false) if self.keep_default && self.force_keep => true,
            Some(asked) => asked,
            None => self.keep_default,
        }
    }
}

/// Run each chain on `artifact`; returns the artifacts to report, as Packer lists them: the
/// builder's own first unless every chain's first post-processor let it go, then for each chain
/// the intermediate artifacts that were kept and its last one.
///
/// A failing post-processor ends its chain; the other chains still run, and the error is returned
/// after them. kiln then deletes nothing more: where Packer would still destroy the builder's files
/// when no chain kept them, kiln keeps them, so a failed post-processor never costs the build.
pub async fn run_chains(
    chains: &[Vec<PlannedStep>],
    artifact: Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Vec<Artifact>, PostProcessError> {
    let mut out: Vec<Artifact> = Vec::new();
    let mut errors = Vec::new();
    let mut keep_builder = chains.is_empty();
    'chains: for chain in chains {
        let mut prior = artifact.clone();
        for (i, step) in chain.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Err(failed(&step.kind, PostProcessError::Cancelled));
            }
            match &step.name {
                // The type is kiln's own word, never a secret, even when a secret equals it.
                Some(name) if name != &step.kind => ctx.ui.say(&format!(
                    "Running post-processor: {name} (type {})",
                    crate::template::label(&step.kind)
                )),
                _ => ctx.ui.say(&format!(
                    "Running post-processor: {}",
                    crate::template::label(&step.kind)
                )),
            }
            let outcome = match run_one(step, &prior, ctx).await {
                Ok(o) => o,
                // A write stopped by Ctrl-C fails with whatever its writer saw at that moment
                // (the cancellation, or a read cut short); the build was cancelled, and that is
                // all the summary says.
                Err(_) if ctx.cancel.is_cancelled() => {
                    return Err(failed(&step.kind, PostProcessError::Cancelled))
                }
                Err(e) => {
                    errors.push(failed(&step.kind, e));
                    continue 'chains;
                }
            };
            let keep = outcome.keep(step.meta.keep_input_artifact);
            if i == 0 {
                keep_builder |= keep;
            } else if keep {
                push_new(&mut out, prior);
            } else {
                remove_files(&prior, &outcome.artifact);
            }
            prior = outcome.artifact;
        }
        if prior != artifact {
            push_new(&mut out, prior);
        }
    }
    if !errors.is_empty() {
        return Err(match errors.len() {
            1 => errors.remove(0),
            _ => PostProcessError::Several(errors),
        });
    }
    if keep_builder {
        out.insert(0, artifact);
    } else {
        let last: Vec<PathBuf> = out.iter().flat_map(|a| a.files.clone()).collect();
        remove_files(
            &artifact,
            &Artifact {
                files: last,
                ..Artifact::default()
            },
        );
    }
    Ok(out)
}

fn push_new(out: &mut Vec<Artifact>, a: Artifact) {
    if !out.contains(&a) {
        out.push(a);
    }
}

fn failed(kind: &str, source: PostProcessError) -> PostProcessError {
    PostProcessError::Failed {
        kind: kind.to_owned(),
        source: Box::new(source),
    }
}

/// Delete an artifact's files (and their directory when that leaves it empty), sparing those the
/// next artifact still lists (a checksum artifact lists the files it summed).
fn remove_files(a: &Artifact, next: &Artifact) {
    for f in a.files.iter().filter(|f| !next.files.contains(f)) {
        tracing::debug!(file = %f.display(), "deleting an input artifact's file");
        let _ = std::fs::remove_file(f);
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Packer's output-name placeholders: `BuildName`, `BuilderType`, `ArtifactId`, plus `extra`.
fn render(pattern: &str, a: &Artifact, extra: &[(&str, &str)]) -> PathBuf {
    let mut values = vec![
        ("BuildName", a.build_name.as_str()),
        ("BuilderType", a.builder_type.as_str()),
        ("ArtifactId", a.id.as_str()),
    ];
    values.extend_from_slice(extra);
    PathBuf::from(crate::provisioner::env::fill(pattern, &values))
}

/// A post-processor's decoded options: how that kind runs.
#[async_trait]
pub(crate) trait PostProcessor: Checked + Send + Sync {
    /// Run it on `input`.
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError>;
}

/// A running post-processor.
type Running<'a> = Pin<Box<dyn Future<Output = Result<Outcome, PostProcessError>> + Send + 'a>>;

/// One post-processor kind: its type name, the plugin Packer has it in, its typed config and
/// how it runs.
pub struct PostProcessorKind {
    /// The type (`post-processor "vagrant"`).
    pub name: &'static str,
    /// The last part of the Packer plugin's address that holds it; `None` for Packer's own
    /// (and kiln's own `ova`).
    pub plugin: Option<&'static str>,
    /// Decode and check its options, adding problems to the list.
    pub check: crate::config::Validate,
    run: for<'a> fn(&'a PlannedStep, &'a Artifact, &'a PostProcessContext<'a>) -> Running<'a>,
}

impl PostProcessorKind {
    const fn new<T: PostProcessor + 'static>(
        name: &'static str,
        plugin: Option<&'static str>,
    ) -> Self {
        Self {
            name,
            plugin,
            check: crate::config::validate::<T>,
            run: run::<T>,
        }
    }
}

fn run<'a, T: PostProcessor + 'static>(
    step: &'a PlannedStep,
    input: &'a Artifact,
    ctx: &'a PostProcessContext<'a>,
) -> Running<'a> {
    Box::pin(async move {
        let c: T = crate::config::decode(&step.config, &step.spans)
            .map_err(|d| PostProcessError::Options(Box::new(d)))?;
        c.run(input, ctx).await
    })
}

/// Every post-processor kiln has.
pub const POST_PROCESSORS: &[PostProcessorKind] = &[
    PostProcessorKind::new::<VagrantConfig>("vagrant", Some("vagrant")),
    PostProcessorKind::new::<ManifestConfig>("manifest", None),
    PostProcessorKind::new::<ChecksumConfig>("checksum", None),
    PostProcessorKind::new::<CompressConfig>("compress", None),
    PostProcessorKind::new::<ShellLocalConfig>("shell-local", None),
    PostProcessorKind::new::<ArtificeConfig>("artifice", None),
    PostProcessorKind::new::<OvaConfig>("ova", None),
];

#[async_trait]
impl PostProcessor for VagrantConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        vagrant::run(&self, input, ctx).await
    }
}

#[async_trait]
impl PostProcessor for ManifestConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        manifest::run(&self, input, ctx)
    }
}

#[async_trait]
impl PostProcessor for ChecksumConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        checksum::run(&self, input, ctx).await
    }
}

#[async_trait]
impl PostProcessor for CompressConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        compress::run(&self, input, ctx).await
    }
}

#[async_trait]
impl PostProcessor for ShellLocalConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        shell_local::run(self, input, ctx).await
    }
}

#[async_trait]
impl PostProcessor for ArtificeConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        artifice::run(&self, input, ctx)
    }
}

#[async_trait]
impl PostProcessor for OvaConfig {
    async fn run(
        self,
        input: &Artifact,
        ctx: &PostProcessContext<'_>,
    ) -> Result<Outcome, PostProcessError> {
        ova::run(&self, input, ctx).await
    }
}

/// Run one post-processor on `input`.
async fn run_one(
    step: &PlannedStep,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    match POST_PROCESSORS.iter().find(|k| k.name == step.kind) {
        Some(kind) => (kind.run)(step, input, ctx).await,
        None => Err(PostProcessError::Unsupported(step.kind.clone())),
    }
}

/// An artifact that is just files (artifice, checksum): no id, no state, Packer's description.
fn files_artifact(builder_id: &str, files: Vec<PathBuf>, input: &Artifact) -> Artifact {
    Artifact {
        builder_id: builder_id.into(),
        id: String::new(),
        description: format!("Created artifact from files: {}", list(&files)),
        files,
        facts: Default::default(),
        ..input.clone()
    }
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(keep_default: bool, force_keep: bool) -> Outcome {
        Outcome {
            artifact: Artifact::default(),
            keep_default,
            force_keep,
        }
    }

    /// Each failed chain shows its whole reason, not just the post-processor's name.
    #[test]
    fn several_failures_show_each_chain() {
        let err = PostProcessError::Several(vec![
            failed("a", PostProcessError::Unsupported("x".into())),
            failed("b", PostProcessError::Cancelled),
        ]);
        // As the UI shows it: redaction removes the marks around kiln's own words.
        assert_eq!(
            crate::template::redact(&report(&err), &[]),
            "post-processor a failed: post-processor type \"x\" is not supported by kiln yet\n\
             post-processor b failed: cancelled"
        );
    }

    /// Packer's table: the template's keep_input_artifact wins, except over a forced keep.
    #[test]
    fn keep_input_artifact_follows_packer() {
        // compress: keeps nothing unless asked.
        assert!(!outcome(false, false).keep(None));
        assert!(outcome(false, false).keep(Some(true)));
        // artifice: keeps by default, but the template may drop it.
        assert!(outcome(true, false).keep(None));
        assert!(!outcome(true, false).keep(Some(false)));
        // manifest, checksum, shell-local: always keep.
        assert!(outcome(true, true).keep(Some(false)));
        // vagrant: keeps only when asked; its force does not apply to a default of false.
        assert!(!outcome(false, true).keep(None));
        assert!(outcome(false, true).keep(Some(true)));
    }
}
