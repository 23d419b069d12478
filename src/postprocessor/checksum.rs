//! The `checksum` post-processor's work: for each checksum type, hash every artifact file and append
//! `<hex>\t<file name>` lines to the output file, as Packer does (so re-runs add lines), returning the
//! checksum files written so they join the artifact.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::download::checksum::{hash_reader, Algorithm};

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
        .map(|t| {
            let algorithm = match t.to_ascii_lowercase().as_str() {
                "md5" => Algorithm::Md5,
                "sha1" => Algorithm::Sha1,
                "sha224" => Algorithm::Sha224,
                "sha256" => Algorithm::Sha256,
                "sha384" => Algorithm::Sha384,
                "sha512" => Algorithm::Sha512,
                _ => return Err(ChecksumPpError::UnknownType(t.clone())),
            };
            Ok(algorithm)
        })
        .collect()
}

/// Writes checksums of `files`; `output_for(algorithm)` gives the checksum file's path (the rendered
/// `output` pattern). Returns the checksum files in the order first written.
pub fn write_checksums(
    files: &[PathBuf],
    types: &[Algorithm],
    output_for: impl Fn(Algorithm) -> PathBuf,
) -> Result<Vec<PathBuf>, ChecksumPpError> {
    let mut written: Vec<PathBuf> = Vec::new();
    for &algorithm in types {
        let output = output_for(algorithm);
        let mut lines = String::new();
        for file in files {
            let mut reader = std::fs::File::open(file).map_err(|source| ChecksumPpError::Read {
                path: file.clone(),
                source,
            })?;
            let hex =
                hash_reader(algorithm, &mut reader).map_err(|source| ChecksumPpError::Read {
                    path: file.clone(),
                    source,
                })?;
            let name = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            lines.push_str(&format!("{hex}\t{name}\n"));
        }
        append(&output, &lines).map_err(|source| ChecksumPpError::Write {
            path: output.clone(),
            source,
        })?;
        if !written.contains(&output) {
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
        let sha = std::fs::read_to_string(&files[0]).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\tdisk.qcow2\n"
        );
        write_checksums(&[disk], &types, out).unwrap();
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
