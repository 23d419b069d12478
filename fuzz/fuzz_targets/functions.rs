//! Fuzz the function library: any function of Packer's, called through the evaluator's entry
//! with arbitrary values (extreme numbers, odd strings, nested lists and maps), must return a
//! value or an error, never a panic or an abort. Run with `cargo +nightly fuzz run functions`.

#![no_main]

use arbitrary::Arbitrary;
use hcl::eval::Context;
use hcl::expr::{Expression, FuncCall};
use hcl::Value;
use kiln::template::functions::{evaluate, register, FunctionEnv, PACKER_FUNCTIONS};
use libfuzzer_sys::fuzz_target;

/// A template value, as the fuzzer builds it.
#[derive(Arbitrary, Debug)]
enum Arg {
    Null,
    Bool(bool),
    Int(i64),
    Unsigned(u64),
    Float(f64),
    /// A number at an edge: 0, ±1, the 64-bit limits.
    Edge(u8),
    Str(String),
    List(Vec<Arg>),
    Map(Vec<(String, Arg)>),
}

impl Arg {
    fn value(&self) -> Value {
        match self {
            Arg::Null => Value::Null,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Int(i) => Value::from(*i),
            Arg::Unsigned(u) => Value::from(*u),
            Arg::Float(f) => hcl::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Arg::Edge(e) => match e % 6 {
                0 => Value::from(0),
                1 => Value::from(1),
                2 => Value::from(-1),
                3 => Value::from(i64::MIN),
                4 => Value::from(i64::MAX),
                _ => Value::from(u64::MAX),
            },
            Arg::Str(s) => Value::from(s.as_str()),
            Arg::List(items) => Value::Array(items.iter().map(Arg::value).collect()),
            Arg::Map(pairs) => {
                Value::Object(pairs.iter().map(|(k, v)| (k.clone(), v.value())).collect())
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Call {
    function: u8,
    args: Vec<Arg>,
    /// Whether the last argument is expanded (`f(list...)`).
    expand: bool,
}

/// Functions left out: `fileset` walks whatever directory tree it is given (`/`), and
/// `bcrypt`'s cost is exponential by design (cost 31 takes days, in Packer too).
const SKIPPED: &[&str] = &["fileset", "bcrypt"];

fuzz_target!(|call: Call| {
    let name = PACKER_FUNCTIONS[usize::from(call.function) % PACKER_FUNCTIONS.len()];
    if SKIPPED.contains(&name) {
        return;
    }
    let mut ctx = Context::new();
    let env = FunctionEnv {
        path_root: std::env::temp_dir(),
        cwd: std::env::temp_dir(),
        offline: true,
    };
    register(&mut ctx, &env);
    let mut f = FuncCall::new(name);
    f.args = call
        .args
        .iter()
        .map(|a| Expression::from(a.value()))
        .collect();
    f.expand_final = call.expand && !f.args.is_empty();
    if let Err(e) = evaluate(&Expression::FuncCall(Box::new(f)), &ctx) {
        let _ = e.to_string();
    }
});
