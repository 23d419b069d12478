//! Post-processors: what happens to an artifact after the build. [`run_chains`] runs a build's
//! post-processor chains (each chain in order on the previous artifact, honouring
//! `keep_input_artifact`); each type's core lives in its own module.

pub mod checksum;
pub mod compress;
pub mod manifest;
pub mod vagrant;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::artifact::Artifact;
use crate::config::post_processors::{
    ArtificeConfig, ChecksumConfig, CompressConfig, ManifestConfig, VagrantConfig,
};
use crate::config::provisioners::ShellLocalConfig;
use crate::template::PlannedStep;
use crate::ui::BuildUi;

/// What a post-processor gets from the build.
pub struct PostProcessContext<'a> {
    /// Output of the build.
    pub ui: &'a BuildUi,
    /// Ctrl-C.
    pub cancel: &'a CancellationToken,
    /// Relative paths are resolved against it.
    pub template_dir: &'a Path,
}

/// Why a post-processor failed.
#[derive(Debug, thiserror::Error)]
pub enum PostProcessError {
    /// A post-processor failed.
    #[error("post-processor {kind} failed: {message}")]
    Failed {
        /// Its type.
        kind: String,
        /// What went wrong.
        message: String,
    },
}

/// Run each chain on `artifact`; returns the artifacts to report: each chain's last, and the
/// builder's own unless every chain discarded it (`keep_input_artifact`, as Packer decides it:
/// manifest, checksum and shell-local keep their input; the others keep it only when asked).
pub async fn run_chains(
    chains: &[Vec<PlannedStep>],
    artifact: Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Vec<Artifact>, PostProcessError> {
    let mut out = Vec::new();
    let mut keep_builder = chains.is_empty();
    for chain in chains {
        let mut current = artifact.clone();
        for (i, step) in chain.iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Err(failed(&step.kind, "cancelled".into()));
            }
            ctx.ui
                .say(&format!("Running post-processor: {}", step.kind));
            let (next, forced_keep) = run_one(step, &current, ctx)
                .await
                .map_err(|m| failed(&step.kind, m))?;
            let keep = forced_keep || step.meta.keep_input_artifact.unwrap_or(false);
            if i == 0 {
                keep_builder |= keep;
            } else if !keep && next.files != current.files {
                remove_files(&current);
            }
            current = next;
        }
        if current != artifact {
            out.push(current);
        }
    }
    if keep_builder {
        out.insert(0, artifact);
    } else {
        remove_files(&artifact);
    }
    Ok(out)
}

fn failed(kind: &str, message: String) -> PostProcessError {
    PostProcessError::Failed {
        kind: kind.to_owned(),
        message,
    }
}

/// Delete an artifact's files (and their directory when that leaves it empty).
fn remove_files(a: &Artifact) {
    for f in &a.files {
        let _ = std::fs::remove_file(f);
        if let Some(dir) = f.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Packer's output-name placeholders.
fn render(pattern: &str, a: &Artifact, extra: &[(&str, &str)]) -> PathBuf {
    let mut values = vec![
        ("BuildName", a.build_name.as_str()),
        ("BuilderType", a.builder_type.as_str()),
        ("ArtifactId", a.id.as_str()),
    ];
    values.extend_from_slice(extra);
    PathBuf::from(crate::provisioner::env::fill(pattern, &values))
}

fn decode<T: serde::de::DeserializeOwned + serde::Serialize + Default>(
    step: &PlannedStep,
) -> Result<T, String> {
    crate::config::decode(&step.config, &step.spans).map_err(|d| d.to_string())
}

/// Run one post-processor; returns its artifact and whether it must keep its input.
async fn run_one(
    step: &PlannedStep,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<(Artifact, bool), String> {
    let a = input.clone();
    match step.kind.as_str() {
        "manifest" => {
            let c: ManifestConfig = decode(step)?;
            let path = render(&c.output, &a, &[]);
            let files = manifest::list_files(&a.files, c.strip_path).map_err(|e| e.to_string())?;
            let build = manifest::ManifestBuild {
                name: a.build_name.clone(),
                builder_type: a.builder_type.clone(),
                build_time: if c.strip_time {
                    0
                } else {
                    chrono::Utc::now().timestamp()
                },
                files,
                artifact_id: a.id.clone(),
                packer_run_uuid: run_uuid().to_owned(),
                custom_data: (!c.custom_data.is_empty()).then(|| c.custom_data.clone()),
            };
            manifest::append(&path, &build).map_err(|e| e.to_string())?;
            ctx.ui
                .message(&format!("Wrote manifest {}", path.display()));
            Ok((a, true))
        }
        "checksum" => {
            let c: ChecksumConfig = decode(step)?;
            let types = checksum::parse_types(&c.checksum_types).map_err(|e| e.to_string())?;
            let files = a.files.clone();
            let (pattern, base) = (c.output.clone(), a.clone());
            let written = tokio::task::spawn_blocking(move || {
                checksum::write_checksums(&files, &types, |alg| {
                    render(&pattern, &base, &[("ChecksumType", &alg.to_string())])
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok((
                Artifact {
                    builder_id: "packer.post-processor.checksum".into(),
                    description: format!("Created artifact from files: {}", list(&written)),
                    files: written,
                    ..a
                },
                true,
            ))
        }
        "compress" => {
            let c: CompressConfig = decode(step)?;
            let mut output = render(&c.output, &a, &[]);
            if output.extension().is_none() {
                output.set_extension("tar.gz");
            }
            ctx.ui.say(&format!("Compressing to {}", output.display()));
            let (files, out2, level) = (a.files.clone(), output.clone(), c.compression_level);
            let reporter = ctx.ui.reporter();
            tokio::task::spawn_blocking(move || {
                compress::compress(&files, &out2, level, 0, &reporter)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok((
                Artifact {
                    builder_id: "packer.post-processor.compress".into(),
                    id: output.display().to_string(),
                    description: format!("compressed artifacts in: {}", output.display()),
                    files: vec![output],
                    ..a
                },
                false,
            ))
        }
        "vagrant" => vagrant_box(&decode(step)?, a, ctx).await,
        "artifice" => {
            let c: ArtificeConfig = decode(step)?;
            let files: Vec<PathBuf> = c.files.iter().map(PathBuf::from).collect();
            if let Some(missing) = files.iter().find(|f| !f.exists()) {
                return Err(format!(
                    "artifice file {} does not exist",
                    missing.display()
                ));
            }
            Ok((
                Artifact {
                    builder_id: "packer.post-processor.artifice".into(),
                    description: format!("Created artifact from files: {}", list(&files)),
                    files,
                    ..a
                },
                false,
            ))
        }
        "shell-local" => {
            let c: ShellLocalConfig = decode(step)?;
            let none = std::collections::BTreeMap::new();
            let pctx = crate::provisioner::ProvisionContext {
                ui: ctx.ui,
                communicator: None,
                cancel: ctx.cancel,
                template_dir: ctx.template_dir,
                build_name: &a.build_name,
                build_type: &a.builder_type,
                generated: &none,
            };
            crate::provisioner::shell_local::run(&c, &pctx, &none).await?;
            Ok((a, true))
        }
        other => Err(format!(
            "post-processor type {other:?} is not supported by kiln yet"
        )),
    }
}

async fn vagrant_box(
    c: &VagrantConfig,
    a: Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<(Artifact, bool), String> {
    if a.builder_type != "qemu" {
        return Err(format!(
            "vagrant boxes from {} builds are not supported by kiln yet",
            a.builder_type
        ));
    }
    let provider = c
        .provider_override
        .clone()
        .unwrap_or_else(|| "libvirt".into());
    let arch = c.architecture.clone().unwrap_or_else(|| "amd64".into());
    let output = render(
        &c.output,
        &a,
        &[("Provider", &provider), ("Architecture", &arch)],
    );
    let template = match &c.vagrantfile_template {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("vagrantfile_template {p}: {e}"))?)
        }
        None => None,
    };
    let include: Vec<PathBuf> = c.include.iter().map(PathBuf::from).collect();
    let disks: Vec<PathBuf> = a
        .files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "efivars.fd"))
        .cloned()
        .collect();
    let accel = match a.state.get("domainType").map(String::as_str) {
        Some("kvm") => "kvm",
        _ => "tcg",
    };
    let level = c.compression_level;
    let name = a
        .state
        .get("diskName")
        .cloned()
        .unwrap_or_else(|| a.build_name.clone());
    ctx.ui.say(&format!(
        "Creating a Vagrant box for the {provider} provider: {}",
        output.display()
    ));
    let out2 = output.clone();
    let provider2 = provider.clone();
    tokio::task::spawn_blocking(move || {
        let opts = vagrant::BoxOptions {
            architecture: &arch,
            vagrantfile_template: template.as_deref(),
            include: &include,
            compression_level: level,
        };
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let contents = match provider2.as_str() {
            "libvirt" => vagrant::libvirt(&disks, accel, &opts),
            "virtualbox" => vagrant::virtualbox_from_qcow2(
                &disks,
                &vagrant::VirtualboxMachine { name: &name, cpus: 1, memory_mb: 512 },
                work.path(),
                &opts,
            ),
            other => return Err(format!("provider_override {other:?}: kiln makes libvirt and virtualbox boxes from QEMU builds")),
        }
        .map_err(|e| e.to_string())?;
        if let Some(dir) = out2.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        contents.write(&out2, level).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok((
        Artifact {
            builder_id: "mitchellh.post-processor.vagrant".into(),
            id: provider.clone(),
            description: format!("'{provider}' provider box: {}", output.display()),
            files: vec![output],
            ..a
        },
        false,
    ))
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One id per `kiln build` run, as Packer's `packer_run_uuid`.
fn run_uuid() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}
