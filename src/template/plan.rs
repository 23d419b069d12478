//! The result of loading a template: a [`Plan`] with one [`PlannedBuild`] per (build block ×
//! source) left by `-only`/`-except`, each carrying its evaluated source config and its
//! provisioner and post-processor chains as JSON values, plus the span tables that let later
//! decoding errors point back into the template.

use super::diagnostics::{Diagnostic, SpanTable};
use super::duration::GoDuration;
use serde_json::Value;
use std::path::PathBuf;

/// Everything kiln will build, evaluated. Its `Debug` output has sensitive values redacted.
#[derive(Clone, Default)]
pub struct Plan {
    /// Builds in template order.
    pub builds: Vec<PlannedBuild>,
    /// Input variables with their final values.
    pub variables: Vec<NamedValue>,
    /// Local values.
    pub locals: Vec<NamedValue>,
    /// Data source outputs as `type.name` → value.
    pub data: Vec<NamedValue>,
    /// Plugins listed in `packer { required_plugins { … } }`.
    pub required_plugins: Vec<RequiredPlugin>,
    /// Warnings found while loading (unknown provisioner types, undeclared variables in files…).
    pub warnings: Vec<Diagnostic>,
    /// `path.root`: the template directory.
    pub path_root: PathBuf,
    /// `path.cwd`.
    pub cwd: PathBuf,
    /// Offline mode, for the expressions [`Plan::evaluate`] evaluates later.
    pub offline: bool,
    /// Values of sensitive variables and locals (strings, and each string inside lists/maps).
    pub(crate) sensitive: Vec<String>,
}

/// A variable, local or data source output.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// `name` for variables and locals, `type.name` for data sources.
    pub name: String,
    /// Its value.
    pub value: hcl::Value,
    /// Declared `sensitive = true`.
    pub sensitive: bool,
    /// `type = …` as written, for variables.
    pub type_name: Option<String>,
    /// `description`, for variables.
    pub description: Option<String>,
}

/// One entry of `required_plugins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredPlugin {
    /// Local name (`qemu`).
    pub name: String,
    /// `github.com/hashicorp/qemu`.
    pub source: String,
    /// Version constraint.
    pub version: String,
}

/// One build: a source run through a build block.
#[derive(Debug, Clone)]
pub struct PlannedBuild {
    /// `type.name` (after a `name = …` rename in the build block): what `-only` and
    /// provisioner `only`/`except` match.
    pub name: String,
    /// Source type: `qemu`, `virtualbox-iso`…
    pub source_type: String,
    /// Source name (after rename).
    pub source_name: String,
    /// The build block's `name` (empty when unnamed).
    pub build_name: String,
    /// The build block's `description`.
    pub description: String,
    /// The evaluated source body merged with the build block's overrides: attributes as values,
    /// nested blocks as arrays of objects, unset (null) attributes left out. Values only known at
    /// build time are Packer-style placeholders (`{{ .HTTPIP }}`, ``{{ build `ID` }}``).
    pub config: Value,
    /// Where each key of `config` was written.
    pub spans: SpanTable,
    /// Provisioners that apply to this build, in order.
    pub provisioners: Vec<PlannedStep>,
    /// The `error-cleanup-provisioner`, if any applies.
    pub error_cleanup: Option<PlannedStep>,
    /// Post-processor chains: each inner list runs in sequence on the previous artifact.
    pub post_processors: Vec<Vec<PlannedStep>>,
}

/// A provisioner or post-processor with its evaluated config and meta-arguments.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Type: `shell`, `file`, `vagrant`…
    pub kind: String,
    /// `name = …`, when set.
    pub name: Option<String>,
    /// The evaluated body without the meta-arguments, with a matching `override` merged in.
    pub config: Value,
    /// Where each key of `config` was written.
    pub spans: SpanTable,
    /// Meta-arguments.
    pub meta: StepMeta,
}

/// Meta-arguments Packer handles itself rather than passing to the plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepMeta {
    /// Wait before running (provisioners).
    pub pause_before: Option<GoDuration>,
    /// Retries on failure (provisioners).
    pub max_retries: u32,
    /// Give up after this long (provisioners).
    pub timeout: Option<GoDuration>,
    /// Keep going when it fails (Packer ≥ 1.13; provisioners).
    pub continue_on_error: bool,
    /// Keep the input artifact (post-processors); `None` lets the post-processor decide.
    pub keep_input_artifact: Option<bool>,
}

impl Plan {
    /// The values to hide in anything printed: sensitive variables and locals, as strings.
    pub fn sensitive_values(&self) -> &[String] {
        &self.sensitive
    }

    /// `text` with every sensitive value replaced by `<sensitive>`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.sensitive)
    }

    /// Text for `kiln inspect`, secrets redacted; a build whose source type is not `buildable`
    /// is marked.
    pub fn inspect(&self, buildable: impl Fn(&str) -> bool) -> String {
        let mut out = String::from("Packer Inspect: HCL2 mode\n\n> input-variables:\n\n");
        for v in &self.variables {
            out.push_str(&format!("var.{}: {}\n", v.name, self.show(v)));
        }
        out.push_str("\n> local-variables:\n\n");
        for v in &self.locals {
            out.push_str(&format!("local.{}: {}\n", v.name, self.show(v)));
        }
        out.push_str("\n> builds:\n");
        for b in &self.builds {
            out.push_str(&format!("\n  > {}:\n", b.name));
            if !b.build_name.is_empty() {
                out.push_str(&format!("\n    build: {}\n", b.build_name));
            }
            let mark = if buildable(&b.source_type) {
                ""
            } else {
                " (kiln cannot build this source type)"
            };
            out.push_str(&format!("\n    source: {}{mark}\n", b.source_type));
            if !b.provisioners.is_empty() {
                out.push_str("\n    provisioners:\n\n");
                for p in &b.provisioners {
                    out.push_str(&format!("      {}\n", step_label(p)));
                }
            }
            if let Some(p) = &b.error_cleanup {
                out.push_str(&format!(
                    "\n    error-cleanup-provisioner:\n\n      {}\n",
                    step_label(p)
                ));
            }
            if !b.post_processors.is_empty() {
                out.push_str("\n    post-processors:\n\n");
                for (i, chain) in b.post_processors.iter().enumerate() {
                    let names: Vec<String> = chain.iter().map(step_label).collect();
                    out.push_str(&format!("      {i}: {}\n", names.join(" -> ")));
                }
            }
        }
        // A build or provisioner name made from an unknown variable.
        self.redact(&out).replace(UNKNOWN, "<unknown>")
    }

    /// Evaluate an expression against the template's variables, locals and data sources
    /// (`kiln console`). The result is shown as HCL, secrets redacted.
    pub fn evaluate(&self, src: &str) -> Result<String, Diagnostic> {
        let expr: hcl::Expression = src.parse().map_err(|e: hcl::Error| {
            Diagnostic::error(
                format!("invalid expression: {}", self.redact(&e.to_string())),
                None,
            )
        })?;
        let mut ctx = hcl::eval::Context::new();
        let env = super::functions::FunctionEnv {
            path_root: self.path_root.clone(),
            cwd: self.cwd.clone(),
            offline: self.offline,
        };
        super::functions::register(&mut ctx, &env);
        let obj = |vals: &[NamedValue]| {
            hcl::Value::Object(
                vals.iter()
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect(),
            )
        };
        ctx.declare_var("var", obj(&self.variables));
        ctx.declare_var("local", obj(&self.locals));
        let mut data = hcl::Map::new();
        for d in &self.data {
            if let Some((ty, name)) = d.name.split_once('.') {
                let e = data
                    .entry(ty.to_owned())
                    .or_insert_with(|| hcl::Value::Object(hcl::Map::new()));
                if let hcl::Value::Object(m) = e {
                    m.insert(name.to_owned(), d.value.clone());
                }
            }
        }
        ctx.declare_var("data", hcl::Value::Object(data));
        let mut path = hcl::Map::new();
        path.insert(
            "root".to_owned(),
            hcl::Value::from(self.path_root.to_string_lossy().into_owned()),
        );
        path.insert(
            "cwd".to_owned(),
            hcl::Value::from(self.cwd.to_string_lossy().into_owned()),
        );
        ctx.declare_var("path", hcl::Value::Object(path));
        let mut packer = hcl::Map::new();
        packer.insert(
            "version".to_owned(),
            hcl::Value::from(super::PACKER_COMPAT_VERSION),
        );
        ctx.declare_var("packer", hcl::Value::Object(packer));
        match super::functions::evaluate(&expr, &ctx) {
            // A string prints raw, as Packer's console prints it; other values as HCL.
            Ok(hcl::Value::String(s)) => Ok(self.redact(&s)),
            Ok(v) => Ok(self.redact(&show_value(&v))),
            Err(e) => Err(Diagnostic::error(self.redact(&e.to_string()), None)),
        }
    }

    fn show(&self, v: &NamedValue) -> String {
        // Packer shows an unknown value so, sensitive or not.
        if is_unknown(&v.value) {
            "\"<unknown>\"".into()
        } else if v.sensitive {
            "<sensitive>".into()
        } else {
            show_value(&v.value)
        }
    }
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let raw = format!(
            "{:?}",
            (
                &self.builds,
                &self.variables,
                &self.locals,
                &self.data,
                &self.required_plugins,
                &self.warnings
            )
        );
        write!(f, "Plan {}", self.redact(&raw))
    }
}

fn step_label(p: &PlannedStep) -> String {
    match &p.name {
        Some(n) => format!("{} ({n})", p.kind),
        None => p.kind.clone(),
    }
}

/// A value as HCL would print it.
pub fn show_value(v: &hcl::Value) -> String {
    match v {
        hcl::Value::Null => "null".into(),
        hcl::Value::String(s) => format!("{s:?}"),
        hcl::Value::Bool(b) => b.to_string(),
        hcl::Value::Number(n) => n.to_string(),
        hcl::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", inner.join(", "))
        }
        hcl::Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", show_value(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// The value of a variable that has no value, when loading for `inspect`
/// ([`super::LoadOptions::unset_as_unknown`]): a string no template writes, so that whatever is
/// built from it (`"${var.x}-suffix"`) still shows it is unknown.
pub(crate) const UNKNOWN: &str = "\u{E002}unknown\u{E003}";

/// Whether `v` is, or holds, an unknown value.
pub(crate) fn is_unknown(v: &hcl::Value) -> bool {
    match v {
        hcl::Value::String(s) => s.contains(UNKNOWN),
        hcl::Value::Array(items) => items.iter().any(is_unknown),
        hcl::Value::Object(map) => map.values().any(is_unknown),
        _ => false,
    }
}

/// Starts a span of kiln's own words that redaction leaves whole ([`label`]).
const LABEL_START: char = '\u{E000}';
/// Ends it.
const LABEL_END: char = '\u{E001}';

/// `text` marked as kiln's own words (a component type such as `vagrant`, a step or option
/// name): [`redact`] keeps it even when it equals a secret (`ssh_password = "vagrant"` must not
/// turn "Running post-processor: vagrant" into "<sensitive>"), and removes the marks.
pub fn label(text: &str) -> String {
    format!("{LABEL_START}{text}{LABEL_END}")
}

/// Replace each of `secrets` in `text` by `<sensitive>` (longest first, so that a secret that
/// contains another is hidden whole), except inside [`label`]s, whose marks are removed.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let hide = |part: &str| {
        let mut out = part.to_owned();
        for s in &sorted {
            out = out.replace(s.as_str(), "<sensitive>");
        }
        out
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(LABEL_START) {
        out.push_str(&hide(&rest[..start]));
        let inner = &rest[start + LABEL_START.len_utf8()..];
        match inner.find(LABEL_END) {
            Some(end) => {
                out.push_str(&inner[..end]);
                rest = &inner[end + LABEL_END.len_utf8()..];
            }
            None => {
                rest = inner;
            }
        }
    }
    out.push_str(&hide(rest));
    out
}

/// Every string inside a value, for the sensitive list (an unknown value holds none).
pub(crate) fn strings_in(v: &hcl::Value, out: &mut Vec<String>) {
    match v {
        hcl::Value::String(s) if s.contains(UNKNOWN) => {}
        hcl::Value::String(s) => out.push(s.clone()),
        hcl::Value::Array(items) => items.iter().for_each(|i| strings_in(i, out)),
        hcl::Value::Object(map) => map.values().for_each(|i| strings_in(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_is_redacted() {
        let plan = Plan {
            variables: vec![NamedValue {
                name: "pw".into(),
                value: hcl::Value::from("hunter2"),
                sensitive: true,
                type_name: None,
                description: None,
            }],
            sensitive: vec!["hunter2".into()],
            ..Plan::default()
        };
        let text = format!("{plan:?}");
        assert!(
            text.contains("<sensitive>") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn labels_survive_redaction_and_lose_their_marks() {
        let secrets = vec!["vagrant".to_owned()];
        let text = format!(
            "Running post-processor: {} for user vagrant",
            label("vagrant")
        );
        assert_eq!(
            redact(&text, &secrets),
            "Running post-processor: vagrant for user <sensitive>"
        );
        assert_eq!(redact(&label("x"), &[]), "x");
        // An unterminated mark hides nothing it should not.
        assert_eq!(redact("\u{E000}vagrant", &secrets), "<sensitive>");
    }

    #[test]
    fn redacts_longest_first() {
        let s = redact(
            "pw=hunter2 and hunter",
            &["hunter".into(), "hunter2".into()],
        );
        assert_eq!(s, "pw=<sensitive> and <sensitive>");
    }
}
