//! Contextual functions: `env` (only meaningful in variable defaults; the template loader
//! enforces where it may appear) and the secret-store lookups `vault`, `consul_key`,
//! `aws_secretsmanager` and `aws_secretsmanager_raw`, whose arguments are checked here and whose
//! network calls live in the `secrets` module.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{string, FnResult};
use super::{secrets, FnError};

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

/// Whether the evaluation in progress must not reach the network.
fn offline() -> bool {
    super::current_env().offline
}

fn vault(a: FuncArgs) -> FnResult {
    let [path, key] = &a[..] else {
        return Err(FnError::Arity("vault(path, key) takes two arguments"));
    };
    Ok(secrets::vault(offline(), string(path)?, string(key)?)?.into())
}

fn consul_key(a: FuncArgs) -> FnResult {
    let [key] = &a[..] else {
        return Err(FnError::Arity("consul_key(key) takes one argument"));
    };
    Ok(secrets::consul_key(offline(), string(key)?)?.into())
}

/// The key may be null or left out (legacy JSON templates call it with the name alone): the
/// secret's only value is then returned.
fn aws_secretsmanager(a: FuncArgs) -> FnResult {
    let (name, key) = match &a[..] {
        [name] | [name, Value::Null] => (name, ""),
        [name, key] => (name, string(key)?),
        _ => {
            return Err(FnError::Arity(
                "aws_secretsmanager(name, key) takes a secret name and a key",
            ))
        }
    };
    Ok(secrets::aws_secretsmanager(offline(), string(name)?, key, false)?.into())
}

fn aws_secretsmanager_raw(a: FuncArgs) -> FnResult {
    let [name] = &a[..] else {
        return Err(FnError::Arity(
            "aws_secretsmanager_raw(name) takes one argument",
        ));
    };
    Ok(secrets::aws_secretsmanager(offline(), string(name)?, "", true)?.into())
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
    fn secret_lookups_name_the_url_offline() {
        // The test context is offline.
        std::env::set_var("VAULT_TOKEN", "s.test-token");
        let err = eval(r#"vault("secret/x", "k")"#).unwrap_err().to_string();
        assert!(err.contains("forbids reaching"), "{err}");
        assert!(err.contains("/v1/secret/x"), "{err}");
        assert!(!err.contains("s.test-token"), "{err}");
        let err = eval(r#"consul_key("a/b")"#).unwrap_err().to_string();
        assert!(err.contains("/v1/kv/a/b"), "{err}");
    }

    #[test]
    fn secret_lookups_check_their_arguments() {
        let err = eval(r#"vault("secret/x")"#).unwrap_err().to_string();
        assert!(err.contains("two arguments"), "{err}");
        let err = eval(r#"aws_secretsmanager("", null)"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret name must be provided"), "{err}");
        let err = eval(r#"aws_secretsmanager_raw("a", "b")"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes one argument"), "{err}");
    }
}
