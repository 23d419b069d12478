//! String functions: chomp, endswith, format, formatlist, indent, join, lower, regex,
//! regex_replace, regexall, replace, split, startswith, strcontains, strrev, substr, title, trim,
//! trimprefix, trimspace, trimsuffix, upper.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;
use regex::Regex;
use unicode_segmentation::UnicodeSegmentation;

use super::args::{array, integer, number, string, FnResult, MAX_STRING_BYTES};
use super::conversion::to_string;
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = ParamType::String;
    let one = |f| FuncDef::new(f, [ParamType::String]);
    let two = |f| FuncDef::new(f, [ParamType::String, ParamType::String]);
    let three = |f| FuncDef::new(f, [ParamType::String, ParamType::String, ParamType::String]);
    ctx.declare_func("chomp", one(hcl_fn!(chomp)));
    ctx.declare_func("lower", one(hcl_fn!(lower)));
    ctx.declare_func("upper", one(hcl_fn!(upper)));
    ctx.declare_func("strrev", one(hcl_fn!(strrev)));
    ctx.declare_func("title", one(hcl_fn!(title)));
    ctx.declare_func("trimspace", one(hcl_fn!(trimspace)));
    ctx.declare_func("trim", two(hcl_fn!(trim)));
    ctx.declare_func("trimprefix", two(hcl_fn!(trimprefix)));
    ctx.declare_func("trimsuffix", two(hcl_fn!(trimsuffix)));
    ctx.declare_func("startswith", two(hcl_fn!(startswith)));
    ctx.declare_func("endswith", two(hcl_fn!(endswith)));
    ctx.declare_func("strcontains", two(hcl_fn!(strcontains)));
    ctx.declare_func("split", two(hcl_fn!(split)));
    ctx.declare_func("regex", two(hcl_fn!(regex)));
    ctx.declare_func("regexall", two(hcl_fn!(regexall)));
    ctx.declare_func("replace", three(hcl_fn!(replace)));
    ctx.declare_func("regex_replace", three(hcl_fn!(regex_replace)));
    ctx.declare_func(
        "indent",
        FuncDef::new(hcl_fn!(indent), [ParamType::Number, s.clone()]),
    );
    ctx.declare_func(
        "substr",
        FuncDef::new(
            hcl_fn!(substr),
            [s.clone(), ParamType::Number, ParamType::Number],
        ),
    );
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(s)
            .variadic_param(ParamType::Any)
            .build(hcl_fn!(join)),
    );
    let fmt = |f| {
        FuncDef::builder()
            .param(ParamType::String)
            .variadic_param(ParamType::Any)
            .build(f)
    };
    ctx.declare_func("format", fmt(hcl_fn!(format)));
    ctx.declare_func("formatlist", fmt(hcl_fn!(formatlist)));
}

fn chomp(a: FuncArgs) -> FnResult {
    let s = string(&a[0])?;
    Ok(s.trim_end_matches(['\n', '\r']).into())
}

fn lower(a: FuncArgs) -> FnResult {
    Ok(string(&a[0])?.to_lowercase().into())
}

fn upper(a: FuncArgs) -> FnResult {
    Ok(string(&a[0])?.to_uppercase().into())
}

fn strrev(a: FuncArgs) -> FnResult {
    // By grapheme cluster, as cty's strrev: a combining mark stays on its letter.
    Ok(string(&a[0])?
        .graphemes(true)
        .rev()
        .collect::<String>()
        .into())
}

fn title(a: FuncArgs) -> FnResult {
    let mut out = String::new();
    let mut at_word_start = true;
    for c in string(&a[0])?.chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        // Go's strings.Title: anything but letters, digits and `_` starts a new word.
        at_word_start = !(c.is_alphanumeric() || c == '_');
    }
    Ok(out.into())
}

fn trimspace(a: FuncArgs) -> FnResult {
    Ok(string(&a[0])?.trim().into())
}

fn trim(a: FuncArgs) -> FnResult {
    let cutset: Vec<char> = string(&a[1])?.chars().collect();
    Ok(string(&a[0])?.trim_matches(cutset.as_slice()).into())
}

fn trimprefix(a: FuncArgs) -> FnResult {
    let (s, p) = (string(&a[0])?, string(&a[1])?);
    Ok(s.strip_prefix(p).unwrap_or(s).into())
}

fn trimsuffix(a: FuncArgs) -> FnResult {
    let (s, p) = (string(&a[0])?, string(&a[1])?);
    Ok(s.strip_suffix(p).unwrap_or(s).into())
}

fn startswith(a: FuncArgs) -> FnResult {
    Ok(Value::Bool(string(&a[0])?.starts_with(string(&a[1])?)))
}

fn endswith(a: FuncArgs) -> FnResult {
    Ok(Value::Bool(string(&a[0])?.ends_with(string(&a[1])?)))
}

fn strcontains(a: FuncArgs) -> FnResult {
    Ok(Value::Bool(string(&a[0])?.contains(string(&a[1])?)))
}

fn split(a: FuncArgs) -> FnResult {
    let (sep, s) = (string(&a[0])?, string(&a[1])?);
    if sep.is_empty() {
        return Ok(Value::Array(
            s.chars().map(|c| c.to_string().into()).collect(),
        ));
    }
    Ok(Value::Array(s.split(sep).map(Value::from).collect()))
}

fn compile(pattern: &str) -> Result<Regex, FnError> {
    Regex::new(pattern).map_err(|source| FnError::Regex {
        pattern: pattern.to_owned(),
        source,
    })
}

/// One match as Packer returns it: the whole match without groups, a list of groups when they
/// are unnamed, an object when they are named.
fn captures_value(re: &Regex, caps: &regex::Captures<'_>) -> Value {
    let text = |m: Option<regex::Match<'_>>| m.map_or(Value::Null, |m| m.as_str().into());
    if re.captures_len() == 1 {
        return text(caps.get(0));
    }
    if re.capture_names().flatten().next().is_some() {
        let mut obj = hcl::Map::new();
        for name in re.capture_names().flatten() {
            obj.insert(name.to_owned(), text(caps.name(name)));
        }
        return Value::Object(obj);
    }
    Value::Array((1..re.captures_len()).map(|i| text(caps.get(i))).collect())
}

fn regex(a: FuncArgs) -> FnResult {
    let (pattern, s) = (string(&a[0])?, string(&a[1])?);
    let re = compile(pattern)?;
    let caps = re
        .captures(s)
        .ok_or_else(|| FnError::NoMatch(pattern.to_owned()))?;
    Ok(captures_value(&re, &caps))
}

fn regexall(a: FuncArgs) -> FnResult {
    let re = compile(string(&a[0])?)?;
    let s = string(&a[1])?;
    Ok(Value::Array(
        re.captures_iter(s)
            .map(|c| captures_value(&re, &c))
            .collect(),
    ))
}

fn replace(a: FuncArgs) -> FnResult {
    let (s, search, with) = (string(&a[0])?, string(&a[1])?, string(&a[2])?);
    // As in Terraform, a search string wrapped in slashes is a regular expression.
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = compile(&search[1..search.len() - 1])?;
        return Ok(re.replace_all(s, with).into_owned().into());
    }
    Ok(s.replace(search, with).into())
}

fn regex_replace(a: FuncArgs) -> FnResult {
    let re = compile(string(&a[1])?)?;
    Ok(re
        .replace_all(string(&a[0])?, string(&a[2])?)
        .into_owned()
        .into())
}

fn indent(a: FuncArgs) -> FnResult {
    let spaces = integer(&a[0])?;
    let n = usize::try_from(spaces).map_err(|_| FnError::Negative("the indent"))?;
    let s = string(&a[1])?;
    // The result's size, checked before anything is allocated.
    let size = n
        .checked_mul(s.matches('\n').count())
        .and_then(|pads| pads.checked_add(s.len()));
    if n > MAX_STRING_BYTES || size.is_none_or(|size| size > MAX_STRING_BYTES) {
        return Err(FnError::IndentTooLarge(spaces));
    }
    let pad = " ".repeat(n);
    Ok(s.replace('\n', &format!("\n{pad}")).into())
}

fn substr(a: FuncArgs) -> FnResult {
    // Offsets count grapheme clusters, as cty's substr does.
    let chars: Vec<&str> = string(&a[0])?.graphemes(true).collect();
    let len = chars.len() as i64;
    let mut offset = integer(&a[1])?;
    let length = integer(&a[2])?;
    if offset < 0 {
        offset += len;
    }
    if offset < 0 || offset > len {
        return Err(FnError::OffsetOutside(integer(&a[1])?));
    }
    let end = if length < 0 {
        len
    } else {
        offset.saturating_add(length).min(len)
    };
    Ok(chars[offset as usize..end as usize].concat().into())
}

fn join(a: FuncArgs) -> FnResult {
    let sep = string(&a[0])?;
    if a.len() < 2 {
        return Err(FnError::Arity(
            "join() needs at least one list after the separator",
        ));
    }
    let mut parts = Vec::new();
    for list in &a[1..] {
        for item in array(list)? {
            parts.push(to_string(item)?);
        }
    }
    Ok(parts.join(sep).into())
}

fn format(a: FuncArgs) -> FnResult {
    Ok(sprintf(string(&a[0])?, &a[1..])?.into())
}

fn formatlist(a: FuncArgs) -> FnResult {
    let spec = string(&a[0])?;
    let args = &a[1..];
    let mut len: Option<usize> = None;
    for arg in args {
        if let Value::Array(items) = arg {
            match len {
                Some(l) if l != items.len() => return Err(FnError::FormatlistLengths),
                _ => len = Some(items.len()),
            }
        }
    }
    let len = len.unwrap_or(1);
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let row: Vec<Value> = args
            .iter()
            .map(|arg| match arg {
                Value::Array(items) => items[i].clone(),
                other => other.clone(),
            })
            .collect();
        out.push(sprintf(spec, &row)?.into());
    }
    Ok(Value::Array(out))
}

/// Widths and precisions beyond this are surely mistakes and would allocate without bound (and
/// Rust's formatting machinery panics on precisions above 65535).
const MAX_WIDTH: usize = 4096;

/// Go-style `fmt` verbs as cty's `format` accepts them: `%v %s %q %d %f %e %g %x %X %o %b %t %%`,
/// with flags (`-+ 0#`), width, precision and explicit argument indexes (`%[2]s`).
pub(super) fn sprintf(spec: &str, args: &[Value]) -> Result<String, FnError> {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    let mut next_arg = 0usize;
    let mut reordered = false;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            let idx: String = chars.by_ref().take_while(|&c| c != ']').collect();
            let idx: usize = idx.parse().map_err(|_| FnError::FormatIndex(idx.clone()))?;
            reordered = true;
            next_arg = idx.checked_sub(1).ok_or(FnError::FormatIndexZero)?;
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|c| c.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|c| c.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            // An absent precision (`%.f`) is zero, as in Go.
            let p: usize = if p.is_empty() {
                0
            } else {
                p.parse().unwrap_or(usize::MAX)
            };
            if p > MAX_WIDTH {
                return Err(FnError::PrecisionTooLarge(MAX_WIDTH));
            }
            precision = Some(p);
        }
        let verb = chars.next().ok_or(FnError::IncompleteVerb)?;
        let arg = args.get(next_arg).ok_or(FnError::MissingFormatArgument {
            verb,
            position: next_arg + 1,
        })?;
        next_arg += 1;
        let body = format_verb(verb, arg, &flags, precision)?;
        let width: usize = if width.is_empty() {
            0
        } else {
            width.parse().unwrap_or(usize::MAX)
        };
        if width > MAX_WIDTH {
            return Err(FnError::WidthTooLarge(MAX_WIDTH));
        }
        let pad = width.saturating_sub(body.chars().count());
        if flags.contains('-') {
            out.push_str(&body);
            out.push_str(&" ".repeat(pad));
        } else if flags.contains('0') && "dfeEgxXob".contains(verb) {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(rest) => (&body[..1], rest),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(pad));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&body);
        }
    }
    if !reordered && next_arg < args.len() {
        return Err(FnError::ExtraFormatArguments {
            used: next_arg,
            given: args.len(),
        });
    }
    Ok(out)
}

fn format_verb(
    verb: char,
    arg: &Value,
    flags: &str,
    precision: Option<usize>,
) -> Result<String, FnError> {
    let sign = |n: f64, s: String| {
        if n >= 0.0 && flags.contains('+') {
            format!("+{s}")
        } else if n >= 0.0 && flags.contains(' ') {
            format!(" {s}")
        } else {
            s
        }
    };
    let int = |arg: &Value| -> Result<i64, FnError> {
        let n = number(arg)?;
        if n.fract() != 0.0 {
            return Err(FnError::FormatWhole { verb, got: n });
        }
        Ok(n as i64)
    };
    Ok(match verb {
        'v' => match arg {
            Value::String(s) => s.clone(),
            Value::Array(_) | Value::Object(_) => {
                serde_json::to_string(arg).map_err(FnError::FormatJson)?
            }
            other => to_string(other)?,
        },
        's' => {
            let s = to_string(arg)?;
            match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            }
        }
        'q' => serde_json::to_string(&to_string(arg)?).map_err(FnError::FormatJson)?,
        't' => match arg {
            Value::Bool(b) => b.to_string(),
            other => return Err(FnError::FormatBool(other.clone())),
        },
        'd' => {
            let n = int(arg)?;
            sign(n as f64, n.to_string())
        }
        'f' | 'F' => {
            let n = number(arg)?;
            sign(n, format!("{:.*}", precision.unwrap_or(6), n))
        }
        'e' | 'E' => {
            let n = number(arg)?;
            let s = go_exp(n, precision.unwrap_or(6));
            sign(n, if verb == 'E' { s.to_uppercase() } else { s })
        }
        'g' | 'G' => {
            let n = number(arg)?;
            sign(n, format!("{n}"))
        }
        'x' | 'X' | 'o' | 'b' => {
            let n = int(arg)?;
            let mag = n.unsigned_abs();
            let (digits, prefix) = match verb {
                'x' => (format!("{mag:x}"), "0x"),
                'X' => (format!("{mag:X}"), "0X"),
                'o' => (format!("{mag:o}"), "0"),
                _ => (format!("{mag:b}"), "0b"),
            };
            let digits = if flags.contains('#') {
                format!("{prefix}{digits}")
            } else {
                digits
            };
            if n < 0 {
                format!("-{digits}")
            } else {
                sign(0.0, digits)
            }
        }
        other => return Err(FnError::FormatVerb(other)),
    })
}

/// Go prints exponents with a sign and at least two digits (`1.5e+03`); Rust prints `1.5e3`.
fn go_exp(n: f64, precision: usize) -> String {
    let s = format!("{n:.precision$e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use hcl::Value;

    #[test]
    fn an_invalid_regex_error_keeps_the_parse_error_as_its_source() {
        let err = super::compile("(").unwrap_err();
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<regex::Error>());
        assert!(
            matches!(err, super::FnError::Regex { .. }) && source.is_some(),
            "{err:?}"
        );
        // hcl-rs carries only the message: the same text reaches the template's author.
        let msg = eval(r#"regex("(", "x")"#).unwrap_err().to_string();
        assert!(msg.contains(&err.to_string()), "{msg}");
    }

    #[test]
    fn simple_string_functions() {
        assert_eq!(ok(r#"chomp("line\r\n\n")"#), Value::from("line"));
        assert_eq!(ok(r#"lower("KiLn")"#), Value::from("kiln"));
        assert_eq!(ok(r#"upper("kiln")"#), Value::from("KILN"));
        assert_eq!(ok(r#"strrev("abc")"#), Value::from("cba"));
        // go-cty's stdlib string tests: grapheme clusters, not code points.
        assert_eq!(ok(r#"strrev("noe\u0308l")"#), Value::from("le\u{308}on"));
        assert_eq!(ok(r#"substr("noe\u0308l", 2, 1)"#), Value::from("e\u{308}"));
        assert_eq!(ok(r#"length("noe\u0308l")"#), Value::from(4u64));
        assert_eq!(
            ok(r#"title("debian bookworm-slim")"#),
            Value::from("Debian Bookworm-Slim")
        );
        assert_eq!(ok(r#"trimspace("  x \n")"#), Value::from("x"));
        assert_eq!(ok(r#"trim("--x-y--", "-")"#), Value::from("x-y"));
        assert_eq!(ok(r#"trimprefix("qemu.deb", "qemu.")"#), Value::from("deb"));
        assert_eq!(
            ok(r#"trimsuffix("disk.qcow2", ".qcow2")"#),
            Value::from("disk")
        );
        assert_eq!(ok(r#"startswith("qemu.x", "qemu")"#), Value::Bool(true));
        assert_eq!(ok(r#"endswith("qemu.x", "qemu")"#), Value::Bool(false));
        assert_eq!(ok(r#"strcontains("abc", "b")"#), Value::Bool(true));
        assert_eq!(json(r#"split(",", "a,,b")"#), r#"["a","","b"]"#);
        assert_eq!(ok(r#"join("-", ["a", "b"], ["c"])"#), Value::from("a-b-c"));
        assert_eq!(ok(r#"indent(2, "a\nb")"#), Value::from("a\n  b"));
        assert_eq!(ok(r#"substr("bookworm", 4, 3)"#), Value::from("wor"));
        assert_eq!(ok(r#"substr("bookworm", -4, -1)"#), Value::from("worm"));
    }

    #[test]
    fn regex_functions() {
        assert_eq!(ok(r#"regex("[0-9]+", "v12.3")"#), Value::from("12"));
        assert_eq!(
            json(r#"regex("(\\d+)\\.(\\d+)", "v12.3")"#),
            r#"["12","3"]"#
        );
        assert_eq!(
            json(r#"regex("(?P<major>\\d+)\\.(?P<minor>\\d+)", "v12.3")"#),
            r#"{"major":"12","minor":"3"}"#
        );
        assert!(eval(r#"regex("z", "abc")"#).is_err());
        assert_eq!(json(r#"regexall("[a-c]", "xaybzc")"#), r#"["a","b","c"]"#);
        assert_eq!(ok(r#"replace("a-b-c", "-", "+")"#), Value::from("a+b+c"));
        assert_eq!(
            ok(r#"replace("a1b22", "/[0-9]+/", "_")"#),
            Value::from("a_b_")
        );
        assert_eq!(
            ok(r#"regex_replace("k=v", "(\\w)=(\\w)", "$2=$1")"#),
            Value::from("v=k")
        );
    }

    #[test]
    fn format_verbs() {
        assert_eq!(
            ok(r#"format("%s-%03d", "disk", 7)"#),
            Value::from("disk-007")
        );
        assert_eq!(
            ok(r#"format("%.2f|%5s|%-3s|", 3.14159, "ab", "c")"#),
            Value::from("3.14|   ab|c  |")
        );
        assert_eq!(
            ok(r#"format("%q %t %x %%", "a\"b", true, 255)"#),
            Value::from(r#""a\"b" true ff %"#)
        );
        assert_eq!(ok(r#"format("%[2]s %[1]s", "a", "b")"#), Value::from("b a"));
        assert_eq!(ok(r#"format("%v", [1, "a"])"#), Value::from(r#"[1,"a"]"#));
        assert!(eval(r#"format("%d", "x")"#).is_err());
        assert!(eval(r#"format("%s %s", "x")"#).is_err());
        assert!(eval(r#"format("%s", "x", "y")"#).is_err());
        assert!(eval(r#"format("%99999999999999999999s", "x")"#).is_err());
    }

    #[test]
    fn formatlist_repeats_scalars() {
        assert_eq!(
            json(r#"formatlist("%s=%s", ["a", "b"], "v")"#),
            r#"["a=v","b=v"]"#
        );
        assert!(eval(r#"formatlist("%s%s", ["a"], ["b", "c"])"#).is_err());
    }
}
