//! The `checksum` post-processor's work: for each checksum type, hash every artifact file and append
//! `<hex>\t<file name>` lines to the output file, as Packer does (so re-runs add lines). Its artifact,
//! like Packer's, is the input's files followed by the checksum files it created.
//!
//! Unlike Packer, the output is never appended to in place: the old content and the new lines are
//! written to a temporary file that replaces the output once complete, so a full disk or Ctrl-C
//! leaves the output as it was (or absent), never empty or cut short.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{files_artifact, render, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::stream::{Input, WriteError};
use crate::artifact::{write_through_temp, Artifact};
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
    /// Reading a file to hash or writing a checksum file failed, or the build was cancelled.
    #[error(transparent)]
    Io(#[from] WriteError),
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
/// (a file that existed before is appended to but not returned, as in Packer). Hashing stops
/// within one read of `cancel` being cancelled.
pub fn write_checksums(
    files: &[PathBuf],
    types: &[Algorithm],
    output_for: impl Fn(Algorithm) -> PathBuf,
    cancel: &CancellationToken,
) -> Result<Vec<PathBuf>, ChecksumPpError> {
    // Each file is read once for all the types (disks are gigabytes); the lines of each type's
    // checksum file are gathered first and written afterwards.
    let mut lines = vec![String::new(); types.len()];
    for file in files {
        let read_err = |e| WriteError::from_read(e, file);
        let mut reader = Input::open(file, cancel).map_err(read_err)?;
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
        append(&output, lines)?;
        if !existed && !written.contains(&output) {
            written.push(output);
        }
    }
    Ok(written)
}

/// Appends `text` to `path` by writing the old content and `text` to a temporary file that
/// replaces `path` once complete (see the module's note).
fn append(path: &Path, text: &str) -> Result<(), WriteError> {
    let mut content = match std::fs::read(path) {
        Ok(old) => old,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(WriteError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    content.extend_from_slice(text.as_bytes());
    write_through_temp(path, |tmp| std::fs::write(tmp, &content), |e| e).map_err(|source| {
        WriteError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The `checksum` post-processor (always keeps its input, which it lists).
pub(super) async fn run(
    c: &ChecksumConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    let types = parse_types(&c.checksum_types)?;
    let files = input.files.clone();
    let (pattern, base, cancel) = (c.output.clone(), input.clone(), ctx.cancel.clone());
    let written = tokio::task::spawn_blocking(move || {
        write_checksums(
            &files,
            &types,
            |alg| render(&pattern, &base, &[("ChecksumType", &alg.to_string())]),
            &cancel,
        )
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
    use crate::artifact::stream::testing::{noise, Tmpfs};

    #[test]
    fn writes_one_file_per_type_and_appends_on_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"abc").unwrap();
        let types = parse_types(&["sha256".into(), "MD5".into()]).unwrap();
        let out = |a: Algorithm| dir.path().join(format!("out/packer_x_qemu_{a}.checksum"));
        let cancel = CancellationToken::new();
        let files = write_checksums(std::slice::from_ref(&disk), &types, out, &cancel).unwrap();
        assert_eq!(files.len(), 2);
        assert!(
            write_checksums(std::slice::from_ref(&disk), &types, out, &cancel)
                .unwrap()
                .is_empty()
        );
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

    /// Issue 13: on a full disk the error names the checksum file and the OS's reason, and no
    /// empty checksum file is left (the lines went to a temporary file, which is removed).
    #[test]
    fn a_full_disk_names_the_checksum_file_and_leaves_no_empty_one() {
        let Some(fs) = Tmpfs::mount() else { return };
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"abc").unwrap();
        // Fill the filesystem: this write stops at "no space left", which is the point.
        let _ = std::fs::write(fs.path().join("filler"), noise(5 << 20));
        let out = fs.path().join("x.checksum");
        let err = write_checksums(
            std::slice::from_ref(&disk),
            &[Algorithm::Md5],
            |_| out.clone(),
            &CancellationToken::new(),
        )
        .unwrap_err();
        assert_eq!(
            crate::report::report(&err),
            format!(
                "cannot write {}: No space left on device (os error 28)",
                out.display()
            )
        );
        assert_eq!(fs.listing(), vec![fs.path().join("filler")]);
    }

    /// Issue 13: hashing stops once the build is cancelled, and nothing is written.
    #[test]
    fn a_cancelled_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"abc").unwrap();
        let out = dir.path().join("x.checksum");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = write_checksums(
            std::slice::from_ref(&disk),
            &[Algorithm::Md5],
            |_| out.clone(),
            &cancel,
        )
        .unwrap_err();
        assert!(
            matches!(err, ChecksumPpError::Io(WriteError::Cancelled)),
            "{err:?}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn defaults_to_md5_and_rejects_unknown_types() {
        assert_eq!(parse_types(&[]).unwrap(), vec![Algorithm::Md5]);
        let err = parse_types(&["crc32".into()]).unwrap_err().to_string();
        assert!(err.starts_with("unknown checksum type `crc32`"), "{err}");
    }
}
