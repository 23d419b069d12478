//! The `ova` post-processor, kiln's addition (Packer has none: its VirtualBox and VMware builders
//! export OVAs themselves, and nothing turns a QEMU build into one). It exports the build's qcow2
//! disks as streamOptimized VMDKs with an OVF descriptor (1.0 or 2.0) and a SHA-256 manifest,
//! packed as an `.ova` or left unpacked beside an `.ovf`; see [`crate::artifact::ova`].

use std::path::PathBuf;

use super::{list, render, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::ova::{export, export_ovf, OvaError, OvaSpec};
use crate::artifact::ovf::OvfVersion;
use crate::artifact::stream::WriteError;
use crate::artifact::Artifact;
use crate::config::post_processors::OvaConfig;

/// kiln's id for an OVA artifact.
pub const BUILDER_ID: &str = "kiln.post-processor.ova";

/// The MAC kiln gives the exported adapter (VirtualBox's OUI); fixed so exports are reproducible.
const OVA_MAC: &str = "080027C0FFEE";

/// Why the `ova` post-processor failed.
#[derive(Debug, thiserror::Error)]
pub enum OvaPpError {
    /// `ovf_version` is neither 1.0 nor 2.0.
    #[error("ovf_version {0:?}: use \"1.0\" or \"2.0\"")]
    Version(String),
    /// Nothing in the artifact to export.
    #[error("the artifact has no disk to export")]
    NoDisk,
    /// The export failed.
    #[error(transparent)]
    Export(#[from] OvaError),
}

pub(super) async fn run(
    c: &OvaConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    let version = OvfVersion::parse(&c.ovf_version)
        .ok_or_else(|| OvaPpError::Version(c.ovf_version.clone()))?;
    let disks: Vec<PathBuf> = input
        .files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "efivars.fd"))
        .cloned()
        .collect();
    if disks.is_empty() {
        return Err(OvaPpError::NoDisk.into());
    }
    let name = c.vm_name.clone().unwrap_or_else(|| {
        input
            .facts
            .disk_name
            .as_ref()
            .map(|n| n.trim_end_matches(".qcow2").to_string())
            .unwrap_or_else(|| input.build_name.clone())
    });
    let output = render(&c.output, input, &[]);
    let unpacked = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ovf"));
    ctx.ui.say(&format!(
        "Exporting OVF {} package: {}",
        c.ovf_version,
        output.display()
    ));
    // The post-processor's own options win, then what the build ran with, then 1 CPU / 512 MiB.
    let cpus = c.cpus.or(input.facts.cpus).unwrap_or(1);
    let memory = c.memory.or(input.facts.memory_mib).unwrap_or(512);
    let (out2, cancel) = (output.clone(), ctx.cancel.clone());
    let files = tokio::task::spawn_blocking(move || {
        let spec = OvaSpec {
            name: &name,
            cpus,
            memory_mb: memory,
            mac: Some(OVA_MAC.into()),
            system_type: "virtualbox-2.2",
            version,
            details: Default::default(),
        };
        let dir = out2
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let io = |source| -> OvaError {
            WriteError::Write {
                path: out2.clone(),
                source,
            }
            .into()
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        if unpacked {
            export_ovf(&spec, &disks, &out2, &cancel)
        } else {
            // The VMDKs are made next to the OVA (same disk) and go when it is packed.
            let work = tempfile::tempdir_in(dir).map_err(io)?;
            export(&spec, &disks, work.path(), &out2, &cancel)
        }
    })
    .await?
    .map_err(OvaPpError::from)?;
    Ok(Outcome {
        artifact: Artifact {
            builder_id: BUILDER_ID.into(),
            id: output.display().to_string(),
            description: format!("OVF package: {}", list(&files)),
            files,
            facts: Default::default(),
            ..input.clone()
        },
        keep_default: false,
        force_keep: false,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::builder::qemu::driver::testing::FakeDriver;
    use crate::builder::qemu::steps::{ChooseAccelerator, FinishDisk};
    use crate::config::qemu::QemuConfig;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::Step;

    /// The bug this pins: OVAs made from QEMU builds always said 1 CPU / 512 MB, because the
    /// post-processor read `cpus`/`memory` from a string map no builder wrote.
    #[tokio::test]
    async fn an_ova_from_a_qemu_build_describes_the_cpus_and_memory_the_template_set() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("output-x");
        std::fs::create_dir(&out).unwrap();
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            // What CreateDisk makes: the disk under its building name until FinishDisk.
            .arg(out.join("vm.partial"))
            .arg("16M")
            .status()
            .unwrap();
        assert!(made.success());
        let mut ctx = context(t.path());
        ctx.output_dir = Some(out.clone());
        ctx.vm_name = Some("vm".into());
        let cfg = Arc::new(QemuConfig {
            cpus: Some(3),
            memory: 1536,
            accelerator: "tcg".into(),
            skip_compaction: true,
            ..QemuConfig::default()
        });
        let driver = Arc::new(FakeDriver::default());
        ChooseAccelerator::new(cfg.clone(), driver.clone())
            .run(&mut ctx)
            .await
            .unwrap();
        FinishDisk::new(cfg, driver, "x")
            .run(&mut ctx)
            .await
            .unwrap();
        let artifact = ctx.artifact.clone().unwrap();
        let ova_path = t.path().join("x.ovf");
        let pctx = PostProcessContext {
            ui: &ctx.ui,
            cancel: &ctx.cancel,
            template_dir: t.path(),
            force: false,
        };
        let c = OvaConfig {
            output: ova_path.display().to_string(),
            ..OvaConfig::default()
        };
        run(&c, &artifact, &pctx).await.unwrap();
        let ovf = std::fs::read_to_string(&ova_path).unwrap();
        assert!(
            ovf.contains("<rasd:VirtualQuantity>3</rasd:VirtualQuantity>"),
            "{ovf}"
        );
        assert!(
            ovf.contains("<rasd:VirtualQuantity>1536</rasd:VirtualQuantity>"),
            "{ovf}"
        );
        assert!(
            ovf.contains("3 virtual CPU") && ovf.contains("1536 MB of memory"),
            "{ovf}"
        );
    }
}
