//! Fuzz expression evaluation: any text, parsed as an HCL expression and evaluated with the
//! function library and some variables and locals in scope, must give a value or an error, never
//! a panic or an abort. Run with `cargo +nightly fuzz run expression`.

#![no_main]

use hcl::eval::Context;
use hcl::{Expression, Value};
use kiln::template::functions::{evaluate, register, FunctionEnv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = text.parse::<Expression>() else {
        return;
    };
    let mut ctx = Context::new();
    let env = FunctionEnv {
        path_root: std::env::temp_dir(),
        cwd: std::env::temp_dir(),
        offline: true,
    };
    register(&mut ctx, &env);
    let scope = |pairs: Vec<(&str, Value)>| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    ctx.declare_var(
        "var",
        scope(vec![
            ("s", Value::from("a\nb")),
            ("n", Value::from(-9223372036854775808i64)),
            ("u", Value::from(u64::MAX)),
            ("f", Value::from(0.5)),
            (
                "l",
                Value::Array(vec![Value::from(1), Value::from("x"), Value::Bool(true)]),
            ),
            ("m", scope(vec![("k", Value::from("v"))])),
        ]),
    );
    ctx.declare_var(
        "local",
        scope(vec![
            ("zero", Value::from(0)),
            ("empty", Value::Array(Vec::new())),
        ]),
    );
    if let Err(e) = evaluate(&expr, &ctx) {
        let _ = e.to_string();
    }
});
