//! The arithmetic operators `+ - * / %`, evaluated by kiln instead of hcl-rs: hcl-rs's number
//! type panics on `1 % 0` and `-9223372036854775808 % -1`, overflows on large integers and breaks
//! its own finite-number invariant on `1 / 0`. [`rewrite`] turns every arithmetic operation of an
//! expression, template strings and their `%{if}` / `%{for}` directives included, into a call to
//! one of the functions [`register`] declares in the `kiln::` namespace, so whatever evaluates
//! the expression afterwards (hcl-rs's `for` expressions and conditionals included) only ever
//! reaches the checked arithmetic below. Integers are exact while they fit 64 bits and become
//! floats beyond, as cty's arbitrary-precision numbers would still be exact there.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::expr::{BinaryOperator, Expression, FuncCall, FuncName, ObjectKey, Operation};
use hcl::template::{Directive, Element, Template};
use hcl::{Number, Value};

use super::args::FnResult;
use super::FnError;

/// The namespace of the operator functions; templates cannot declare functions, so no user
/// function can clash with them.
const NAMESPACE: &str = "kiln";

/// The function name each arithmetic operator is evaluated by; `None` for the others, which
/// hcl-rs evaluates without risk.
fn function_of(op: BinaryOperator) -> Option<&'static str> {
    Some(match op {
        BinaryOperator::Plus => "add",
        BinaryOperator::Minus => "subtract",
        BinaryOperator::Mul => "multiply",
        BinaryOperator::Div => "divide",
        BinaryOperator::Mod => "modulo",
        _ => return None,
    })
}

/// Declares the operator functions in `ctx`.
pub(super) fn register(ctx: &mut Context) {
    let two = |f| FuncDef::new(f, [ParamType::Any, ParamType::Any]);
    let name = |n: &str| FuncName::new(n).with_namespace([NAMESPACE]);
    ctx.declare_func(name("add"), two(hcl_fn!(add)));
    ctx.declare_func(name("subtract"), two(hcl_fn!(subtract)));
    ctx.declare_func(name("multiply"), two(hcl_fn!(multiply)));
    ctx.declare_func(name("divide"), two(hcl_fn!(divide)));
    ctx.declare_func(name("modulo"), two(hcl_fn!(modulo)));
}

/// Replaces every arithmetic operation in `expr` by a call to its checked function; returns
/// whether anything changed.
pub(super) fn rewrite(expr: &mut Expression) -> bool {
    match expr {
        Expression::Operation(op) => match op.as_mut() {
            Operation::Unary(u) => rewrite(&mut u.expr),
            Operation::Binary(b) => {
                let changed = rewrite(&mut b.lhs_expr) | rewrite(&mut b.rhs_expr);
                let Some(func) = function_of(b.operator) else {
                    return changed;
                };
                let mut call = FuncCall::new(FuncName::new(func).with_namespace([NAMESPACE]));
                call.args = vec![
                    std::mem::replace(&mut b.lhs_expr, Expression::Null),
                    std::mem::replace(&mut b.rhs_expr, Expression::Null),
                ];
                *expr = Expression::FuncCall(Box::new(call));
                true
            }
        },
        Expression::Array(items) => items.iter_mut().fold(false, |c, e| rewrite(e) | c),
        Expression::Object(obj) => {
            // Keys of a map cannot be changed in place: the object is rebuilt.
            let mut changed = false;
            let mut out = hcl::expr::Object::new();
            for (mut k, mut v) in std::mem::take(obj) {
                if let ObjectKey::Expression(e) = &mut k {
                    changed |= rewrite(e);
                }
                changed |= rewrite(&mut v);
                out.insert(k, v);
            }
            *obj = out;
            changed
        }
        Expression::TemplateExpr(t) => {
            let Ok(mut template) = Template::from_expr(t) else {
                // Left alone: evaluating it reports the syntax error.
                return false;
            };
            if !rewrite_template(&mut template) {
                return false;
            }
            let text = template.to_string();
            match t.as_mut() {
                hcl::expr::TemplateExpr::QuotedString(s) => *s = text,
                hcl::expr::TemplateExpr::Heredoc(h) => h.template = text,
            }
            true
        }
        Expression::Traversal(t) => {
            let mut changed = rewrite(&mut t.expr);
            for op in &mut t.operators {
                if let hcl::expr::TraversalOperator::Index(e) = op {
                    changed |= rewrite(e);
                }
            }
            changed
        }
        Expression::FuncCall(f) => f.args.iter_mut().fold(false, |c, e| rewrite(e) | c),
        Expression::Parenthesis(e) => rewrite(e),
        Expression::Conditional(c) => {
            rewrite(&mut c.cond_expr) | rewrite(&mut c.true_expr) | rewrite(&mut c.false_expr)
        }
        Expression::ForExpr(f) => {
            let mut changed = rewrite(&mut f.collection_expr) | rewrite(&mut f.value_expr);
            if let Some(k) = &mut f.key_expr {
                changed |= rewrite(k);
            }
            if let Some(c) = &mut f.cond_expr {
                changed |= rewrite(c);
            }
            changed
        }
        _ => false,
    }
}

fn rewrite_template(template: &mut Template) -> bool {
    let mut changed = false;
    for element in template.elements_mut() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => changed |= rewrite(&mut i.expr),
            Element::Directive(d) => match d.as_mut() {
                Directive::If(i) => {
                    changed |= rewrite(&mut i.cond_expr) | rewrite_template(&mut i.true_template);
                    if let Some(f) = &mut i.false_template {
                        changed |= rewrite_template(f);
                    }
                }
                Directive::For(f) => {
                    changed |= rewrite(&mut f.collection_expr) | rewrite_template(&mut f.template);
                }
            },
        }
    }
    changed
}

/// An operand: exact while integral and within 64 bits (held in an `i128`, so that no operation
/// of two of them can overflow except a product), a float otherwise.
#[derive(Clone, Copy)]
enum Operand {
    Int(i128),
    Float(f64),
}

impl Operand {
    fn of(v: &Value, op: &'static str, other: &Value) -> Result<Operand, FnError> {
        let not_number = || FnError::Operand {
            op,
            value: Box::new(v.clone()),
            other: Box::new(other.clone()),
        };
        let n = match v {
            Value::Number(n) => *n,
            // Packer converts numeric strings to numbers for arithmetic.
            Value::String(s) => parse_number(s.trim()).ok_or_else(not_number)?,
            _ => return Err(not_number()),
        };
        Ok(if let Some(i) = n.as_i64() {
            Operand::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Operand::Int(i128::from(u))
        } else {
            Operand::Float(n.as_f64().unwrap_or(f64::NAN))
        })
    }

    fn float(self) -> f64 {
        match self {
            // Precision loss is inherent: this is the fallback beyond 64 bits.
            Operand::Int(i) => i as f64,
            Operand::Float(f) => f,
        }
    }

    fn is_zero(self) -> bool {
        match self {
            Operand::Int(i) => i == 0,
            Operand::Float(f) => f == 0.0,
        }
    }
}

fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        Some(Number::from(i))
    } else if let Ok(u) = s.parse::<u64>() {
        Some(Number::from(u))
    } else {
        s.parse::<f64>().ok().and_then(Number::from_f64)
    }
}

fn int_value(i: i128) -> FnResult {
    if let Ok(i) = i64::try_from(i) {
        Ok(Value::from(i))
    } else if let Ok(u) = u64::try_from(i) {
        Ok(Value::from(u))
    } else {
        float_value(i as f64)
    }
}

fn float_value(f: f64) -> FnResult {
    // `Number::from_f64` keeps integral floats integral, as hcl-rs's own arithmetic does.
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or(FnError::ResultTooLarge(f))
}

/// Applies `int` to two integers (a `None` from it falls back to floats) and `float` otherwise.
fn apply(
    a: &FuncArgs,
    op: &'static str,
    int: fn(i128, i128) -> Option<i128>,
    float: fn(f64, f64) -> f64,
) -> FnResult {
    let x = Operand::of(&a[0], op, &a[1])?;
    let y = Operand::of(&a[1], op, &a[0])?;
    if let (Operand::Int(i), Operand::Int(j)) = (x, y) {
        if let Some(r) = int(i, j) {
            return int_value(r);
        }
    }
    float_value(float(x.float(), y.float()))
}

fn add(a: FuncArgs) -> FnResult {
    apply(&a, "+", i128::checked_add, |x, y| x + y)
}

fn subtract(a: FuncArgs) -> FnResult {
    apply(&a, "-", i128::checked_sub, |x, y| x - y)
}

fn multiply(a: FuncArgs) -> FnResult {
    apply(&a, "*", i128::checked_mul, |x, y| x * y)
}

fn divide(a: FuncArgs) -> FnResult {
    let y = Operand::of(&a[1], "/", &a[0])?;
    if y.is_zero() {
        let x = Operand::of(&a[0], "/", &a[1])?;
        return Err(if x.is_zero() {
            FnError::ZeroByZero
        } else {
            FnError::DivisionByZero(a[0].clone())
        });
    }
    // Exact when the division leaves no remainder (`6 / 3` stays the integer 2).
    apply(&a, "/", |i, j| (i % j == 0).then(|| i / j), |x, y| x / y)
}

fn modulo(a: FuncArgs) -> FnResult {
    let y = Operand::of(&a[1], "%", &a[0])?;
    if y.is_zero() {
        // As cty does: `x % 0` is `x`.
        Operand::of(&a[0], "%", &a[1])?;
        return Ok(a[0].clone());
    }
    // The remainder takes the dividend's sign, as cty's (truncating) modulo does; in `i128`,
    // `i64::MIN % -1` cannot overflow.
    apply(&a, "%", |i, j| Some(i % j), |x, y| x % y)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, ok};
    use hcl::Value;

    #[test]
    fn modulo_by_zero_gives_the_dividend_as_packer_does() {
        assert_eq!(ok("1 % 0"), Value::from(1));
        assert_eq!(ok("0 % 0"), Value::from(0));
        assert_eq!(ok("1 % 0.0"), Value::from(1));
        assert_eq!(ok("7 % 3"), Value::from(1));
        assert_eq!(ok("-7 % 3"), Value::from(-1));
        assert_eq!(ok("7.5 % 2"), ok("1.5"));
    }

    #[test]
    fn smallest_integer_modulo_minus_one_is_zero() {
        assert_eq!(ok("-9223372036854775808 % -1"), Value::from(0));
    }

    #[test]
    fn division_by_zero_is_an_error() {
        let err = eval("1 / 0").unwrap_err().to_string();
        assert!(err.contains("division by zero"), "{err}");
        assert!(eval("0 / 0").is_err());
        assert!(eval("1 / 0.0").is_err());
        assert_eq!(ok("6 / 3"), Value::from(2));
        assert_eq!(ok("1 / 4"), ok("0.25"));
    }

    #[test]
    fn integer_overflow_falls_back_to_floats() {
        assert_eq!(ok("18446744073709551615 + 1"), ok("18446744073709551616.0"));
        assert_eq!(ok("-9223372036854775808 - 1"), ok("-9223372036854775809.0"));
        assert_eq!(ok("4294967296 * 4294967296"), ok("18446744073709551616.0"));
        assert_eq!(ok("9223372036854775807 + 1"), ok("9223372036854775808"));
        assert!(eval("1e308 * 10").is_err());
    }

    /// Operands at the edges of kiln's numbers, and strings.
    const OPERANDS: &[&str] = &[
        "0",
        "1",
        "-1",
        "0.0",
        "0.5",
        "-9223372036854775808",
        "9223372036854775807",
        "18446744073709551615",
        "1e308",
        "-1e308",
        "\"7\"",
        "\"x\"",
        "null",
    ];

    proptest::proptest! {
        /// Any operator on any two edge operands, nested once, gives a value or an error.
        #[test]
        fn arithmetic_never_panics(
            a in 0..OPERANDS.len(),
            b in 0..OPERANDS.len(),
            c in 0..OPERANDS.len(),
            op1 in 0..5usize,
            op2 in 0..5usize,
        ) {
            let ops = ["+", "-", "*", "/", "%"];
            let src = format!(
                "({} {} {}) {} {}",
                OPERANDS[a], ops[op1], OPERANDS[b], ops[op2], OPERANDS[c]
            );
            let _ = eval(&src);
        }
    }

    #[test]
    fn operators_are_checked_everywhere_an_expression_can_be() {
        assert_eq!(ok(r#""v${1 % 0}""#), Value::from("v1"));
        assert_eq!(ok(r#""%{ if 1 % 0 == 1 }y%{ endif }""#), Value::from("y"));
        assert_eq!(
            ok(r#""%{ for x in [0, 1] }${x % 0}%{ endfor }""#),
            Value::from("01")
        );
        assert_eq!(ok("[for x in [4, 5] : x % 0]"), ok("[4, 5]"));
        assert_eq!(ok("true ? 2 % 0 : 0"), Value::from(2));
        assert_eq!(ok("try(1 / 0, 7)"), Value::from(7));
        assert_eq!(ok(r#""3" + 1"#), Value::from(4));
        assert!(eval(r#""a" + 1"#).is_err());
    }
}
