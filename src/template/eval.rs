//! Loading and evaluating a template into a [`Plan`]: finding the files, reading variables in
//! precedence order, evaluating locals and data sources in dependency order (cycles are
//! reported with their path), expanding `dynamic` blocks, merging build-block overrides over
//! sources and applying `-only`/`-except` and provisioner `only`/`except`.

use super::diagnostics::suggest;
use super::diagnostics::{Diagnostic, Location, SpanTable};
use super::duration::GoDuration;
use super::functions::{self, FunctionEnv};
use super::parse::{self, Block, Body};
use super::plan::{self, NamedValue, Plan, PlannedBuild, PlannedStep, RequiredPlugin, StepMeta};
use super::refs;
use super::variables::{self, Given, Origin, VariableDecl};
use hcl::eval::Context;
use hcl::{Expression, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The Packer version kiln behaves as, for `packer.version` and `required_version`.
pub const PACKER_COMPAT_VERSION: &str = "1.11.2";

/// Data source types kiln has built in.
pub const DATA_SOURCE_TYPES: &[&str] = &["null", "http", "host-info"];

const TOP_LEVEL: &[&str] = &[
    "packer",
    "variable",
    "variables",
    "locals",
    "local",
    "source",
    "build",
    "data",
    "hcp_packer_registry",
];

/// What to load and with which inputs.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A template file or a directory of `*.pkr.hcl` / `*.pkr.json` files.
    pub path: PathBuf,
    /// `-var name=value`, in order.
    pub vars: Vec<String>,
    /// `-var-file`, in order.
    pub var_files: Vec<PathBuf>,
    /// `-only` globs.
    pub only: Vec<String>,
    /// `-except` globs.
    pub except: Vec<String>,
    /// The environment (for `PKR_VAR_*`).
    pub env: Vec<(String, String)>,
    /// Working directory (`path.cwd`).
    pub cwd: PathBuf,
    /// Evaluate variables, locals and data sources only, not the builds (`kiln console`).
    pub variables_only: bool,
    /// Treat variables that have no value as unknown instead of refusing them (`kiln inspect`,
    /// as Packer's): whatever depends on one, or fails to evaluate while one is unknown, is
    /// unknown too, and the builds are still listed. `build` and `validate` leave this off.
    pub unset_as_unknown: bool,
    /// The text of the template file at `path`, used instead of reading it (`kiln fix`
    /// validates the template it rewrote without writing it anywhere).
    pub text: Option<String>,
    /// Offline mode: the secret-store functions (`vault`, …) fail, naming their URL, instead
    /// of reaching the network.
    pub offline: bool,
}

/// Loading failed: the errors, and any warnings found before.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// Errors first, then warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{}", d.render())?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A parsed template file.
struct File {
    body: Body,
}

/// Load the template at `opts.path` and evaluate it.
pub fn load(opts: &LoadOptions) -> Result<Plan, LoadError> {
    let mut l = Loader {
        opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        sensitive: Vec::new(),
        legacy_names: BTreeMap::new(),
        unknown: BTreeSet::new(),
    };
    let plan = l.run();
    let secrets = l.sensitive.clone();
    let redact_all = |ds: Vec<Diagnostic>| -> Vec<Diagnostic> {
        ds.into_iter()
            .map(|mut d| {
                d.summary = plan::redact(&d.summary, &secrets);
                d.hint = d.hint.map(|h| plan::redact(&h, &secrets));
                d
            })
            .collect()
    };
    match plan {
        Some(mut p) if l.errors.is_empty() => {
            p.warnings = redact_all(l.warnings);
            p.sensitive = secrets;
            Ok(p)
        }
        _ => {
            let mut ds = redact_all(l.errors);
            ds.extend(redact_all(l.warnings));
            Err(LoadError { diagnostics: ds })
        }
    }
}

/// Parse the template files without evaluating anything (`validate -syntax-only`).
pub fn check_syntax(path: &Path) -> Result<(), LoadError> {
    let opts = LoadOptions {
        path: path.to_path_buf(),
        ..LoadOptions::default()
    };
    let mut l = Loader {
        opts: &opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        sensitive: Vec::new(),
        legacy_names: BTreeMap::new(),
        unknown: BTreeSet::new(),
    };
    match l.read_files() {
        Some(_) => Ok(()),
        None => Err(LoadError {
            diagnostics: l.errors,
        }),
    }
}

/// The `required_plugins` of the template at `path` (`kiln init`), and the source blocks it
/// declares (`type.name`), without evaluating anything else.
pub fn required_plugins(path: &Path) -> Result<(Vec<RequiredPlugin>, Vec<String>), LoadError> {
    let opts = LoadOptions {
        path: path.to_path_buf(),
        ..LoadOptions::default()
    };
    let mut l = Loader {
        opts: &opts,
        errors: Vec::new(),
        warnings: Vec::new(),
        sensitive: Vec::new(),
        legacy_names: BTreeMap::new(),
        unknown: BTreeSet::new(),
    };
    let Some((files, _, _)) = l.read_files() else {
        return Err(LoadError {
            diagnostics: l.errors,
        });
    };
    let blocks: Vec<&Block> = files
        .iter()
        .flat_map(|f| f.body.blocks_of("packer"))
        .collect();
    let plugins = l.packer_blocks(&blocks, &Context::new());
    let sources = files
        .iter()
        .flat_map(|f| f.body.blocks_of("source"))
        .filter_map(|b| Some(format!("{}.{}", b.labels.first()?, b.labels.get(1)?)))
        .collect();
    if l.errors.is_empty() {
        Ok((plugins, sources))
    } else {
        Err(LoadError {
            diagnostics: l.errors,
        })
    }
}

struct Loader<'o> {
    opts: &'o LoadOptions,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    sensitive: Vec<String>,
    /// Legacy JSON builds: HCL source (`type.name`) to the name Packer gives the build.
    legacy_names: BTreeMap<String, String>,
    /// Variables, locals and data sources (`var.x`, `local.y`, `data.t.n`) whose value is
    /// unknown ([`LoadOptions::unset_as_unknown`]). While there is one, evaluation errors give
    /// unknown values instead of errors.
    unknown: BTreeSet<String>,
}

/// Top-level blocks by kind.
#[derive(Default)]
struct Blocks<'a> {
    packer: Vec<&'a Block>,
    variables: Vec<&'a Block>,
    locals: Vec<&'a Block>,
    sources: Vec<&'a Block>,
    builds: Vec<&'a Block>,
    data: Vec<&'a Block>,
}

impl Loader<'_> {
    fn run(&mut self) -> Option<Plan> {
        let (files, auto_var_files, root) = self.read_files()?;
        let mut blocks = Blocks::default();
        for f in &files {
            for a in &f.body.attrs {
                self.errors.push(
                    Diagnostic::error(
                        format!("unexpected attribute \"{}\" at the top level", a.name),
                        Some(a.loc.clone()),
                    )
                    .with_hint("attributes belong inside a block such as source, build or locals"),
                );
            }
            for b in &f.body.blocks {
                match b.ident.as_str() {
                    "packer" => blocks.packer.push(b),
                    "variable" | "variables" => blocks.variables.push(b),
                    "locals" | "local" => blocks.locals.push(b),
                    "source" => blocks.sources.push(b),
                    "build" => blocks.builds.push(b),
                    "data" => blocks.data.push(b),
                    "hcp_packer_registry" => self.warnings.push(
                        Diagnostic::warning(
                            "hcp_packer_registry is ignored: kiln does not publish to HCP",
                            Some(b.loc.clone()),
                        )
                        .with_hint("remove the block to silence this warning"),
                    ),
                    other => {
                        let names: Vec<String> =
                            TOP_LEVEL.iter().map(|s| (*s).to_owned()).collect();
                        let hint = match suggest(other, &names) {
                            Some(s) => format!("did you mean \"{s}\"?"),
                            None => format!("top-level blocks are: {}", TOP_LEVEL.join(", ")),
                        };
                        self.errors.push(
                            Diagnostic::error(
                                format!("unknown block type \"{other}\""),
                                Some(b.loc.clone()),
                            )
                            .with_hint(hint),
                        );
                    }
                }
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        let env = FunctionEnv {
            path_root: root.clone(),
            cwd: self.opts.cwd.clone(),
            offline: self.opts.offline,
        };
        let mut ctx = Context::new();
        functions::register(&mut ctx, &env);
        let mut path = Map::new();
        path.insert(
            "root".to_owned(),
            Value::from(root.to_string_lossy().into_owned()),
        );
        path.insert(
            "cwd".to_owned(),
            Value::from(self.opts.cwd.to_string_lossy().into_owned()),
        );
        ctx.declare_var("path", Value::Object(path));
        let mut packer = Map::new();
        packer.insert("version".to_owned(), Value::from(PACKER_COMPAT_VERSION));
        ctx.declare_var("packer", Value::Object(packer));

        let required_plugins = self.packer_blocks(&blocks.packer, &ctx);
        let variables = self.variables(&blocks.variables, &auto_var_files, &mut ctx)?;
        let (locals, data) = self.locals_and_data(&blocks.locals, &blocks.data, &mut ctx)?;
        let builds = if self.opts.variables_only {
            Vec::new()
        } else {
            self.builds(&blocks, &ctx)
        };
        Some(Plan {
            builds,
            variables,
            locals,
            data,
            required_plugins,
            warnings: Vec::new(),
            path_root: root,
            cwd: self.opts.cwd.clone(),
            offline: self.opts.offline,
            sensitive: Vec::new(),
        })
    }

    fn read_files(&mut self) -> Option<(Vec<File>, Vec<PathBuf>, PathBuf)> {
        let path = &self.opts.path;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                self.errors.push(
                    Diagnostic::error(format!("cannot read {}: {e}", path.display()), None)
                        .with_hint("give a template file or a directory holding *.pkr.hcl files"),
                );
                return None;
            }
        };
        let (paths, auto, root) = if meta.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    self.errors.push(Diagnostic::error(
                        format!("cannot list {}: {e}", path.display()),
                        None,
                    ));
                    return None;
                }
            };
            entries.sort();
            let name = |p: &Path| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let templates: Vec<PathBuf> = entries
                .iter()
                .filter(|p| {
                    p.is_file() && (name(p).ends_with(".pkr.hcl") || name(p).ends_with(".pkr.json"))
                })
                .cloned()
                .collect();
            let auto: Vec<PathBuf> = entries
                .iter()
                .filter(|p| {
                    name(p).ends_with(".auto.pkrvars.hcl")
                        || name(p).ends_with(".auto.pkrvars.json")
                })
                .cloned()
                .collect();
            if templates.is_empty() {
                self.errors.push(
                    Diagnostic::error(format!("no template files in {}", path.display()), None)
                        .with_hint("a template directory holds *.pkr.hcl or *.pkr.json files"),
                );
                return None;
            }
            (templates, auto, path.clone())
        } else {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (vec![path.clone()], Vec::new(), parent.to_path_buf())
        };
        let mut files = Vec::new();
        for p in paths {
            let read = match &self.opts.text {
                Some(t) if p == self.opts.path => Ok(t.clone().into_bytes()),
                _ => std::fs::read(&p),
            };
            let text = match read {
                Ok(bytes) => match super::diagnostics::utf8_text(&p, bytes) {
                    Ok(t) => t,
                    Err(d) => {
                        self.errors.push(d);
                        continue;
                    }
                },
                Err(e) => {
                    self.errors.push(Diagnostic::error(
                        format!("cannot read {}: {e}", p.display()),
                        None,
                    ));
                    continue;
                }
            };
            tracing::debug!(file = %p.display(), "reading template file");
            let s = p.to_string_lossy();
            let parsed = if s.ends_with(".pkr.json") {
                parse::parse_json(&p, &text)
            } else if s.ends_with(".json") {
                super::json::to_hcl(&text, &p)
                    .map(|(b, names)| {
                        self.legacy_names.extend(names);
                        parse::from_hcl_body(&p, &b)
                    })
                    .map_err(|e| json_error(&e))
            } else {
                parse::parse_hcl(&p, &text)
            };
            match parsed {
                Ok(body) => files.push(File { body }),
                Err(d) => self.errors.push(d),
            }
        }
        if self.errors.is_empty() {
            Some((files, auto, root))
        } else {
            None
        }
    }

    fn packer_blocks(&mut self, blocks: &[&Block], ctx: &Context<'_>) -> Vec<RequiredPlugin> {
        let mut out = Vec::new();
        for b in blocks {
            if let Some(a) = b.body.attr("required_version") {
                match self.eval(&a.expr, ctx, &a.loc, "required_version") {
                    Some(Value::String(c)) => {
                        if let Err(msg) = check_version(&c, PACKER_COMPAT_VERSION) {
                            self.errors.push(
                                Diagnostic::error(
                                    format!("this template requires Packer {c}; kiln behaves as Packer {PACKER_COMPAT_VERSION}: {msg}"),
                                    Some(a.loc.clone()),
                                )
                                .with_hint("relax required_version if the template works with this version"),
                            );
                        }
                    }
                    Some(_) => self.errors.push(Diagnostic::error(
                        "required_version must be a string",
                        Some(a.loc.clone()),
                    )),
                    None => {}
                }
            }
            for rp in b.body.blocks_of("required_plugins") {
                for a in &rp.body.attrs {
                    let Some(v) = self.eval(&a.expr, ctx, &a.loc, &a.name) else {
                        continue;
                    };
                    let field = |k: &str| {
                        v.as_object()
                            .and_then(|m| m.get(k))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    out.push(RequiredPlugin {
                        name: a.name.clone(),
                        source: field("source"),
                        version: field("version"),
                    });
                }
            }
        }
        out
    }

    fn variables(
        &mut self,
        blocks: &[&Block],
        auto_files: &[PathBuf],
        ctx: &mut Context<'_>,
    ) -> Option<Vec<NamedValue>> {
        let mut decls: Vec<VariableDecl> = Vec::new();
        for b in blocks {
            let res = if b.ident == "variable" {
                variables::declare(b, ctx).map(|d| vec![d])
            } else {
                variables::declare_all(b)
            };
            match res {
                Ok(ds) => {
                    for d in ds {
                        if let Some(first) = decls.iter().find(|x| x.name == d.name) {
                            self.errors.push(
                                Diagnostic::error(
                                    format!(
                                        "variable \"{}\" is declared twice (first at {})",
                                        d.name, first.loc
                                    ),
                                    Some(d.loc.clone()),
                                )
                                .with_hint("remove one of the declarations"),
                            );
                        } else {
                            decls.push(d);
                        }
                    }
                }
                Err(e) => self.errors.push(e),
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        // Inputs in increasing precedence.
        let mut given: Vec<Given> = Vec::new();
        for (k, v) in &self.opts.env {
            if let Some(name) = k.strip_prefix("PKR_VAR_") {
                if let Some(d) = decls.iter().find(|d| d.name == name) {
                    match variables::parse_raw(v, Some(d)) {
                        Ok(value) => given.push(Given { name: name.to_owned(), value, origin: Origin::Env }),
                        Err(e) => self.errors.push(Diagnostic::error(
                            format!("invalid value for variable \"{name}\" in environment variable {k}: {e}"),
                            None,
                        )),
                    }
                }
            }
        }
        for f in auto_files.iter().chain(&self.opts.var_files) {
            match variables::read_var_file(f) {
                Ok(g) => given.extend(g),
                Err(e) => self.errors.push(e),
            }
        }
        for raw in &self.opts.vars {
            match variables::split_flag(raw) {
                Ok((name, text)) => {
                    let d = decls.iter().find(|d| d.name == name);
                    if d.is_none() {
                        let names: Vec<String> = decls.iter().map(|d| d.name.clone()).collect();
                        let mut diag = Diagnostic::error(
                            format!("-var sets undeclared variable \"{name}\""),
                            None,
                        );
                        diag = diag.with_hint(match suggest(&name, &names) {
                            Some(s) => format!(
                                "did you mean \"{s}\"? Otherwise declare it with a variable block"
                            ),
                            None => "declare it with a variable block in the template".to_owned(),
                        });
                        self.errors.push(diag);
                        continue;
                    }
                    match variables::parse_raw(&text, d) {
                        Ok(value) => given.push(Given {
                            name,
                            value,
                            origin: Origin::Flag,
                        }),
                        Err(e) => {
                            let ty = d.map(|d| d.ty.to_string()).unwrap_or_default();
                            self.errors.push(
                                Diagnostic::error(format!("invalid value for -var {name}: {e}"), None)
                                    .with_hint(format!("the variable is of type {ty}; quote the whole flag for lists and maps: -var '{name}=[\"a\"]'")),
                            );
                        }
                    }
                }
                Err(e) => self.errors.push(e),
            }
        }
        let mut values: BTreeMap<String, (Value, Option<Location>)> = BTreeMap::new();
        for g in given {
            let Some(d) = decls.iter().find(|d| d.name == g.name) else {
                if let Origin::File(loc) = &g.origin {
                    self.warnings.push(
                        Diagnostic::warning(
                            format!("variable \"{}\" is set but not declared", g.name),
                            Some(loc.clone()),
                        )
                        .with_hint(
                            "declare it with a variable block, or remove it from the var-file",
                        ),
                    );
                }
                continue;
            };
            let loc = match &g.origin {
                Origin::File(l) => Some(l.clone()),
                _ => None,
            };
            match super::types::convert(g.value, &d.ty) {
                Ok(v) => {
                    values.insert(g.name.clone(), (v, loc));
                }
                Err(e) => {
                    let from = match &g.origin {
                        Origin::Env => format!(" (from PKR_VAR_{})", g.name),
                        Origin::Flag => " (from -var)".to_owned(),
                        Origin::File(_) => String::new(),
                    };
                    self.errors.push(
                        Diagnostic::error(
                            format!("invalid value for variable \"{}\"{from}: {e}", g.name),
                            loc,
                        )
                        .with_hint(format!("the variable is declared as {} at {}", d.ty, d.loc)),
                    );
                }
            }
        }
        let mut var_obj = Map::new();
        let mut out = Vec::new();
        for d in &decls {
            let value = match values.remove(&d.name) {
                Some((v, _)) => v,
                None => match &d.default {
                    Some(v) => v.clone(),
                    None if self.opts.unset_as_unknown => {
                        self.unknown.insert(format!("var.{}", d.name));
                        Value::from(plan::UNKNOWN)
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!("variable \"{}\" is not set and has no default", d.name), Some(d.loc.clone()))
                                .with_hint(format!(
                                    "set it with -var '{0}=…', in a var-file, or with PKR_VAR_{0}; or give it a default",
                                    d.name
                                )),
                        );
                        continue;
                    }
                },
            };
            if d.sensitive {
                plan::strings_in(&value, &mut self.sensitive);
            }
            var_obj.insert(d.name.clone(), value.clone());
            out.push(NamedValue {
                name: d.name.clone(),
                value,
                sensitive: d.sensitive,
                type_name: d.typed.then(|| d.ty.to_string()),
                description: d.description.clone(),
            });
        }
        if !self.errors.is_empty() {
            return None;
        }
        ctx.declare_var("var", Value::Object(var_obj));
        for d in &decls {
            // An unknown value cannot be checked; Packer skips it too.
            if self.unknown.contains(&format!("var.{}", d.name)) {
                continue;
            }
            for v in &d.validations {
                let what = format!("the validation condition of variable \"{}\"", d.name);
                match self.eval(&v.condition, ctx, &v.loc, &what) {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        let msg = match self.eval(&v.error_message, ctx, &v.loc, "error_message") {
                            Some(Value::String(s)) => s,
                            _ => "validation failed".to_owned(),
                        };
                        self.errors.push(
                            Diagnostic::error(
                                format!("invalid value for variable \"{}\": {msg}", d.name),
                                Some(v.loc.clone()),
                            )
                            .with_hint(format!(
                                "this validation rule failed; change the value given for var.{}",
                                d.name
                            )),
                        );
                    }
                    Some(other) => self.errors.push(Diagnostic::error(
                        format!(
                            "{what} must be true or false, got {}",
                            super::types::describe(&other)
                        ),
                        Some(v.loc.clone()),
                    )),
                    None => {}
                }
            }
        }
        self.errors.is_empty().then_some(out)
    }

    fn locals_and_data(
        &mut self,
        local_blocks: &[&Block],
        data_blocks: &[&Block],
        ctx: &mut Context<'_>,
    ) -> Option<(Vec<NamedValue>, Vec<NamedValue>)> {
        // Nodes: "local.NAME" and "data.TYPE.NAME".
        struct Node<'a> {
            exprs: Vec<&'a Expression>,
            loc: Location,
            kind: NodeKind<'a>,
        }
        enum NodeKind<'a> {
            Local {
                name: String,
                expr: &'a Expression,
                sensitive: bool,
            },
            Data {
                ty: String,
                name: String,
                body: &'a Body,
            },
        }
        let mut nodes: BTreeMap<String, Node<'_>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut nodes_tmp = Vec::new();
        for b in local_blocks {
            if b.ident == "locals" {
                for a in &b.body.attrs {
                    nodes_tmp.push((
                        format!("local.{}", a.name),
                        Node {
                            exprs: vec![&a.expr],
                            loc: a.loc.clone(),
                            kind: NodeKind::Local {
                                name: a.name.clone(),
                                expr: &a.expr,
                                sensitive: false,
                            },
                        },
                    ));
                }
            } else {
                let Some(name) = b.labels.first() else {
                    self.errors.push(Diagnostic::error(
                        "a local block needs a name: local \"name\" { expression = … }",
                        Some(b.loc.clone()),
                    ));
                    continue;
                };
                let Some(expr) = b.body.attr("expression") else {
                    self.errors.push(
                        Diagnostic::error(
                            format!("local \"{name}\" has no expression"),
                            Some(b.loc.clone()),
                        )
                        .with_hint("add expression = …"),
                    );
                    continue;
                };
                let sensitive = matches!(
                    b.body.attr("sensitive").map(|a| &a.expr),
                    Some(Expression::Bool(true))
                );
                nodes_tmp.push((
                    format!("local.{name}"),
                    Node {
                        exprs: vec![&expr.expr],
                        loc: b.loc.clone(),
                        kind: NodeKind::Local {
                            name: name.clone(),
                            expr: &expr.expr,
                            sensitive,
                        },
                    },
                ));
            }
        }
        for b in data_blocks {
            let [ty, name] = b.labels.as_slice() else {
                self.errors.push(Diagnostic::error(
                    "a data block needs a type and a name: data \"null\" \"x\" { … }",
                    Some(b.loc.clone()),
                ));
                continue;
            };
            let mut exprs = Vec::new();
            collect_exprs(&b.body, &mut exprs);
            nodes_tmp.push((
                format!("data.{ty}.{name}"),
                Node {
                    exprs,
                    loc: b.loc.clone(),
                    kind: NodeKind::Data {
                        ty: ty.clone(),
                        name: name.clone(),
                        body: &b.body,
                    },
                },
            ));
        }
        for (key, node) in nodes_tmp {
            if let Some(first) = nodes.get(&key) {
                self.errors.push(
                    Diagnostic::error(
                        format!("{key} is defined twice (first at {})", first.loc),
                        Some(node.loc.clone()),
                    )
                    .with_hint("rename or remove one of them"),
                );
            } else {
                order.push(key.clone());
                nodes.insert(key, node);
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        // Dependencies.
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Nodes referring to `local` or `data` as a whole (`local[k]`), which need every value.
        let mut needs_all: BTreeSet<String> = BTreeSet::new();
        for (key, node) in &nodes {
            let mut d = Vec::new();
            for e in &node.exprs {
                for r in refs::references(e) {
                    match r.first().map(String::as_str) {
                        Some("local") if r.len() < 2 => needs_all.insert(key.clone()),
                        Some("data") if r.len() < 3 => needs_all.insert(key.clone()),
                        _ => false,
                    };
                    let target = match r.first().map(String::as_str) {
                        Some("local") if r.len() >= 2 => format!("local.{}", r[1]),
                        Some("data") if r.len() >= 3 => format!("data.{}.{}", r[1], r[2]),
                        _ => continue,
                    };
                    if nodes.contains_key(&target) && !d.contains(&target) {
                        d.push(target);
                    }
                }
            }
            deps.insert(key.clone(), d);
        }
        let sorted = match topo_sort(&order, &deps) {
            Ok(s) => s,
            Err(cycle) => {
                let loc = nodes.get(&cycle[0]).map(|n| n.loc.clone());
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "cycle between locals / data sources: {}",
                            cycle.join(" -> ")
                        ),
                        loc,
                    )
                    .with_hint(
                        "break the cycle: one of these values must not depend on the others",
                    ),
                );
                return None;
            }
        };
        // Every value so far; each node is evaluated with only the ones it refers to in scope:
        // declaring all of them for each node, and hcl-rs cloning the whole `local` object at
        // each `local.x`, made n locals cost n².
        let mut local_obj = Map::new();
        let mut data_obj: Map<String, Value> = Map::new();
        let mut locals = Vec::new();
        let mut data = Vec::new();
        for key in sorted {
            let Some(node) = nodes.get(&key) else {
                continue;
            };
            let (scope_local, scope_data) = if needs_all.contains(&key) {
                (local_obj.clone(), data_obj.clone())
            } else {
                scoped_values(
                    deps.get(&key).map_or(&[][..], Vec::as_slice),
                    &local_obj,
                    &data_obj,
                )
            };
            ctx.declare_var("local", Value::Object(scope_local));
            ctx.declare_var("data", Value::Object(scope_data));
            // What refers to an unknown value is unknown, as in Packer: evaluating it with the
            // stand-in would pick a branch of a conditional that is not known either.
            let unknown = node.exprs.iter().any(|e| {
                refs::references(e)
                    .iter()
                    .any(|r| (1..=r.len()).any(|n| self.unknown.contains(&r[..n].join("."))))
            });
            if unknown {
                self.unknown.insert(key.clone());
            }
            match &node.kind {
                NodeKind::Local {
                    name,
                    expr,
                    sensitive,
                } => {
                    let v = if unknown {
                        Value::from(plan::UNKNOWN)
                    } else {
                        let Some(v) = self.eval(expr, ctx, &node.loc, &key) else {
                            continue;
                        };
                        v
                    };
                    if *sensitive {
                        plan::strings_in(&v, &mut self.sensitive);
                    }
                    local_obj.insert(name.clone(), v.clone());
                    locals.push(NamedValue {
                        name: name.clone(),
                        value: v,
                        sensitive: *sensitive,
                        type_name: None,
                        description: None,
                    });
                }
                NodeKind::Data { ty, name, body } => {
                    let mut spans = SpanTable::default();
                    let mut errs = Vec::new();
                    let input = eval_body(body, ctx, "", &mut spans, &[], &mut errs);
                    let input = hcl::to_value(&input).unwrap_or(Value::Null);
                    // A data source with an unknown input is not run: its output is unknown.
                    let output = if unknown || (self.tolerant() && !errs.is_empty()) {
                        Ok(Value::from(plan::UNKNOWN))
                    } else if !errs.is_empty() {
                        self.errors.extend(errs);
                        continue;
                    } else {
                        data_source(ty, &input)
                    };
                    match output {
                        Ok(v) => {
                            let entry = data_obj
                                .entry(ty.clone())
                                .or_insert_with(|| Value::Object(Map::new()));
                            if let Value::Object(m) = entry {
                                m.insert(name.clone(), v.clone());
                            }
                            data.push(NamedValue {
                                name: format!("{ty}.{name}"),
                                value: v,
                                sensitive: false,
                                type_name: None,
                                description: None,
                            });
                        }
                        Err((msg, hint)) => self
                            .errors
                            .push(Diagnostic::error(msg, Some(node.loc.clone())).with_hint(hint)),
                    }
                }
            }
        }
        ctx.declare_var("local", Value::Object(local_obj));
        ctx.declare_var("data", Value::Object(data_obj));
        self.errors.is_empty().then_some((locals, data))
    }

    fn eval(
        &mut self,
        expr: &Expression,
        ctx: &Context<'_>,
        loc: &Location,
        what: &str,
    ) -> Option<Value> {
        match functions::evaluate(expr, ctx) {
            Ok(v) => Some(v),
            Err(_) if self.tolerant() => Some(Value::from(plan::UNKNOWN)),
            Err(e) => {
                self.errors.push(eval_error(what, &e.to_string(), loc));
                None
            }
        }
    }

    /// Whether some value is unknown, so that evaluation errors are not reported.
    fn tolerant(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// Errors from evaluating a body: reported, or dropped while some variable is unknown (the
    /// attributes that failed are left out; only `inspect` loads that way, and it shows none).
    fn body_errors(&mut self, errs: Vec<Diagnostic>) {
        if !self.tolerant() {
            self.errors.extend(errs);
        }
    }

    fn builds(&mut self, blocks: &Blocks<'_>, ctx: &Context<'_>) -> Vec<PlannedBuild> {
        let mut sources: BTreeMap<String, &Block> = BTreeMap::new();
        for s in &blocks.sources {
            let [ty, name] = s.labels.as_slice() else {
                self.errors.push(Diagnostic::error(
                    "a source block needs a type and a name: source \"qemu\" \"name\" { … }",
                    Some(s.loc.clone()),
                ));
                continue;
            };
            let key = format!("{ty}.{name}");
            if let Some(first) = sources.get(&key) {
                self.errors.push(
                    Diagnostic::error(
                        format!("source \"{key}\" is defined twice (first at {})", first.loc),
                        Some(s.loc.clone()),
                    )
                    .with_hint("rename one of them"),
                );
            } else {
                sources.insert(key, s);
            }
        }
        // `source.TYPE.NAME` evaluates to its own reference string in `sources = [...]`.
        let mut refs_obj: Map<String, Value> = Map::new();
        for key in sources.keys() {
            if let Some((ty, name)) = key.split_once('.') {
                let e = refs_obj
                    .entry(ty.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(m) = e {
                    m.insert(name.to_owned(), Value::from(format!("source.{key}")));
                }
            }
        }
        let mut ref_ctx = ctx.clone();
        ref_ctx.declare_var("source", Value::Object(refs_obj));

        let mut out = Vec::new();
        for (index, b) in blocks.builds.iter().enumerate() {
            let build_name = match b
                .body
                .attr("name")
                .map(|a| self.eval(&a.expr, ctx, &a.loc, "name"))
            {
                Some(Some(Value::String(s))) => s,
                _ => String::new(),
            };
            let description = match b
                .body
                .attr("description")
                .map(|a| self.eval(&a.expr, ctx, &a.loc, "description"))
            {
                Some(Some(Value::String(s))) => s,
                _ => String::new(),
            };
            for a in &b.body.attrs {
                if !["name", "description", "sources"].contains(&a.name.as_str()) {
                    self.errors.push(
                        Diagnostic::error(format!("unsupported argument \"{}\" in build block", a.name), Some(a.loc.clone()))
                            .with_hint("a build block takes name, description, sources and source/provisioner/post-processor blocks"),
                    );
                }
            }
            // (reference, location, override block)
            let mut used: Vec<(String, Location, Option<&Block>)> = Vec::new();
            if let Some(a) = b.body.attr("sources") {
                match self.eval(&a.expr, &ref_ctx, &a.loc, "sources") {
                    Some(Value::Array(items)) => {
                        for item in items {
                            match item {
                                Value::String(s) => used.push((s, a.loc.clone(), None)),
                                other => self.errors.push(Diagnostic::error(
                                    format!("sources must be a list of \"source.TYPE.NAME\" strings, found a {}", super::types::describe(&other)),
                                    Some(a.loc.clone()),
                                )),
                            }
                        }
                    }
                    Some(_) => self.errors.push(Diagnostic::error(
                        "sources must be a list",
                        Some(a.loc.clone()),
                    )),
                    None => {}
                }
            }
            for sb in b.body.blocks_of("source") {
                match sb.labels.first() {
                    Some(l) => used.push((l.clone(), sb.loc.clone(), Some(sb))),
                    None => self.errors.push(Diagnostic::error("a source block in a build needs the source's name: source \"qemu.vm\" { … }", Some(sb.loc.clone()))),
                }
            }
            for blk in &b.body.blocks {
                if ![
                    "source",
                    "provisioner",
                    "error-cleanup-provisioner",
                    "post-processor",
                    "post-processors",
                    "hcp_packer_registry",
                ]
                .contains(&blk.ident.as_str())
                {
                    self.errors.push(
                        Diagnostic::error(format!("unknown block type \"{}\" in build", blk.ident), Some(blk.loc.clone()))
                            .with_hint("a build block holds source, provisioner, error-cleanup-provisioner, post-processor and post-processors blocks"),
                    );
                }
            }
            for h in b.body.blocks_of("hcp_packer_registry") {
                self.warnings.push(
                    Diagnostic::warning(
                        "hcp_packer_registry is ignored: kiln does not publish to HCP",
                        Some(h.loc.clone()),
                    )
                    .with_hint("remove the block to silence this warning"),
                );
            }
            if b.body.blocks_of("error-cleanup-provisioner").count() > 1 {
                self.errors.push(Diagnostic::error(
                    "only one error-cleanup-provisioner is allowed per build",
                    b.body
                        .blocks_of("error-cleanup-provisioner")
                        .nth(1)
                        .map(|x| x.loc.clone()),
                ));
            }
            for (reference, loc, over) in used {
                let key = reference
                    .strip_prefix("source.")
                    .unwrap_or(&reference)
                    .to_owned();
                let Some(src) = sources.get(&key) else {
                    let names: Vec<String> = sources.keys().cloned().collect();
                    let hint = match suggest(&key, &names) {
                        Some(s) => format!("did you mean \"source.{s}\"?"),
                        None => "define it with a top-level source \"TYPE\" \"NAME\" { … } block"
                            .to_owned(),
                    };
                    self.errors.push(
                        Diagnostic::error(
                            format!("build {index} uses undefined source \"{key}\""),
                            Some(loc),
                        )
                        .with_hint(hint),
                    );
                    continue;
                };
                let (ty, orig_name) = (src.labels[0].clone(), src.labels[1].clone());
                let rename = over.and_then(|o| o.body.attr("name")).and_then(|a| {
                    match self.eval(&a.expr, ctx, &a.loc, "name") {
                        Some(Value::String(s)) => Some(s),
                        _ => None,
                    }
                });
                let source_name = rename.unwrap_or(orig_name);
                // What provisioners' only/except match.
                let name = format!("{ty}.{source_name}");
                // Packer's names: `build.type.name` in HCL2; in a legacy JSON template the
                // builder's name or type, which is also its `{{build_name}}` and what -only
                // matches (`-only=qemu`; kiln's `qemu.*` matches too).
                let (long, source_name) = match self.legacy_names.get(&name) {
                    Some(legacy) => (legacy.clone(), legacy.clone()),
                    None if build_name.is_empty() => (name.clone(), source_name),
                    None => (format!("{build_name}.{name}"), source_name),
                };
                let short = format!("{ty}.{source_name}");
                if !selected(&short, &long, &self.opts.only, &self.opts.except) {
                    continue;
                }
                let mut sctx = ctx.clone();
                let mut sobj = Map::new();
                sobj.insert("name".to_owned(), Value::from(source_name.clone()));
                sobj.insert("type".to_owned(), Value::from(ty.clone()));
                sctx.declare_var("source", Value::Object(sobj));
                let mut bobj = Map::new();
                bobj.insert("name".to_owned(), Value::from(build_name.clone()));
                for k in BUILD_VARS {
                    bobj.insert(
                        (*k).to_owned(),
                        Value::from(format!("{{{{ build `{k}` }}}}")),
                    );
                }
                sctx.declare_var("build", Value::Object(bobj));

                let merged = match over {
                    Some(o) => merge_bodies(&src.body, &o.body),
                    None => src.body.clone(),
                };
                let mut spans = SpanTable {
                    what: format!("source \"{name}\""),
                    block: Some(src.loc.clone()),
                    ..SpanTable::default()
                };
                let mut errs = Vec::new();
                let config = eval_body(&merged, &sctx, "", &mut spans, &["name"], &mut errs);
                self.body_errors(errs);

                let mut pb = PlannedBuild {
                    name: long.clone(),
                    source_type: ty.clone(),
                    source_name: source_name.clone(),
                    build_name: build_name.clone(),
                    description: description.clone(),
                    config: serde_json::Value::Object(config),
                    spans,
                    provisioners: Vec::new(),
                    error_cleanup: None,
                    post_processors: Vec::new(),
                };
                for blk in &b.body.blocks {
                    match blk.ident.as_str() {
                        "provisioner" | "error-cleanup-provisioner" => {
                            if let Some(step) = self.step(blk, &sctx, &name, &source_name, true) {
                                if blk.ident == "provisioner" {
                                    pb.provisioners.push(step);
                                } else {
                                    pb.error_cleanup = Some(step);
                                }
                            }
                        }
                        "post-processor" => {
                            if let Some(step) = self.step(blk, &sctx, &name, &source_name, false) {
                                pb.post_processors.push(vec![step]);
                            }
                        }
                        "post-processors" => {
                            let chain: Vec<PlannedStep> = blk
                                .body
                                .blocks_of("post-processor")
                                .filter_map(|p| self.step(p, &sctx, &name, &source_name, false))
                                .collect();
                            if !chain.is_empty() {
                                pb.post_processors.push(chain);
                            }
                        }
                        _ => {}
                    }
                }
                out.push(pb);
            }
        }
        out
    }

    /// A provisioner or post-processor for build `name`, or `None` when its only/except leave
    /// it out (or it has errors, which are recorded).
    fn step(
        &mut self,
        blk: &Block,
        ctx: &Context<'_>,
        name: &str,
        source_name: &str,
        provisioner: bool,
    ) -> Option<PlannedStep> {
        let what = if provisioner {
            "provisioner"
        } else {
            "post-processor"
        };
        let Some(kind) = blk.labels.first().cloned() else {
            self.errors.push(Diagnostic::error(
                format!("a {what} block needs a type: {what} \"shell\" {{ … }}"),
                Some(blk.loc.clone()),
            ));
            return None;
        };
        let list = |this: &mut Self, key: &str| -> Option<Vec<String>> {
            let a = blk.body.attr(key)?;
            match this.eval(&a.expr, ctx, &a.loc, key)? {
                Value::Array(items) => Some(
                    items
                        .into_iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                ),
                Value::Null => None,
                _ => {
                    this.errors.push(Diagnostic::error(
                        format!("{key} must be a list of source names"),
                        Some(a.loc.clone()),
                    ));
                    None
                }
            }
        };
        if let Some(only) = list(self, "only") {
            if !only.iter().any(|o| o == name) {
                return None;
            }
        }
        if let Some(except) = list(self, "except") {
            if except.iter().any(|o| o == name) {
                return None;
            }
        }
        let meta_keys: &[&str] = if provisioner {
            &[
                "name",
                "only",
                "except",
                "override",
                "pause_before",
                "max_retries",
                "timeout",
                "continue_on_error",
            ]
        } else {
            &["name", "only", "except", "keep_input_artifact"]
        };
        let mut spans = SpanTable {
            what: format!("{what} \"{kind}\""),
            block: Some(blk.loc.clone()),
            ..SpanTable::default()
        };
        let mut errs = Vec::new();
        let mut config = eval_body(&blk.body, ctx, "", &mut spans, meta_keys, &mut errs);
        self.body_errors(errs);
        let mut meta = StepMeta::default();
        let mut step_name = None;
        for a in &blk.body.attrs {
            if !meta_keys.contains(&a.name.as_str()) || a.name == "only" || a.name == "except" {
                continue;
            }
            let Some(v) = self.eval(&a.expr, ctx, &a.loc, &a.name) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let bad = |this: &mut Self, expected: &str| {
                this.errors.push(Diagnostic::error(
                    format!("{} must be {expected}", a.name),
                    Some(a.loc.clone()),
                ));
            };
            match a.name.as_str() {
                "name" => step_name = v.as_str().map(str::to_owned),
                "pause_before" | "timeout" => match v.as_str().map(str::parse::<GoDuration>) {
                    Some(Ok(d)) => {
                        if a.name == "timeout" {
                            meta.timeout = Some(d);
                        } else {
                            meta.pause_before = Some(d);
                        }
                    }
                    _ => bad(self, "a duration such as \"30s\" or \"5m\""),
                },
                "max_retries" => match v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(n) => meta.max_retries = u32::try_from(n).unwrap_or(u32::MAX),
                    None => bad(self, "a whole number"),
                },
                "continue_on_error" | "keep_input_artifact" => match v.as_bool() {
                    Some(x) if a.name == "continue_on_error" => meta.continue_on_error = x,
                    Some(x) => meta.keep_input_artifact = Some(x),
                    None => bad(self, "true or false"),
                },
                "override" => {
                    let Value::Object(map) = v else {
                        bad(self, "an object keyed by source name");
                        continue;
                    };
                    for (k, o) in map {
                        if k == name || k == source_name {
                            if let Value::Object(fields) = o {
                                for (fk, fv) in fields {
                                    config.insert(
                                        fk.clone(),
                                        serde_json::to_value(&fv)
                                            .unwrap_or(serde_json::Value::Null),
                                    );
                                    spans.attrs.insert(fk, a.loc.clone());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Some(PlannedStep {
            kind,
            name: step_name,
            config: serde_json::Value::Object(config),
            spans,
            meta,
        })
    }
}

/// A legacy JSON conversion error as a diagnostic.
pub(crate) fn json_error(e: &super::json::JsonTemplateError) -> Diagnostic {
    use super::json::JsonTemplateError as E;
    match e {
        E::Syntax {
            file,
            line,
            column,
            source,
        } => Diagnostic::error(
            format!(
                "invalid JSON: {}",
                source.to_string().split(" at line ").next().unwrap_or("")
            ),
            Some(Location {
                file: file.clone(),
                line: *line,
                col: *column,
                len: 1,
            }),
        )
        .with_hint("fix the JSON syntax at the marked position"),
        E::Shape { file, message } => {
            Diagnostic::error(message.clone(), Some(Location::file_only(file))).with_hint(
                "a legacy JSON template has builders, provisioners, post-processors and variables",
            )
        }
    }
}

/// `build.*` values known only at build time, kept as Packer's placeholders.
const BUILD_VARS: &[&str] = &[
    "ID",
    "Host",
    "Port",
    "User",
    "Password",
    "ConnType",
    "PackerRunUUID",
    "PackerHTTPAddr",
    "PackerHTTPIP",
    "PackerHTTPPort",
    "SSHPublicKey",
    "SSHPrivateKey",
    "WinRMPassword",
    "SourceAMIName",
];

fn eval_error(what: &str, msg: &str, loc: &Location) -> Diagnostic {
    // The caret already points at the expression; quoting a long one again only adds noise.
    let msg = match msg.split_once(" in expression `") {
        Some((head, expr)) if expr.len() > 60 || expr.contains('\n') => head,
        _ => msg,
    };
    let msg = msg.trim();
    // hcl-rs reports `var.nope` as a missing key of the `var` object.
    if let Some(rest) = msg.strip_prefix("no such key: `") {
        let key = rest.split('`').next().unwrap_or("");
        for (root, kind) in [("var.", "variable"), ("local.", "local")] {
            let needle = format!("{root}{key}");
            let referenced = rest.match_indices(&needle).any(|(i, _)| {
                let after = rest[i + needle.len()..].chars().next();
                !after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
            });
            if referenced {
                return Diagnostic::error(
                    format!("cannot evaluate {what}: {kind} \"{key}\" is not declared"),
                    Some(loc.clone()),
                )
                .with_hint(format!("declare it, or check the spelling of {root}{key}"));
            }
        }
    }
    let hint = if msg.contains("undefined variable") || msg.contains("no such key") {
        "check the name: variables are var.NAME, locals local.NAME, data sources data.TYPE.NAME"
    } else if msg.contains("undefined function") {
        "check the function name against Packer's function list"
    } else {
        "check the types of the values used in this expression"
    };
    Diagnostic::error(format!("cannot evaluate {what}: {msg}"), Some(loc.clone())).with_hint(hint)
}

/// The `local` and `data` objects holding just `deps` (`local.NAME`, `data.TYPE.NAME` keys), taken
/// from every value evaluated so far.
fn scoped_values(
    deps: &[String],
    locals: &Map<String, Value>,
    data: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut scope_local = Map::new();
    let mut scope_data: Map<String, Value> = Map::new();
    for dep in deps {
        if let Some(name) = dep.strip_prefix("local.") {
            if let Some(v) = locals.get(name) {
                scope_local.insert(name.to_owned(), v.clone());
            }
        } else if let Some((ty, name)) = dep.strip_prefix("data.").and_then(|d| d.split_once('.')) {
            let found = data
                .get(ty)
                .and_then(Value::as_object)
                .and_then(|of_type| of_type.get(name));
            if let Some(v) = found {
                if let Value::Object(of_type) = scope_data
                    .entry(ty.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    of_type.insert(name.to_owned(), v.clone());
                }
            }
        }
    }
    (scope_local, scope_data)
}

fn collect_exprs<'a>(body: &'a Body, out: &mut Vec<&'a Expression>) {
    for a in &body.attrs {
        out.push(&a.expr);
    }
    for b in &body.blocks {
        collect_exprs(&b.body, out);
    }
}

/// Order `keys` so that each comes after what it depends on; a cycle is returned as its path.
/// Iterative, so that long dependency chains cannot overflow the stack.
fn topo_sort(
    keys: &[String],
    deps: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<String>, Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    let mut out = Vec::new();
    let no_deps: Vec<String> = Vec::new();
    for root in keys {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        // (node, index of the next dependency to visit)
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        marks.insert(root.as_str(), Mark::Active);
        while let Some((node, next)) = stack.last().copied() {
            let ds = deps.get(node).unwrap_or(&no_deps);
            if let Some(d) = ds.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                match marks.get(d.as_str()) {
                    Some(Mark::Done) => {}
                    Some(Mark::Active) => {
                        let start = stack
                            .iter()
                            .position(|(n, _)| *n == d.as_str())
                            .unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..]
                            .iter()
                            .map(|(n, _)| (*n).to_owned())
                            .collect();
                        cycle.push(d.clone());
                        return Err(cycle);
                    }
                    None => {
                        marks.insert(d.as_str(), Mark::Active);
                        stack.push((d.as_str(), 0));
                    }
                }
            } else {
                marks.insert(node, Mark::Done);
                out.push(node.to_owned());
                stack.pop();
            }
        }
    }
    Ok(out)
}

/// Evaluate a body to a JSON object: attributes by name (null ones left out), nested blocks as
/// arrays of objects, `dynamic` blocks expanded. Errors are collected in `errs`.
fn eval_body(
    body: &Body,
    ctx: &Context<'_>,
    prefix: &str,
    spans: &mut SpanTable,
    skip: &[&str],
    errs: &mut Vec<Diagnostic>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for a in &body.attrs {
        if skip.contains(&a.name.as_str()) {
            continue;
        }
        let key = format!("{prefix}{}", a.name);
        match functions::evaluate(&a.expr, ctx) {
            Ok(Value::Null) => {}
            Ok(v) => {
                spans.attrs.insert(key, a.loc.clone());
                out.insert(
                    a.name.clone(),
                    serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
                );
            }
            Err(e) => errs.push(eval_error(
                &format!("\"{}\"", a.name),
                &e.to_string(),
                &a.loc,
            )),
        }
    }
    for b in &body.blocks {
        if b.ident == "dynamic" {
            expand_dynamic(b, ctx, prefix, spans, &mut out, errs);
            continue;
        }
        let key = format!("{prefix}{}", b.ident);
        spans
            .attrs
            .entry(key.clone())
            .or_insert_with(|| b.loc.clone());
        let inner = eval_body(&b.body, ctx, &format!("{key}."), spans, &[], errs);
        push_block(&mut out, &b.ident, inner);
    }
    out
}

fn push_block(
    out: &mut serde_json::Map<String, serde_json::Value>,
    ident: &str,
    obj: serde_json::Map<String, serde_json::Value>,
) {
    let entry = out
        .entry(ident.to_owned())
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let serde_json::Value::Array(items) = entry {
        items.push(serde_json::Value::Object(obj));
    }
}

fn expand_dynamic(
    b: &Block,
    ctx: &Context<'_>,
    prefix: &str,
    spans: &mut SpanTable,
    out: &mut serde_json::Map<String, serde_json::Value>,
    errs: &mut Vec<Diagnostic>,
) {
    let Some(ident) = b.labels.first() else {
        errs.push(Diagnostic::error(
            "a dynamic block needs the block type it generates: dynamic \"disk\" { … }",
            Some(b.loc.clone()),
        ));
        return;
    };
    let Some(for_each) = b.body.attr("for_each") else {
        errs.push(Diagnostic::error(
            format!("dynamic \"{ident}\" has no for_each"),
            Some(b.loc.clone()),
        ));
        return;
    };
    let Some(content) = b.body.blocks_of("content").next() else {
        errs.push(Diagnostic::error(
            format!("dynamic \"{ident}\" has no content block"),
            Some(b.loc.clone()),
        ));
        return;
    };
    let iterator = match b.body.attr("iterator").map(|a| &a.expr) {
        Some(Expression::Variable(v)) => v.to_string(),
        _ => ident.clone(),
    };
    let items: Vec<(Value, Value)> = match functions::evaluate(&for_each.expr, ctx) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v))
            .collect(),
        Ok(Value::Object(map)) => map.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        Ok(Value::Null) => Vec::new(),
        Ok(other) => {
            errs.push(Diagnostic::error(
                format!(
                    "for_each of dynamic \"{ident}\" must be a list, set or map, got {}",
                    super::types::describe(&other)
                ),
                Some(for_each.loc.clone()),
            ));
            return;
        }
        Err(e) => {
            errs.push(eval_error("for_each", &e.to_string(), &for_each.loc));
            return;
        }
    };
    let key = format!("{prefix}{ident}");
    spans
        .attrs
        .entry(key.clone())
        .or_insert_with(|| b.loc.clone());
    for (k, v) in items {
        let mut c = ctx.clone();
        let mut it = Map::new();
        it.insert("key".to_owned(), k);
        it.insert("value".to_owned(), v);
        c.declare_var(iterator.clone(), Value::Object(it));
        let inner = eval_body(&content.body, &c, &format!("{key}."), spans, &[], errs);
        push_block(out, ident, inner);
    }
}

/// The source body with the build block's overrides: attributes replace attributes of the same
/// name; blocks of a type present in the override replace all blocks of that type.
fn merge_bodies(base: &Body, over: &Body) -> Body {
    let mut out = base.clone();
    for a in &over.attrs {
        out.attrs.retain(|x| x.name != a.name);
        out.attrs.push(a.clone());
    }
    let over_types: BTreeSet<&str> = over.blocks.iter().map(|b| b.ident.as_str()).collect();
    out.blocks
        .retain(|b| !over_types.contains(b.ident.as_str()));
    out.blocks.extend(over.blocks.iter().cloned());
    out
}

/// Whether build `name` (`type.name`; `long` adds the build block's name) passes -only/-except.
pub fn selected(name: &str, long: &str, only: &[String], except: &[String]) -> bool {
    let matches = |pat: &String| {
        glob::Pattern::new(pat)
            .map(|p| p.matches(name) || p.matches(long))
            .unwrap_or(pat == name || pat == long)
    };
    (only.is_empty() || only.iter().any(matches)) && !except.iter().any(matches)
}

/// Outputs of a built-in data source, or (message, hint).
fn data_source(ty: &str, input: &Value) -> Result<Value, (String, String)> {
    match ty {
        "null" => {
            let mut m = Map::new();
            m.insert(
                "output".to_owned(),
                input
                    .as_object()
                    .and_then(|m| m.get("input"))
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            Ok(Value::Object(m))
        }
        "http" => Err((
            "the http data source needs network access, and kiln evaluates templates offline"
                .to_owned(),
            "put the content in a file and read it with file(), or pass it in a variable"
                .to_owned(),
        )),
        "host-info" => {
            let mut m = Map::new();
            m.insert("os".to_owned(), Value::from(std::env::consts::OS));
            m.insert("arch".to_owned(), Value::from(std::env::consts::ARCH));
            Ok(Value::Object(m))
        }
        other => Err((
            format!("unknown data source type \"{other}\""),
            format!(
                "kiln has these data sources built in: {}",
                DATA_SOURCE_TYPES.join(", ")
            ),
        )),
    }
}

/// A `required_version` constraint kiln cannot read, or that its Packer version fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct VersionError(String);

/// Check `version` against a constraint like `>= 1.7.0, < 2.0` or `~> 1.2`.
fn check_version(constraint: &str, version: &str) -> Result<(), VersionError> {
    let parse = |s: &str| -> Option<Vec<u64>> {
        s.trim()
            .trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    let have = parse(version).ok_or_else(|| VersionError("bad version".into()))?;
    for part in constraint.split(',') {
        let part = part.trim();
        let (op, rest) = ["~>", ">=", "<=", "!=", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|r| (*op, r)))
            .unwrap_or(("=", part));
        let want = parse(rest)
            .ok_or_else(|| VersionError(format!("cannot read version constraint {part:?}")))?;
        let cmp = |a: &[u64], b: &[u64]| {
            let n = a.len().max(b.len());
            (0..n)
                .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        use std::cmp::Ordering::*;
        let ok = match op {
            ">=" => cmp(&have, &want) != Less,
            "<=" => cmp(&have, &want) != Greater,
            ">" => cmp(&have, &want) == Greater,
            "<" => cmp(&have, &want) == Less,
            "!=" => cmp(&have, &want) != Equal,
            "~>" => {
                let prefix = &want[..want.len().saturating_sub(1).max(1)];
                cmp(&have, &want) != Less
                    && have.len() >= prefix.len()
                    && have[..prefix.len()] == *prefix
            }
            _ => cmp(&have, &want) == Equal,
        };
        if !ok {
            return Err(VersionError(format!("{part} is not satisfied")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &[u8]) -> Result<Plan, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pkr.hcl");
        std::fs::write(&path, text).unwrap();
        load(&LoadOptions {
            path,
            cwd: dir.path().to_path_buf(),
            variables_only: true,
            ..LoadOptions::default()
        })
    }

    #[test]
    fn unset_variables_are_unknown_only_when_asked() {
        let text = r#"
variable "os" { type = string }
variable "n" { type = number }
locals {
  pick  = var.os == "debian" ? "apt" : "dnf"
  upper = upper(local.pick)
  fixed = "x"
  bad   = var.n + "words"
}
source "null" "a" { communicator = "none" }
build {
  name    = "b"
  sources = ["source.null.a"]
  provisioner "shell-local" { inline = [var.n * 2] }
}
"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.pkr.hcl");
        std::fs::write(&path, text).unwrap();
        let opts = LoadOptions {
            path,
            cwd: dir.path().to_path_buf(),
            ..LoadOptions::default()
        };
        let err = load(&opts).unwrap_err();
        assert!(
            err.to_string().contains("variable \"os\" is not set"),
            "{err}"
        );
        let plan = load(&LoadOptions {
            unset_as_unknown: true,
            ..opts
        })
        .unwrap();
        let value = |name: &str| {
            plan.locals
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.clone())
                .unwrap()
        };
        // A conditional on an unknown value is unknown, not its else branch.
        assert!(plan::is_unknown(&value("pick")));
        assert!(plan::is_unknown(&value("upper")));
        assert!(plan::is_unknown(&value("bad")));
        assert_eq!(value("fixed"), Value::from("x"));
        assert_eq!(plan.builds.len(), 1);
        assert_eq!(plan.builds[0].provisioners.len(), 1);
    }

    #[test]
    fn a_template_that_is_not_utf8_is_reported_at_the_bad_byte() {
        let err = load_text(b"locals {\n  a = \"caf\xe9\"\n}\n").unwrap_err();
        let loc = err.diagnostics[0].location.clone().unwrap();
        assert_eq!((loc.line, loc.col), (2, 11), "{err}");
        assert!(err.to_string().contains("t.pkr.hcl:2:11"), "{err}");
    }

    /// 20,000 chained locals took 13 s (40,000 over a minute) when each location counted the
    /// newlines before it and each local re-declared (and each `local.x` cloned) the object of
    /// all locals; in linear time this takes a second or two, even unoptimised.
    #[test]
    fn many_chained_locals_evaluate_in_linear_time() {
        let n = 20_000;
        let mut text = String::from("locals {\n  l0 = 0\n");
        for i in 1..n {
            text.push_str(&format!("  l{i} = local.l{} + 1\n", i - 1));
        }
        text.push_str("}\n");
        let plan = load_text(text.as_bytes()).unwrap();
        let last = plan.locals.iter().find(|l| l.name == format!("l{}", n - 1));
        assert_eq!(last.map(|l| &l.value), Some(&Value::from(n - 1)));
    }

    #[test]
    fn locals_indexing_the_whole_local_object_still_see_every_local() {
        let plan = load_text(
            b"locals {\n  a = 1\n  b = 2\n  k = \"b\"\n  c = local[local.k] + local.a\n}\n",
        )
        .unwrap();
        let c = plan.locals.iter().find(|l| l.name == "c").unwrap();
        assert_eq!(c.value, Value::from(3));
    }

    #[test]
    fn data_sources() {
        let mut input = Map::new();
        input.insert("input".to_owned(), Value::from("x"));
        let out = data_source("null", &Value::Object(input)).unwrap();
        assert_eq!(
            out.as_object().and_then(|m| m.get("output")),
            Some(&Value::from("x"))
        );
        assert!(data_source("http", &Value::Null)
            .unwrap_err()
            .0
            .contains("offline"));
        assert_eq!(
            data_source("amazon-ami", &Value::Null).unwrap_err().0,
            "unknown data source type \"amazon-ami\""
        );
    }

    #[test]
    fn build_overrides_replace_attributes_and_block_types() {
        let base = parse::parse_hcl(
            Path::new("a"),
            "a = 1\nb = 2\nx {\n  k = 1\n}\nx {\n  k = 2\n}\ny {}\n",
        )
        .unwrap();
        let over = parse::parse_hcl(Path::new("b"), "b = 3\nc = 4\nx {\n  k = 9\n}\n").unwrap();
        let m = merge_bodies(&base, &over);
        let names: Vec<&str> = m.attrs.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(m.attrs[1].expr, Expression::from(3));
        assert_eq!(m.blocks_of("x").count(), 1);
        assert_eq!(m.blocks_of("y").count(), 1);
    }

    #[test]
    fn version_constraints() {
        assert!(check_version(">= 1.7.0", "1.11.2").is_ok());
        assert!(check_version(">= 1.7.0, < 1.10", "1.11.2").is_err());
        assert!(check_version("~> 1.11", "1.11.2").is_ok());
        assert!(check_version("~> 1.10.0", "1.11.2").is_err());
    }

    #[test]
    fn only_and_except_globs() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert!(selected("qemu.vm", "qemu.vm", &v(&["qemu.*"]), &[]));
        assert!(!selected(
            "virtualbox-iso.vm",
            "virtualbox-iso.vm",
            &v(&["qemu.*"]),
            &[]
        ));
        assert!(selected("qemu.vm", "b.qemu.vm", &v(&["b.*"]), &[]));
        assert!(!selected("qemu.vm", "qemu.vm", &[], &v(&["qemu.vm"])));
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let keys: Vec<String> = vec!["local.a".into(), "local.b".into(), "local.c".into()];
        let mut deps = BTreeMap::new();
        deps.insert("local.a".to_owned(), vec!["local.b".to_owned()]);
        deps.insert("local.b".to_owned(), vec!["local.c".to_owned()]);
        deps.insert("local.c".to_owned(), vec!["local.a".to_owned()]);
        assert_eq!(
            topo_sort(&keys, &deps).unwrap_err(),
            ["local.a", "local.b", "local.c", "local.a"]
        );
    }
}
