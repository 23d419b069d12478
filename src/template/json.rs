//! Legacy JSON templates: converts a Packer JSON template (`builders`, `provisioners`,
//! `post-processors`, `variables`, `sensitive-variables`, `min_packer_version`, `description`) to
//! the equivalent HCL2 body, as `packer hcl2_upgrade` does, and prints it as HCL2 text.
//!
//! Go-template calls in strings become HCL2 expressions: `{{user `x`}}` → `${var.x}`,
//! `{{env `X`}}` → `${env("X")}`, `{{timestamp}}` → `${local.timestamp}`, `{{isotime "…"}}` →
//! `${legacy_isotime("…")}`, `{{template_dir}}` → `${path.root}`, `{{build_name}}` →
//! `${source.name}`, and so on. Build-time values (`{{ .HTTPIP }}`, `{{ .Name }}`, …) are left
//! for the builders to fill in. Calls that have no HCL2 equivalent stay as written and are
//! reported as warnings (and as comments in the text).
//!
//! Where Packer's output needs a plugin (the `amazon-secretsmanager` data source for
//! `aws_secretsmanager`), kiln uses the function of the same name instead, and it writes no
//! `required_plugins` block: kiln's builders are built in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hcl::expr::{Expression, FuncCall, TemplateExpr, Variable};
use hcl::{Attribute, Block, Body, Identifier, Structure};
use serde_json::Value as Json;

/// A legacy JSON template that cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum JsonTemplateError {
    /// The file is not valid JSON.
    #[error("{}:{line}:{column}: invalid JSON", .file.display())]
    Syntax {
        /// The template file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json found.
        #[source]
        source: serde_json::Error,
    },
    /// Valid JSON, but not the shape of a Packer template.
    #[error("{}: {message}", .file.display())]
    Shape {
        /// The template file.
        file: PathBuf,
        /// What is wrong, naming the element (`builders[1]`, …).
        message: String,
    },
}

/// HCL source (`type.name`) to the name Packer gives that build in a JSON template.
pub type LegacyNames = BTreeMap<String, String>;

/// Converts a legacy JSON template to an HCL2 body, with the name Packer gives each build in
/// a JSON template (the builder's `name`, or its type), keyed by its HCL source (`type.name`).
pub fn to_hcl(src: &str, file: &Path) -> Result<(Body, LegacyNames), JsonTemplateError> {
    let c = convert(src, file)?;
    let names = c
        .legacy_names
        .into_iter()
        .map(|(legacy, hcl)| (hcl, legacy))
        .collect();
    Ok((c.body, names))
}

/// Converts a legacy JSON template to HCL2 text in Packer's canonical format (what
/// `kiln hcl2_upgrade` writes to `<file>.pkr.hcl`), with a comment per Go-template call that
/// could not be converted.
pub fn upgrade(src: &str, file: &Path) -> Result<String, JsonTemplateError> {
    let converted = convert(src, file)?;
    let mut text = String::new();
    if !converted.warnings.is_empty() {
        text.push_str("# kiln hcl2_upgrade could not convert these Go-template calls; they are\n");
        text.push_str("# left as written and need to be rewritten by hand:\n");
        for w in &converted.warnings {
            let _ = writeln!(text, "#   {w}");
        }
        text.push('\n');
    }
    write_body(&mut text, &converted.body, 0);
    // The text is generated from a valid body, so formatting cannot fail; fall back to the
    // unformatted text rather than lose it.
    Ok(crate::template::format::format_source(&text).unwrap_or(text))
}

/// A string with Go-template calls as the HCL2 expression text it converts to (`{{user `x`}}` →
/// `"${var.x}"`), and the calls that have no HCL2 equivalent (`kiln console` on a JSON
/// template evaluates what users type in Packer's JSON syntax this way).
pub fn go_template_to_hcl(s: &str) -> (String, Vec<String>) {
    let mut cx = Context::default();
    let mut out = String::new();
    write_expr(&mut out, &cx.string(s), 0);
    (out, cx.warnings)
}

struct Converted {
    body: Body,
    warnings: Vec<String>,
    /// Each builder's legacy name (its `name`, or its type) to its HCL source (`type.name`).
    legacy_names: BTreeMap<String, String>,
}

fn shape(file: &Path, message: impl Into<String>) -> JsonTemplateError {
    JsonTemplateError::Shape {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// Parses a legacy JSON template's text into its top-level object.
pub(crate) fn parse_object(
    src: &str,
    file: &Path,
) -> Result<serde_json::Map<String, Json>, JsonTemplateError> {
    let json: Json = serde_json::from_str(src).map_err(|source| JsonTemplateError::Syntax {
        file: file.to_path_buf(),
        line: source.line(),
        column: source.column(),
        source,
    })?;
    match json {
        Json::Object(top) => Ok(top),
        _ => Err(shape(file, "a template must be a JSON object")),
    }
}

fn convert(src: &str, file: &Path) -> Result<Converted, JsonTemplateError> {
    let top = parse_object(src, file)?;
    const KNOWN: &[&str] = &[
        "builders",
        "provisioners",
        "post-processors",
        "variables",
        "sensitive-variables",
        "min_packer_version",
        "description",
        "error-cleanup-provisioner",
        "push",
    ];
    if let Some(unknown) = top
        .keys()
        .find(|k| !k.starts_with('_') && !KNOWN.contains(&k.as_str()))
    {
        return Err(shape(file, format!("unknown top-level key \"{unknown}\"")));
    }

    let mut cx = Context::default();
    let variables = match top.get("variables") {
        None | Some(Json::Null) => serde_json::Map::new(),
        Some(Json::Object(v)) => v.clone(),
        Some(_) => return Err(shape(file, "\"variables\" must be an object")),
    };
    let sensitive: Vec<String> = match top.get("sensitive-variables") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| shape(file, "\"sensitive-variables\" must be a list of names"))?,
        Some(_) => {
            return Err(shape(
                file,
                "\"sensitive-variables\" must be a list of names",
            ))
        }
    };
    let builders = components(file, &top, "builders")?;
    if builders.is_empty() {
        return Err(shape(file, "a template needs at least one builder"));
    }
    let provisioners = components(file, &top, "provisioners")?;
    let cleanup = match top.get("error-cleanup-provisioner") {
        None | Some(Json::Null) => None,
        Some(Json::Object(p)) => Some(p.clone()),
        Some(_) => {
            return Err(shape(
                file,
                "\"error-cleanup-provisioner\" must be an object",
            ))
        }
    };
    let chains = post_processor_chains(file, top.get("post-processors"))?;

    // Variables whose default uses anything but `env` cannot be HCL2 variables (their value
    // must be known before evaluation), so they become locals; references follow them.
    let mut names: Vec<String> = variables.keys().cloned().collect();
    for name in referenced_user_variables(&Json::Object(top.clone())) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    for name in &names {
        if let Some(Json::String(default)) = variables.get(name) {
            if needs_local(default) {
                cx.locals.insert(name.clone(), ());
            }
        }
    }

    let mut body = Body::builder();
    if let Some(version) = top.get("min_packer_version").and_then(Json::as_str) {
        body = body.add_block(
            Block::builder("packer")
                .add_attribute(("required_version", format!(">= {version}")))
                .build(),
        );
    }
    let mut locals = Vec::new();
    let mut sensitive_locals = Vec::new();
    for name in &names {
        let is_sensitive = sensitive.contains(name);
        let default = variables.get(name);
        if cx.locals.contains_key(name) {
            let expr = cx.value(default.unwrap_or(&Json::Null));
            if is_sensitive {
                sensitive_locals.push(
                    Block::builder("local")
                        .add_label(name.as_str())
                        .add_attribute(("sensitive", true))
                        .add_attribute(("expression", expr))
                        .build(),
                );
            } else {
                locals.push(Attribute::new(name.as_str(), expr));
            }
            continue;
        }
        let mut block = Block::builder("variable")
            .add_label(name.as_str())
            .add_attribute(("type", Expression::Variable(Variable::unchecked("string"))));
        match default {
            // Referenced with {{user `x`}} but not declared: Packer gives it "".
            None => block = block.add_attribute(("default", "")),
            Some(Json::Null) => {}
            Some(Json::String(s)) => block = block.add_attribute(("default", cx.string(s))),
            Some(other) => block = block.add_attribute(("default", other.to_string())),
        }
        if is_sensitive {
            block = block.add_attribute(("sensitive", true));
        }
        body = body.add_block(block.build());
    }

    let mut sources = Vec::new();
    let mut source_refs = Vec::new();
    let mut legacy_names = BTreeMap::new();
    let mut ordered: Vec<(String, serde_json::Map<String, Json>)> = builders
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let ty = b
                .get("type")
                .and_then(Json::as_str)
                .ok_or_else(|| shape(file, format!("builders[{i}] has no \"type\"")))?
                .to_owned();
            Ok((ty, b))
        })
        .collect::<Result<_, JsonTemplateError>>()?;
    // Packer sorts builders by type and name for stable output.
    ordered.sort_by_key(|(ty, b)| {
        let name = b.get("name").and_then(Json::as_str).unwrap_or(ty);
        format!("{ty}{name}")
    });
    for (i, (ty, config)) in ordered.into_iter().enumerate() {
        let legacy = config
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or(&ty)
            .to_owned();
        let name = if legacy == ty {
            format!("autogenerated_{}", i + 1)
        } else {
            sanitize_name(&legacy)
        };
        let mut block = Block::builder("source")
            .add_label(ty.as_str())
            .add_label(name.as_str());
        block = block.add_structures(cx.structures(&config, &["type", "name"]));
        sources.push(block.build());
        source_refs.push(format!("source.{ty}.{name}"));
        legacy_names.insert(legacy, format!("{ty}.{name}"));
    }

    let mut build = Block::builder("build");
    if let Some(description) = top.get("description").and_then(Json::as_str) {
        build = build.add_attribute(("description", description));
    }
    build = build.add_attribute((
        "sources",
        Expression::Array(source_refs.into_iter().map(Expression::from).collect()),
    ));
    for p in &provisioners {
        build = build.add_block(cx.provisioner("provisioner", p, &legacy_names, file)?);
    }
    if let Some(p) = &cleanup {
        build =
            build.add_block(cx.provisioner("error-cleanup-provisioner", p, &legacy_names, file)?);
    }
    for chain in &chains {
        match chain.as_slice() {
            [] => {}
            [single] => build = build.add_block(cx.post_processor(single, &legacy_names)),
            many => {
                let mut group = Block::builder("post-processors");
                for pp in many {
                    group = group.add_block(cx.post_processor(pp, &legacy_names));
                }
                build = build.add_block(group.build());
            }
        }
    }

    if cx.timestamp {
        let call = FuncCall::builder("regex_replace")
            .arg(Expression::FuncCall(Box::new(FuncCall::new("timestamp"))))
            .arg("[- TZ:]")
            .arg("")
            .build();
        locals.insert(
            0,
            Attribute::new("timestamp", Expression::FuncCall(Box::new(call))),
        );
    }
    if !locals.is_empty() {
        body = body.add_block(Block::builder("locals").add_attributes(locals).build());
    }
    body = body.add_blocks(sensitive_locals);
    body = body.add_blocks(sources);
    body = body.add_block(build.build());
    Ok(Converted {
        body: body.build(),
        warnings: cx.warnings,
        legacy_names,
    })
}

fn components(
    file: &Path,
    top: &serde_json::Map<String, Json>,
    key: &str,
) -> Result<Vec<serde_json::Map<String, Json>>, JsonTemplateError> {
    match top.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::Object(o) if o.get("type").and_then(Json::as_str).is_some() => Ok(o.clone()),
                Json::Object(_) => Err(shape(file, format!("{key}[{i}] has no \"type\""))),
                _ => Err(shape(file, format!("{key}[{i}] must be an object"))),
            })
            .collect(),
        Some(_) => Err(shape(file, format!("\"{key}\" must be a list"))),
    }
}

/// `post-processors` as chains: a string is a post-processor with only a type, an object is a
/// chain of one, a list is a chain.
fn post_processor_chains(
    file: &Path,
    value: Option<&Json>,
) -> Result<Vec<Vec<serde_json::Map<String, Json>>>, JsonTemplateError> {
    let one = |v: &Json, at: String| match v {
        Json::String(ty) => {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), Json::String(ty.clone()));
            Ok(m)
        }
        Json::Object(o) if o.get("type").and_then(Json::as_str).is_some() => Ok(o.clone()),
        _ => Err(shape(
            file,
            format!("{at} must be a type name or an object with a \"type\""),
        )),
    };
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    match value {
        Json::Null => Ok(Vec::new()),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::Array(chain) => chain
                    .iter()
                    .enumerate()
                    .map(|(j, pp)| one(pp, format!("post-processors[{i}][{j}]")))
                    .collect(),
                other => Ok(vec![one(other, format!("post-processors[{i}]"))?]),
            })
            .collect(),
        _ => Err(shape(file, "\"post-processors\" must be a list")),
    }
}

/// `{{user `name`}}` references anywhere in the template: such variables may come from a var
/// file only, and still need a `variable` block.
fn referenced_user_variables(v: &Json) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Json::String(s) => {
            for action in actions(s) {
                if let [Word::Bare(f), Word::Str(name)] = words(action).as_slice() {
                    if f == "user" {
                        out.push(name.clone());
                    }
                }
            }
        }
        Json::Array(items) => items
            .iter()
            .for_each(|i| out.extend(referenced_user_variables(i))),
        Json::Object(obj) => obj
            .values()
            .for_each(|i| out.extend(referenced_user_variables(i))),
        _ => {}
    }
    out
}

/// Whether a variable default uses template calls other than `env`.
fn needs_local(default: &str) -> bool {
    actions(default)
        .into_iter()
        .any(|a| !matches!(words(a).as_slice(), [Word::Bare(f), Word::Str(_)] if f == "env"))
}

/// The text inside each `{{ … }}` of a string.
fn actions(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = find_action_end(after) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + 2..];
    }
    out
}

/// The offset of the `}}` closing an action, skipping quoted and backquoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => i += 1 + s[i + 1..].find('`')?,
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
    Bare(String),
    Str(String),
    Other(String),
}

/// Splits an action into words: bare words, string literals (quoted or backquoted), and
/// anything else (pipes, parentheses) as `Other`.
fn words(action: &str) -> Vec<Word> {
    let action = action
        .trim()
        .trim_start_matches('-')
        .trim_end_matches('-')
        .trim();
    let mut out = Vec::new();
    let mut chars = action.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '`' => {
                chars.next();
                let text: String = chars
                    .by_ref()
                    .map(|(_, c)| c)
                    .take_while(|&c| c != '`')
                    .collect();
                out.push(Word::Str(text));
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, e)) = chars.next() {
                                text.push(match e {
                                    'n' => '\n',
                                    't' => '\t',
                                    other => other,
                                });
                            }
                        }
                        '"' => break,
                        c => text.push(c),
                    }
                }
                out.push(Word::Str(text));
            }
            '|' | '(' | ')' => {
                chars.next();
                out.push(Word::Other(c.to_string()));
            }
            _ => {
                let mut end = action.len();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '|' | '(' | ')' | '`' | '"') {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                out.push(Word::Bare(action[i..end].to_owned()));
            }
        }
    }
    out
}

/// Conversion state: which variables became locals, whether `{{timestamp}}` was used, and the
/// calls left unconverted.
#[derive(Default)]
struct Context {
    locals: BTreeMap<String, ()>,
    timestamp: bool,
    warnings: Vec<String>,
}

/// HCL2 string literal syntax for `s` inside a template (`${` and `%{` escaped).
fn hcl_literal(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

fn hcl_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl Context {
    /// A JSON string as an HCL2 expression: a plain string, or a template with the Go-template
    /// calls converted.
    fn string(&mut self, s: &str) -> Expression {
        let mut template = String::new();
        let mut interpolated = false;
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = find_action_end(after) else {
                break;
            };
            template.push_str(&hcl_literal(&rest[..start]));
            let action = &after[..end];
            match self.action(action) {
                Some(expr) => {
                    interpolated = true;
                    let _ = write!(template, "${{{expr}}}");
                }
                None => {
                    template.push_str(&hcl_literal(&rest[start..start + 2 + end + 2]));
                }
            }
            rest = &after[end + 2..];
        }
        if !interpolated {
            return Expression::String(s.to_owned());
        }
        template.push_str(&hcl_literal(rest));
        Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(template)))
    }

    /// The HCL2 expression (as source text) for one Go-template action, or None to keep it as
    /// written: build-time values such as `.HTTPIP`, and calls HCL2 cannot express.
    fn action(&mut self, action: &str) -> Option<String> {
        let words = words(action);
        if let Some(Word::Bare(first)) = words.first() {
            if first.starts_with('.') {
                return None;
            }
        }
        let converted = self.call(&words);
        if converted.is_none() {
            self.warnings.push(format!("{{{{{action}}}}}"));
        }
        converted
    }

    fn call(&mut self, words: &[Word]) -> Option<String> {
        let (Word::Bare(f), args) = words.split_first()? else {
            return None;
        };
        let mut strs = Vec::new();
        for a in args {
            strs.push(match a {
                Word::Str(s) => hcl_quote(s),
                Word::Bare(b) if b.parse::<i64>().is_ok() => b.clone(),
                Word::Bare(b) => self.call(&[Word::Bare(b.clone())])?,
                Word::Other(_) => return None,
            });
        }
        let arg = |i: usize| strs.get(i).cloned();
        let plain = |i: usize| match args.get(i) {
            Some(Word::Str(s)) => Some(s.clone()),
            _ => None,
        };
        Some(match (f.as_str(), strs.len()) {
            ("user", 1) => {
                let name = plain(0)?;
                if self.locals.contains_key(&name) {
                    format!("local.{name}")
                } else {
                    format!("var.{name}")
                }
            }
            ("env", 1) => format!("env({})", arg(0)?),
            ("timestamp", 0) => {
                self.timestamp = true;
                "local.timestamp".into()
            }
            ("isotime", 0) | ("strftime", 0) => "timestamp()".into(),
            ("isotime", 1) => format!("legacy_isotime({})", arg(0)?),
            ("strftime", 1) => format!("legacy_strftime({})", arg(0)?),
            ("uuid", 0) => "uuidv4()".into(),
            ("template_dir", 0) => "path.root".into(),
            ("pwd", 0) => "path.cwd".into(),
            ("packer_version", 0) => "packer.version".into(),
            // Packer's hcl2_upgrade writes build.name, which in HCL2 is the build block's name
            // (empty here); the builder's name is what the JSON template meant.
            ("build_name", 0) => "source.name".into(),
            ("build_type", 0) => "source.type".into(),
            ("build", 1) => format!("build.{}", plain(0)?),
            ("data", 1) => format!("data.{}", plain(0)?),
            ("aws_secretsmanager" | "vault", 1 | 2)
            | ("consul_key" | "aws_secretsmanager_raw", 1) => {
                format!("{f}({})", strs.join(", "))
            }
            ("lower" | "upper", 1) => format!("{f}({})", arg(0)?),
            // Packer's legacy split(string, separator, index) picks one part.
            ("split", 3) => format!("split({}, {})[{}]", arg(1)?, arg(0)?, arg(2)?),
            // replace_all(old, new, string)
            ("replace_all", 3) => format!("replace({}, {}, {})", arg(2)?, arg(0)?, arg(1)?),
            // replace(old, new, count, string): only "all occurrences" exists in HCL2.
            ("replace", 4) if arg(2)? == "-1" => {
                format!("replace({}, {}, {})", arg(3)?, arg(0)?, arg(1)?)
            }
            _ => return None,
        })
    }

    fn value(&mut self, v: &Json) -> Expression {
        match v {
            Json::Null => Expression::Null,
            Json::Bool(b) => Expression::Bool(*b),
            Json::Number(n) => n
                .as_i64()
                .map(Expression::from)
                .or_else(|| n.as_f64().map(Expression::from))
                .unwrap_or(Expression::Null),
            Json::String(s) => self.string(s),
            Json::Array(items) => Expression::Array(items.iter().map(|i| self.value(i)).collect()),
            Json::Object(obj) => {
                let mut out = hcl::expr::Object::new();
                for (k, v) in sorted(obj) {
                    let key = match Identifier::new(k.as_str()) {
                        Ok(id) => hcl::ObjectKey::Identifier(id),
                        Err(_) => hcl::ObjectKey::Expression(Expression::String(k.clone())),
                    };
                    out.insert(key, self.value(v));
                }
                Expression::Object(out)
            }
        }
    }

    /// A component's settings as attributes and nested blocks, the way Packer guesses them
    /// without the plugin's schema: objects holding only plain values are map attributes,
    /// other objects are blocks, lists of objects are repeated blocks, empty lists are dropped.
    fn structures(
        &mut self,
        config: &serde_json::Map<String, Json>,
        skip: &[&str],
    ) -> Vec<Structure> {
        let mut out = Vec::new();
        for (k, v) in sorted(config) {
            if skip.contains(&k.as_str()) || k.starts_with('_') {
                continue;
            }
            let block_name = Identifier::new(k.as_str()).ok();
            match (v, block_name) {
                (Json::Object(obj), Some(id)) if obj.is_empty() || obj.values().any(is_complex) => {
                    out.push(Structure::Block(
                        Block::builder(id)
                            .add_structures(self.structures(obj, &[]))
                            .build(),
                    ));
                }
                (Json::Array(items), _) if items.is_empty() => {}
                (Json::Array(items), Some(id)) if items.iter().any(Json::is_object) => {
                    for item in items {
                        let body = match item {
                            Json::Object(obj) => self.structures(obj, &[]),
                            _ => Vec::new(),
                        };
                        out.push(Structure::Block(
                            Block::builder(id.clone()).add_structures(body).build(),
                        ));
                    }
                }
                _ => out.push(Structure::Attribute(self.attribute(k, v))),
            }
        }
        out
    }

    fn attribute(&mut self, key: &str, v: &Json) -> Attribute {
        let expr = self.value(v);
        match Identifier::new(key) {
            Ok(id) => Attribute::new(id, expr),
            // Not an identifier: kept under a sanitized name (HCL2 attributes need one).
            Err(_) => Attribute::new(Identifier::sanitized(key), expr),
        }
    }

    fn provisioner(
        &mut self,
        kind: &str,
        p: &serde_json::Map<String, Json>,
        legacy_names: &BTreeMap<String, String>,
        file: &Path,
    ) -> Result<Block, JsonTemplateError> {
        let ty = p.get("type").and_then(Json::as_str).unwrap_or_default();
        let mut config = p.clone();
        rename_filters(&mut config, legacy_names);
        let overrides = match config.remove("override") {
            None | Some(Json::Null) => None,
            Some(Json::Object(overrides)) => Some(overrides),
            Some(_) => {
                return Err(shape(
                    file,
                    format!("the \"override\" of provisioner {ty} must be an object"),
                ))
            }
        };
        if let Some(overrides) = overrides {
            let mut renamed = serde_json::Map::new();
            for (name, settings) in overrides {
                // Overrides are keyed by the source's name alone (filters use `type.name`).
                let key = legacy_names
                    .get(&name)
                    .and_then(|full| full.split_once('.'))
                    .map_or(name.clone(), |(_, source)| source.to_owned());
                renamed.insert(key, settings);
            }
            return Ok(Block::builder(kind)
                .add_label(ty)
                .add_structures(self.structures(&config, &["type"]))
                .add_attribute(("override", self.value(&Json::Object(renamed))))
                .build());
        }
        Ok(Block::builder(kind)
            .add_label(ty)
            .add_structures(self.structures(&config, &["type"]))
            .build())
    }

    fn post_processor(
        &mut self,
        pp: &serde_json::Map<String, Json>,
        legacy_names: &BTreeMap<String, String>,
    ) -> Block {
        let ty = pp.get("type").and_then(Json::as_str).unwrap_or_default();
        let mut config = pp.clone();
        rename_filters(&mut config, legacy_names);
        // A name equal to the type is Packer's default and is not written.
        if config.get("name").and_then(Json::as_str) == Some(ty) {
            config.remove("name");
        }
        Block::builder("post-processor")
            .add_label(ty)
            .add_structures(self.structures(&config, &["type"]))
            .build()
    }
}

/// `only`/`except` name legacy builders; HCL2 filters name sources as `type.name`.
fn rename_filters(
    config: &mut serde_json::Map<String, Json>,
    legacy_names: &BTreeMap<String, String>,
) {
    for key in ["only", "except"] {
        if let Some(Json::Array(names)) = config.get_mut(key) {
            for name in names.iter_mut() {
                if let Some(new) = name.as_str().and_then(|n| legacy_names.get(n)) {
                    *name = Json::String(new.clone());
                }
            }
        }
    }
}

fn is_complex(v: &Json) -> bool {
    matches!(v, Json::Object(_) | Json::Array(_))
}

fn sorted(map: &serde_json::Map<String, Json>) -> Vec<(&String, &Json)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// Source names must be identifiers; Packer trims them and turns spaces into underscores.
fn sanitize_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// HCL2 text for a body built by this module (blocks, attributes and the expressions used
/// above). hcl-rs's own printer does not escape quoted templates, hence this one.
fn write_body(out: &mut String, body: &Body, indent: usize) {
    let pad = "  ".repeat(indent);
    let mut previous_was_block = false;
    for (i, structure) in body.iter().enumerate() {
        match structure {
            Structure::Attribute(attr) => {
                if previous_was_block && indent > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "{pad}{} = ", attr.key);
                write_expr(out, &attr.expr, indent);
                out.push('\n');
                previous_was_block = false;
            }
            Structure::Block(block) => {
                if i > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "{pad}{}", block.identifier);
                for label in &block.labels {
                    let _ = write!(out, " {}", hcl_quote(label.as_str()));
                }
                out.push_str(" {\n");
                write_body(out, &block.body, indent + 1);
                let _ = writeln!(out, "{pad}}}");
                previous_was_block = true;
            }
        }
    }
}

/// A quoted template: literal parts get string escapes, `${…}` sequences are copied as they are
/// (they hold HCL2 expressions, whose own strings must not be escaped again).
fn write_template(out: &mut String, text: &str) {
    out.push('"');
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("$${");
            rest = after;
        } else if rest.starts_with("${") {
            let end = interpolation_end(rest);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                let escaped = hcl_quote(&c.to_string());
                out.push_str(&escaped[1..escaped.len() - 1]);
            }
            rest = chars.as_str();
        }
    }
    out.push('"');
}

/// The length of the `${…}` sequence at the start of `s`, skipping braces inside strings.
fn interpolation_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut depth, mut i, mut in_string) = (0usize, 0usize, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'{' if !in_string => depth += 1,
            b'}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    s.len()
}

fn write_expr(out: &mut String, expr: &Expression, indent: usize) {
    match expr {
        Expression::String(s) => out.push_str(&hcl_quote(&hcl_literal(s))),
        Expression::TemplateExpr(t) => write_template(out, &t.to_string()),
        Expression::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, item, indent);
            }
            out.push(']');
        }
        Expression::Object(obj) => {
            let pad = "  ".repeat(indent + 1);
            out.push_str("{\n");
            for (k, v) in obj {
                match k {
                    hcl::ObjectKey::Identifier(id) => {
                        let _ = write!(out, "{pad}{id} = ");
                    }
                    hcl::ObjectKey::Expression(Expression::String(s)) => {
                        let _ = write!(out, "{pad}{} = ", hcl_quote(&hcl_literal(s)));
                    }
                    other => {
                        let _ = write!(out, "{pad}{other} = ");
                    }
                }
                write_expr(out, v, indent + 1);
                out.push('\n');
            }
            let _ = write!(out, "{}}}", "  ".repeat(indent));
        }
        Expression::FuncCall(call) => {
            let _ = write!(out, "{}(", call.name.name);
            for (i, a) in call.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, a, indent);
            }
            out.push(')');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_str(s: &str) -> (String, Vec<String>) {
        go_template_to_hcl(s)
    }

    #[test]
    fn go_template_calls_become_hcl() {
        let cases = [
            ("{{user `x`}}", r#""${var.x}""#),
            ("{{ env `HOME` }}/x", r#""${env("HOME")}/x""#),
            ("{{isotime \"2006\"}}", r#""${legacy_isotime("2006")}""#),
            ("{{template_dir}}/http", r#""${path.root}/http""#),
            (
                "{{build_name}}-{{build_type}}",
                r#""${source.name}-${source.type}""#,
            ),
            ("{{ upper `a` }}", r#""${upper("a")}""#),
            ("{{ split `a-b` `-` 1 }}", r#""${split("-", "a-b")[1]}""#),
            (
                "{{ replace_all `-` `_` build_name }}",
                r#""${replace(source.name, "-", "_")}""#,
            ),
        ];
        for (input, expected) in cases {
            let (out, warnings) = convert_str(input);
            assert_eq!(out, expected, "{input}");
            assert!(warnings.is_empty(), "{input}: {warnings:?}");
        }
    }

    #[test]
    fn build_time_values_and_literals_are_kept() {
        let (out, warnings) = convert_str("http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg");
        assert_eq!(out, r#""http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg""#);
        assert!(warnings.is_empty());
        let (out, _) = convert_str("say \"${HOME}\" {{uuid}}\n");
        assert_eq!(out, r#""say \"$${HOME}\" ${uuidv4()}\n""#);
        let (out, _) = convert_str("plain ${x} %{y}");
        assert_eq!(out, r#""plain $${x} %%{y}""#);
    }

    #[test]
    fn unconvertible_calls_are_reported() {
        let (out, warnings) = convert_str("{{ `A` | lower }}");
        assert_eq!(out, r#""{{ `A` | lower }}""#);
        assert_eq!(warnings, vec!["{{ `A` | lower }}".to_owned()]);
    }

    #[test]
    fn variables_with_template_calls_become_locals() {
        let src = r#"{"variables": {"a": "x", "b": "{{user `a`}}-y", "c": "{{env `C`}}"},
                      "sensitive-variables": ["b"],
                      "builders": [{"type": "null"}]}"#;
        let text = upgrade(src, Path::new("t.json")).unwrap();
        assert!(text.contains("variable \"a\""), "{text}");
        assert!(text.contains("variable \"c\""), "{text}");
        assert!(
            text.contains("local \"b\" {\n  sensitive  = true\n  expression = \"${var.a}-y\"\n}"),
            "{text}"
        );
        assert!(
            text.contains("sources = [\"source.null.autogenerated_1\"]"),
            "{text}"
        );
    }

    #[test]
    fn override_must_be_an_object() {
        let src = r#"{"builders": [{"type": "null"}], "provisioners": [{"type": "shell", "override": 3}]}"#;
        let err = to_hcl(src, Path::new("t.json")).unwrap_err().to_string();
        assert!(err.contains("override"), "{err}");
    }

    #[test]
    fn post_processor_shapes() {
        let src = r#"{"builders": [{"type": "null"}],
                      "post-processors": ["compress", {"type": "manifest"}, [{"type": "a"}, "b"]]}"#;
        let (body, _) = to_hcl(src, Path::new("t.json")).unwrap();
        let build = body.blocks().find(|b| b.identifier() == "build").unwrap();
        let kinds: Vec<String> = build
            .body()
            .blocks()
            .map(|b| {
                format!(
                    "{}{:?}",
                    b.identifier(),
                    b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                r#"post-processor["compress"]"#,
                r#"post-processor["manifest"]"#,
                "post-processors[]"
            ]
        );
    }

    proptest::proptest! {
        /// Whatever a string setting holds (quotes, backslashes, `${`, broken `{{`), the HCL2
        /// text parses again and evaluates back to the same string when it had no calls.
        #[test]
        fn any_string_setting_round_trips(v in "[a-z{}$%`\"\\\\\n .|-]{0,30}") {
            let template = serde_json::json!({"builders": [{"type": "null", "x": v}]});
            let text = upgrade(&template.to_string(), Path::new("t.json")).unwrap();
            let body: hcl::Body = hcl::from_str(&text)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
            if !v.contains("{{") {
                let source = body.blocks().find(|b| b.identifier() == "source").unwrap();
                let attr = source.body().attributes().next().unwrap();
                let value = crate::template::functions::evaluate(attr.expr(), &hcl::eval::Context::new())
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}")))?;
                proptest::prop_assert_eq!(value, hcl::Value::from(v.clone()));
            }
        }
    }
}
