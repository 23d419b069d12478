//! Layer keys: a SHA-256 over everything that can change what a step leaves on the guest's
//! disk. The install layer's key covers the source's evaluated options (minus the few that only
//! shape the output, [`OUTPUT_ONLY`]), the bytes of the local files it serves over HTTP or puts
//! on a floppy or CD, and, for an input whose checksum is `none`, the local file's size and
//! modification time. Each provisioner's key chains on the key before it and covers the
//! provisioner's type, its evaluated options (its environment is among them) and the bytes of
//! every local file or directory they name ([`PROVISIONER_FILES`]).
//!
//! Values are hashed, never stored: a sensitive variable changes the key and nothing else. What
//! kiln cannot see is not in the key: what a script downloads, what `shell-local` does on the
//! host. Those steps are cached by their inputs, as the README says.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::template::PlannedStep;

/// Bumped when what a layer holds or how keys are made changes, so older layers stop matching.
const FORMAT: &str = "kiln-layer-v1";

/// Source options that do not change the guest's disk up to the install layer: where and how
/// the output is written, how the VM is watched, and the shutdown, which comes after every
/// layer. Changing them reuses the layers.
const OUTPUT_ONLY: &[&str] = &[
    "output_directory",
    "vm_name",
    "format",
    "disk_compression",
    "skip_compaction",
    "headless",
    "vnc_bind_address",
    "vnc_port_min",
    "vnc_port_max",
    "vnc_use_password",
    "vnc_password",
    "http_port_min",
    "http_port_max",
    "http_bind_address",
    "host_port_min",
    "host_port_max",
    "ssh_host_port_min",
    "ssh_host_port_max",
    "ssh_timeout",
    "ssh_wait_timeout",
    "ssh_handshake_attempts",
    "shutdown_command",
    "shutdown_timeout",
    "qmp_enable",
    "qmp_socket_path",
    "iso_target_path",
    "iso_skip_cache",
];

/// Source options naming local files whose bytes the guest receives (globs allowed).
const SOURCE_FILES: &[&str] = &["http_directory", "floppy_files", "floppy_dirs", "cd_files"];

/// Provisioner options naming local files or directories that are uploaded or run.
const PROVISIONER_FILES: &[&str] = &[
    "script",
    "scripts",
    "source",
    "sources",
    "playbook_file",
    "playbook_dir",
    "galaxy_file",
    "inventory_file",
    "inventory_directory",
    "role_paths",
];

/// A file the key must cover could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} to compute the layer key")]
pub struct KeyError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// The key of the layer after the builder's install of the source whose evaluated options are
/// `config` (`source_type` names the builder), resolving relative paths against `base`.
pub fn install_key(source_type: &str, config: &Value, base: &Path) -> Result<String, KeyError> {
    let mut h = KeyHasher::new("install");
    h.text(source_type);
    let mut kept = config.clone();
    if let Value::Object(map) = &mut kept {
        map.retain(|k, _| !OUTPUT_ONLY.contains(&k.as_str()));
    }
    h.value(&kept);
    for key in SOURCE_FILES {
        for path in strings(config.get(*key)) {
            h.paths(base, &path)?;
        }
    }
    // Without a checksum the input is known by its name only: its size and age stand in for
    // its bytes when it is a local file (hashing a multi-GB ISO each build would cost more
    // than the cache saves).
    let unverified = config.get("iso_checksum").and_then(Value::as_str) == Some("none");
    if unverified {
        let urls = strings(config.get("iso_url")).into_iter();
        for url in urls.chain(strings(config.get("iso_urls"))) {
            let local = base.join(url.strip_prefix("file://").unwrap_or(&url));
            if let Ok(m) = std::fs::metadata(&local) {
                h.text(&format!("{}:{:?}", m.len(), m.modified().ok()));
            }
        }
    }
    Ok(h.finish())
}

/// The key of the layer after `step`, run on the layer whose key is `parent`.
pub fn provisioner_key(parent: &str, step: &PlannedStep, base: &Path) -> Result<String, KeyError> {
    let mut h = KeyHasher::new("provisioner");
    h.text(parent);
    h.text(&step.kind);
    h.value(&step.config);
    for key in PROVISIONER_FILES {
        for path in strings(step.config.get(*key)) {
            h.paths(base, &path)?;
        }
    }
    Ok(h.finish())
}

/// The strings of a value that is a string or a list of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// SHA-256 over tagged, length-prefixed fields, so that no two different inputs hash alike.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(kind: &str) -> Self {
        let mut h = Self(Sha256::new());
        h.text(FORMAT);
        h.text(kind);
        h
    }

    fn bytes(&mut self, tag: u8, data: &[u8]) {
        self.0.update([tag]);
        self.0.update((data.len() as u64).to_le_bytes());
        self.0.update(data);
    }

    fn text(&mut self, s: &str) {
        self.bytes(b's', s.as_bytes());
    }

    /// A JSON value with object keys in sorted order, whatever order the template wrote.
    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.bytes(b'n', &[]),
            Value::Bool(b) => self.bytes(b'b', &[u8::from(*b)]),
            Value::Number(n) => self.bytes(b'#', n.to_string().as_bytes()),
            Value::String(s) => self.text(s),
            Value::Array(a) => {
                self.bytes(b'[', &(a.len() as u64).to_le_bytes());
                a.iter().for_each(|v| self.value(v));
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                self.bytes(b'{', &(keys.len() as u64).to_le_bytes());
                for k in keys {
                    self.text(k);
                    self.value(&m[k]);
                }
            }
        }
    }

    /// Every file `pattern` names under `base` (a path, a glob, or a directory taken whole),
    /// by relative name, executable bit and bytes. A name that matches nothing is hashed as
    /// such: the step fails on it anyway, and the key must not match a run where it existed.
    fn paths(&mut self, base: &Path, pattern: &str) -> Result<(), KeyError> {
        let full = base.join(pattern);
        let mut found: Vec<std::path::PathBuf> = glob::glob(&full.to_string_lossy())
            .map(|g| g.filter_map(Result::ok).collect())
            .unwrap_or_default();
        if found.is_empty() && full.exists() {
            found.push(full);
        }
        found.sort();
        self.text(pattern);
        if found.is_empty() {
            self.bytes(b'?', &[]);
        }
        for p in found {
            self.tree(&p, &p)?;
        }
        Ok(())
    }

    fn tree(&mut self, root: &Path, path: &Path) -> Result<(), KeyError> {
        let err = |source| KeyError {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(err)?;
        let rel = path.strip_prefix(root).unwrap_or(path);
        self.text(&rel.to_string_lossy());
        if meta.is_dir() {
            let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(path)
                .map_err(err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            self.bytes(b'd', &(entries.len() as u64).to_le_bytes());
            for e in entries {
                self.tree(root, &e)?;
            }
            return Ok(());
        }
        let exec = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
        self.bytes(b'x', &[u8::from(exec)]);
        self.bytes(b'f', &meta.len().to_le_bytes());
        let mut f = std::fs::File::open(path).map_err(err)?;
        std::io::copy(&mut f, &mut self.0).map_err(err)?;
        Ok(())
    }

    fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::diagnostics::SpanTable;
    use crate::template::StepMeta;
    use serde_json::json;

    fn step(kind: &str, config: Value) -> PlannedStep {
        PlannedStep {
            kind: kind.into(),
            name: None,
            config,
            spans: SpanTable::default(),
            meta: StepMeta::default(),
        }
    }

    /// The keys of a build: install, then one per provisioner.
    fn chain(config: &Value, steps: &[PlannedStep], base: &Path) -> Vec<String> {
        let mut keys = vec![install_key("qemu", config, base).unwrap()];
        for s in steps {
            let k = provisioner_key(keys.last().unwrap(), s, base).unwrap();
            keys.push(k);
        }
        keys
    }

    /// How many keys two chains share from the start.
    fn shared(a: &[String], b: &[String]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        source: Value,
        steps: Vec<PlannedStep>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("http")).unwrap();
        std::fs::write(p.join("http/preseed.cfg"), "d-i x").unwrap();
        std::fs::write(p.join("one.sh"), "echo one").unwrap();
        std::fs::write(p.join("two.sh"), "echo two").unwrap();
        std::fs::create_dir_all(p.join("files/sub")).unwrap();
        std::fs::write(p.join("files/sub/a"), "a").unwrap();
        let source = json!({
            "iso_url": "debian.iso", "iso_checksum": "sha256:00",
            "http_directory": "http",
            "boot_command": ["<esc>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"],
            "output_directory": "out", "memory": 1024,
        });
        let steps = vec![
            step("shell", json!({ "script": "one.sh" })),
            step("file", json!({ "source": "files", "destination": "/tmp" })),
            step(
                "shell",
                json!({ "scripts": ["two.sh"], "environment_vars": ["A=1"] }),
            ),
        ];
        Fixture { dir, source, steps }
    }

    #[test]
    fn each_input_invalidates_exactly_its_layer_and_those_after() {
        let f = fixture();
        let base = f.dir.path();
        let before = chain(&f.source, &f.steps, base);
        assert_eq!(before.len(), 4);
        assert_eq!(chain(&f.source, &f.steps, base), before, "keys are stable");

        // The last script's bytes (same name): only the last layer.
        std::fs::write(base.join("two.sh"), "echo TWO").unwrap();
        assert_eq!(shared(&chain(&f.source, &f.steps, base), &before), 3);
        std::fs::write(base.join("two.sh"), "echo two").unwrap();

        // A file deep in an uploaded directory: the file provisioner's layer on.
        std::fs::write(base.join("files/sub/a"), "b").unwrap();
        assert_eq!(shared(&chain(&f.source, &f.steps, base), &before), 2);
        std::fs::write(base.join("files/sub/a"), "a").unwrap();

        // An environment variable of the last provisioner.
        let mut steps = f.steps.clone();
        steps[2].config["environment_vars"] = json!(["A=2"]);
        assert_eq!(shared(&chain(&f.source, &steps, base), &before), 3);

        // The first script: every provisioner layer, not the install.
        std::fs::write(base.join("one.sh"), "echo 1").unwrap();
        assert_eq!(shared(&chain(&f.source, &f.steps, base), &before), 1);
        std::fs::write(base.join("one.sh"), "echo one").unwrap();

        // A file served over HTTP, and the boot command: everything.
        std::fs::write(base.join("http/preseed.cfg"), "d-i y").unwrap();
        assert_eq!(shared(&chain(&f.source, &f.steps, base), &before), 0);
        std::fs::write(base.join("http/preseed.cfg"), "d-i x").unwrap();
        let mut source = f.source.clone();
        source["boot_command"] = json!(["<esc><wait>auto<enter>"]);
        assert_eq!(shared(&chain(&source, &f.steps, base), &before), 0);

        // Everything restored: the same keys again.
        assert_eq!(chain(&f.source, &f.steps, base), before);
    }

    #[test]
    fn output_options_and_key_order_do_not_change_the_keys() {
        let f = fixture();
        let base = f.dir.path();
        let before = chain(&f.source, &f.steps, base);
        let mut source = f.source.clone();
        source["output_directory"] = json!("elsewhere");
        source["format"] = json!("raw");
        source["headless"] = json!(true);
        assert_eq!(chain(&source, &f.steps, base), before);
        // The same options written in another order.
        let reordered: serde_json::Map<String, Value> = f
            .source
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(chain(&Value::Object(reordered), &f.steps, base), before);
        // But the machine's options do.
        source["memory"] = json!(2048);
        assert_eq!(shared(&chain(&source, &f.steps, base), &before), 0);
    }

    #[test]
    fn a_secret_changes_the_key_and_is_not_in_it() {
        let f = fixture();
        let base = f.dir.path();
        let mut a = f.steps.clone();
        a[0].config["environment_vars"] = json!(["TOKEN=hunter2-secret"]);
        let mut b = f.steps.clone();
        b[0].config["environment_vars"] = json!(["TOKEN=other-secret"]);
        let (ka, kb) = (chain(&f.source, &a, base), chain(&f.source, &b, base));
        assert_ne!(ka[1], kb[1]);
        assert!(ka.iter().all(|k| k.len() == 64 && !k.contains("hunter2")));
    }

    #[test]
    fn an_executable_bit_and_a_missing_file_count() {
        let f = fixture();
        let base = f.dir.path();
        let before = chain(&f.source, &f.steps, base);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(base.join("one.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_eq!(shared(&chain(&f.source, &f.steps, base), &before), 1);
        std::fs::remove_file(base.join("one.sh")).unwrap();
        let missing = chain(&f.source, &f.steps, base);
        assert_eq!(shared(&missing, &before), 1);
    }
}
