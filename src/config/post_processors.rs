//! Options of the post-processors kiln knows, with Packer's names and defaults
//! (`keep_input_artifact`, `only`, `except` and `name` are meta-arguments handled by the loader;
//! `shell-local` shares [`super::provisioners::ShellLocalConfig`]).

use super::weak;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `vagrant`: package the artifact as a Vagrant box.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VagrantConfig {
    /// Box path template.
    pub output: String,
    /// gzip level, 0 (stored) to 9.
    #[serde(deserialize_with = "weak::int")]
    pub compression_level: u32,
    /// Extra files put in the box.
    pub include: Vec<String>,
    /// A Vagrantfile template appended to the provider's.
    pub vagrantfile_template: Option<String>,
    /// The template is created during the build.
    #[serde(deserialize_with = "weak::bool")]
    pub vagrantfile_template_generated: bool,
    /// Force the provider name.
    pub provider_override: Option<String>,
    /// Box architecture (`amd64`, `arm64`).
    pub architecture: Option<String>,
}

impl Default for VagrantConfig {
    fn default() -> Self {
        Self {
            output: "packer_{{ .BuildName }}_{{ .Provider }}_{{ .Architecture }}.box".into(),
            compression_level: 6,
            include: Vec::new(),
            vagrantfile_template: None,
            vagrantfile_template_generated: false,
            provider_override: None,
            architecture: None,
        }
    }
}

/// `manifest`: record the artifacts in a JSON file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManifestConfig {
    /// The manifest file.
    pub output: String,
    /// Record file names without their directories.
    #[serde(deserialize_with = "weak::bool")]
    pub strip_path: bool,
    /// Leave out build_time.
    #[serde(deserialize_with = "weak::bool")]
    pub strip_time: bool,
    /// Extra data recorded per build.
    pub custom_data: BTreeMap<String, String>,
}

impl Default for ManifestConfig {
    fn default() -> Self {
        Self {
            output: "packer-manifest.json".into(),
            strip_path: false,
            strip_time: false,
            custom_data: BTreeMap::new(),
        }
    }
}

/// `checksum`: write checksum files of the artifact.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksumConfig {
    /// `md5`, `sha1`, `sha224`, `sha256`, `sha384`, `sha512`.
    pub checksum_types: Vec<String>,
    /// Output path template.
    pub output: String,
}

impl Default for ChecksumConfig {
    fn default() -> Self {
        Self {
            checksum_types: vec!["md5".into()],
            output: "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum".into(),
        }
    }
}

/// `compress`: archive the artifact; the method comes from the output's extension.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressConfig {
    /// Archive path template.
    pub output: String,
    /// Compression level (method-specific).
    #[serde(deserialize_with = "weak::opt_int")]
    pub compression_level: Option<i32>,
    /// Override the method chosen from the extension.
    pub format: Option<String>,
}

impl Default for CompressConfig {
    fn default() -> Self {
        Self {
            output: "packer_{{.BuildName}}_{{.BuilderType}}".into(),
            compression_level: None,
            format: None,
        }
    }
}

/// `artifice`: replace the artifact with the listed files.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtificeConfig {
    /// The files of the new artifact.
    pub files: Vec<String>,
}

impl ChecksumConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let known = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];
        self.checksum_types
            .iter()
            .filter(|t| !known.contains(&t.as_str()))
            .map(|t| {
                (
                    "checksum_types",
                    format!(
                        "unknown checksum type {t:?}: use one of {}",
                        known.join(", ")
                    ),
                )
            })
            .collect()
    }
}

impl ArtificeConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if self.files.is_empty() {
            return vec![(
                "files",
                "artifice needs at least one file in files".to_owned(),
            )];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let v: VagrantConfig = serde_json::from_value(json!({"compression_level": 9})).unwrap();
        assert_eq!(v.compression_level, 9);
        let c: ChecksumConfig =
            serde_json::from_value(json!({"checksum_types": ["sha256", "crc"]})).unwrap();
        assert_eq!(c.problems().len(), 1);
    }
}
