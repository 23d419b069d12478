//! The secret-store functions against loopback servers: Vault's and Consul's KV APIs played by
//! a stand-in written here (only what their API docs say a read needs, checking the token
//! header), AWS Secrets Manager by moto in server mode, its secrets created by boto3 as an
//! independent client. Each runs `kiln console` on a one-line template with the server's
//! address in the environment, as a user would.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

use crate::support::{free_port, text};

const VAULT_TOKEN: &str = "hvs.kiln-test-token-7f3a";
const CONSUL_TOKEN: &str = "b1gs3cr3t-consul-acl-token";
const AWS_SECRET_KEY: &str = "kilnTestSecretAccessKey/DoNotPrint+0123456789";

/// `kiln console -expr <expr>` on an empty template, with `env` set and nothing inherited
/// that could point elsewhere (a developer's own Vault, Consul or AWS settings).
fn console(dir: &Path, env: &[(&str, &str)], expr: &str) -> Output {
    std::fs::write(dir.join("t.pkr.hcl"), "locals {}\n").unwrap();
    let mut c = Command::cargo_bin("kiln").unwrap();
    c.current_dir(dir).env("NO_COLOR", "1").env("HOME", dir);
    for (k, _) in std::env::vars() {
        if ["VAULT_", "CONSUL_", "AWS_", "KILN_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied())
        .args(["console", "-expr", expr])
        .arg(dir.join("t.pkr.hcl"));
    c.output().unwrap()
}

/// The value printed, or a panic with kiln's output.
fn value(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim_end()
        .to_owned()
}

/// The error printed, checked to be an error and to hold none of `secrets`.
fn error(o: &Output, secrets: &[&str]) -> String {
    assert!(!o.status.success(), "{}", text(o));
    let t = text(o);
    for s in secrets {
        assert!(!t.contains(s), "a secret is in the error: {t}");
    }
    t
}

/// How a stand-in server answers `(method, path, headers)`: a status and a body.
type Answer = fn(&str, &str, &[(String, String)]) -> (u16, String);

/// A stand-in HTTP server on a loopback port: `answer(method, path, headers)` gives the status
/// and JSON body of each request. Runs until the test process ends.
fn serve(answer: Answer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = handle(stream, answer);
        }
    });
    port
}

fn handle(stream: TcpStream, answer: Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = answer(method, path, &headers);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Vault's KV API: v2 mounted at `secret/` (`GET /v1/secret/data/<path>`, keys under
/// `data.data`), v1 at `kv/` (keys under `data`); 403 for a wrong token, 404 with no data for a
/// missing path.
fn vault_api(method: &str, path: &str, headers: &[(String, String)]) -> (u16, String) {
    if method != "GET" {
        return (405, r#"{"errors":["unsupported"]}"#.into());
    }
    if header(headers, "x-vault-token") != Some(VAULT_TOKEN) {
        return (403, r#"{"errors":["permission denied"]}"#.into());
    }
    match path {
        "/v1/secret/data/app" => (
            200,
            r#"{"request_id":"1","lease_id":"","renewable":false,"lease_duration":0,
               "data":{"data":{"password":"v2-hunter2","user":"admin"},
                       "metadata":{"created_time":"2024-01-01T00:00:00Z","version":3}},
               "warnings":null}"#
                .into(),
        ),
        "/v1/kv/app" => (
            200,
            r#"{"request_id":"2","lease_duration":2764800,"data":{"password":"v1-swordfish"},"warnings":null}"#
                .into(),
        ),
        _ => (404, r#"{"errors":[]}"#.into()),
    }
}

/// Consul's KV API: `GET /v1/kv/<key>` gives a list of entries with base64 values; 403 for a
/// wrong ACL token, 404 for a missing key.
fn consul_api(method: &str, path: &str, headers: &[(String, String)]) -> (u16, String) {
    if method != "GET" {
        return (405, String::new());
    }
    if header(headers, "x-consul-token") != Some(CONSUL_TOKEN) {
        return (403, "ACL not found".into());
    }
    match path {
        // "consul-value" in base64.
        "/v1/kv/app/db" => (
            200,
            r#"[{"LockIndex":0,"Key":"app/db","Flags":0,"Value":"Y29uc3VsLXZhbHVl","CreateIndex":5,"ModifyIndex":5}]"#
                .into(),
        ),
        "/v1/kv/app/empty" => (
            200,
            r#"[{"Key":"app/empty","Flags":0,"Value":null}]"#.into(),
        ),
        _ => (404, String::new()),
    }
}

#[test]
fn vault_reads_kv_v1_and_v2_and_keeps_its_token_out_of_errors() {
    let port = serve(vault_api);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("http://127.0.0.1:{port}");
    let env = [("VAULT_ADDR", addr.as_str()), ("VAULT_TOKEN", VAULT_TOKEN)];
    let run = |e: &str| console(dir.path(), &env, e);

    assert_eq!(
        value(&run(r#"vault("secret/data/app", "password")"#)),
        "v2-hunter2"
    );
    assert_eq!(
        value(&run(r#"vault("/kv/app", "password")"#)),
        "v1-swordfish"
    );

    let e = error(&run(r#"vault("secret/data/app", "nope")"#), &[VAULT_TOKEN]);
    assert!(
        e.contains("Vault path does not contain the requested key"),
        "{e}"
    );
    let e = error(&run(r#"vault("kv/app", "nope")"#), &[VAULT_TOKEN]);
    assert!(e.contains("Vault data was empty at the given path"), "{e}");
    let e = error(&run(r#"vault("secret/data/none", "k")"#), &[VAULT_TOKEN]);
    assert!(
        e.contains("Vault Secret does not exist at the given path"),
        "{e}"
    );

    let bad = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_TOKEN", "hvs.wrong-token-x"),
    ];
    let e = error(
        &console(dir.path(), &bad, r#"vault("secret/data/app", "password")"#),
        &["hvs.wrong-token-x", "v2-hunter2"],
    );
    assert!(
        e.contains("Code: 403") && e.contains("permission denied"),
        "{e}"
    );

    let e = error(
        &console(
            dir.path(),
            &[("VAULT_ADDR", addr.as_str())],
            r#"vault("kv/app", "k")"#,
        ),
        &[],
    );
    assert!(e.contains("Must set VAULT_TOKEN"), "{e}");

    let mut offline = env.to_vec();
    offline.push(("KILN_OFFLINE", "1"));
    let e = error(
        &console(dir.path(), &offline, r#"vault("kv/app", "password")"#),
        &[VAULT_TOKEN],
    );
    assert!(e.contains(&format!("{addr}/v1/kv/app")), "{e}");
}

#[test]
fn consul_key_reads_a_value_and_keeps_its_token_out_of_errors() {
    let port = serve(consul_api);
    let dir = tempfile::tempdir().unwrap();
    // Consul's address has no scheme: http unless CONSUL_HTTP_SSL.
    let addr = format!("127.0.0.1:{port}");
    let env = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("CONSUL_HTTP_TOKEN", CONSUL_TOKEN),
    ];
    let run = |e: &str| console(dir.path(), &env, e);

    assert_eq!(value(&run(r#"consul_key("app/db")"#)), "consul-value");
    let e = error(&run(r#"consul_key("app/none")"#), &[CONSUL_TOKEN]);
    assert!(
        e.contains("key does not exist at the given path: app/none"),
        "{e}"
    );
    let e = error(&run(r#"consul_key("app/empty")"#), &[CONSUL_TOKEN]);
    assert!(e.contains("value is empty at path app/empty"), "{e}");

    let bad = [
        ("CONSUL_HTTP_ADDR", addr.as_str()),
        ("CONSUL_HTTP_TOKEN", "wrong-acl-token-y"),
    ];
    let e = error(
        &console(dir.path(), &bad, r#"consul_key("app/db")"#),
        &["wrong-acl-token-y", "consul-value"],
    );
    assert!(e.contains("Unexpected response code: 403"), "{e}");
}

/// moto's venv: `KILN_MOTO_VENV`, else `target/moto-venv` (made by `.ci/moto-venv`). `None`,
/// with a visible note, when it is missing; under CI a missing venv is a failure.
fn moto_venv() -> Option<PathBuf> {
    let venv = std::env::var_os("KILN_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::repo().join("target/moto-venv"));
    if venv.join("bin/moto_server").is_file() {
        return Some(venv);
    }
    assert!(
        !crate::in_ci(),
        "moto is missing: run .ci/moto-venv (CI must run the AWS tests)"
    );
    eprintln!("SKIPPED: moto is not installed; run `bash .ci/moto-venv` to run the AWS tests");
    None
}

/// A moto server, killed when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(venv: &Path, port: u16) -> Moto {
    let child = Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

#[test]
fn aws_secretsmanager_reads_moto_secrets_with_a_signed_request() {
    let Some(venv) = moto_venv() else { return };
    let port = free_port();
    let _moto = start_moto(&venv, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", "AKIAKILNTEST"),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY),
        ("AWS_REGION", "eu-west-1"),
    ];

    // Created by boto3, not by kiln's own signer.
    let setup = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(
            "import boto3, json, sys\n\
             c = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='eu-west-1')\n\
             c.create_secret(Name='app/db', SecretString=json.dumps({'user': 'admin', 'port': 5432}))\n\
             c.create_secret(Name='plain', SecretString='just-a-string')\n\
             c.create_secret(Name='single', SecretString=json.dumps({'token': 'only-one'}))\n",
        )
        .arg(&endpoint)
        .envs(aws_env)
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", text(&setup));

    let dir = tempfile::tempdir().unwrap();
    let mut env = aws_env.to_vec();
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint));
    let run = |e: &str| console(dir.path(), &env, e);

    assert_eq!(
        value(&run(r#"aws_secretsmanager("app/db", "user")"#)),
        "admin"
    );
    assert_eq!(
        value(&run(r#"aws_secretsmanager("app/db", "port")"#)),
        "5432"
    );
    assert_eq!(
        value(&run(r#"aws_secretsmanager("single", null)"#)),
        "only-one"
    );
    assert_eq!(
        value(&run(r#"aws_secretsmanager("plain", "any")"#)),
        "just-a-string"
    );
    assert_eq!(
        value(&run(r#"aws_secretsmanager_raw("plain")"#)),
        "just-a-string"
    );
    let raw = value(&run(r#"aws_secretsmanager_raw("app/db")"#));
    let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["user"], "admin");

    let e = error(
        &run(r#"aws_secretsmanager("missing", "k")"#),
        &[AWS_SECRET_KEY],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    let e = error(
        &run(r#"aws_secretsmanager("app/db", "nokey")"#),
        &[AWS_SECRET_KEY, "admin"],
    );
    assert!(
        e.contains("No secret found for key") && e.contains("nokey"),
        "{e}"
    );
    let e = error(
        &run(r#"aws_secretsmanager("app/db", null)"#),
        &[AWS_SECRET_KEY, "admin"],
    );
    assert!(
        e.contains("Secret has multiple values and no key was set"),
        "{e}"
    );

    // The generic endpoint variable works too; credentials may come from the shared file.
    std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
    std::fs::write(
        dir.path().join(".aws/credentials"),
        format!(
            "[ci]\naws_access_key_id = AKIAFROMFILE\naws_secret_access_key = {AWS_SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let from_file = [
        ("AWS_PROFILE", "ci"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    assert_eq!(
        value(&console(
            dir.path(),
            &from_file,
            r#"aws_secretsmanager("app/db", "user")"#
        )),
        "admin"
    );

    let mut offline = env.clone();
    offline.push(("KILN_OFFLINE", "1"));
    let e = error(
        &console(dir.path(), &offline, r#"aws_secretsmanager_raw("plain")"#),
        &[AWS_SECRET_KEY, "just-a-string"],
    );
    assert!(e.contains(&endpoint), "{e}");
}
