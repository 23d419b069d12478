//! The environment Packer gives shell scripts: `PACKER_BUILD_NAME`, `PACKER_BUILDER_TYPE`,
//! `PACKER_HTTP_ADDR`/`_IP`/`_PORT`, then `environment_vars`, then `env` (later names win),
//! sorted by name as Packer sorts them, and rendered with `env_var_format` (single-quoted
//! values, embedded quotes escaped) for `{{.Vars}}` or an env-var file. Also the runtime
//! rendering of build-time placeholders (`{{ .HTTPIP }}`, ``{{ build `Host` }}``) that the
//! template loader leaves in provisioner options.

use std::collections::BTreeMap;

use super::ProvisionContext;

/// Packer's default `env_var_format` for `{{.Vars}}`.
pub const INLINE_FORMAT: &str = "%s='%s' ";
/// Packer's default `env_var_format` with `use_env_var_file`.
pub const FILE_FORMAT: &str = "export %s='%s'\n";

/// A malformed `environment_vars` entry.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// No `=` in the entry.
    #[error("environment_vars entry {0:?} is not NAME=value")]
    NotNameValue(String),
    /// `=value` with nothing before it.
    #[error("environment_vars entry {0:?} has an empty name")]
    EmptyName(String),
}

/// The variables sorted by name; `env` overrides `environment_vars`, which override
/// Packer's own.
pub fn variables(
    ctx: &ProvisionContext<'_>,
    environment_vars: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    out.insert("PACKER_BUILD_NAME".into(), ctx.build_name.into());
    out.insert("PACKER_BUILDER_TYPE".into(), ctx.build_type.into());
    for (var, key) in [
        ("PACKER_HTTP_ADDR", "PackerHTTPAddr"),
        ("PACKER_HTTP_IP", "PackerHTTPIP"),
        ("PACKER_HTTP_PORT", "PackerHTTPPort"),
    ] {
        if let Some(v) = ctx.generated.get(key) {
            out.insert(var.into(), v.clone());
        }
    }
    for kv in environment_vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| EnvError::NotNameValue(kv.clone()))?;
        if k.is_empty() {
            return Err(EnvError::EmptyName(kv.clone()));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(out.into_iter().collect())
}

/// Each variable through `format` (Go's `%s` twice: name, then the value with `'` escaped
/// as `'"'"'`, as Packer does), concatenated.
pub fn render(vars: &[(String, String)], format: &str) -> String {
    vars.iter()
        .map(|(k, v)| sprintf2(format, k, &v.replace('\'', r#"'"'"'"#)))
        .collect()
}

/// `format` with its first two `%s` replaced by `a` and `b`; `%%` is a literal `%`.
fn sprintf2(format: &str, a: &str, b: &str) -> String {
    let mut out = String::with_capacity(format.len() + a.len() + b.len());
    let mut args = [a, b].into_iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('s')) => {
                chars.next();
                out.push_str(args.next().unwrap_or(""));
            }
            ('%', Some('%')) => {
                chars.next();
                out.push('%');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Replace `{{.Name}}` / `{{ .Name }}` placeholders in an `execute_command`; others stay.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    boot_commands::render_known(template, |expr| {
        let name = expr.strip_prefix('.')?;
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

/// Render the build-time placeholders in every string of a provisioner's options:
/// ``{{ build `Host` }}`` (HCL's `build.Host`) and `{{ .HTTPIP }}`-style values from
/// `generated` (`.HTTPIP`, `.HTTPPort`, `.HTTPAddr` are Packer's short names for the
/// `PackerHTTP*` values), and Packer's `{{build_name}}` / `{{build_type}}` (the `build_name`
/// and `build_type` entries). Unknown placeholders are left for later (`{{.Path}}`).
pub fn render_build_values(value: &mut serde_json::Value, generated: &BTreeMap<String, String>) {
    match value {
        serde_json::Value::String(s) if s.contains("{{") => {
            *s = render_placeholders(s, generated);
        }
        serde_json::Value::Array(items) => {
            for v in items {
                render_build_values(v, generated);
            }
        }
        serde_json::Value::Object(map) => {
            for v in map.values_mut() {
                render_build_values(v, generated);
            }
        }
        _ => {}
    }
}

fn render_placeholders(text: &str, generated: &BTreeMap<String, String>) -> String {
    boot_commands::render_known(text, |expr| {
        if matches!(expr, "build_name" | "build_type") {
            return generated.get(expr).cloned();
        }
        let key = expr
            .strip_prefix("build")
            .map(|k| k.trim().trim_matches(['`', '"']))
            .filter(|_| expr.starts_with("build ") || expr.starts_with("build`"))
            .or_else(|| expr.strip_prefix('.'))?;
        let long = match key {
            "HTTPIP" => "PackerHTTPIP",
            "HTTPPort" => "PackerHTTPPort",
            "HTTPAddr" => "PackerHTTPAddr",
            other => other,
        };
        generated.get(long).cloned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_single_quoted_with_quotes_escaped() {
        let v = vec![
            ("A".to_owned(), "it's".to_owned()),
            ("B".to_owned(), "x y".to_owned()),
        ];
        assert_eq!(render(&v, INLINE_FORMAT), r#"A='it'"'"'s' B='x y' "#);
        assert_eq!(render(&v[1..], FILE_FORMAT), "export B='x y'\n");
        assert_eq!(render(&v[1..], "%s=%s;100%%;"), "B=x y;100%;");
    }

    #[test]
    fn placeholders_with_and_without_spaces() {
        let s = fill(
            "chmod +x {{.Path}}; {{ .Vars }} {{.Path}}",
            &[("Path", "/tmp/s.sh"), ("Vars", "A='1' ")],
        );
        assert_eq!(s, "chmod +x /tmp/s.sh; A='1'  /tmp/s.sh");
    }

    #[test]
    fn build_values_render_and_unknown_ones_stay() {
        let g = BTreeMap::from([
            ("Host".to_owned(), "127.0.0.1".to_owned()),
            ("PackerHTTPIP".to_owned(), "10.0.2.2".to_owned()),
        ]);
        let mut v = serde_json::json!({
            "inline": ["echo {{ build `Host` }} {{ .HTTPIP }}:{{.PackerHTTPIP}}", "{{.Path}} {{ build `Nope` }}"],
            "n": 3,
        });
        render_build_values(&mut v, &g);
        assert_eq!(v["inline"][0], "echo 127.0.0.1 10.0.2.2:10.0.2.2");
        assert_eq!(v["inline"][1], "{{.Path}} {{ build `Nope` }}");
        assert_eq!(render_placeholders("a {{ b", &g), "a {{ b");
    }
}
