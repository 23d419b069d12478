//! Parsing template files into a small syntax tree that keeps where each attribute and block
//! came from: HCL native syntax through hcl-edit (which has spans), HCL's JSON syntax
//! (`.pkr.json`) by mapping objects to blocks by Packer's schema, and bodies produced by the
//! legacy JSON converter (no spans: locations name the file only).

use super::diagnostics::{Diagnostic, Location, SourceText};
use hcl::edit::Span;
use hcl::Expression;
use std::path::Path;

/// `name = expr` with where `name` is.
#[derive(Debug, Clone)]
pub struct Attr {
    /// Attribute name.
    pub name: String,
    /// Unevaluated value.
    pub expr: Expression,
    /// Location of the name.
    pub loc: Location,
}

/// `ident "label" … { body }` with where `ident` is.
#[derive(Debug, Clone)]
pub struct Block {
    /// Block type.
    pub ident: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Content.
    pub body: Body,
    /// Location of the block type keyword.
    pub loc: Location,
}

/// Attributes and blocks in source order.
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// Attributes.
    pub attrs: Vec<Attr>,
    /// Nested blocks.
    pub blocks: Vec<Block>,
}

impl Body {
    /// The attribute named `name`.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Nested blocks of type `ident`.
    pub fn blocks_of<'a>(&'a self, ident: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks.iter().filter(move |b| b.ident == ident)
    }
}

/// Parse HCL native syntax.
pub fn parse_hcl(file: &Path, text: &str) -> Result<Body, Diagnostic> {
    let body = hcl::edit::parser::parse_body(text).map_err(|e| {
        let l = e.location();
        let loc = Location {
            file: file.to_path_buf(),
            line: l.line(),
            col: l.column(),
            len: 1,
        };
        Diagnostic::error(
            format!("invalid HCL syntax: {}", first_line(e.message())),
            Some(loc),
        )
        .with_hint("fix the syntax at the marked position (unclosed brace, bracket or quote?)")
    })?;
    Ok(convert_edit_body(&SourceText::new(file, text), &body))
}

fn first_line(msg: &str) -> &str {
    msg.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(msg)
        .trim()
}

fn loc_of(src: &SourceText<'_>, span: Option<std::ops::Range<usize>>) -> Location {
    match span {
        Some(r) => src.locate(r.start, r.end),
        None => Location::file_only(src.file()),
    }
}

fn convert_edit_body(src: &SourceText<'_>, body: &hcl::edit::structure::Body) -> Body {
    let mut out = Body::default();
    for s in body.iter() {
        match s {
            hcl::edit::structure::Structure::Attribute(a) => out.attrs.push(Attr {
                name: a.key.as_str().to_owned(),
                expr: Expression::from(a.value.clone()),
                loc: loc_of(src, a.key.span()),
            }),
            hcl::edit::structure::Structure::Block(b) => out.blocks.push(Block {
                ident: b.ident.as_str().to_owned(),
                labels: b.labels.iter().map(|l| l.as_str().to_owned()).collect(),
                body: convert_edit_body(src, &b.body),
                loc: loc_of(src, b.ident.span()),
            }),
        }
    }
    out
}

/// Convert a body without spans (from the legacy JSON converter).
pub fn from_hcl_body(file: &Path, body: &hcl::Body) -> Body {
    let mut out = Body::default();
    for s in body.iter() {
        match s {
            hcl::Structure::Attribute(a) => out.attrs.push(Attr {
                name: a.key.to_string(),
                expr: a.expr.clone(),
                loc: Location::file_only(file),
            }),
            hcl::Structure::Block(b) => out.blocks.push(Block {
                ident: b.identifier.to_string(),
                labels: b.labels.iter().map(|l| l.as_str().to_owned()).collect(),
                body: from_hcl_body(file, &b.body),
                loc: Location::file_only(file),
            }),
        }
    }
    out
}

/// Number of labels each block type takes in HCL's JSON syntax, by parent block type.
fn json_block_labels(parent: &str, key: &str) -> Option<usize> {
    match (parent, key) {
        ("", "variable" | "local" | "hcp_packer_registry") => Some(1),
        ("", "source" | "data") => Some(2),
        ("", "packer" | "locals" | "variables" | "build") => Some(0),
        ("packer", "required_plugins") => Some(0),
        ("variable", "validation") => Some(0),
        ("build", "source" | "provisioner" | "post-processor" | "error-cleanup-provisioner") => {
            Some(1)
        }
        ("build", "post-processors") => Some(0),
        ("post-processors", "post-processor") => Some(1),
        _ => None,
    }
}

/// Parse HCL's JSON syntax (`.pkr.json`): top-level keys are blocks whose nesting depth is the
/// number of labels; inside sources, provisioners and post-processors every key is an attribute
/// (`${…}` in strings is interpolated).
pub fn parse_json(file: &Path, text: &str) -> Result<Body, Diagnostic> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let loc = Location {
            file: file.to_path_buf(),
            line: e.line(),
            col: e.column(),
            len: 1,
        };
        Diagnostic::error(format!("invalid JSON: {e}"), Some(loc))
            .with_hint("fix the JSON syntax at the marked position")
    })?;
    json_body(file, "", &value)
}

fn json_body(file: &Path, parent: &str, value: &serde_json::Value) -> Result<Body, Diagnostic> {
    let floc = || Location::file_only(file);
    let serde_json::Value::Object(map) = value else {
        return Err(Diagnostic::error(
            format!("expected a JSON object for the body of {parent:?}"),
            Some(floc()),
        ));
    };
    let mut out = Body::default();
    for (key, v) in map {
        if key == "//" {
            continue;
        }
        match json_block_labels(parent, key) {
            Some(n) => {
                // A block may be given as an object or as an array of objects.
                let items: Vec<&serde_json::Value> = match v {
                    serde_json::Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    json_labelled(file, key, n, Vec::new(), item, &mut out)?;
                }
            }
            None => out.attrs.push(Attr {
                name: key.clone(),
                expr: json_expr(v),
                loc: floc(),
            }),
        }
    }
    Ok(out)
}

fn json_labelled(
    file: &Path,
    ident: &str,
    remaining: usize,
    labels: Vec<String>,
    v: &serde_json::Value,
    out: &mut Body,
) -> Result<(), Diagnostic> {
    if remaining == 0 {
        let items: Vec<&serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for item in items {
            out.blocks.push(Block {
                ident: ident.to_owned(),
                labels: labels.clone(),
                body: json_body(file, ident, item)?,
                loc: Location::file_only(file),
            });
        }
        return Ok(());
    }
    let serde_json::Value::Object(map) = v else {
        return Err(Diagnostic::error(
            format!("block \"{ident}\" needs {remaining} more label(s) as nested JSON object keys"),
            Some(Location::file_only(file)),
        ));
    };
    for (label, inner) in map {
        let mut l = labels.clone();
        l.push(label.clone());
        json_labelled(file, ident, remaining - 1, l, inner, out)?;
    }
    Ok(())
}

/// A JSON value as an HCL expression; strings are templates (`${var.x}`).
fn json_expr(v: &serde_json::Value) -> Expression {
    match v {
        serde_json::Value::Null => Expression::Null,
        serde_json::Value::Bool(b) => Expression::Bool(*b),
        serde_json::Value::Number(n) => hcl::Number::from_f64(n.as_f64().unwrap_or(0.0))
            .map(|f| n.as_i64().map(hcl::Number::from).unwrap_or(f))
            .map_or(Expression::Null, Expression::Number),
        serde_json::Value::String(s) if s.contains("${") || s.contains("%{") => {
            Expression::TemplateExpr(Box::new(hcl::TemplateExpr::QuotedString(s.clone())))
        }
        serde_json::Value::String(s) => Expression::String(s.clone()),
        serde_json::Value::Array(a) => Expression::Array(a.iter().map(json_expr).collect()),
        serde_json::Value::Object(m) => Expression::Object(
            m.iter()
                .map(|(k, v)| (hcl::ObjectKey::from(k.as_str()), json_expr(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_attribute_locations() {
        let text = "source \"qemu\" \"vm\" {\n  memory = 1024\n}\n";
        let body = parse_hcl(Path::new("a.pkr.hcl"), text).unwrap();
        let src = &body.blocks[0];
        assert_eq!(src.labels, ["qemu", "vm"]);
        let a = src.body.attr("memory").unwrap();
        assert_eq!((a.loc.line, a.loc.col, a.loc.len), (2, 3, 6));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse_hcl(
            Path::new("a.pkr.hcl"),
            "source \"qemu\" \"vm\" {\n  memory = \n}\n",
        )
        .unwrap_err();
        let loc = e.location.unwrap();
        assert_eq!((loc.line, loc.col), (2, 12));
    }

    #[test]
    fn duplicate_attributes_are_errors() {
        let e = parse_hcl(Path::new("a"), "a = 1\na = 2\n").unwrap_err();
        assert_eq!(e.summary, "invalid HCL syntax: invalid attribute; expected unique attribute key; found redefined attribute");
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn json_syntax_maps_labels() {
        let text = r#"{"source": {"qemu": {"vm": {"memory": 1, "vm_name": "${var.x}"}}},
                       "build": {"sources": ["source.qemu.vm"], "provisioner": [{"shell": {"inline": ["a"]}}]}}"#;
        let body = parse_json(Path::new("a.pkr.json"), text).unwrap();
        let src = body.blocks_of("source").next().unwrap();
        assert_eq!(src.labels, ["qemu", "vm"]);
        let b = body.blocks_of("build").next().unwrap();
        assert_eq!(
            b.body.blocks_of("provisioner").next().unwrap().labels,
            ["shell"]
        );
    }
}
