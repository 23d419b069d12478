//! The floppy step: `floppy_files`, `floppy_dirs` and `floppy_content` become a 1.44 MB FAT12
//! image in a temporary directory, attached by the builder (`-fda` for QEMU). Which file lands
//! where follows Packer: `floppy_files` go flat at the root (a directory given there gives
//! all its files, flattened), `floppy_dirs` keep their own name and structure, and
//! `floppy_content` keys are paths. Paths and globs are relative to the working directory,
//! as in Packer.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::artifact::floppy::{self, FloppyData, FloppyFile};
use crate::config::common::FloppyConfig;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Make the floppy image, when the template asks for one, and set `ctx.floppy_path`.
pub struct CreateFloppy {
    cfg: FloppyConfig,
    dir: Option<tempfile::TempDir>,
}

impl CreateFloppy {
    /// The step for these options.
    pub fn new(cfg: FloppyConfig) -> Self {
        Self { cfg, dir: None }
    }
}

#[async_trait]
impl Step for CreateFloppy {
    fn name(&self) -> &'static str {
        "floppy"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let c = &self.cfg;
        if c.floppy_files.is_empty() && c.floppy_dirs.is_empty() && c.floppy_content.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating floppy disk...");
        let files = plan(c)?;
        for f in &files {
            if let FloppyData::Path(p) = &f.data {
                ctx.ui
                    .message(&format!("Adding file: {} as {}", p.display(), f.dest));
            } else {
                ctx.ui.message(&format!("Adding content: {}", f.dest));
            }
        }
        let dir = crate::child::private_tempdir("kiln-floppy")
            .map_err(|e| StepError::with("cannot create a temporary directory", e))?;
        let image = dir.path().join("floppy.img");
        floppy::write(&image, &c.floppy_label, &files)
            .map_err(|e| StepError::with("cannot make the floppy", e))?;
        ctx.floppy_path = Some(image);
        self.dir = Some(dir);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        ctx.floppy_path = None;
        self.dir = None;
        Ok(())
    }
}

/// The files the options name, with their paths on the floppy.
pub fn plan(c: &FloppyConfig) -> Result<Vec<FloppyFile>, StepError> {
    let mut out = Vec::new();
    for entry in &c.floppy_files {
        for path in expand("floppy_files", entry)? {
            if path.is_dir() {
                for file in walk(&path)? {
                    out.push(host_file(base_name(&file), file));
                }
            } else {
                out.push(host_file(base_name(&path), path));
            }
        }
    }
    for entry in &c.floppy_dirs {
        for path in expand("floppy_dirs", entry)? {
            if path.is_dir() {
                let parent = path.parent().unwrap_or(Path::new(""));
                for file in walk(&path)? {
                    let rel = file.strip_prefix(parent).unwrap_or(&file);
                    let dest = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push(host_file(dest, file));
                }
            } else {
                out.push(host_file(base_name(&path), path));
            }
        }
    }
    for (dest, content) in &c.floppy_content {
        out.push(FloppyFile {
            dest: dest.trim_start_matches('/').to_owned(),
            data: FloppyData::Bytes(content.clone().into_bytes()),
        });
    }
    Ok(out)
}

fn host_file(dest: String, path: PathBuf) -> FloppyFile {
    FloppyFile {
        dest,
        data: FloppyData::Path(path),
    }
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A glob's matches (none is an error, as a missing literal path is).
fn expand(option: &str, entry: &str) -> Result<Vec<PathBuf>, StepError> {
    if !entry.contains(['*', '?', '[']) {
        let p = PathBuf::from(entry);
        if !p.exists() {
            return Err(StepError::msg(format!(
                "{option}: {entry} does not exist (paths are relative to the directory kiln runs in)"
            )));
        }
        return Ok(vec![p]);
    }
    let paths: Vec<PathBuf> = glob::glob(entry)
        .map_err(|e| StepError::msg(format!("{option} pattern {entry:?}: {e}")))?
        .filter_map(Result::ok)
        .collect();
    if paths.is_empty() {
        return Err(StepError::msg(format!(
            "{option} pattern {entry:?} matches no file"
        )));
    }
    Ok(paths)
}

/// Every file under `dir`, sorted, so the image does not depend on the directory order.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, StepError> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| StepError::with(format!("cannot read {}", d.display()), e))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn the_step_makes_a_floppy_image_and_cleanup_removes_it() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = crate::pipeline::context::testing::context(t.path());
        let mut step = CreateFloppy::new(FloppyConfig {
            floppy_content: BTreeMap::from([("ks.cfg".into(), "text".into())]),
            ..FloppyConfig::default()
        });
        step.run(&mut ctx).await.unwrap();
        let img = ctx.floppy_path.clone().expect("a floppy");
        assert_eq!(std::fs::metadata(&img).unwrap().len(), 1_474_560);
        step.cleanup(&mut ctx).await.unwrap();
        assert!(ctx.floppy_path.is_none() && !img.exists());
        // No floppy options: no image.
        CreateFloppy::new(FloppyConfig::default())
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.floppy_path.is_none());
    }

    fn dests(files: &[FloppyFile]) -> Vec<&str> {
        files.iter().map(|f| f.dest.as_str()).collect()
    }

    #[test]
    fn files_go_flat_dirs_keep_their_name_content_keeps_its_path() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("drivers/net")).unwrap();
        std::fs::write(root.join("drivers/net/e1000.inf"), "x").unwrap();
        std::fs::write(root.join("drivers/readme.txt"), "x").unwrap();
        std::fs::write(root.join("unattend.xml"), "x").unwrap();
        let s = |p: &str| root.join(p).display().to_string();
        let cfg = FloppyConfig {
            floppy_files: vec![s("unattend.xml"), s("drivers")],
            floppy_dirs: vec![s("drivers")],
            floppy_content: BTreeMap::from([("/meta/id.txt".to_owned(), "7".to_owned())]),
            ..FloppyConfig::default()
        };
        let files = plan(&cfg).unwrap();
        assert_eq!(
            dests(&files),
            [
                "unattend.xml",
                "e1000.inf",
                "readme.txt",
                "drivers/net/e1000.inf",
                "drivers/readme.txt",
                "meta/id.txt"
            ]
        );
    }

    #[test]
    fn globs_expand_and_missing_paths_are_errors() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.ps1"), "x").unwrap();
        std::fs::write(t.path().join("b.ps1"), "x").unwrap();
        let cfg = FloppyConfig {
            floppy_files: vec![format!("{}/*.ps1", t.path().display())],
            ..FloppyConfig::default()
        };
        assert_eq!(dests(&plan(&cfg).unwrap()), ["a.ps1", "b.ps1"]);
        let missing = FloppyConfig {
            floppy_files: vec![format!("{}/nope.xml", t.path().display())],
            ..FloppyConfig::default()
        };
        let e = plan(&missing).unwrap_err().to_string();
        assert!(e.contains("floppy_files") && e.contains("nope.xml"), "{e}");
    }
}
