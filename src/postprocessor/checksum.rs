//! The `checksum` post-processor's work: for each checksum type, hash every artifact file and append
//! `<hex>\t<file name>` lines to the output file, as Packer does (so re-runs add lines). Its artifact,
//! like Packer's, is the input's files followed by the checksum files it created.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{files_artifact, render, Outcome, PostProcessError};
use crate::artifact::Artifact;
use crate::config::post_processors::ChecksumConfig;
use crate::download::checksum::{hash_reader_all, Algorithm};

/// Packer's id for a checksum artifact.
pub const BUILDER_ID: &str = "packer.post-processor.checksum";

/// Packer's default output pattern.
pub const DEFAULT_OUTPUT: &str =
    "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum";

/// Why checksums could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumPpError {
    #[error("unknown checksum type `{0}`\nhint: use md5, sha1, sha224, sha256, sha384 or sha512")]
    UnknownType(String),
    #[error("could not hash {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `checksum_types` (default `["md5"]` when empty).
pub fn parse_types(types: &[String]) -> Result<Vec<Algorithm>, ChecksumPpError> {
    if types.is_empty() {
        return Ok(vec![Algorithm::Md5]);
    }
    types
        .iter()
        .map(|t| Algorithm::from_name(t).ok_or_else(|| ChecksumPpError::UnknownType(t.clone())))
        .collect()
}

/// Writes checksums of `files`; `output_for(algorithm)` gives the checksum file's path (the rendered
/// `output` pattern). Returns the checksum files this call created, in the order first written
/// (a file that existed before is appended to but not returned, as in Packer).
pub fn write_checksums(
    files: &[PathBuf],
    types: &[Algorithm],
    output_for: impl Fn(Algorithm) -> PathBuf,
) -> Result<Vec<PathBuf>, ChecksumPpError> {
    // Each file is read once for all the types (disks are gigabytes); the lines of each type's
    // checksum file are gathered first and written afterwards.
    let mut lines = vec![String::new(); types.len()];
    for file in files {
        let read_err = |source| ChecksumPpError::Read {
            path: file.clone(),
            source,
        };
        let mut reader = std::fs::File::open(file).map_err(read_err)?;
        let digests = hash_reader_all(types, &mut reader).map_err(read_err)?;
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for (type_lines, hex) in lines.iter_mut().zip(digests) {
            type_lines.push_str(&format!("{hex}\t{name}\n"));
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    for (&algorithm, lines) in types.iter().zip(&lines) {
        let output = output_for(algorithm);
        let existed = output.exists();
        append(&output, lines).map_err(|source| ChecksumPpError::Write {
            path: output.clone(),
            source,
        })?;
        if !existed && !written.contains(&output) {
            written.push(output);
        }
    }
    Ok(written)
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// The `checksum` post-processor (always keeps its input, which it lists).
pub(super) async fn run(c: &ChecksumConfig, input: &Artifact) -> Result<Outcome, PostProcessError> {
    let types = parse_types(&c.checksum_types)?;
    let files = input.files.clone();
    let (pattern, base) = (c.output.clone(), input.clone());
    let written = tokio::task::spawn_blocking(move || {
        write_checksums(&files, &types, |alg| {
            render(&pattern, &base, &[("ChecksumType", &alg.to_string())])
        })
    })
    .await??;
    let mut files = input.files.clone();
    files.extend(written);
    Ok(Outcome {
        artifact: files_artifact(BUILDER_ID, files, input),
        keep_default: true,
        force_keep: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_file_per_type_and_appends_on_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"abc").unwrap();
        let types = parse_types(&["sha256".into(), "MD5".into()]).unwrap();
        let out = |a: Algorithm| dir.path().join(format!("out/packer_x_qemu_{a}.checksum"));
        let files = write_checksums(std::slice::from_ref(&disk), &types, out).unwrap();
        assert_eq!(files.len(), 2);
        assert!(write_checksums(std::slice::from_ref(&disk), &types, out)
            .unwrap()
            .is_empty());
        let sha = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\tdisk.qcow2\n"
                .repeat(2)
        );
        let md5 = std::fs::read_to_string(&files[1]).unwrap();
        assert_eq!(
            md5,
            "900150983cd24fb0d6963f7d28e17f72\tdisk.qcow2\n".repeat(2)
        );
    }

    #[test]
    fn defaults_to_md5_and_rejects_unknown_types() {
        assert_eq!(parse_types(&[]).unwrap(), vec![Algorithm::Md5]);
        let err = parse_types(&["crc32".into()]).unwrap_err().to_string();
        assert!(err.starts_with("unknown checksum type `crc32`"), "{err}");
    }
}
