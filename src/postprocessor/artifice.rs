//! The `artifice` post-processor: the artifact becomes the listed files (glob patterns, expanded
//! as Packer does: a pattern that matches nothing adds nothing), so later post-processors work on
//! what the build left on the host. By default its input is kept, as in Packer.

use std::path::PathBuf;

use super::{files_artifact, list, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::Artifact;
use crate::config::post_processors::ArtificeConfig;

/// Packer's id for an artifice artifact.
pub const BUILDER_ID: &str = "packer.post-processor.artifice";

/// Why `files` could not be expanded.
#[derive(Debug, thiserror::Error)]
pub enum ArtificeError {
    /// Not a glob pattern.
    #[error("artifice files: {pattern:?}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: glob::PatternError,
    },
    /// A directory on the way could not be read.
    #[error("artifice files")]
    Read(#[source] glob::GlobError),
}

/// The files `patterns` name, in order, each pattern's matches sorted.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, ArtificeError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let matches = glob::glob(pattern).map_err(|source| ArtificeError::Pattern {
            pattern: pattern.clone(),
            source,
        })?;
        for m in matches {
            let path = m.map_err(ArtificeError::Read)?;
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

pub(super) fn run(
    c: &ArtificeConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    if !input.files.is_empty() {
        ctx.ui.say(&format!(
            "Discarding files from artifact: {}",
            list(&input.files)
        ));
    }
    let files = expand(&c.files)?;
    for pattern in &c.files {
        if glob::glob(pattern).map_or(true, |mut m| m.next().is_none()) {
            ctx.ui.warn(&format!("artifice: {pattern} matches no file"));
        }
    }
    ctx.ui
        .say(&format!("Using these artifact files: {}", list(&files)));
    Ok(Outcome {
        artifact: files_artifact(BUILDER_ID, files, input),
        keep_default: true,
        force_keep: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_in_order_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.vmdk", "a.vmdk", "x.vmx"] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        let d = dir.path().display();
        let files = expand(&[
            format!("{d}/x.vmx"),
            format!("{d}/*.vmdk"),
            format!("{d}/a.vmdk"),
            format!("{d}/none-*"),
        ])
        .unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["x.vmx", "a.vmdk", "b.vmdk"]);
        assert!(expand(&["[".into()]).is_err());
    }
}
