//! Numeric functions: abs, ceil, floor, log, max, min, parseint, pow, signum.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{integer, num, number, string, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let one = |f| FuncDef::new(f, [ParamType::Number]);
    ctx.declare_func("abs", one(hcl_fn!(abs)));
    ctx.declare_func("ceil", one(hcl_fn!(ceil)));
    ctx.declare_func("floor", one(hcl_fn!(floor)));
    ctx.declare_func("signum", one(hcl_fn!(signum)));
    ctx.declare_func(
        "log",
        FuncDef::new(hcl_fn!(log), [ParamType::Number, ParamType::Number]),
    );
    ctx.declare_func(
        "pow",
        FuncDef::new(hcl_fn!(pow), [ParamType::Number, ParamType::Number]),
    );
    let many = |f| {
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(f)
    };
    ctx.declare_func("max", many(hcl_fn!(max)));
    ctx.declare_func("min", many(hcl_fn!(min)));
    ctx.declare_func(
        "parseint",
        FuncDef::new(hcl_fn!(parseint), [ParamType::String, ParamType::Number]),
    );
}

fn abs(a: FuncArgs) -> FnResult {
    num(number(&a[0])?.abs())
}

fn ceil(a: FuncArgs) -> FnResult {
    num(number(&a[0])?.ceil())
}

fn floor(a: FuncArgs) -> FnResult {
    num(number(&a[0])?.floor())
}

fn signum(a: FuncArgs) -> FnResult {
    let n = number(&a[0])?;
    num(if n > 0.0 {
        1.0
    } else if n < 0.0 {
        -1.0
    } else {
        0.0
    })
}

fn log(a: FuncArgs) -> FnResult {
    num(number(&a[0])?.ln() / number(&a[1])?.ln())
}

fn pow(a: FuncArgs) -> FnResult {
    num(number(&a[0])?.powf(number(&a[1])?))
}

fn extreme(a: &FuncArgs, pick: fn(f64, f64) -> f64) -> FnResult {
    let mut values = a.iter().map(number);
    let first = values
        .next()
        .ok_or(FnError::Arity("at least one number is required"))??;
    num(values.try_fold(first, |acc, v| v.map(|v| pick(acc, v)))?)
}

fn max(a: FuncArgs) -> FnResult {
    extreme(&a, f64::max)
}

fn min(a: FuncArgs) -> FnResult {
    extreme(&a, f64::min)
}

fn parseint(a: FuncArgs) -> FnResult {
    let text = string(&a[0])?;
    let base = integer(&a[1])?;
    if !(2..=62).contains(&base) {
        return Err(FnError::Base(base));
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let unparsable = || FnError::ParseInt {
        text: text.to_owned(),
        base,
    };
    if digits.is_empty() {
        return Err(unparsable());
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        // Go's big.Int digit set: 0-9, then a-z, then A-Z for bases above 36.
        let d = match c {
            '0'..='9' => c as i128 - '0' as i128,
            'a'..='z' => c as i128 - 'a' as i128 + 10,
            'A'..='Z' if base <= 36 => c as i128 - 'A' as i128 + 10,
            'A'..='Z' => c as i128 - 'A' as i128 + 36,
            _ => return Err(unparsable()),
        };
        if d >= base as i128 {
            return Err(unparsable());
        }
        value = value
            .checked_mul(base as i128)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(|| FnError::IntegerTooLarge(text.to_owned()))?;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value)
        .map(Value::from)
        .map_err(|_| FnError::IntegerTooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, ok};
    use hcl::Value;

    #[test]
    fn arithmetic() {
        assert_eq!(ok("abs(-7.5)"), ok("7.5"));
        assert_eq!(ok("ceil(2.1)"), Value::from(3));
        assert_eq!(ok("floor(-2.1)"), Value::from(-3));
        assert_eq!(ok("signum(-20)"), Value::from(-1));
        assert_eq!(ok("signum(0)"), Value::from(0));
        assert_eq!(ok("log(27, 3)"), Value::from(3));
        assert_eq!(ok("pow(2, 10)"), Value::from(1024));
        assert_eq!(ok("max(4, 17, 9)"), Value::from(17));
        assert_eq!(ok("min([4, 17, 9]...)"), Value::from(4));
    }

    #[test]
    fn parseint_bases() {
        assert_eq!(ok(r#"parseint("ff", 16)"#), Value::from(255));
        assert_eq!(ok(r#"parseint("-1011", 2)"#), Value::from(-11));
        assert_eq!(ok(r#"parseint("Zz", 62)"#), Value::from(61 * 62 + 35));
        assert!(eval(r#"parseint("12", 1)"#).is_err());
        assert!(eval(r#"parseint("19", 8)"#).is_err());
    }

    #[test]
    fn max_needs_an_argument() {
        assert!(eval("max()").is_err());
    }
}
