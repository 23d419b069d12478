//! Typed option structs for builders, provisioners and post-processors, decoded from the
//! evaluated template values in a [`crate::template::PlannedBuild`] with [`decode`], which turns
//! serde errors into template diagnostics pointing at the offending attribute, and checked with
//! [`check`] (decode plus Packer's `Prepare()` problems). Which config belongs to which kind is
//! declared once, in the registries ([`crate::kinds`]).

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

/// A config type that can list the problems Packer reports after decoding (Packer's
/// `Prepare()` checks).
pub trait Checked: DeserializeOwned + Serialize + Default {
    fn problems(&self) -> Vec<(&'static str, String)>;
    /// What Packer warns about (the command goes on).
    fn warnings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

macro_rules! checked {
    ($($t:ty),*) => {$(impl Checked for $t { fn problems(&self) -> Vec<(&'static str, String)> { <$t>::problems(self) } })*};
}
macro_rules! warned {
    ($($t:ty),*) => {$(impl Checked for $t {
        fn problems(&self) -> Vec<(&'static str, String)> { <$t>::problems(self) }
        fn warnings(&self) -> Vec<(&'static str, String)> { <$t>::warnings(self) }
    })*};
}
macro_rules! unchecked {
    ($($t:ty),*) => {$(impl Checked for $t { fn problems(&self) -> Vec<(&'static str, String)> { Vec::new() } })*};
}
warned!(
    qemu::QemuConfig,
    vmware::VmwareIsoConfig,
    vmware::VmwareVmxConfig,
    virtualbox::VirtualBoxIsoConfig,
    virtualbox::VirtualBoxOvfConfig,
    virtualbox::VirtualBoxVmConfig,
    post_processors::CompressConfig
);
checked!(
    common::CommConfig,
    provisioners::ShellConfig,
    provisioners::FileConfig,
    provisioners::ShellLocalConfig,
    provisioners::AnsibleConfig,
    provisioners::AnsibleLocalConfig,
    provisioners::PowershellConfig,
    provisioners::WindowsShellConfig,
    provisioners::SleepConfig,
    post_processors::ChecksumConfig,
    post_processors::ArtificeConfig,
    post_processors::VagrantConfig,
    post_processors::OvaConfig
);
unchecked!(
    provisioners::BreakpointConfig,
    provisioners::WindowsRestartConfig,
    post_processors::ManifestConfig
);

/// How a provisioner or post-processor kind checks its options (see [`validate`]).
pub type Validate = fn(&serde_json::Value, &SpanTable, &mut Vec<Diagnostic>);

/// [`check`] for a kind whose decoded options are not kept (they are decoded again when it
/// runs, with the build's values rendered in).
pub fn validate<T: Checked>(
    value: &serde_json::Value,
    spans: &SpanTable,
    out: &mut Vec<Diagnostic>,
) {
    check::<T>(value, spans, out);
}

/// Decode `T` from `value`, adding its decode error or its problems to `out` at their place in
/// the template; the config when it decoded.
pub fn check<T: Checked>(
    value: &serde_json::Value,
    spans: &SpanTable,
    out: &mut Vec<Diagnostic>,
) -> Option<T> {
    match decode::<T>(value, spans) {
        Ok(c) => {
            out.extend(c.problems().into_iter().map(|(key, msg)| {
                // A message may carry its own hint (the checksum parser's do).
                let (msg, hint) = match msg.split_once("\nhint: ") {
                    Some((m, h)) => (m.to_owned(), h.to_owned()),
                    None => (msg, format!("set {key} correctly in the block")),
                };
                Diagnostic::error(format!("{msg} in {}", spans.what), spans.locate(key))
                    .with_hint(hint)
            }));
            out.extend(c.warnings().into_iter().map(|(key, msg)| {
                Diagnostic::warning(format!("{msg} in {}", spans.what), spans.locate(key))
            }));
            Some(c)
        }
        Err(d) => {
            out.push(d);
            None
        }
    }
}
