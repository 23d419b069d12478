//! Packer's HCL2 function library on top of hcl-rs: `register` declares every function in an
//! evaluation context and `evaluate` evaluates an expression with it, giving `try`, `can` and
//! `convert` the lazy argument handling hcl-rs cannot express (it evaluates call arguments
//! eagerly). Functions are grouped by family in the sibling files, as in Packer's documentation.
//! Variables, locals and `path.*` are declared by the template loader, not here.

mod collection;
mod contextual;
mod conversion;
mod crypto;
mod datetime;
mod encoding;
mod filesystem;
mod ipnet;
mod numeric;
mod operators;
mod string;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, FuncCall, ObjectKey, TemplateExpr};
use hcl::template::{Element, Template};
use hcl::Value;

/// Every function Packer's HCL2 templates can call (Packer 1.16), by name. Used by tests and by
/// `kiln console` completion; [`register`] aims to declare all of them.
pub const PACKER_FUNCTIONS: &[&str] = &[
    "abs",
    "abspath",
    "alltrue",
    "anytrue",
    "aws_secretsmanager",
    "aws_secretsmanager_raw",
    "base64decode",
    "base64encode",
    "base64gzip",
    "basename",
    "bcrypt",
    "can",
    "ceil",
    "chomp",
    "chunklist",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "consul_key",
    "contains",
    "convert",
    "csvdecode",
    "dirname",
    "distinct",
    "element",
    "endswith",
    "env",
    "file",
    "filebase64",
    "fileexists",
    "fileset",
    "flatten",
    "floor",
    "format",
    "formatdate",
    "formatlist",
    "indent",
    "index",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "legacy_isotime",
    "legacy_strftime",
    "length",
    "log",
    "lookup",
    "lower",
    "max",
    "md5",
    "merge",
    "min",
    "parseint",
    "pathexpand",
    "pow",
    "range",
    "regex",
    "regex_replace",
    "regexall",
    "replace",
    "reverse",
    "rfc3339_parse",
    "rsadecrypt",
    "setintersection",
    "setproduct",
    "setunion",
    "sha1",
    "sha256",
    "sha512",
    "signum",
    "slice",
    "sort",
    "split",
    "startswith",
    "strcontains",
    "strrev",
    "substr",
    "sum",
    "templatefile",
    "textdecodebase64",
    "textencodebase64",
    "timeadd",
    "timestamp",
    "title",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "unix_timestamp_parse",
    "upper",
    "urlencode",
    "uuidv4",
    "uuidv5",
    "values",
    "vault",
    "yamldecode",
    "yamlencode",
    "zipmap",
];

/// Where file functions resolve relative paths and whether network-backed functions may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionEnv {
    /// The directory of the template being evaluated (`path.root`): `file`, `fileset`,
    /// `templatefile` and the other file readers resolve relative paths against it, as Packer
    /// does (its `Basedir`).
    pub path_root: PathBuf,
    /// The working directory (`path.cwd`): `abspath` resolves relative paths against it.
    pub cwd: PathBuf,
    /// True when kiln must not reach the network (`vault`, `consul_key`, … then fail).
    pub offline: bool,
}

/// An expression that could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// hcl-rs rejected the expression or a function returned an error.
    #[error(transparent)]
    Eval(#[from] hcl::eval::Error),
    /// Every argument of a `try(...)` call failed.
    #[error("no argument of try() could be evaluated:\n  {}", .errors.join("\n  "))]
    TryFailed {
        /// Why each argument failed, in order.
        errors: Vec<String>,
    },
    /// A call to `try`, `can` or `convert` had the wrong number of arguments.
    #[error("{function}() expects {expected}, got {got} argument(s)")]
    Arity {
        /// The function called.
        function: &'static str,
        /// What it expects, in words.
        expected: &'static str,
        /// How many arguments were given.
        got: usize,
    },
    /// A conditional or `for` expression around a lazy call was malformed.
    #[error("{0}")]
    Invalid(String),
    /// `convert(value, type)` could not convert.
    #[error("convert(): {0}")]
    Convert(String),
    /// A template string (`"…${…}…"`) could not be parsed.
    #[error("invalid template string: {0}")]
    Template(#[source] hcl::Error),
}

/// The variable `register` stores the [`FunctionEnv`] in, so `evaluate` can find it again:
/// hcl-rs functions are plain `fn` pointers and cannot capture it.
const ENV_VAR: &str = "kiln_function_env";

thread_local! {
    static ENV: RefCell<Option<FunctionEnv>> = const { RefCell::new(None) };
}

/// Declares all of Packer's functions in `ctx`, bound to `env`.
pub fn register(ctx: &mut Context, env: &FunctionEnv) {
    let mut stored = hcl::Map::new();
    stored.insert(
        "path_root".to_owned(),
        Value::from(env.path_root.to_string_lossy().into_owned()),
    );
    stored.insert(
        "cwd".to_owned(),
        Value::from(env.cwd.to_string_lossy().into_owned()),
    );
    stored.insert("offline".to_owned(), Value::Bool(env.offline));
    ctx.declare_var(ENV_VAR, Value::Object(stored));

    collection::register(ctx);
    contextual::register(ctx);
    conversion::register(ctx);
    crypto::register(ctx);
    datetime::register(ctx);
    encoding::register(ctx);
    filesystem::register(ctx);
    ipnet::register(ctx);
    numeric::register(ctx);
    operators::register(ctx);
    string::register(ctx);
}

/// Evaluates `expr` in `ctx` (prepared with [`register`]), with lazy `try`, `can` and `convert`
/// and with arithmetic checked by kiln (see the `operators` module) rather than by hcl-rs.
pub fn evaluate(expr: &Expression, ctx: &Context) -> Result<Value, EvalError> {
    let _env = EnvGuard::install(ctx);
    let mut expr = expr.clone();
    operators::rewrite(&mut expr);
    let resolved = resolve(&expr, ctx)?;
    Ok(resolved.evaluate(ctx)?)
}

/// Evaluates a literal expression (a variable default, a `-var` value): no variables and no
/// functions, but arithmetic checked as in [`evaluate`].
pub fn evaluate_literal(expr: &Expression) -> Result<Value, EvalError> {
    let mut ctx = Context::new();
    operators::register(&mut ctx);
    let mut expr = expr.clone();
    operators::rewrite(&mut expr);
    Ok(expr.evaluate(&ctx)?)
}

/// Makes the context's [`FunctionEnv`] visible to the functions for the duration of one
/// evaluation, restoring the previous one afterwards (evaluations may nest through
/// `templatefile`).
struct EnvGuard {
    previous: Option<FunctionEnv>,
}

impl EnvGuard {
    fn install(ctx: &Context) -> EnvGuard {
        let stored = Expression::Variable(hcl::expr::Variable::unchecked(ENV_VAR))
            .evaluate(ctx)
            .ok();
        let env = stored.and_then(|v| {
            let obj = v.as_object()?;
            Some(FunctionEnv {
                path_root: PathBuf::from(obj.get("path_root")?.as_str()?),
                cwd: PathBuf::from(obj.get("cwd")?.as_str()?),
                offline: obj.get("offline")?.as_bool()?,
            })
        });
        let previous = ENV.with(|cell| cell.replace(env));
        EnvGuard { previous }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENV.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// The environment of the evaluation in progress; outside [`evaluate`] (a plain hcl-rs
/// evaluation) the process's working directory, online.
fn current_env() -> FunctionEnv {
    ENV.with(|cell| cell.borrow().clone()).unwrap_or_else(|| {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        FunctionEnv {
            path_root: cwd.clone(),
            cwd,
            offline: false,
        }
    })
}

/// Resolves a path argument of a file function against the template's directory, after `~`
/// expansion, as Packer does.
fn resolve_path(path: &str) -> PathBuf {
    let expanded = filesystem::expand_home(path);
    let p = Path::new(&expanded);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        current_env().path_root.join(p)
    }
}

/// Names of the functions that need their arguments unevaluated.
fn is_lazy(name: &str) -> bool {
    matches!(name, "try" | "can" | "convert")
}

fn contains_lazy(expr: &Expression) -> bool {
    match expr {
        Expression::FuncCall(call) => {
            (call.name.namespace.is_empty() && is_lazy(call.name.name.as_str()))
                || call.args.iter().any(contains_lazy)
        }
        Expression::Array(items) => items.iter().any(contains_lazy),
        Expression::Object(obj) => obj.iter().any(|(k, v)| {
            matches!(k, ObjectKey::Expression(e) if contains_lazy(e)) || contains_lazy(v)
        }),
        Expression::TemplateExpr(t) => {
            let src = t.to_string();
            ["try(", "can(", "convert("].iter().any(|f| src.contains(f))
        }
        Expression::Traversal(t) => {
            contains_lazy(&t.expr)
                || t.operators.iter().any(
                    |op| matches!(op, hcl::expr::TraversalOperator::Index(e) if contains_lazy(e)),
                )
        }
        Expression::Parenthesis(e) => contains_lazy(e),
        Expression::Conditional(c) => {
            contains_lazy(&c.cond_expr)
                || contains_lazy(&c.true_expr)
                || contains_lazy(&c.false_expr)
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => contains_lazy(&u.expr),
            hcl::expr::Operation::Binary(b) => {
                contains_lazy(&b.lhs_expr) || contains_lazy(&b.rhs_expr)
            }
        },
        Expression::ForExpr(f) => {
            contains_lazy(&f.collection_expr)
                || f.key_expr.as_ref().is_some_and(contains_lazy)
                || contains_lazy(&f.value_expr)
                || f.cond_expr.as_ref().is_some_and(contains_lazy)
        }
        _ => false,
    }
}

/// Rewrites `expr` bottom-up, replacing each `try`/`can`/`convert` call by its result, so that
/// the ordinary (eager) evaluation never sees them. Conditionals only resolve the branch taken
/// and `for` expressions containing lazy calls are evaluated here, element by element.
fn resolve(expr: &Expression, ctx: &Context) -> Result<Expression, EvalError> {
    if !contains_lazy(expr) {
        return Ok(expr.clone());
    }
    Ok(match expr {
        Expression::FuncCall(call) => resolve_call(call, ctx)?,
        Expression::Array(items) => Expression::Array(
            items
                .iter()
                .map(|e| resolve(e, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(obj) => {
            let mut out = hcl::expr::Object::new();
            for (k, v) in obj {
                let key = match k {
                    ObjectKey::Expression(e) => ObjectKey::Expression(resolve(e, ctx)?),
                    other => other.clone(),
                };
                out.insert(key, resolve(v, ctx)?);
            }
            Expression::Object(out)
        }
        Expression::TemplateExpr(t) => resolve_template(t, ctx)?,
        Expression::Traversal(t) => {
            let mut t = t.as_ref().clone();
            t.expr = resolve(&t.expr, ctx)?;
            for op in &mut t.operators {
                if let hcl::expr::TraversalOperator::Index(e) = op {
                    *e = resolve(e, ctx)?;
                }
            }
            Expression::Traversal(Box::new(t))
        }
        Expression::Parenthesis(e) => Expression::Parenthesis(Box::new(resolve(e, ctx)?)),
        Expression::Conditional(c) => {
            let cond = resolve(&c.cond_expr, ctx)?.evaluate(ctx)?;
            match cond {
                Value::Bool(true) => resolve(&c.true_expr, ctx)?,
                Value::Bool(false) => resolve(&c.false_expr, ctx)?,
                other => {
                    return Err(EvalError::Invalid(format!(
                        "the condition of a conditional must be a bool, got `{other}`"
                    )))
                }
            }
        }
        Expression::Operation(op) => {
            let mut op = op.as_ref().clone();
            match &mut op {
                hcl::expr::Operation::Unary(u) => u.expr = resolve(&u.expr, ctx)?,
                hcl::expr::Operation::Binary(b) => {
                    b.lhs_expr = resolve(&b.lhs_expr, ctx)?;
                    b.rhs_expr = resolve(&b.rhs_expr, ctx)?;
                }
            }
            Expression::Operation(Box::new(op))
        }
        Expression::ForExpr(f) => Expression::from(evaluate_for(f, ctx)?),
        other => other.clone(),
    })
}

fn resolve_call(call: &FuncCall, ctx: &Context) -> Result<Expression, EvalError> {
    let name = call.name.name.as_str();
    if !call.name.namespace.is_empty() || !is_lazy(name) {
        let mut call = call.clone();
        for arg in &mut call.args {
            *arg = resolve(arg, ctx)?;
        }
        return Ok(Expression::FuncCall(Box::new(call)));
    }
    let attempt = |e: &Expression| resolve(e, ctx).and_then(|e| Ok(e.evaluate(ctx)?));
    match name {
        "try" => {
            if call.args.is_empty() {
                return Err(EvalError::Arity {
                    function: "try",
                    expected: "at least one argument",
                    got: 0,
                });
            }
            let mut errors = Vec::new();
            for arg in &call.args {
                match attempt(arg) {
                    Ok(v) => return Ok(Expression::from(v)),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(EvalError::TryFailed { errors })
        }
        "can" => {
            if call.args.len() != 1 {
                return Err(EvalError::Arity {
                    function: "can",
                    expected: "exactly one argument",
                    got: call.args.len(),
                });
            }
            Ok(Expression::Bool(attempt(&call.args[0]).is_ok()))
        }
        _ => {
            if call.args.len() != 2 {
                return Err(EvalError::Arity {
                    function: "convert",
                    expected: "a value and a type",
                    got: call.args.len(),
                });
            }
            let value = attempt(&call.args[0])?;
            let ty = conversion::TypeExpr::parse(&call.args[1]).map_err(EvalError::Convert)?;
            Ok(Expression::from(
                ty.convert(value).map_err(EvalError::Convert)?,
            ))
        }
    }
}

fn resolve_template(t: &TemplateExpr, ctx: &Context) -> Result<Expression, EvalError> {
    let mut template = Template::from_expr(t).map_err(EvalError::Template)?;
    for element in template.elements_mut() {
        if let Element::Interpolation(interp) = element {
            interp.expr = Expression::from(attempt_value(&interp.expr, ctx)?);
        }
    }
    let text = template.to_string();
    Ok(Expression::TemplateExpr(Box::new(match t {
        TemplateExpr::QuotedString(_) => TemplateExpr::QuotedString(text),
        TemplateExpr::Heredoc(h) => {
            let mut h = h.clone();
            h.template = text;
            TemplateExpr::Heredoc(h)
        }
    })))
}

fn attempt_value(expr: &Expression, ctx: &Context) -> Result<Value, EvalError> {
    Ok(resolve(expr, ctx)?.evaluate(ctx)?)
}

fn evaluate_for(f: &hcl::expr::ForExpr, ctx: &Context) -> Result<Value, EvalError> {
    let collection = attempt_value(&f.collection_expr, ctx)?;
    let pairs: Vec<(Value, Value)> = match collection {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v))
            .collect(),
        Value::Object(obj) => obj.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        other => {
            return Err(EvalError::Invalid(format!(
                "a for expression needs a list or an object, got `{other}`"
            )))
        }
    };
    let mut list = Vec::new();
    let mut object: hcl::Map<String, Value> = hcl::Map::new();
    for (key, value) in pairs {
        let mut scope = ctx.clone();
        if let Some(key_var) = &f.key_var {
            scope.declare_var(key_var.clone(), key);
        }
        scope.declare_var(f.value_var.clone(), value);
        if let Some(cond) = &f.cond_expr {
            match attempt_value(cond, &scope)? {
                Value::Bool(true) => {}
                Value::Bool(false) => continue,
                other => {
                    return Err(EvalError::Invalid(format!(
                        "the condition of a for expression must be a bool, got `{other}`"
                    )))
                }
            }
        }
        let item = attempt_value(&f.value_expr, &scope)?;
        match &f.key_expr {
            None => list.push(item),
            Some(key_expr) => {
                let key = match attempt_value(key_expr, &scope)? {
                    Value::String(s) => s,
                    other => conversion::to_string(&other).map_err(EvalError::Convert)?,
                };
                if f.grouping {
                    if let Value::Array(group) = object
                        .entry(key)
                        .or_insert_with(|| Value::Array(Vec::new()))
                    {
                        group.push(item);
                    }
                } else if object.contains_key(&key) {
                    return Err(EvalError::Invalid(format!(
                        "duplicate key `{key}` in a for expression (use `...` to group)"
                    )));
                } else {
                    object.insert(key, item);
                }
            }
        }
    }
    Ok(if f.key_expr.is_some() {
        Value::Object(object)
    } else {
        Value::Array(list)
    })
}

/// Helpers shared by the function families: argument access with messages that name the
/// expected type, and number construction that keeps integers integral.
mod args {
    use hcl::Value;

    pub(super) type FnResult = Result<Value, String>;

    pub(super) fn string(v: &Value) -> Result<&str, String> {
        v.as_str()
            .ok_or_else(|| format!("expected a string, got `{v}`"))
    }

    pub(super) fn number(v: &Value) -> Result<f64, String> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("`{n}` is not a number")),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("expected a number, got the string \"{s}\"")),
            other => Err(format!("expected a number, got `{other}`")),
        }
    }

    pub(super) fn integer(v: &Value) -> Result<i64, String> {
        let f = number(v)?;
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(format!("expected a whole number, got {f}"));
        }
        Ok(f as i64)
    }

    /// The longest string a function builds in proportion to a number from the template (an
    /// indent): beyond it the number is surely a mistake, and would exhaust memory.
    pub(super) const MAX_STRING_BYTES: usize = 64 << 20;

    /// The most elements a function builds from the sizes of its arguments (`setproduct`).
    pub(super) const MAX_ELEMENTS: usize = 1 << 20;

    pub(super) fn array(v: &Value) -> Result<&Vec<Value>, String> {
        v.as_array()
            .ok_or_else(|| format!("expected a list, got `{v}`"))
    }

    pub(super) fn object(v: &Value) -> Result<&hcl::Map<String, Value>, String> {
        v.as_object()
            .ok_or_else(|| format!("expected a map or object, got `{v}`"))
    }

    pub(super) fn boolean(v: &Value) -> Result<bool, String> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(format!("expected a bool, got `{other}`")),
        }
    }

    /// A number value, integral when it has no fractional part (so `3.0` prints as `3`).
    pub(super) fn num(f: f64) -> FnResult {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Ok(Value::from(f as i64))
        } else {
            hcl::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("the result {f} is not a finite number"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ctx() -> Context<'static> {
        let mut ctx = Context::new();
        let cwd = std::env::current_dir().unwrap();
        register(
            &mut ctx,
            &FunctionEnv {
                path_root: cwd.clone(),
                cwd,
                offline: true,
            },
        );
        ctx
    }

    /// Evaluates an HCL expression written as source text.
    pub(super) fn eval(src: &str) -> Result<Value, EvalError> {
        eval_in(src, &ctx())
    }

    pub(super) fn eval_in(src: &str, ctx: &Context) -> Result<Value, EvalError> {
        let body: hcl::Body = hcl::from_str(&format!("x = {src}\n")).unwrap();
        let attr = body.attributes().next().unwrap();
        evaluate(attr.expr(), ctx)
    }

    pub(super) fn ok(src: &str) -> Value {
        match eval(src) {
            Ok(v) => v,
            Err(e) => panic!("{src}: {e}"),
        }
    }

    pub(super) fn json(src: &str) -> String {
        serde_json::to_string(&ok(src)).unwrap()
    }

    #[test]
    fn try_returns_first_success() {
        assert_eq!(
            ok(r#"try(undefined_thing, "fallback")"#),
            Value::from("fallback")
        );
        assert_eq!(ok(r#"try({a = 1}.b, {a = 1}.a)"#), Value::from(1));
    }

    #[test]
    fn try_fails_when_all_fail_and_says_why() {
        let err = eval("try(nope, also_nope)").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("also_nope"), "{err}");
    }

    #[test]
    fn can_reports_success() {
        assert_eq!(ok("can(nope)"), Value::Bool(false));
        assert_eq!(ok(r#"can(upper("x"))"#), Value::Bool(true));
        assert_eq!(ok(r#"can(regex("^[a-z]+$", "123"))"#), Value::Bool(false));
    }

    #[test]
    fn lazy_calls_nest_in_templates_conditionals_and_for() {
        assert_eq!(ok(r#""v-${try(nope, "x")}""#), Value::from("v-x"));
        assert_eq!(
            ok(r#""a\"b\n${try(nope, "x")} $${z}""#),
            Value::from("a\"b\nx ${z}")
        );
        assert_eq!(ok(r#"true ? "a" : try(nope)"#), Value::from("a"));
        assert_eq!(
            json(r#"[for s in ["1", "x"] : try(tonumber(s), -1)]"#),
            "[1,-1]"
        );
        assert_eq!(
            json(r#"{for s in ["a", "bb"] : s => can(regex("^b", s))}"#),
            r#"{"a":false,"bb":true}"#
        );
    }

    #[test]
    fn lazy_call_arity_is_checked() {
        assert!(matches!(eval("can(1, 2)"), Err(EvalError::Arity { .. })));
        assert!(matches!(eval("try()"), Err(EvalError::Arity { .. })));
    }

    #[test]
    fn kiln_has_every_packer_function() {
        let ctx = ctx();
        let missing: Vec<&str> = PACKER_FUNCTIONS
            .iter()
            .copied()
            .filter(|f| !is_lazy(f))
            .filter(|f| {
                // An undefined function is the only failure that names "undefined function".
                eval_in(&format!("{f}()"), &ctx)
                    .err()
                    .is_some_and(|e| e.to_string().contains("undefined function"))
            })
            .collect();
        assert!(missing.is_empty(), "functions kiln lacks: {missing:?}");
    }

    fn call(name: &str, args: Vec<Expression>) -> Result<Value, EvalError> {
        let mut call = FuncCall::new(name);
        call.args = args;
        evaluate(&Expression::FuncCall(Box::new(call)), &ctx())
    }

    proptest::proptest! {
        /// Format strings, layouts, durations and prefixes from templates are untrusted input:
        /// functions must return errors, never panic.
        #[test]
        fn functions_never_panic_on_odd_strings(s in "\\PC{0,24}", n in -300i64..300) {
            let st = || Expression::String(s.clone());
            let ts = || Expression::String("2024-02-29T12:00:00+05:30".into());
            let _ = call("format", vec![st(), Expression::from(n), Expression::String("a".into())]);
            let _ = call("formatdate", vec![st(), ts()]);
            let _ = call("timeadd", vec![ts(), st()]);
            let _ = call("legacy_strftime", vec![st()]);
            let _ = call("legacy_isotime", vec![st()]);
            let _ = call("regex", vec![st(), Expression::String("abc".into())]);
            let _ = call("cidrhost", vec![st(), Expression::from(n)]);
            let _ = call("cidrsubnets", vec![Expression::String("10.0.0.0/8".into()), Expression::from(n)]);
            let _ = call("substr", vec![st(), Expression::from(n), Expression::from(n / 2)]);
            let _ = call("parseint", vec![st(), Expression::from(n)]);
            let _ = call("csvdecode", vec![st()]);
            let _ = call("yamldecode", vec![st()]);
            let _ = call("textdecodebase64", vec![st(), Expression::String("UTF-16LE".into())]);
            let _ = call("rfc3339_parse", vec![st()]);
        }
    }
}
