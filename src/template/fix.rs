//! `kiln fix`: Packer's fixers, which rewrite options of older Packer versions in a legacy JSON
//! template to their current form (`iso_md5` → `iso_checksum`, a `virtualbox` builder →
//! `virtualbox-iso`, `ssh_wait_timeout` → `ssh_timeout`, …), run in Packer's order on the
//! template's JSON. The result is Packer's output: indented by two spaces, keys sorted (Packer
//! decodes the template into a Go map, which its encoder writes in key order).
//!
//! Only the fixers that touch what kiln builds are here: its builders (QEMU, VirtualBox, VMware,
//! `null`), the common SSH options, and its provisioners and post-processors. Packer's others
//! ([`SKIPPED`]) rename options of builders and post-processors kiln does not have (Amazon,
//! Azure, Docker, Google, Hyper-V, Parallels, Proxmox, Scaleway, vSphere), so they would change
//! nothing kiln could build. This module holds no CLI; `cli::fix` prints and validates.

use super::json::{parse_object, JsonTemplateError};
use serde_json::{Map, Value};
use std::path::Path;

/// One of Packer's fixers.
pub struct Fixer {
    /// Packer's name for it (`iso-md5`).
    pub name: &'static str,
    /// What it does, for `kiln fix --help`.
    pub synopsis: &'static str,
    fix: fn(&mut Map<String, Value>),
}

/// The fixers kiln runs, in Packer's order (some depend on it: `iso-md5` writes the
/// `iso_checksum_type` that `iso-checksum-type-and-url` folds into `iso_checksum`).
pub const FIXERS: &[Fixer] = &[
    Fixer {
        name: "iso-md5",
        synopsis: "Replaces \"iso_md5\" in builders with \"iso_checksum\"",
        fix: iso_md5,
    },
    Fixer {
        name: "virtualbox-gaattach",
        synopsis: "Replaces \"guest_additions_attach\" in VirtualBox builders with \"guest_additions_mode\"",
        fix: virtualbox_gaattach,
    },
    Fixer {
        name: "pp-vagrant-override",
        synopsis: "Moves provider-specific options of the vagrant post-processor into \"override\"",
        fix: pp_vagrant_override,
    },
    Fixer {
        name: "virtualbox-rename",
        synopsis: "Renames \"virtualbox\" builders (and provisioner overrides) to \"virtualbox-iso\"",
        fix: virtualbox_rename,
    },
    Fixer {
        name: "vmware-rename",
        synopsis: "Renames \"vmware\" builders to \"vmware-iso\"",
        fix: vmware_rename,
    },
    Fixer {
        name: "sshkeypath",
        synopsis: "Replaces \"ssh_key_path\" in builders with \"ssh_private_key_file\"",
        fix: sshkeypath,
    },
    Fixer {
        name: "sshdisableagent",
        synopsis: "Replaces \"ssh_disable_agent\" in builders with \"ssh_disable_agent_forwarding\"",
        fix: sshdisableagent,
    },
    Fixer {
        name: "manifest-filename",
        synopsis: "Replaces \"filename\" in manifest post-processors with \"output\"",
        fix: manifest_filename,
    },
    Fixer {
        name: "powershell-escapes",
        synopsis: "Removes PowerShell escapes from the powershell provisioner's environment_vars, elevated_user and elevated_password",
        fix: powershell_escapes,
    },
    Fixer {
        name: "vmware-compaction",
        synopsis: "Adds \"skip_compaction\": true to esx5 vmware-iso builders whose disk type cannot be compacted",
        fix: vmware_compaction,
    },
    Fixer {
        name: "qemu-disk-size",
        synopsis: "Writes a number \"disk_size\" of QEMU builders as a string in megabytes (\"10000M\")",
        fix: qemu_disk_size,
    },
    Fixer {
        name: "galaxy-command",
        synopsis: "Replaces \"galaxycommand\" in ansible-local provisioners with \"galaxy_command\"",
        fix: galaxy_command,
    },
    Fixer {
        name: "comm-config",
        synopsis: "Removes the ssh_ prefix of host_port_min, host_port_max and skip_nat_mapping in VirtualBox builders",
        fix: comm_config,
    },
    Fixer {
        name: "ssh-wait-timeout",
        synopsis: "Replaces \"ssh_wait_timeout\" in builders with \"ssh_timeout\"",
        fix: ssh_wait_timeout,
    },
    Fixer {
        name: "iso-checksum-type-and-url",
        synopsis: "Folds \"iso_checksum_type\" and \"iso_checksum_url\" into \"iso_checksum\"",
        fix: iso_checksum_type_and_url,
    },
    Fixer {
        name: "qemu-host-port",
        synopsis: "Removes the ssh_ prefix of host_port_min and host_port_max in QEMU builders",
        fix: qemu_host_port,
    },
];

/// Packer's fixers that kiln does not run, and why.
pub const SKIPPED: &[(&str, &str)] = &[
    (
        "createtime",
        "its keys (ami_name, bundle_prefix, snapshot_name) are cloud builders'",
    ),
    ("parallels-headless", "Parallels builder"),
    ("parallels-deprecations", "Parallels builder"),
    ("scaleway-access-key", "Scaleway builder"),
    ("amazon-shutdown_behavior", "Amazon builders"),
    ("amazon-enhanced-networking", "Amazon builders"),
    ("amazon-private-ip", "Amazon builders"),
    ("amazon-temp-sec-cidrs", "Amazon builders"),
    ("docker-email", "Docker builder and post-processors"),
    ("docker-tag-tags", "Docker post-processor"),
    ("hyperv-deprecations", "Hyper-V builders"),
    ("hyperv-vmxc-typo", "Hyper-V builders"),
    ("hyperv-cpu-and-ram", "Hyper-V builders"),
    (
        "clean-image-name",
        "the clean_image_name/clean_ami_name functions of cloud builders",
    ),
    ("spot-price-auto-product", "Amazon builders"),
    ("vsphere-iso-net-disk", "vSphere builder"),
    ("azure-exclude_from_latest", "Azure builder"),
    ("proxmox-type", "Proxmox builders"),
];

/// Runs every fixer on the legacy JSON template `src` (read from `file`, named in errors).
pub fn fix(src: &str, file: &Path) -> Result<Map<String, Value>, JsonTemplateError> {
    let mut template = parse_object(src, file)?;
    for f in FIXERS {
        tracing::debug!(fixer = f.name, "running fixer");
        (f.fix)(&mut template);
    }
    Ok(template)
}

/// The template as Packer's `fix` prints it: two-space indentation, keys in order.
pub fn to_text(template: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail.
    serde_json::to_string_pretty(template).unwrap_or_default()
}

/// The objects of the top-level array `key` (`builders`, `provisioners`).
fn objects<'a>(
    t: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    t.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// The objects of `key` whose `type` is `ty`.
fn of_type<'a>(
    t: &'a mut Map<String, Value>,
    key: &str,
    ty: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    objects(t, key).filter(move |o| o.get("type").and_then(Value::as_str).is_some_and(&ty))
}

/// Every post-processor definition: a top-level entry, or one inside a chain (an array);
/// entries that are just a type name (`"vagrant"`) have no options to fix.
fn post_processors(t: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    t.get_mut("post-processors")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .flat_map(|pp| match pp {
            Value::Array(chain) => chain.iter_mut().collect::<Vec<_>>(),
            other => vec![other],
        })
        .filter_map(Value::as_object_mut)
}

/// Renames `old` to `new` in `o` when `old` holds a value `keep` accepts; when `new` is already
/// set, `old` is only removed (the newer option wins, as in Packer).
fn rename(o: &mut Map<String, Value>, old: &str, new: &str, keep: fn(&Value) -> bool) {
    if !o.get(old).is_some_and(keep) {
        return;
    }
    if let Some(v) = o.remove(old) {
        if !o.contains_key(new) {
            o.insert(new.to_owned(), v);
        }
    }
}

fn iso_md5(t: &mut Map<String, Value>) {
    for b in objects(t, "builders") {
        if let Some(Value::String(md5)) = b.get("iso_md5").cloned() {
            b.remove("iso_md5");
            b.insert("iso_checksum".into(), Value::String(md5));
            b.insert("iso_checksum_type".into(), Value::from("md5"));
        }
    }
}

fn virtualbox_gaattach(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "virtualbox") {
        if let Some(Value::Bool(attach)) = b.get("guest_additions_attach").cloned() {
            b.remove("guest_additions_attach");
            let mode = if attach { "attach" } else { "upload" };
            b.insert("guest_additions_mode".into(), Value::from(mode));
        }
    }
}

fn pp_vagrant_override(t: &mut Map<String, Value>) {
    const PROVIDERS: &[&str] = &["aws", "digitalocean", "virtualbox", "vmware"];
    for pp in post_processors(t) {
        if pp.get("type").and_then(Value::as_str) != Some("vagrant") {
            continue;
        }
        let overrides: Map<String, Value> = PROVIDERS
            .iter()
            .filter_map(|p| Some(((*p).to_owned(), pp.remove(*p)?)))
            .collect();
        if !overrides.is_empty() {
            pp.insert("override".into(), Value::Object(overrides));
        }
    }
}

fn virtualbox_rename(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "virtualbox") {
        b.insert("type".into(), Value::from("virtualbox-iso"));
    }
    for p in objects(t, "provisioners") {
        if let Some(o) = p.get_mut("override").and_then(Value::as_object_mut) {
            if let Some(v) = o.remove("virtualbox") {
                o.insert("virtualbox-iso".into(), v);
            }
        }
    }
}

fn vmware_rename(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "vmware") {
        b.insert("type".into(), Value::from("vmware-iso"));
    }
}

fn sshkeypath(t: &mut Map<String, Value>) {
    for b in objects(t, "builders") {
        rename(b, "ssh_key_path", "ssh_private_key_file", Value::is_string);
    }
}

fn sshdisableagent(t: &mut Map<String, Value>) {
    for b in objects(t, "builders") {
        rename(
            b,
            "ssh_disable_agent",
            "ssh_disable_agent_forwarding",
            Value::is_boolean,
        );
    }
}

fn manifest_filename(t: &mut Map<String, Value>) {
    for pp in post_processors(t) {
        if pp.get("type").and_then(Value::as_str) == Some("manifest") {
            // Packer overwrites `output` here, unlike the other renames.
            if let Some(Value::String(f)) = pp.get("filename").cloned() {
                pp.remove("filename");
                pp.insert("output".into(), Value::String(f));
            }
        }
    }
}

fn powershell_escapes(t: &mut Map<String, Value>) {
    // Packer once wanted these escaped for PowerShell; it now escapes them itself.
    fn unescape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('`', Some(&n)) if matches!(n, '$' | '"' | '`' | '\'') => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push(c),
            }
        }
        out
    }
    for p in of_type(t, "provisioners", |ty| ty == "powershell") {
        for key in ["elevated_user", "elevated_password"] {
            if let Some(Value::String(s)) = p.get_mut(key) {
                *s = unescape(s);
            }
        }
        if let Some(Value::Array(vars)) = p.get_mut("environment_vars") {
            for v in vars.iter_mut() {
                if let Value::String(s) = v {
                    *s = unescape(s);
                }
            }
        }
    }
}

fn vmware_compaction(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "vmware-iso") {
        if b.get("remote_type").and_then(Value::as_str) != Some("esx5") {
            continue;
        }
        // ESXi's default disk type when this fixer was written; it cannot be compacted.
        let disk = b
            .entry("disk_type_id")
            .or_insert_with(|| Value::from("zeroedthick"));
        if disk.as_str().is_none_or(|d| d == "thin") {
            continue;
        }
        if b.get("skip_compaction").is_none_or(Value::is_boolean) {
            b.insert("skip_compaction".into(), Value::Bool(true));
        }
    }
}

fn qemu_disk_size(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "qemu") {
        if let Some(n) = b.get("disk_size").and_then(Value::as_f64) {
            // Packer truncates to an integer number of megabytes.
            b.insert("disk_size".into(), Value::from(format!("{}M", n.trunc())));
        }
    }
}

fn galaxy_command(t: &mut Map<String, Value>) {
    for p in of_type(t, "provisioners", |ty| ty == "ansible-local") {
        if p.contains_key("galaxy_command") {
            p.remove("galaxycommand");
        } else {
            rename(p, "galaxycommand", "galaxy_command", Value::is_string);
        }
    }
}

fn comm_config(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty.starts_with("virtualbox")) {
        for (old, new) in [
            ("ssh_host_port_min", "host_port_min"),
            ("ssh_host_port_max", "host_port_max"),
        ] {
            rename(b, old, new, |_| true);
        }
        if b.contains_key("skip_nat_mapping") {
            b.remove("ssh_skip_nat_mapping");
        } else {
            rename(
                b,
                "ssh_skip_nat_mapping",
                "skip_nat_mapping",
                Value::is_boolean,
            );
        }
    }
}

fn ssh_wait_timeout(t: &mut Map<String, Value>) {
    for b in objects(t, "builders") {
        if b.contains_key("ssh_timeout") {
            b.remove("ssh_wait_timeout");
        } else {
            rename(b, "ssh_wait_timeout", "ssh_timeout", Value::is_string);
        }
    }
}

fn iso_checksum_type_and_url(t: &mut Map<String, Value>) {
    for b in objects(t, "builders") {
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let url = text(b.remove("iso_checksum_url"));
        let ty = text(b.remove("iso_checksum_type"));
        let sum = text(b.get("iso_checksum").cloned());
        let checksum = if !url.is_empty() {
            format!("file:{url}")
        } else if sum.is_empty() {
            continue;
        } else if !ty.is_empty() {
            format!("{ty}:{sum}")
        } else {
            sum
        };
        b.insert("iso_checksum".into(), Value::String(checksum));
    }
}

fn qemu_host_port(t: &mut Map<String, Value>) {
    for b in of_type(t, "builders", |ty| ty == "qemu") {
        // Here Packer replaces a host_port_min already set.
        for (old, new) in [
            ("ssh_host_port_min", "host_port_min"),
            ("ssh_host_port_max", "host_port_max"),
        ] {
            if let Some(v) = b.remove(old) {
                b.insert(new.into(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The template after one fixer.
    fn run(name: &str, template: Value) -> Value {
        let mut t = template.as_object().cloned().unwrap();
        let f = FIXERS.iter().find(|f| f.name == name).unwrap();
        (f.fix)(&mut t);
        Value::Object(t)
    }

    #[test]
    fn iso_md5_becomes_a_typed_checksum_then_one_string() {
        let t = json!({"builders": [{"type": "qemu", "iso_md5": "abc"}]});
        assert_eq!(
            run("iso-md5", t.clone()),
            json!({"builders": [{"type": "qemu", "iso_checksum": "abc", "iso_checksum_type": "md5"}]})
        );
        let fixed = fix(&t.to_string(), Path::new("t.json")).unwrap();
        assert_eq!(
            Value::Object(fixed),
            json!({"builders": [{"type": "qemu", "iso_checksum": "md5:abc"}]})
        );
    }

    #[test]
    fn iso_checksum_type_and_url_fold_into_iso_checksum() {
        let t = json!({"builders": [
            {"iso_checksum": "abc", "iso_checksum_type": "sha256"},
            {"iso_checksum_url": "http://x/SUMS", "iso_checksum_type": "sha256"},
            {"iso_checksum_type": "none"},
            {"iso_checksum": "sha1:def"},
        ]});
        assert_eq!(
            run("iso-checksum-type-and-url", t),
            json!({"builders": [
                {"iso_checksum": "sha256:abc"},
                {"iso_checksum": "file:http://x/SUMS"},
                {},
                {"iso_checksum": "sha1:def"},
            ]})
        );
    }

    #[test]
    fn virtualbox_gaattach_sets_the_mode() {
        let t = json!({"builders": [
            {"type": "virtualbox", "guest_additions_attach": true},
            {"type": "virtualbox", "guest_additions_attach": false},
            {"type": "qemu", "guest_additions_attach": true},
        ]});
        assert_eq!(
            run("virtualbox-gaattach", t),
            json!({"builders": [
                {"type": "virtualbox", "guest_additions_mode": "attach"},
                {"type": "virtualbox", "guest_additions_mode": "upload"},
                {"type": "qemu", "guest_additions_attach": true},
            ]})
        );
    }

    #[test]
    fn vagrant_provider_options_move_into_override() {
        let t = json!({"post-processors": [
            "compress",
            {"type": "vagrant", "virtualbox": {"a": 1}, "output": "o"},
            [{"type": "vagrant", "vmware": {"b": 2}}, {"type": "manifest", "virtualbox": 3}],
        ]});
        assert_eq!(
            run("pp-vagrant-override", t),
            json!({"post-processors": [
                "compress",
                {"type": "vagrant", "output": "o", "override": {"virtualbox": {"a": 1}}},
                [{"type": "vagrant", "override": {"vmware": {"b": 2}}}, {"type": "manifest", "virtualbox": 3}],
            ]})
        );
    }

    #[test]
    fn virtualbox_and_vmware_builders_are_renamed() {
        let t = json!({
            "builders": [{"type": "virtualbox"}, {"type": "virtualbox-ovf"}, {"type": "vmware"}],
            "provisioners": [{"type": "shell", "override": {"virtualbox": {"x": 1}}}],
        });
        let t = run("virtualbox-rename", t);
        assert_eq!(
            run("vmware-rename", t),
            json!({
                "builders": [{"type": "virtualbox-iso"}, {"type": "virtualbox-ovf"}, {"type": "vmware-iso"}],
                "provisioners": [{"type": "shell", "override": {"virtualbox-iso": {"x": 1}}}],
            })
        );
    }

    #[test]
    fn ssh_renames_keep_a_newer_option_already_set() {
        let t = json!({"builders": [
            {"ssh_key_path": "a", "ssh_disable_agent": true, "ssh_wait_timeout": "1h"},
            {"ssh_key_path": "a", "ssh_private_key_file": "b", "ssh_wait_timeout": "1h", "ssh_timeout": "2h"},
        ]});
        let t = run("sshkeypath", t);
        let t = run("sshdisableagent", t);
        assert_eq!(
            run("ssh-wait-timeout", t),
            json!({"builders": [
                {"ssh_private_key_file": "a", "ssh_disable_agent_forwarding": true, "ssh_timeout": "1h"},
                {"ssh_private_key_file": "b", "ssh_timeout": "2h"},
            ]})
        );
    }

    #[test]
    fn manifest_filename_becomes_output() {
        let t = json!({"post-processors": [{"type": "manifest", "filename": "m.json"}]});
        assert_eq!(
            run("manifest-filename", t),
            json!({"post-processors": [{"type": "manifest", "output": "m.json"}]})
        );
    }

    #[test]
    fn powershell_escapes_are_removed() {
        let t = json!({"provisioners": [
            {"type": "powershell", "elevated_password": "p`$w``d", "environment_vars": ["A=`\"x`'"]},
            {"type": "shell", "environment_vars": ["A=`$x"]},
        ]});
        assert_eq!(
            run("powershell-escapes", t),
            json!({"provisioners": [
                {"type": "powershell", "elevated_password": "p$w`d", "environment_vars": ["A=\"x'"]},
                {"type": "shell", "environment_vars": ["A=`$x"]},
            ]})
        );
    }

    #[test]
    fn vmware_compaction_is_skipped_for_thick_esx_disks() {
        let t = json!({"builders": [
            {"type": "vmware-iso", "remote_type": "esx5"},
            {"type": "vmware-iso", "remote_type": "esx5", "disk_type_id": "thin"},
            {"type": "vmware-iso", "remote_type": "esx5", "disk_type_id": "eagerzeroedthick", "skip_compaction": false},
            {"type": "vmware-iso"},
        ]});
        assert_eq!(
            run("vmware-compaction", t),
            json!({"builders": [
                {"type": "vmware-iso", "remote_type": "esx5", "disk_type_id": "zeroedthick", "skip_compaction": true},
                {"type": "vmware-iso", "remote_type": "esx5", "disk_type_id": "thin"},
                {"type": "vmware-iso", "remote_type": "esx5", "disk_type_id": "eagerzeroedthick", "skip_compaction": true},
                {"type": "vmware-iso"},
            ]})
        );
    }

    #[test]
    fn qemu_disk_size_becomes_megabytes() {
        let t = json!({"builders": [
            {"type": "qemu", "disk_size": 10240},
            {"type": "qemu", "disk_size": "20G"},
            {"type": "virtualbox-iso", "disk_size": 10240},
        ]});
        assert_eq!(
            run("qemu-disk-size", t),
            json!({"builders": [
                {"type": "qemu", "disk_size": "10240M"},
                {"type": "qemu", "disk_size": "20G"},
                {"type": "virtualbox-iso", "disk_size": 10240},
            ]})
        );
    }

    #[test]
    fn galaxycommand_becomes_galaxy_command() {
        let t = json!({"provisioners": [
            {"type": "ansible-local", "galaxycommand": "g"},
            {"type": "ansible-local", "galaxycommand": "g", "galaxy_command": "h"},
        ]});
        assert_eq!(
            run("galaxy-command", t),
            json!({"provisioners": [
                {"type": "ansible-local", "galaxy_command": "g"},
                {"type": "ansible-local", "galaxy_command": "h"},
            ]})
        );
    }

    #[test]
    fn host_port_options_lose_their_ssh_prefix() {
        let t = json!({"builders": [
            {"type": "virtualbox-iso", "ssh_host_port_min": 2222, "ssh_host_port_max": 4444, "ssh_skip_nat_mapping": true},
            {"type": "virtualbox-ovf", "ssh_host_port_min": 1, "host_port_min": 2},
            {"type": "qemu", "ssh_host_port_min": 2222, "ssh_host_port_max": 4444},
        ]});
        let t = run("comm-config", t);
        assert_eq!(
            run("qemu-host-port", t),
            json!({"builders": [
                {"type": "virtualbox-iso", "host_port_min": 2222, "host_port_max": 4444, "skip_nat_mapping": true},
                {"type": "virtualbox-ovf", "host_port_min": 2},
                {"type": "qemu", "host_port_min": 2222, "host_port_max": 4444},
            ]})
        );
    }

    #[test]
    fn output_is_indented_with_sorted_keys_and_errors_have_a_position() {
        let fixed = fix(
            r#"{"variables": {"b": "1", "a": "<x>"}, "builders": [{"type": "null"}]}"#,
            Path::new("t.json"),
        )
        .unwrap();
        assert_eq!(
            to_text(&fixed),
            "{\n  \"builders\": [\n    {\n      \"type\": \"null\"\n    }\n  ],\n  \"variables\": {\n    \"a\": \"<x>\",\n    \"b\": \"1\"\n  }\n}"
        );
        match fix("{\n  \"builders\": [\n}", Path::new("t.json")) {
            Err(JsonTemplateError::Syntax { line, column, .. }) => {
                assert_eq!((line, column), (3, 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            fix("[]", Path::new("t.json")),
            Err(JsonTemplateError::Shape { .. })
        ));
    }

    #[test]
    fn every_packer_fixer_is_run_or_skipped_once() {
        let mut names: Vec<&str> = FIXERS
            .iter()
            .map(|f| f.name)
            .chain(SKIPPED.iter().map(|s| s.0))
            .collect();
        assert_eq!(names.len(), 34, "Packer 1.11 has 34 fixers");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 34);
    }
}
