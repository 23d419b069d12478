//! The `manifest` post-processor's work: record each build's artifact in a JSON file that runs append
//! to, in Packer's shape (`builds[]` with name, builder_type, build_time, files, artifact_id,
//! packer_run_uuid, custom_data; and `last_run_uuid`), so tools that read Packer manifests read
//! kiln's. The file is rewritten through a temporary name, so a crash never leaves it half-written.
//! With `-force`, a manifest left by another run is started afresh, as in Packer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{render, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::{write_through_temp, Artifact};
use crate::config::post_processors::ManifestConfig;

/// Packer's default output.
pub const DEFAULT_OUTPUT: &str = "packer-manifest.json";

/// One artifact file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub size: u64,
}

/// One build's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestBuild {
    pub name: String,
    pub builder_type: String,
    /// Left out when 0 (`strip_time`), as Packer's `omitempty` does.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub build_time: i64,
    pub files: Vec<ManifestFile>,
    pub artifact_id: String,
    pub packer_run_uuid: String,
    pub custom_data: Option<BTreeMap<String, String>>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    #[serde(default)]
    builds: Vec<serde_json::Value>,
    #[serde(default)]
    last_run_uuid: String,
}

/// Why the manifest could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path} is not a manifest kiln can append to (line {line}, column {column})\nhint: move it aside or set `output` to another file")]
    Unreadable {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("could not stat artifact file {path}")]
    Stat {
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

/// Lists `files` with their sizes; `strip_path` keeps only the file names.
pub fn list_files(files: &[PathBuf], strip_path: bool) -> Result<Vec<ManifestFile>, ManifestError> {
    files
        .iter()
        .map(|path| {
            let size = std::fs::metadata(path)
                .map_err(|source| ManifestError::Stat {
                    path: path.clone(),
                    source,
                })?
                .len();
            let name = if strip_path {
                path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            } else {
                path.display().to_string()
            };
            Ok(ManifestFile { name, size })
        })
        .collect()
}

/// Appends `build` to the manifest at `path` (created if absent) and sets `last_run_uuid`.
/// Entries written by other tools are kept as they are, unless `force` is set and the file's
/// `last_run_uuid` is another run's: then the manifest starts empty.
pub fn append(path: &Path, build: &ManifestBuild, force: bool) -> Result<(), ManifestError> {
    let write_err = |source| ManifestError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut manifest = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_json::from_str::<Manifest>(&text).map_err(|e| ManifestError::Unreadable {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
            })?
        }
        Ok(_) => Manifest::default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
        Err(e) => return Err(write_err(e)),
    };
    if force && manifest.last_run_uuid != build.packer_run_uuid {
        manifest = Manifest::default();
    }
    manifest.last_run_uuid = build.packer_run_uuid.clone();
    manifest
        .builds
        .push(serde_json::to_value(build).map_err(|e| write_err(std::io::Error::other(e)))?);
    let mut text =
        serde_json::to_string_pretty(&manifest).map_err(|e| write_err(std::io::Error::other(e)))?;
    text.push('\n');
    write_through_temp(path, |tmp| std::fs::write(tmp, text), |e| e).map_err(write_err)
}

/// The `manifest` post-processor: records `input` and passes it on (always kept).
pub(super) fn run(
    c: &ManifestConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    let path = render(&c.output, input, &[]);
    let files = list_files(&input.files, c.strip_path)?;
    let custom_data = c
        .custom_data
        .iter()
        .map(|(k, v)| (k.clone(), render(v, input, &[]).display().to_string()))
        .collect::<BTreeMap<_, _>>();
    let build = ManifestBuild {
        name: input.build_name.clone(),
        builder_type: input.builder_type.clone(),
        build_time: if c.strip_time {
            0
        } else {
            chrono::Utc::now().timestamp()
        },
        files,
        artifact_id: input.id.clone(),
        packer_run_uuid: run_uuid().to_owned(),
        custom_data: (!custom_data.is_empty()).then_some(custom_data),
    };
    append(&path, &build, ctx.force)?;
    ctx.ui
        .message(&format!("Wrote manifest {}", path.display()));
    Ok(Outcome {
        artifact: input.clone(),
        keep_default: true,
        force_keep: true,
    })
}

/// One id per `kiln build` run, as Packer's `packer_run_uuid` (`PACKER_RUN_UUID` when set, so a
/// wrapper can tie several runs together as with Packer).
pub fn run_uuid() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::var("PACKER_RUN_UUID")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(uuid: &str, name: &str) -> ManifestBuild {
        ManifestBuild {
            name: name.into(),
            builder_type: "qemu".into(),
            build_time: 1_700_000_000,
            files: vec![ManifestFile {
                name: "output-x/packer-x".into(),
                size: 3,
            }],
            artifact_id: "VM".into(),
            packer_run_uuid: uuid.into(),
            custom_data: Some(BTreeMap::from([("os".to_string(), "debian".to_string())])),
        }
    }

    #[test]
    fn runs_append_and_last_run_uuid_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("packer-manifest.json");
        append(&path, &build("u1", "a"), false).unwrap();
        append(&path, &build("u2", "b"), false).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["last_run_uuid"], "u2");
        let builds = value["builds"].as_array().unwrap();
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0]["name"], "a");
        assert_eq!(builds[1]["packer_run_uuid"], "u2");
        assert_eq!(builds[1]["files"][0]["size"], 3);
        assert_eq!(builds[1]["custom_data"]["os"], "debian");
        let keys: Vec<_> = builds[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "artifact_id",
                "build_time",
                "builder_type",
                "custom_data",
                "files",
                "name",
                "packer_run_uuid"
            ]
        );
    }

    #[test]
    fn a_foreign_file_is_an_error_with_its_position_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, "{\n  \"builds\": 7\n}").unwrap();
        let err = append(&path, &build("u", "a"), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "{} is not a manifest kiln can append to (line 2",
                path.display()
            )),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"builds\": 7\n}"
        );
    }

    #[test]
    fn force_starts_afresh_only_for_another_run_and_strip_time_drops_build_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        append(&path, &build("u1", "a"), false).unwrap();
        append(&path, &build("u1", "b"), true).unwrap();
        let mut untimed = build("u2", "c");
        untimed.build_time = 0;
        append(&path, &untimed, true).unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let builds = value["builds"].as_array().unwrap();
        assert_eq!(builds.len(), 1, "{value}");
        assert_eq!(builds[0]["name"], "c");
        assert!(builds[0].get("build_time").is_none(), "{value}");
    }

    #[test]
    fn strip_path_keeps_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"12345").unwrap();
        let files = list_files(std::slice::from_ref(&disk), true).unwrap();
        assert_eq!(
            files,
            vec![ManifestFile {
                name: "disk.qcow2".into(),
                size: 5
            }]
        );
        let files = list_files(std::slice::from_ref(&disk), false).unwrap();
        assert_eq!(files[0].name, disk.display().to_string());
    }
}
