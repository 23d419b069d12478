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
    /// Box path template (`{{ .BuildName }}`, `{{ .Provider }}`, `{{ .Architecture }}`,
    /// `{{ .ArtifactId }}`).
    pub output: String,
    /// gzip level, 0 (stored) to 9; -1 means the default, 6.
    #[serde(deserialize_with = "weak::int")]
    pub compression_level: i32,
    /// Extra files put at the top of the box.
    #[serde(deserialize_with = "weak::string_list")]
    pub include: Vec<String>,
    /// A Vagrantfile template appended to the provider's (rendered with the same placeholders
    /// as `output`).
    pub vagrantfile_template: Option<String>,
    /// The template is created during the build (skip the existence check at validation).
    #[serde(deserialize_with = "weak::bool")]
    pub vagrantfile_template_generated: bool,
    /// Force the provider instead of deriving it from the builder.
    pub provider_override: Option<String>,
    /// Box architecture; Packer's default is the host's (Go names: `amd64`, `arm64`, `i386`).
    pub architecture: Option<String>,
    /// Options per provider name, applied over the others (`override = { libvirt = { … } }`).
    /// (Legacy JSON templates reach here as nested blocks, hence [`weak::block`].)
    #[serde(rename = "override", deserialize_with = "weak::block")]
    pub overrides: BTreeMap<String, serde_json::Value>,
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
            overrides: BTreeMap::new(),
        }
    }
}

/// Provider names Packer's vagrant post-processor accepts in `provider_override`.
pub const PACKER_VAGRANT_PROVIDERS: [&str; 13] = [
    "aws",
    "azure",
    "digitalocean",
    "docker",
    "file",
    "google",
    "hyperv",
    "libvirt",
    "lxc",
    "parallels",
    "scaleway",
    "virtualbox",
    "vmware",
];

/// The providers kiln makes boxes for. `vmware_desktop` (Vagrant's own name for the provider
/// Packer calls `vmware`) is accepted as kiln's alias.
pub const KILN_VAGRANT_PROVIDERS: [&str; 3] = ["libvirt", "virtualbox", "vmware"];

/// Why `override.<provider>` cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// The override is not a block of options.
    #[error("override.{0} must be an object of vagrant options")]
    NotObject(String),
    /// The options could not be turned into JSON to merge (not expected: they came from JSON).
    #[error(transparent)]
    Encode(serde_json::Error),
    /// The merged options do not decode.
    #[error("override.{provider}")]
    Invalid {
        /// The provider.
        provider: String,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

impl VagrantConfig {
    /// The configuration for one provider: `override.<provider>` applied over the rest, as
    /// Packer does before it makes that provider's box.
    pub fn for_provider(&self, provider: &str) -> Result<VagrantConfig, OverrideError> {
        let extra = match self.overrides.get(provider) {
            None => return Ok(self.clone()),
            // A nested block, as legacy JSON templates give it.
            Some(serde_json::Value::Array(one)) if one.len() == 1 => &one[0],
            Some(extra) => extra,
        };
        let serde_json::Value::Object(fields) = extra else {
            return Err(OverrideError::NotObject(provider.to_owned()));
        };
        let mut merged = serde_json::to_value(self).map_err(OverrideError::Encode)?;
        if let serde_json::Value::Object(map) = &mut merged {
            for (k, v) in fields {
                map.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(merged).map_err(|source| OverrideError::Invalid {
            provider: provider.to_owned(),
            source,
        })
    }

    /// The gzip level to use (-1 is zlib's default, 6).
    pub fn level(&self) -> u32 {
        u32::try_from(self.compression_level).unwrap_or(6).min(9)
    }

    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(-1..=9).contains(&self.compression_level) {
            out.push((
                "compression_level",
                format!(
                    "compression_level {} is out of range: use 0 (store) to 9, or -1 for the default",
                    self.compression_level
                ),
            ));
        }
        if let Some(p) = &self.provider_override {
            if p != "vmware_desktop" && !PACKER_VAGRANT_PROVIDERS.contains(&p.as_str()) {
                out.push((
                    "provider_override",
                    format!(
                        "provider_override {p:?} is not a provider: use one of {}",
                        PACKER_VAGRANT_PROVIDERS.join(", ")
                    ),
                ));
            } else if p != "vmware_desktop" && !KILN_VAGRANT_PROVIDERS.contains(&p.as_str()) {
                out.push((
                    "provider_override",
                    format!(
                        "kiln cannot make {p} boxes yet: it makes {} boxes",
                        KILN_VAGRANT_PROVIDERS.join(", ")
                    ),
                ));
            }
        }
        if let Some(t) = self.vagrantfile_template.as_ref().filter(|t| !t.is_empty()) {
            if !self.vagrantfile_template_generated && !std::path::Path::new(t).exists() {
                out.push((
                    "vagrantfile_template",
                    format!("vagrantfile_template {t:?} does not exist (set vagrantfile_template_generated = true if the build creates it)"),
                ));
            }
        }
        for name in self.overrides.keys() {
            if let Err(e) = self.for_provider(name) {
                out.push(("override", crate::report::report(&e)));
            }
        }
        out
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
    /// Archive path template (`{{.BuildName}}`, `{{.BuilderType}}`).
    pub output: String,
    /// Compression level: gzip 1–9 (0 and -1 mean the default, 6, as in Packer); zstd 1–22
    /// (default 3); ignored by lz4.
    #[serde(deserialize_with = "weak::opt_int")]
    pub compression_level: Option<i32>,
    /// Extensions that choose the method when the output name does not (`tar.gz`, `zst`); the
    /// output keeps its name.
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
    /// The files of the new artifact (glob patterns, as in Packer).
    #[serde(deserialize_with = "weak::string_list")]
    pub files: Vec<String>,
}

/// `ova` (kiln's addition; Packer has no such post-processor): export a QEMU build's qcow2
/// disks as an OVA (or an OVF directory when `output` ends in `.ovf`) with streamOptimized VMDKs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OvaConfig {
    /// Package path template (`{{.BuildName}}`, `{{.BuilderType}}`); `.ova` or `.ovf`.
    pub output: String,
    /// `1.0` (what every importer reads) or `2.0`.
    pub ovf_version: String,
    /// The machine's name in the descriptor and the files' stem; default: the build's disk name.
    pub vm_name: Option<String>,
    /// Virtual CPUs described; default: the build's, else 1.
    #[serde(deserialize_with = "weak::opt_int")]
    pub cpus: Option<u32>,
    /// Memory described, in MiB; default: the build's, else 512.
    #[serde(deserialize_with = "weak::opt_int")]
    pub memory: Option<u64>,
}

impl Default for OvaConfig {
    fn default() -> Self {
        Self {
            output: "packer_{{.BuildName}}_{{.BuilderType}}.ova".into(),
            ovf_version: "1.0".into(),
            vm_name: None,
            cpus: None,
            memory: None,
        }
    }
}

impl OvaConfig {
    /// Checks made after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !["1.0", "2.0"].contains(&self.ovf_version.as_str()) {
            out.push((
                "ovf_version",
                format!("ovf_version {:?}: use \"1.0\" or \"2.0\"", self.ovf_version),
            ));
        }
        let ext = self.output.rsplit('.').next().unwrap_or_default();
        if !["ova", "ovf"].contains(&ext.to_ascii_lowercase().as_str()) {
            out.push((
                "output",
                format!("output {:?} must end in .ova or .ovf", self.output),
            ));
        }
        if self.cpus == Some(0) || self.memory == Some(0) {
            out.push(("cpus", "cpus and memory must be at least 1".to_owned()));
        }
        out
    }
}

impl CompressConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        match self.compression_level {
            Some(l) if !(-1..=22).contains(&l) => vec![(
                "compression_level",
                format!("compression_level {l} is out of range: gzip takes 1 to 9, zstd 1 to 22"),
            )],
            _ => Vec::new(),
        }
    }

    /// An output whose last extension names no format: Packer (and so kiln) writes a tar.gz
    /// archive there without a word; kiln says so at validate time.
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        const KNOWN: &[&str] = &[
            "tar", "gz", "tgz", "zip", "lz4", "xz", "bzip2", "bgzf", "zst",
        ];
        let (option, name) = match self.format.as_deref().filter(|f| !f.is_empty()) {
            Some(f) => ("format", f),
            None => ("output", self.output.as_str()),
        };
        let file = name.rsplit('/').next().unwrap_or(name);
        // `format` is extensions itself (`tar.gz`); `output` is a file name that may have one.
        let ext = match (option, file.rsplit_once('.')) {
            (_, Some((_, ext))) => ext,
            ("format", None) => file,
            _ => return Vec::new(),
        };
        let ext = ext.to_ascii_lowercase();
        if ext.is_empty() || KNOWN.contains(&ext.as_str()) || ext.contains("}}") {
            return Vec::new();
        }
        vec![(
            option,
            format!("{option} {name:?} ends in .{ext}, which names no compression format: a tar.gz archive is written there, as Packer does (use .tar.gz, .zip, .gz, .lz4, .xz, .bzip2, .bgzf, .tar or kiln's .zst to choose)"),
        )]
    }
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
    fn a_compress_output_naming_no_format_is_warned_about() {
        let w = |v: serde_json::Value| {
            serde_json::from_value::<CompressConfig>(v)
                .unwrap()
                .warnings()
        };
        let got = w(json!({"output": "out/disk.img"}));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].1.contains(".img") && got[0].1.contains("tar.gz"),
            "{got:?}"
        );
        for quiet in [
            json!({"output": "out/disk.tar.gz"}),
            json!({"output": "out/disk.tgz"}),
            json!({"output": "out/box.zst"}),
            json!({}),
            json!({"output": "out/x.img", "format": "tar.xz"}),
            json!({"output": "out/{{.BuildName}}"}),
        ] {
            assert!(w(quiet.clone()).is_empty(), "{quiet}");
        }
        assert_eq!(w(json!({"output": "x", "format": "rar"}))[0].0, "format");
    }

    #[test]
    fn defaults() {
        let v: VagrantConfig = serde_json::from_value(json!({"compression_level": 9})).unwrap();
        assert_eq!(v.level(), 9);
        let v: VagrantConfig = serde_json::from_value(json!({"compression_level": -1})).unwrap();
        assert_eq!(v.level(), 6);
        assert_eq!(VagrantConfig::default().level(), 6);
        let c: ChecksumConfig =
            serde_json::from_value(json!({"checksum_types": ["sha256", "crc"]})).unwrap();
        assert_eq!(c.problems().len(), 1);
    }
}

#[cfg(test)]
mod vagrant_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn override_applies_per_provider_and_bad_overrides_are_problems() {
        let v: VagrantConfig = serde_json::from_value(json!({
            "output": "a.box",
            "override": {"libvirt": {"output": "lv.box", "compression_level": 1}}
        }))
        .unwrap();
        let lv = v.for_provider("libvirt").unwrap();
        assert_eq!((lv.output.as_str(), lv.level()), ("lv.box", 1));
        assert_eq!(v.for_provider("virtualbox").unwrap().output, "a.box");
        assert!(v.problems().is_empty());
        let bad: VagrantConfig = serde_json::from_value(json!({
            "override": {"libvirt": {"no_such_option": 1}}
        }))
        .unwrap();
        let problems = bad.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("no_such_option"), "{problems:?}");
    }

    #[test]
    fn provider_override_names_follow_packer_and_say_what_kiln_lacks() {
        let p = |name: &str| {
            let v = VagrantConfig {
                provider_override: Some(name.into()),
                ..VagrantConfig::default()
            };
            v.problems()
        };
        assert!(p("libvirt").is_empty());
        assert!(p("vmware").is_empty());
        assert!(p("vmware_desktop").is_empty());
        assert!(p("aws")[0].1.starts_with("kiln cannot make aws boxes yet"));
        assert!(p("kvm")[0]
            .1
            .starts_with("provider_override \"kvm\" is not a provider"));
        let missing = VagrantConfig {
            vagrantfile_template: Some("/nonexistent/Vagrantfile.tpl".into()),
            ..VagrantConfig::default()
        };
        assert_eq!(missing.problems().len(), 1);
        let empty = VagrantConfig {
            vagrantfile_template: Some(String::new()),
            ..VagrantConfig::default()
        };
        assert!(empty.problems().is_empty(), "an empty template means none");
        let generated = VagrantConfig {
            vagrantfile_template_generated: true,
            ..missing
        };
        assert!(generated.problems().is_empty());
    }
}
