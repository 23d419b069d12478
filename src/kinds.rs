//! The registry of kinds, seen whole. Each builder, provisioner and post-processor kind is
//! declared once, in its own layer: [`BUILDERS`], [`PROVISIONERS`] and [`POST_PROCESSORS`]
//! (type name, Packer plugin, typed config, how it runs), so that the provisioner runner and the
//! post-processor chains dispatch without reaching up here. This module answers the questions
//! that cross them: which kinds a plan names that kiln lacks (for `validate` and `build`;
//! `inspect` marks them), which Packer plugins are built in (`kiln init`), and [`prepare`],
//! which checks every build of a plan and decodes each source's options once, for `kiln
//! validate` to report and `kiln build` to run.
//!
//! The template loader knows no kinds: it evaluates the language, and the checks here put their
//! errors at the block they are about.

use crate::builder::{Source, BUILDERS};
use crate::postprocessor::POST_PROCESSORS;
use crate::provisioner::PROVISIONERS;
use crate::template::diagnostics::{suggest, Diagnostic, Severity};
use crate::template::{Plan, PlannedBuild, PlannedStep};

/// The source types kiln knows, in the registry's order.
pub fn source_types() -> Vec<&'static str> {
    BUILDERS.iter().map(|k| k.name).collect()
}

/// The Packer plugins (by the last part of their source address) whose components kiln has
/// built in.
pub fn built_in_plugins() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = BUILDERS
        .iter()
        .map(|k| k.plugin)
        .chain(PROVISIONERS.iter().map(|k| k.plugin))
        .chain(POST_PROCESSORS.iter().map(|k| k.plugin))
        .flatten()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Kinds a build names that kiln does not have: an error for a source type (the build cannot
/// start), a warning for a provisioner or post-processor (the build fails when it reaches it,
/// as Packer's would without the plugin).
fn unknown_in(b: &PlannedBuild, out: &mut Vec<Diagnostic>) {
    if !BUILDERS.iter().any(|k| k.name == b.source_type) {
        let known = source_types();
        let names: Vec<String> = known.iter().map(|s| (*s).to_owned()).collect();
        let ty = &b.source_type;
        let hint = match suggest(ty, &names) {
            Some(s) => format!("did you mean \"{s}\"? kiln builds: {}", known.join(", ")),
            None => format!(
                "kiln builds {}; leave this source out with -only or -except (e.g. -except='{ty}.*')",
                known.join(", ")
            ),
        };
        out.push(
            Diagnostic::error(
                format!(
                    "unknown source type \"{ty}\" (used by build \"{}\")",
                    b.name
                ),
                b.spans.block.clone(),
            )
            .with_hint(hint),
        );
    }
    let provisioners: Vec<&str> = PROVISIONERS.iter().map(|k| k.name).collect();
    for p in b.provisioners.iter().chain(&b.error_cleanup) {
        unknown_step(p, "provisioner", &provisioners, out);
    }
    let post_processors: Vec<&str> = POST_PROCESSORS.iter().map(|k| k.name).collect();
    for p in b.post_processors.iter().flatten() {
        unknown_step(p, "post-processor", &post_processors, out);
    }
}

fn unknown_step(p: &PlannedStep, what: &str, known: &[&str], out: &mut Vec<Diagnostic>) {
    if !known.contains(&p.kind.as_str()) {
        out.push(
            Diagnostic::warning(
                format!(
                    "kiln has no {what} \"{}\"; builds that reach it will fail",
                    p.kind
                ),
                p.spans.block.clone(),
            )
            .with_hint(format!("kiln's {what}s are: {}", known.join(", "))),
        );
    }
}

/// What [`prepare`] found: each build's decoded source (in the plan's order) when nothing is
/// wrong, and every problem, each once.
pub struct Prepared {
    /// One per build of the plan, in order; empty when there are errors.
    pub sources: Vec<Box<dyn Source>>,
    /// Errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Prepared {
    /// No errors (warnings allowed): the builds can run.
    pub fn passed(&self) -> bool {
        !self
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Check every build of `plan` — its kinds, its source's options (decoded once, here), its
/// provisioners' and post-processors' options — and keep the decoded sources for the build.
pub fn prepare(plan: &Plan, force: bool) -> Prepared {
    let mut diagnostics = Vec::new();
    let mut sources = Vec::new();
    for b in &plan.builds {
        unknown_in(b, &mut diagnostics);
        if let Some(kind) = BUILDERS.iter().find(|k| k.name == b.source_type) {
            if let Some(source) = (kind.prepare)(b, &mut diagnostics) {
                if !force {
                    diagnostics.extend(existing_output(b, source.as_ref()));
                }
                sources.push(source);
            }
        }
        for p in b.provisioners.iter().chain(&b.error_cleanup) {
            if let Some(kind) = PROVISIONERS.iter().find(|k| k.name == p.kind) {
                (kind.check)(&p.config, &p.spans, &mut diagnostics);
            }
        }
        for p in b.post_processors.iter().flatten() {
            if let Some(kind) = POST_PROCESSORS.iter().find(|k| k.name == p.kind) {
                (kind.check)(&p.config, &p.spans, &mut diagnostics);
            }
        }
    }
    let mut prepared = Prepared {
        sources,
        diagnostics: dedup(diagnostics),
    };
    if !prepared.passed() || prepared.sources.len() != plan.builds.len() {
        prepared.sources.clear();
    }
    prepared
}

/// Packer's check: the output directory must not exist yet (without `-force`, which `build`
/// uses to replace it).
fn existing_output(b: &PlannedBuild, source: &dyn crate::builder::Source) -> Option<Diagnostic> {
    let dir = source.output_directory(b)?;
    dir.exists().then(|| {
        Diagnostic::error(
            format!(
                "output directory {} already exists (build {})",
                dir.display(),
                b.name
            ),
            b.spans.locate("output_directory"),
        )
        .with_hint(
            "remove it, choose another output_directory, or run kiln build -force to replace it",
        )
    })
}

/// A provisioner shared by several builds would report the same problem once per build.
fn dedup(all: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in all {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{load, LoadOptions};

    fn plan(hcl: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pkr.hcl");
        std::fs::write(&path, hcl).unwrap();
        load(&LoadOptions {
            path,
            ..LoadOptions::default()
        })
        .unwrap()
    }

    /// A source type kiln lacks is an error at its source block, naming the kinds kiln has and
    /// the closest one; nothing is prepared to run.
    #[test]
    fn an_unknown_source_type_is_an_error_at_its_block() {
        let p = plan("source \"qemuu\" \"vm\" {}\nbuild { sources = [\"source.qemuu.vm\"] }\n");
        let prepared = prepare(&p, false);
        assert!(!prepared.passed());
        assert!(prepared.sources.is_empty());
        let [d] = &prepared.diagnostics[..] else {
            panic!("{:?}", prepared.diagnostics)
        };
        assert_eq!(
            d.summary,
            "unknown source type \"qemuu\" (used by build \"qemuu.vm\")"
        );
        assert_eq!(d.location.as_ref().map(|l| (l.line, l.col)), Some((1, 1)));
        assert_eq!(
            d.hint.as_deref(),
            Some("did you mean \"qemu\"? kiln builds: qemu, virtualbox-iso, virtualbox-ovf, virtualbox-vm, vmware-iso, vmware-vmx, null")
        );
    }

    /// A provisioner or post-processor kiln lacks is a warning (the build fails only if it
    /// reaches it), once even when several builds share it; the builds still prepare.
    #[test]
    fn an_unknown_provisioner_is_a_warning_once() {
        let p = plan(
            "source \"null\" \"a\" { communicator = \"none\" }\n\
             source \"null\" \"b\" { communicator = \"none\" }\n\
             build {\n  sources = [\"source.null.a\", \"source.null.b\"]\n  \
             provisioner \"puppet-masterless\" {}\n  post-processor \"docker-push\" {}\n}\n",
        );
        let prepared = prepare(&p, false);
        assert!(prepared.passed());
        assert_eq!(prepared.sources.len(), 2);
        let summaries: Vec<&str> = prepared
            .diagnostics
            .iter()
            .map(|d| d.summary.as_str())
            .collect();
        assert_eq!(
            summaries,
            [
                "kiln has no provisioner \"puppet-masterless\"; builds that reach it will fail",
                "kiln has no post-processor \"docker-push\"; builds that reach it will fail",
            ]
        );
        assert!(prepared
            .diagnostics
            .iter()
            .all(|d| d.severity == Severity::Warning));
    }

    /// A source's options are decoded here, once, into its typed config, which the build then
    /// runs; a bad option stops every build from being prepared.
    #[test]
    fn sources_are_decoded_once_into_their_typed_config() {
        let ok = plan(
            "source \"qemu\" \"vm\" {\n  iso_url = \"a.iso\"\n  iso_checksum = \"none\"\n  \
             cpus = 3\n  ssh_username = \"u\"\n}\nbuild { sources = [\"source.qemu.vm\"] }\n",
        );
        let prepared = prepare(&ok, false);
        assert!(prepared.passed(), "{:?}", prepared.diagnostics);
        let [source] = &prepared.sources[..] else {
            panic!("one build, one source")
        };
        let shown = format!("{source:?}");
        assert!(shown.starts_with("QemuConfig {"), "{shown}");
        assert!(shown.contains("cpus: Some(3)"), "{shown}");

        let bad = plan(
            "source \"qemu\" \"vm\" {\n  iso_url = \"a.iso\"\n  iso_checksum = \"none\"\n  \
             cpus = \"many\"\n}\nbuild { sources = [\"source.qemu.vm\"] }\n",
        );
        let prepared = prepare(&bad, false);
        assert!(!prepared.passed());
        assert!(prepared.sources.is_empty());
        assert_eq!(
            prepared.diagnostics[0].location.as_ref().map(|l| l.line),
            Some(4)
        );
    }

    /// Packer's output check (the SDK's OutputConfig.Prepare): an existing output directory is
    /// an error at its attribute, unless `-force`, which the build uses to replace it.
    #[test]
    fn an_existing_output_directory_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(&format!(
            "source \"qemu\" \"vm\" {{\n  iso_url = \"a.iso\"\n  iso_checksum = \"none\"\n  \
             ssh_username = \"u\"\n  output_directory = \"{}\"\n}}\nbuild {{ sources = [\"source.qemu.vm\"] }}\n",
            dir.path().display()
        ));
        let prepared = prepare(&p, false);
        assert!(!prepared.passed());
        let d = prepared
            .diagnostics
            .iter()
            .find(|d| d.summary.contains("already exists (build qemu.vm)"))
            .unwrap();
        assert_eq!(d.location.as_ref().map(|l| l.line), Some(5));
        assert!(d.hint.as_deref().unwrap_or("").contains("-force"), "{d:?}");
        assert!(prepare(&p, true).passed());
        std::fs::remove_dir(dir.path()).unwrap();
        assert!(prepare(&p, false).passed());
    }

    /// Every kind is declared once: no name twice in a table.
    #[test]
    fn each_kind_is_declared_once() {
        for names in [
            BUILDERS.iter().map(|k| k.name).collect::<Vec<_>>(),
            PROVISIONERS.iter().map(|k| k.name).collect(),
            POST_PROCESSORS.iter().map(|k| k.name).collect(),
        ] {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{names:?}");
        }
    }

    /// `kiln init`'s list comes from the tables: the plugins of the kinds kiln has.
    #[test]
    fn built_in_plugins_come_from_the_kinds() {
        assert_eq!(
            built_in_plugins(),
            ["ansible", "qemu", "vagrant", "virtualbox", "vmware"]
        );
    }
}
