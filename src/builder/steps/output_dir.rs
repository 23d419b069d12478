//! Create `output_directory` (with `-force`, replace an existing one) and name the VM. On
//! failure or cancellation the directory is removed again, so no half-built artifact is left;
//! after a successful build (an artifact exists) it stays.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Sets `ctx.output_dir` and `ctx.vm_name`.
pub struct OutputDir {
    dir: PathBuf,
    vm_name: String,
    force: bool,
    created: bool,
}

impl OutputDir {
    /// The step making `dir` for the VM `vm_name`; `force` is `-force`.
    pub fn new(dir: PathBuf, vm_name: String, force: bool) -> Self {
        Self {
            dir,
            vm_name,
            force,
            created: false,
        }
    }
}

#[async_trait]
impl Step for OutputDir {
    fn name(&self) -> &'static str {
        "output directory"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = &self.dir;
        if dir.exists() {
            if !self.force {
                return Err(StepError::msg(format!(
                    "output directory {} already exists\nhint: remove it, choose another output_directory, or run with -force to replace it",
                    dir.display()
                )));
            }
            ctx.ui.say(&format!(
                "Deleting previous output directory {} (-force)",
                dir.display()
            ));
            std::fs::remove_dir_all(dir)
                .map_err(|e| StepError::with(format!("cannot delete {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StepError::with(format!("cannot create {}", dir.display()), e))?;
        self.created = true;
        ctx.output_dir = Some(dir.clone());
        ctx.vm_name = Some(self.vm_name.clone());
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if !self.created || ctx.artifact.is_some() {
            return Ok(());
        }
        ctx.ui
            .say(&format!("Deleting output directory {}", self.dir.display()));
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CleanupError::new(
                format!("cannot delete {}", self.dir.display()),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::Artifact;
    use crate::pipeline::context::testing::context;

    #[tokio::test]
    async fn creates_the_directory_and_removes_it_when_the_build_fails() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("output-vm");
        let mut ctx = context(t.path());
        let mut step = OutputDir::new(dir.clone(), "vm".into(), false);
        step.run(&mut ctx).await.unwrap();
        assert!(dir.is_dir());
        assert_eq!(ctx.require_output_dir().unwrap(), dir);
        assert_eq!(ctx.require_vm_name().unwrap(), "vm");
        std::fs::write(dir.join("disk"), b"half").unwrap();
        step.cleanup(&mut ctx).await.unwrap();
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn keeps_the_directory_of_a_finished_build() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        let mut ctx = context(t.path());
        let mut step = OutputDir::new(dir.clone(), "vm".into(), false);
        step.run(&mut ctx).await.unwrap();
        ctx.artifact = Some(Artifact::default());
        step.cleanup(&mut ctx).await.unwrap();
        assert!(dir.is_dir());
    }

    #[tokio::test]
    async fn an_existing_directory_needs_force_and_is_left_alone_without_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old"), b"x").unwrap();
        let mut ctx = context(t.path());
        let mut step = OutputDir::new(dir.clone(), "vm".into(), false);
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(e.contains("already exists") && e.contains("-force"), "{e}");
        step.cleanup(&mut ctx).await.unwrap();
        assert!(dir.join("old").exists(), "a refused step must not delete");
        let mut step = OutputDir::new(dir.clone(), "vm".into(), true);
        step.run(&mut ctx).await.unwrap();
        assert!(dir.is_dir() && !dir.join("old").exists());
    }

    #[tokio::test]
    async fn a_cleanup_that_cannot_delete_reports_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        let mut ctx = context(t.path());
        let mut step = OutputDir::new(dir.clone(), "vm".into(), false);
        step.run(&mut ctx).await.unwrap();
        // Replace the directory by a file: remove_dir_all then fails with "not a directory".
        std::fs::remove_dir(&dir).unwrap();
        std::fs::write(&dir, b"").unwrap();
        let e = step.cleanup(&mut ctx).await.unwrap_err();
        assert!(crate::report::report(&e).contains("cannot delete"), "{e}");
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_created_is_an_error_with_the_os_reason() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), b"").unwrap();
        let mut ctx = context(t.path());
        let mut step = OutputDir::new(t.path().join("file/out"), "vm".into(), false);
        let e = step.run(&mut ctx).await.unwrap_err().report();
        assert!(
            e.contains("cannot create") && e.contains("Not a directory"),
            "{e}"
        );
        assert!(ctx.output_dir.is_none());
    }
}
