//! Contextual functions: `env` (only meaningful in variable defaults; the template loader
//! enforces where it may appear) and the network-backed secret lookups `vault`, `consul_key`,
//! `aws_secretsmanager` and `aws_secretsmanager_raw`, which kiln does not implement yet.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};

use super::args::{string, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    ctx.declare_func("env", FuncDef::new(hcl_fn!(env), [ParamType::String]));
    let any = || FuncDef::builder().variadic_param(ParamType::Any);
    ctx.declare_func("vault", any().build(hcl_fn!(vault)));
    ctx.declare_func("consul_key", any().build(hcl_fn!(consul_key)));
    ctx.declare_func(
        "aws_secretsmanager",
        any().build(hcl_fn!(aws_secretsmanager)),
    );
    ctx.declare_func(
        "aws_secretsmanager_raw",
        any().build(hcl_fn!(aws_secretsmanager_raw)),
    );
}

/// An unset variable reads as the empty string, as in Packer.
fn env(a: FuncArgs) -> FnResult {
    Ok(std::env::var(string(&a[0])?).unwrap_or_default().into())
}

fn network(function: &'static str) -> FnResult {
    if super::current_env().offline {
        Err(FnError::Offline(function))
    } else {
        Err(FnError::SecretLookup(function))
    }
}

fn vault(_: FuncArgs) -> FnResult {
    network("vault")
}

fn consul_key(_: FuncArgs) -> FnResult {
    network("consul_key")
}

fn aws_secretsmanager(_: FuncArgs) -> FnResult {
    network("aws_secretsmanager")
}

fn aws_secretsmanager_raw(_: FuncArgs) -> FnResult {
    network("aws_secretsmanager_raw")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, ok};
    use hcl::Value;

    #[test]
    fn env_reads_the_environment() {
        std::env::set_var("KILN_TEST_ENV_FN", "v1");
        assert_eq!(ok(r#"env("KILN_TEST_ENV_FN")"#), Value::from("v1"));
        assert_eq!(ok(r#"env("KILN_TEST_ENV_UNSET_X")"#), Value::from(""));
    }

    #[test]
    fn secret_lookups_explain_offline() {
        let err = eval(r#"vault("secret/x", "k")"#).unwrap_err().to_string();
        assert!(err.contains("not available offline"), "{err}");
    }
}
