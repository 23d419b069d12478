//! Contextual functions: `env` (only meaningful in variable defaults; the template loader
//! enforces where it may appear) and the network-backed secret lookups `vault`, `consul_key`,
//! `aws_secretsmanager` and `aws_secretsmanager_raw`, which kiln does not implement yet.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};

use super::args::{string, FnResult};

pub(super) fn register(ctx: &mut Context) {
    ctx.declare_func("env", FuncDef::new(env, [ParamType::String]));
    let any = || FuncDef::builder().variadic_param(ParamType::Any);
    ctx.declare_func("vault", any().build(vault));
    ctx.declare_func("consul_key", any().build(consul_key));
    ctx.declare_func("aws_secretsmanager", any().build(aws_secretsmanager));
    ctx.declare_func(
        "aws_secretsmanager_raw",
        any().build(aws_secretsmanager_raw),
    );
}

/// An unset variable reads as the empty string, as in Packer.
fn env(a: FuncArgs) -> FnResult {
    Ok(std::env::var(string(&a[0])?).unwrap_or_default().into())
}

fn network(function: &str) -> FnResult {
    if super::current_env().offline {
        Err(format!(
            "{function}() needs network access; it is not available offline"
        ))
    } else {
        Err(format!(
            "{function}() is not supported by kiln yet; pass the secret in a variable \
             (-var, a var file or PKR_VAR_<name>) instead"
        ))
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
