//! The secret-store lookups `vault`, `consul_key`, `aws_secretsmanager` and
//! `aws_secretsmanager_raw`, as Packer's SDK does them (its `template` package): configured from
//! the same environment variables as HashiCorp's and AWS's Go clients, with Packer's rules for
//! what is returned and Packer's words when nothing is. The values are secrets: nothing here
//! logs them, and no error message carries a token or key (a server's error text is included
//! with the token blanked out, in case it echoes it).
//!
//! The calls are blocking, as function evaluation is synchronous; in offline mode each fails
//! naming the URL it would have reached.

use std::io::Read as _;
use std::time::Duration;

use base64::Engine as _;

use crate::aws::credentials::{process_env, Env};
use crate::aws::{self, sigv4::uri_encode};

/// How long one lookup may take (the Vault client's default timeout).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The most of an answer read: KV values are small (Consul's limit is 512 KiB).
const MAX_RESPONSE: u64 = 4 << 20;

/// Why a secret lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Offline mode forbids the request.
    #[error("{function}(): offline mode (KILN_OFFLINE) forbids reaching {url}")]
    Offline {
        /// The function.
        function: &'static str,
        /// Where it would have gone.
        url: String,
    },

    // Vault, worded as Packer's SDK words it.
    /// `VAULT_TOKEN` is unset.
    #[error("Must set VAULT_TOKEN env var in order to use vault template function")]
    NoVaultToken,
    /// No answer from Vault.
    #[error("Error reading vault secret: request to {url} failed")]
    VaultTransport {
        /// The URL read.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// Vault refused the read.
    #[error(
        "Error reading vault secret: Error making API request.\n\nURL: GET {url}\nCode: \
         {status}. Errors:\n\n{errors}"
    )]
    VaultStatus {
        /// The URL read.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Vault's `errors`, one `* …` line each.
        errors: String,
    },
    /// Vault's answer is not JSON.
    #[error("Error reading vault secret: the answer from {url} is not JSON")]
    VaultJson {
        /// The URL read.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Nothing at the path.
    #[error("Vault Secret does not exist at the given path")]
    VaultMissing,
    /// Neither a KV v2 `data` nor the key of a KV v1 secret.
    #[error(
        "Vault data was empty at the given path. Check the Vault function docs for help: \
         https://www.packer.io/docs/templates/hcl_templates/functions/contextual/vault. \
         Original warnings from Vault call: {0}"
    )]
    VaultEmpty(String),
    /// A KV v2 secret without the key.
    #[error("Vault path does not contain the requested key")]
    VaultNoKey,
    /// The key holds a number, list or map.
    #[error("the Vault value of key {0:?} is not a string")]
    VaultNotString(String),

    // Consul, worded as Packer's SDK and Consul's client word it.
    /// No answer from Consul.
    #[error("error reading consul key: request to {url} failed")]
    ConsulTransport {
        /// The URL read.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// Consul refused the read.
    #[error("error reading consul key: Unexpected response code: {status} ({body})")]
    ConsulStatus {
        /// The HTTP status.
        status: u16,
        /// Consul's explanation.
        body: String,
    },
    /// Consul's answer is not a list of KV entries.
    #[error("error reading consul key: the answer is not a list of KV entries")]
    ConsulAnswer,
    /// No such key.
    #[error("key does not exist at the given path: {0}")]
    ConsulMissing(String),
    /// The key holds nothing.
    #[error("value is empty at path {0}")]
    ConsulEmpty(String),

    // AWS Secrets Manager, worded as Packer's SDK and AWS's client word it.
    /// An empty secret name.
    #[error("At least one secret name must be provided")]
    NoSecretName,
    /// The call failed.
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    /// A binary secret.
    #[error("Secret is not string")]
    NotString,
    /// A JSON secret with several keys and no key asked for.
    #[error("Secret has multiple values and no key was set")]
    MultipleValues,
    /// A JSON secret without the key.
    #[error("No secret found for key {0:?}")]
    NoSecretKey(String),
    /// A JSON secret that is not an object.
    #[error("the secret is JSON but not an object of keys and values")]
    NotAnObject,
    /// A key holding a bool, null, list or object.
    #[error("Unsupported secret value type: {0}")]
    ValueType(&'static str),
}

/// `vault(path, key)`: `GET $VAULT_ADDR/v1/<path>` with `VAULT_TOKEN`. The path is used as
/// given, as Packer does: a KV v2 secret is read at `<mount>/data/<path>` and its keys are under
/// `data.data`; a KV v1 secret's keys are under `data`.
pub fn vault(offline: bool, path: &str, key: &str) -> Result<String, SecretError> {
    vault_with(&process_env, offline, path, key)
}

fn vault_with(env: Env<'_>, offline: bool, path: &str, key: &str) -> Result<String, SecretError> {
    let token = env("VAULT_TOKEN").ok_or(SecretError::NoVaultToken)?;
    // The Vault client's order: the agent's address, the server's, the default.
    let addr = env("VAULT_AGENT_ADDR")
        .or_else(|| env("VAULT_ADDR"))
        .unwrap_or_else(|| "https://127.0.0.1:8200".to_owned());
    let url = format!(
        "{}/v1/{}",
        addr.trim_end_matches('/'),
        encode_path(path.trim_start_matches('/'))
    );
    if offline {
        return Err(SecretError::Offline {
            function: "vault",
            url,
        });
    }
    let namespace = env("VAULT_NAMESPACE");
    let mut headers = vec![
        ("X-Vault-Token", token.as_str()),
        ("X-Vault-Request", "true"),
    ];
    if let Some(ns) = &namespace {
        headers.push(("X-Vault-Namespace", ns));
    }
    let (status, body) = get(&url, &headers).map_err(|source| SecretError::VaultTransport {
        url: url.clone(),
        source,
    })?;
    let body = redact(&body, &token);
    // The client reads a 404 with data or warnings as a secret, any other 404 (and an empty
    // 204) as no secret.
    if !matches!(status, 200 | 204 | 404) {
        let errors = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("errors")?.as_array().map(|errs| {
                    errs.iter()
                        .map(|e| format!("* {}", e.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
            })
            .unwrap_or(body);
        return Err(SecretError::VaultStatus {
            url,
            status,
            errors,
        });
    }
    if body.trim().is_empty() {
        return Err(SecretError::VaultMissing);
    }
    let secret: serde_json::Value =
        serde_json::from_str(&body).map_err(|source| SecretError::VaultJson {
            url: url.clone(),
            source,
        })?;
    let data = secret.get("data").and_then(|d| d.as_object());
    let warnings: Vec<&str> = secret
        .get("warnings")
        .and_then(|w| w.as_array())
        .map(|w| w.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    if status == 404 && data.is_none_or(|d| d.is_empty()) && warnings.is_empty() {
        return Err(SecretError::VaultMissing);
    }
    let string = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| SecretError::VaultNotString(key.to_owned()))
    };
    match data.map(|d| (d.get("data"), d.get(key))) {
        // KV v2: the secret's own keys are one level down.
        Some((Some(inner), _)) => match inner.get(key) {
            Some(v) => string(v),
            None => Err(SecretError::VaultNoKey),
        },
        Some((None, Some(v))) => string(v),
        _ => Err(SecretError::VaultEmpty(warnings.join("; "))),
    }
}

/// `consul_key(key)`: `GET <CONSUL_HTTP_ADDR>/v1/kv/<key>` with `CONSUL_HTTP_TOKEN` (or the
/// file `CONSUL_HTTP_TOKEN_FILE` names), as Consul's client configures itself.
pub fn consul_key(offline: bool, key: &str) -> Result<String, SecretError> {
    consul_with(&process_env, offline, key)
}

fn consul_with(env: Env<'_>, offline: bool, key: &str) -> Result<String, SecretError> {
    let addr = env("CONSUL_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8500".to_owned());
    let ssl = env("CONSUL_HTTP_SSL").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "t"));
    let base = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.clone()
    } else {
        format!("{}://{addr}", if ssl { "https" } else { "http" })
    };
    let url = format!(
        "{}/v1/kv/{}",
        base.trim_end_matches('/'),
        encode_path(key.trim_start_matches('/'))
    );
    if offline {
        return Err(SecretError::Offline {
            function: "consul_key",
            url,
        });
    }
    let token = env("CONSUL_HTTP_TOKEN").or_else(|| {
        let file = env("CONSUL_HTTP_TOKEN_FILE")?;
        Some(std::fs::read_to_string(file).ok()?.trim().to_owned())
    });
    let auth = env("CONSUL_HTTP_AUTH").map(|a| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(a)
        )
    });
    let mut headers = Vec::new();
    if let Some(t) = &token {
        headers.push(("X-Consul-Token", t.as_str()));
    }
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, body) = get(&url, &headers).map_err(|source| SecretError::ConsulTransport {
        url: url.clone(),
        source,
    })?;
    let body = redact(&body, token.as_deref().unwrap_or_default());
    match status {
        200 => {}
        404 => return Err(SecretError::ConsulMissing(key.to_owned())),
        status => {
            return Err(SecretError::ConsulStatus {
                status,
                body: body.trim().to_owned(),
            })
        }
    }
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&body).map_err(|_| SecretError::ConsulAnswer)?;
    let Some(entry) = entries.first() else {
        return Err(SecretError::ConsulMissing(key.to_owned()));
    };
    let value = match entry.get("Value") {
        Some(serde_json::Value::String(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::ConsulAnswer)?,
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(_) => return Err(SecretError::ConsulAnswer),
    };
    if value.is_empty() {
        return Err(SecretError::ConsulEmpty(key.to_owned()));
    }
    Ok(String::from_utf8_lossy(&value).into_owned())
}

/// `aws_secretsmanager(name, key)` (`raw` false, key empty for none) and
/// `aws_secretsmanager_raw(name)` (`raw` true): Secrets Manager's `GetSecretValue` of the
/// `AWSCURRENT` version. A plain-text secret, or any secret when `raw`, is returned as it is;
/// of a JSON secret, the key's value (or the only value when no key is given).
pub fn aws_secretsmanager(
    offline: bool,
    name: &str,
    key: &str,
    raw: bool,
) -> Result<String, SecretError> {
    aws_with(&process_env, offline, name, key, raw)
}

fn aws_with(
    env: Env<'_>,
    offline: bool,
    name: &str,
    key: &str,
    raw: bool,
) -> Result<String, SecretError> {
    if name.is_empty() {
        return Err(SecretError::NoSecretName);
    }
    if offline {
        return Err(SecretError::Offline {
            function: if raw {
                "aws_secretsmanager_raw"
            } else {
                "aws_secretsmanager"
            },
            url: aws::endpoint(env, aws::SECRETS_MANAGER)?,
        });
    }
    let client = aws::Client::new(env, aws::SECRETS_MANAGER)?;
    let out = client.call_json(
        &crate::http::agent(Some(TIMEOUT)),
        "GetSecretValue",
        &serde_json::json!({ "SecretId": name, "VersionStage": "AWSCURRENT" }),
    )?;
    let secret = out
        .get("SecretString")
        .and_then(|s| s.as_str())
        .ok_or(SecretError::NotString)?;
    select(secret, key, raw)
}

/// Packer's choice of what a secret string gives.
fn select(secret: &str, key: &str, raw: bool) -> Result<String, SecretError> {
    let parsed = match serde_json::from_str::<serde_json::Value>(secret) {
        Ok(v) if !raw => v,
        _ => return Ok(secret.to_owned()),
    };
    let map = parsed.as_object().ok_or(SecretError::NotAnObject)?;
    if key.is_empty() && map.len() > 1 {
        return Err(SecretError::MultipleValues);
    }
    let value = if key.is_empty() {
        map.values().next()
    } else {
        map.get(key)
    };
    match value.ok_or_else(|| SecretError::NoSecretKey(key.to_owned()))? {
        serde_json::Value::String(s) => Ok(s.clone()),
        // Go decodes numbers as float64 and prints them with no decimals.
        serde_json::Value::Number(n) => Ok(format!("{:.0}", n.as_f64().unwrap_or_default())),
        serde_json::Value::Bool(_) => Err(SecretError::ValueType("bool")),
        serde_json::Value::Null => Err(SecretError::ValueType("null")),
        serde_json::Value::Array(_) => Err(SecretError::ValueType("list")),
        serde_json::Value::Object(_) => Err(SecretError::ValueType("object")),
    }
}

/// Each segment of a path percent-encoded, the slashes kept.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| uri_encode(s.as_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// A `GET` with `headers`: the status and the body as text.
fn get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), ureq::Error> {
    let mut request = crate::http::agent(Some(TIMEOUT)).get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.call()?;
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE)
        .read_to_string(&mut body)?;
    Ok((response.status().as_u16(), body))
}

/// `text` without `secret` in it.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::aws::testing::env_of;

    #[test]
    fn offline_names_the_url_each_would_reach() {
        let env = env_of(&[
            ("VAULT_TOKEN", "s.tok"),
            ("VAULT_ADDR", "http://vault.test:8200/"),
            ("HOME", "/nonexistent"),
            ("AWS_REGION", "eu-central-1"),
        ]);
        let e = vault_with(&env, true, "/secret/data/my app", "k").unwrap_err();
        assert_eq!(
            e.to_string(),
            "vault(): offline mode (KILN_OFFLINE) forbids reaching \
             http://vault.test:8200/v1/secret/data/my%20app"
        );
        let e = consul_with(&env, true, "a/b").unwrap_err();
        assert!(
            e.to_string().ends_with("http://127.0.0.1:8500/v1/kv/a/b"),
            "{e}"
        );
        let e = aws_with(&env, true, "n", "", true).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("https://secretsmanager.eu-central-1.amazonaws.com"),
            "{e}"
        );
        assert!(e.to_string().starts_with("aws_secretsmanager_raw()"), "{e}");
    }

    #[test]
    fn vault_needs_a_token_and_defaults_to_the_local_https_address() {
        let e = vault_with(&env_of(&[]), true, "secret/x", "k").unwrap_err();
        assert!(matches!(e, SecretError::NoVaultToken));
        let e = vault_with(&env_of(&[("VAULT_TOKEN", "t")]), true, "secret/x", "k").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("https://127.0.0.1:8200/v1/secret/x"),
            "{e}"
        );
    }

    #[test]
    fn consul_addresses_take_a_scheme_or_consul_http_ssl() {
        let e = consul_with(
            &env_of(&[
                ("CONSUL_HTTP_ADDR", "c.test:8501"),
                ("CONSUL_HTTP_SSL", "true"),
            ]),
            true,
            "/k",
        )
        .unwrap_err();
        assert!(
            e.to_string().ends_with("https://c.test:8501/v1/kv/k"),
            "{e}"
        );
        let e =
            consul_with(&env_of(&[("CONSUL_HTTP_ADDR", "http://c.test")]), true, "k").unwrap_err();
        assert!(e.to_string().ends_with("http://c.test/v1/kv/k"), "{e}");
    }

    #[test]
    fn what_a_secret_string_gives_follows_packer() {
        assert_eq!(select("plain text", "", false).unwrap(), "plain text");
        assert_eq!(select("plain text", "k", false).unwrap(), "plain text");
        let json = r#"{"user":"admin","port":5432.4}"#;
        assert_eq!(select(json, "user", false).unwrap(), "admin");
        assert_eq!(select(json, "port", false).unwrap(), "5432");
        assert_eq!(select(json, "", true).unwrap(), json);
        assert_eq!(select(json, "user", true).unwrap(), json);
        assert!(matches!(
            select(json, "", false),
            Err(SecretError::MultipleValues)
        ));
        assert!(matches!(
            select(json, "nope", false),
            Err(SecretError::NoSecretKey(k)) if k == "nope"
        ));
        assert_eq!(select(r#"{"only":"one"}"#, "", false).unwrap(), "one");
        assert!(matches!(
            select(r#"{"b":true}"#, "b", false),
            Err(SecretError::ValueType("bool"))
        ));
        assert!(matches!(
            select("[1]", "", false),
            Err(SecretError::NotAnObject)
        ));
    }

    #[test]
    fn an_echoed_token_is_blanked() {
        assert_eq!(redact("bad token s.abc", "s.abc"), "bad token <redacted>");
        assert_eq!(redact("x", ""), "x");
    }
}
