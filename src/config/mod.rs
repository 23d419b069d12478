//! Typed option structs for builders, provisioners and post-processors, decoded from the
//! evaluated template values in a [`crate::template::PlannedBuild`] with [`decode`], which turns
//! serde errors into template diagnostics pointing at the offending attribute.

pub mod common;
pub mod decode;
pub mod qemu;
pub mod weak;

pub use decode::decode;

use crate::template::diagnostics::Diagnostic;
use crate::template::PlannedBuild;

/// Decode the typed options of a build's source, so that `kiln validate` reports unknown
/// options, wrong types and missing required options at their place in the template.
pub fn check_build(b: &PlannedBuild) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if b.source_type == "qemu" {
        match decode::<qemu::QemuConfig>(&b.config, &b.spans) {
            Ok(c) => out.extend(problems(c.problems(), b)),
            Err(d) => out.push(d),
        }
    }
    out
}

fn problems(list: Vec<(&'static str, String)>, b: &PlannedBuild) -> Vec<Diagnostic> {
    list.into_iter()
        .map(|(key, msg)| {
            Diagnostic::error(format!("{} in {}", msg, b.spans.what), b.spans.locate(key))
                .with_hint(format!("set {key} in the source block"))
        })
        .collect()
}
