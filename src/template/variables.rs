//! Input variables: declarations (`variable` and `variables` blocks) and the values given for
//! them, merged in Packer's order of precedence: defaults < `PKR_VAR_name` < auto var-files
//! (`*.auto.pkrvars.hcl`/`.json`, in name order) < `-var-file` (in order) < `-var` (in order).

use super::diagnostics::{Diagnostic, Location};
use super::parse::{self, Block, Body};
use super::types::TypeError;
use super::types::{self, Type};
use hcl::{Expression, Value};
use std::path::Path;

/// A declared variable.
#[derive(Debug, Clone)]
pub struct VariableDecl {
    /// Name.
    pub name: String,
    /// Type constraint (`any` when not given).
    pub ty: Type,
    /// Whether `type` was written.
    pub typed: bool,
    /// Default, already converted to `ty`; `None` means the variable must be set.
    pub default: Option<Value>,
    /// `description`.
    pub description: Option<String>,
    /// `sensitive = true`.
    pub sensitive: bool,
    /// `validation { condition, error_message }` blocks.
    pub validations: Vec<Validation>,
    /// Where it was declared.
    pub loc: Location,
}

/// One `validation` block.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Must evaluate to true.
    pub condition: Expression,
    /// Shown when it does not.
    pub error_message: Expression,
    /// Location of the `condition` attribute.
    pub loc: Location,
}

/// Where a variable's value came from, for messages.
#[derive(Debug, Clone)]
pub struct Given {
    /// Name of the variable.
    pub name: String,
    /// The value, not yet converted.
    pub value: Value,
    /// `-var`, `PKR_VAR_x` or the var-file's location.
    pub origin: Origin,
}

/// Where a value was given.
#[derive(Debug, Clone)]
pub enum Origin {
    /// The environment.
    Env,
    /// A var-file (auto or `-var-file`).
    File(Location),
    /// `-var` on the command line.
    Flag,
}

fn literal(expr: &Expression, what: &str, loc: &Location) -> Result<Value, Diagnostic> {
    super::functions::evaluate_literal(expr).map_err(|e| {
        Diagnostic::error(
            format!("{what} must be a literal value: {e}"),
            Some(loc.clone()),
        )
        .with_hint("variables cannot refer to other variables, locals or functions here")
    })
}

/// Read a `variable "name" {}` block; `ctx` holds the functions a default may call (`env`).
pub fn declare(block: &Block, ctx: &hcl::eval::Context<'_>) -> Result<VariableDecl, Diagnostic> {
    let name = block.labels.first().cloned().ok_or_else(|| {
        Diagnostic::error(
            "a variable block needs a name: variable \"name\" { … }",
            Some(block.loc.clone()),
        )
    })?;
    let mut decl = VariableDecl {
        name: name.clone(),
        ty: Type::Any,
        typed: false,
        default: None,
        description: None,
        sensitive: false,
        validations: Vec::new(),
        loc: block.loc.clone(),
    };
    for a in &block.body.attrs {
        match a.name.as_str() {
            "type" => {
                decl.ty = types::parse_type(&a.expr).map_err(|e| {
                    Diagnostic::error(format!("invalid type for variable \"{name}\": {e}"), Some(a.loc.clone()))
                })?;
                decl.typed = true;
            }
            "default" | "description" | "sensitive" => {}
            other => {
                return Err(Diagnostic::error(
                    format!("unsupported argument \"{other}\" in variable \"{name}\""),
                    Some(a.loc.clone()),
                )
                .with_hint("a variable block takes type, default, description, sensitive and validation blocks"))
            }
        }
    }
    if let Some(a) = block.body.attr("default") {
        let v = super::functions::evaluate(&a.expr, ctx).map_err(|e| {
            Diagnostic::error(format!("invalid default for variable \"{name}\": {e}"), Some(a.loc.clone()))
                .with_hint("a default cannot refer to variables or locals; use a literal value or env(\"NAME\")")
        })?;
        let v = types::convert(v, &decl.ty).map_err(|e| {
            Diagnostic::error(
                format!("invalid default for variable \"{name}\": {e}"),
                Some(a.loc.clone()),
            )
            .with_hint(format!("give a default of type {}", decl.ty))
        })?;
        decl.default = Some(v);
    }
    if let Some(a) = block.body.attr("description") {
        if let Value::String(s) = literal(&a.expr, "a description", &a.loc)? {
            decl.description = Some(s);
        }
    }
    if let Some(a) = block.body.attr("sensitive") {
        decl.sensitive = matches!(literal(&a.expr, "sensitive", &a.loc)?, Value::Bool(true));
    }
    for v in block.body.blocks_of("validation") {
        let cond = v.body.attr("condition").ok_or_else(|| {
            Diagnostic::error(
                format!("validation of variable \"{name}\" has no condition"),
                Some(v.loc.clone()),
            )
        })?;
        let msg = v.body.attr("error_message").ok_or_else(|| {
            Diagnostic::error(
                format!("validation of variable \"{name}\" has no error_message"),
                Some(v.loc.clone()),
            )
        })?;
        decl.validations.push(Validation {
            condition: cond.expr.clone(),
            error_message: msg.expr.clone(),
            loc: cond.loc.clone(),
        });
    }
    Ok(decl)
}

/// Read a legacy `variables { name = default }` block.
pub fn declare_all(block: &Block) -> Result<Vec<VariableDecl>, Diagnostic> {
    block
        .body
        .attrs
        .iter()
        .map(|a| {
            Ok(VariableDecl {
                name: a.name.clone(),
                ty: Type::Any,
                typed: false,
                default: Some(literal(&a.expr, "a variable default", &a.loc)?),
                description: None,
                sensitive: false,
                validations: Vec::new(),
                loc: a.loc.clone(),
            })
        })
        .collect()
}

/// Values from a var-file (`.pkrvars.hcl` or `.json`).
pub fn read_var_file(path: &Path) -> Result<Vec<Given>, Diagnostic> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::error(
            format!("cannot read var-file {}: {e}", path.display()),
            None,
        )
        .with_hint("check the path given to -var-file")
    })?;
    let text = super::diagnostics::utf8_text(path, bytes)?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let body: Body = if is_json {
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            let loc = Location {
                file: path.to_path_buf(),
                line: e.line(),
                col: e.column(),
                len: 1,
            };
            Diagnostic::error(format!("invalid JSON: {e}"), Some(loc))
        })?;
        let serde_json::Value::Object(map) = v else {
            return Err(Diagnostic::error(
                "a JSON var-file must hold an object of variable names to values",
                Some(Location::file_only(path)),
            ));
        };
        return Ok(map
            .into_iter()
            .map(|(k, v)| Given {
                name: k,
                value: hcl::to_value(&v).unwrap_or(Value::Null),
                origin: Origin::File(Location::file_only(path)),
            })
            .collect());
    } else {
        parse::parse_hcl(path, &text)?
    };
    if let Some(b) = body.blocks.first() {
        return Err(Diagnostic::error(
            format!(
                "blocks are not allowed in a var-file (found \"{}\")",
                b.ident
            ),
            Some(b.loc.clone()),
        )
        .with_hint(
            "a var-file only holds `name = value` lines; declare variables in the template",
        ));
    }
    body.attrs
        .iter()
        .map(|a| {
            Ok(Given {
                name: a.name.clone(),
                value: literal(&a.expr, "a var-file value", &a.loc)?,
                origin: Origin::File(a.loc.clone()),
            })
        })
        .collect()
}

/// A value given as text (`-var name=value`, `PKR_VAR_name`): string and untyped variables take
/// it as is, other types parse it as an HCL expression.
pub fn parse_raw(raw: &str, decl: Option<&VariableDecl>) -> Result<Value, TypeError> {
    match decl.map(|d| &d.ty) {
        None | Some(Type::String | Type::Any) => Ok(Value::String(raw.to_owned())),
        Some(ty @ (Type::Number | Type::Bool)) => {
            types::convert(Value::String(raw.trim().to_owned()), ty)
        }
        Some(_) => {
            let expr: Expression = raw
                .parse()
                .map_err(|e: hcl::Error| TypeError(format!("not a valid HCL value: {e}")))?;
            super::functions::evaluate_literal(&expr)
                .map_err(|e| TypeError(format!("not a literal value: {e}")))
        }
    }
}

/// Split `-var` text into name and value.
pub fn split_flag(text: &str) -> Result<(String, String), Diagnostic> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(Diagnostic::error(format!("invalid -var {text:?}"), None)
            .with_hint("write -var 'name=value'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(src: &str) -> Result<VariableDecl, Diagnostic> {
        let body = parse::parse_hcl(Path::new("v.pkr.hcl"), src).unwrap();
        declare(&body.blocks[0], &hcl::eval::Context::new())
    }

    #[test]
    fn reads_declarations() {
        let d =
            decl("variable \"x\" {\n type = list(string)\n default = [1]\n sensitive = true\n}\n")
                .unwrap();
        assert_eq!(d.default, Some(Value::Array(vec![Value::from("1")])));
        assert!(d.sensitive);
    }

    #[test]
    fn rejects_bad_defaults() {
        let e = decl("variable \"x\" {\n  type = number\n  default = \"ten\"\n}\n").unwrap_err();
        assert_eq!(
            e.summary,
            "invalid default for variable \"x\": a number is required, got string \"ten\""
        );
        assert_eq!(e.location.unwrap().line, 3);
    }

    #[test]
    fn raw_values_follow_the_type() {
        let d = decl("variable \"x\" {\n  type = list(number)\n}\n").unwrap();
        assert_eq!(
            parse_raw("[1, 2]", Some(&d)).unwrap(),
            Value::Array(vec![Value::from(1), Value::from(2)])
        );
        assert_eq!(parse_raw("[1, 2]", None).unwrap(), Value::from("[1, 2]"));
    }
}
