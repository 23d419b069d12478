//! Typed option structs for builders, provisioners and post-processors, decoded from the
//! evaluated template values in a [`crate::template::PlannedBuild`] with [`decode`], which turns
//! serde errors into template diagnostics pointing at the offending attribute.

pub mod common;
pub mod decode;
pub mod post_processors;
pub mod provisioners;
pub mod qemu;
pub mod virtualbox;
pub mod vmware;
pub mod weak;

pub use decode::decode;

use crate::template::diagnostics::{Diagnostic, SpanTable};
use crate::template::{PlannedBuild, PlannedStep};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A problem when `value` of option `key` is not one of `allowed`, naming the closest.
pub(crate) fn one_of(
    key: &'static str,
    value: &str,
    allowed: &[&str],
) -> Option<(&'static str, String)> {
    if allowed.contains(&value) {
        return None;
    }
    let names: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    let close = match decode::suggest(value, &names) {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    };
    Some((
        key,
        format!(
            "{key} {value:?} is not supported{close}: use one of {}",
            allowed.join(", ")
        ),
    ))
}

/// A config type that can list the problems Packer reports after decoding.
trait Checked: DeserializeOwned + Serialize + Default {
    fn problems(&self) -> Vec<(&'static str, String)>;
}

macro_rules! checked {
    ($($t:ty),*) => {$(impl Checked for $t { fn problems(&self) -> Vec<(&'static str, String)> { <$t>::problems(self) } })*};
}
macro_rules! unchecked {
    ($($t:ty),*) => {$(impl Checked for $t { fn problems(&self) -> Vec<(&'static str, String)> { Vec::new() } })*};
}
checked!(
    qemu::QemuConfig,
    virtualbox::VirtualBoxIsoConfig,
    vmware::VmwareIsoConfig,
    provisioners::ShellConfig,
    provisioners::FileConfig,
    provisioners::ShellLocalConfig,
    provisioners::AnsibleConfig,
    provisioners::AnsibleLocalConfig,
    provisioners::PowershellConfig,
    provisioners::WindowsShellConfig,
    post_processors::ChecksumConfig,
    post_processors::ArtificeConfig,
    post_processors::VagrantConfig,
    post_processors::CompressConfig,
    post_processors::OvaConfig
);
unchecked!(
    provisioners::BreakpointConfig,
    provisioners::WindowsRestartConfig,
    post_processors::ManifestConfig
);

fn check<T: Checked>(value: &serde_json::Value, spans: &SpanTable, out: &mut Vec<Diagnostic>) {
    match decode::<T>(value, spans) {
        Ok(c) => out.extend(c.problems().into_iter().map(|(key, msg)| {
            Diagnostic::error(format!("{msg} in {}", spans.what), spans.locate(key))
                .with_hint(format!("set {key} correctly in the block"))
        })),
        Err(d) => out.push(d),
    }
}

/// Decode the typed options of a build's source, provisioners and post-processors, so that
/// `kiln validate` reports unknown options, wrong types and missing required options at their
/// place in the template. Types kiln does not know were already warned about by the loader.
pub fn check_build(b: &PlannedBuild) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    match b.source_type.as_str() {
        "qemu" => check::<qemu::QemuConfig>(&b.config, &b.spans, &mut out),
        "virtualbox-iso" => check::<virtualbox::VirtualBoxIsoConfig>(&b.config, &b.spans, &mut out),
        "vmware-iso" => check::<vmware::VmwareIsoConfig>(&b.config, &b.spans, &mut out),
        _ => {}
    }
    for p in b.provisioners.iter().chain(&b.error_cleanup) {
        check_provisioner(p, &mut out);
    }
    for p in b.post_processors.iter().flatten() {
        check_post_processor(p, &mut out);
    }
    out
}

fn check_provisioner(p: &PlannedStep, out: &mut Vec<Diagnostic>) {
    use provisioners::*;
    let (v, s) = (&p.config, &p.spans);
    match p.kind.as_str() {
        "shell" => check::<ShellConfig>(v, s, out),
        "file" => check::<FileConfig>(v, s, out),
        "shell-local" => check::<ShellLocalConfig>(v, s, out),
        "breakpoint" => check::<BreakpointConfig>(v, s, out),
        "ansible" => check::<AnsibleConfig>(v, s, out),
        "ansible-local" => check::<AnsibleLocalConfig>(v, s, out),
        "powershell" => check::<PowershellConfig>(v, s, out),
        "windows-restart" => check::<WindowsRestartConfig>(v, s, out),
        "windows-shell" => check::<WindowsShellConfig>(v, s, out),
        _ => {}
    }
}

fn check_post_processor(p: &PlannedStep, out: &mut Vec<Diagnostic>) {
    use post_processors::*;
    let (v, s) = (&p.config, &p.spans);
    match p.kind.as_str() {
        "vagrant" => check::<VagrantConfig>(v, s, out),
        "manifest" => check::<ManifestConfig>(v, s, out),
        "checksum" => check::<ChecksumConfig>(v, s, out),
        "compress" => check::<CompressConfig>(v, s, out),
        "shell-local" => check::<provisioners::ShellLocalConfig>(v, s, out),
        "artifice" => check::<ArtificeConfig>(v, s, out),
        "ova" => check::<OvaConfig>(v, s, out),
        _ => {}
    }
}
