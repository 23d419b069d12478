//! Make the `cd_files`/`cd_content` ISO (label `cd_label`, Packer's default `packer`): with
//! xorriso when installed, else with kiln's own writer ([`crate::artifact::iso`]). The builder
//! attaches `ctx.cd_path` as a second CD drive; the image lives in a temporary directory that
//! cleanup removes.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::config::common::CdConfig;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Sets `ctx.cd_path` when the template asks for a CD.
pub struct CdFiles {
    cd: CdConfig,
    dir: Option<tempfile::TempDir>,
}

impl CdFiles {
    /// The step for these options.
    pub fn new(cd: CdConfig) -> Self {
        Self { cd, dir: None }
    }
}

#[async_trait]
impl Step for CdFiles {
    fn name(&self) -> &'static str {
        "cd files"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cd = &self.cd;
        if cd.cd_files.is_empty() && cd.cd_content.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating CD disk...");
        let dir = crate::child::private_tempdir("kiln-cd")
            .map_err(|e| StepError::with("cannot create a temporary directory", e))?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).map_err(|e| StepError::with("cannot create the CD root", e))?;
        let iso = dir.path().join("cd.iso");
        self.dir = Some(dir);
        for pattern in &cd.cd_files {
            // Relative to the working directory, as in Packer (not to the template).
            let paths: Vec<PathBuf> = glob::glob(pattern)
                .map_err(|e| StepError::with(format!("cd_files pattern {pattern:?}"), e))?
                .filter_map(Result::ok)
                .collect();
            if paths.is_empty() {
                return Err(StepError::msg(format!(
                    "cd_files entry {pattern:?} matches no file"
                )));
            }
            for p in paths {
                copy_into(&p, &root)?;
            }
        }
        for (name, content) in &cd.cd_content {
            let dest = root.join(name.trim_start_matches('/'));
            if !dest.starts_with(&root) || name.split('/').any(|c| c == "..") {
                return Err(StepError::msg(format!(
                    "cd_content path {name:?} leaves the CD's root"
                )));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StepError::with("cannot create a CD directory", e))?;
            }
            std::fs::write(&dest, content)
                .map_err(|e| StepError::with(format!("cannot write CD file {name}"), e))?;
        }
        let label = cd.cd_label.clone().unwrap_or_else(|| "packer".into());
        let writer = crate::artifact::iso::create(&root, &label, &iso)
            .await
            .map_err(|e| StepError::with("cannot create the CD", e))?;
        if writer == crate::artifact::iso::Writer::Builtin {
            ctx.ui
                .message("xorriso is not installed: the CD was written by kiln's ISO writer");
        }
        ctx.cd_path = Some(iso);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        ctx.cd_path = None;
        match self.dir.take() {
            Some(d) => {
                let path = d.path().to_owned();
                d.close()
                    .map_err(|e| CleanupError::new(format!("cannot remove {}", path.display()), e))
            }
            None => Ok(()),
        }
    }
}

fn copy_into(src: &Path, root: &Path) -> Result<(), StepError> {
    let name = src.file_name().unwrap_or_default();
    let dest = root.join(name);
    if src.is_dir() {
        std::fs::create_dir_all(&dest)
            .map_err(|e| StepError::with("cannot copy a CD directory", e))?;
        let entries = std::fs::read_dir(src)
            .map_err(|e| StepError::with(format!("cannot read {}", src.display()), e))?;
        for e in entries.flatten() {
            copy_into(&e.path(), &dest)?;
        }
        Ok(())
    } else {
        std::fs::copy(src, &dest)
            .map(|_| ())
            .map_err(|e| StepError::with(format!("cannot copy {} to the CD", src.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::context::testing::context;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn no_cd_options_make_no_cd() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = CdFiles::new(CdConfig::default());
        step.run(&mut ctx).await.unwrap();
        assert!(ctx.cd_path.is_none());
    }

    #[tokio::test]
    async fn files_and_content_land_on_the_cd_and_cleanup_removes_it() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("meta-data"), b"instance-id: x\n").unwrap();
        let mut ctx = context(t.path());
        let mut step = CdFiles::new(CdConfig {
            cd_files: vec![t.path().join("meta-data").display().to_string()],
            cd_content: BTreeMap::from([("user-data".into(), "#cloud-config\n".into())]),
            cd_label: Some("cidata".into()),
        });
        step.run(&mut ctx).await.unwrap();
        let iso = ctx.cd_path.clone().expect("a CD");
        let bytes = std::fs::read(&iso).unwrap();
        // ISO 9660: the primary volume descriptor at 32 KiB holds the label at offset 40.
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert!(
            String::from_utf8_lossy(&bytes[0x8028..0x8048]).starts_with("CIDATA")
                || String::from_utf8_lossy(&bytes[0x8028..0x8048]).starts_with("cidata")
        );
        step.cleanup(&mut ctx).await.unwrap();
        assert!(!iso.exists() && ctx.cd_path.is_none());
    }

    #[tokio::test]
    async fn a_pattern_matching_nothing_fails_and_cleanup_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = CdFiles::new(CdConfig {
            cd_files: vec![t.path().join("missing/*.cfg").display().to_string()],
            ..CdConfig::default()
        });
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(e.contains("matches no file"), "{e}");
        let tmp = step.dir.as_ref().map(|d| d.path().to_owned()).unwrap();
        step.cleanup(&mut ctx).await.unwrap();
        assert!(!tmp.exists());
    }

    #[tokio::test]
    async fn content_cannot_escape_the_cd_root() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let mut step = CdFiles::new(CdConfig {
            cd_content: BTreeMap::from([("../../evil".into(), "x".into())]),
            ..CdConfig::default()
        });
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(e.contains("leaves the CD's root"), "{e}");
    }
}
