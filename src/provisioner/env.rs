//! The environment Packer gives shell scripts: `PACKER_BUILD_NAME`, `PACKER_BUILDER_TYPE`,
//! `PACKER_HTTP_ADDR`/`_IP`/`_PORT`, then `environment_vars` in order, then `env`; rendered as
//! `NAME='value' ` pairs (single-quoted, embedded quotes escaped) for `{{.Vars}}`.

use std::collections::BTreeMap;

use super::ProvisionContext;

/// The variables in order, later ones overriding earlier ones of the same name.
pub fn variables(
    ctx: &ProvisionContext<'_>,
    environment_vars: &[String],
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = vec![
        ("PACKER_BUILD_NAME".into(), ctx.build_name.into()),
        ("PACKER_BUILDER_TYPE".into(), ctx.build_type.into()),
    ];
    for (var, key) in [
        ("PACKER_HTTP_ADDR", "PackerHTTPAddr"),
        ("PACKER_HTTP_IP", "PackerHTTPIP"),
        ("PACKER_HTTP_PORT", "PackerHTTPPort"),
    ] {
        if let Some(v) = ctx.generated.get(key) {
            out.push((var.into(), v.clone()));
        }
    }
    for kv in environment_vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("environment_vars entry {kv:?} is not NAME=value"))?;
        if k.is_empty() {
            return Err(format!("environment_vars entry {kv:?} has an empty name"));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    out.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut seen = std::collections::BTreeSet::new();
    let mut deduped: Vec<_> = out
        .into_iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect();
    deduped.reverse();
    Ok(deduped)
}

/// `NAME='value' NAME2='it'"'"'s' `, Packer's default `env_var_format`.
pub fn render(vars: &[(String, String)], format: Option<&str>) -> String {
    vars.iter()
        .map(|(k, v)| match format {
            Some(f) => f
                .replacen("%s", k, 1)
                .replacen("%s", &v.replace('\'', r"'\''"), 1),
            None => format!("{k}='{}' ", v.replace('\'', r"'\''")),
        })
        .collect()
}

/// Replace `{{.Name}}` / `{{ .Name }}` placeholders in an `execute_command`.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        for pat in [format!("{{{{.{name}}}}}"), format!("{{{{ .{name} }}}}")] {
            out = out.replace(&pat, value);
        }
    }
    out
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
        assert_eq!(render(&v, None), r"A='it'\''s' B='x y' ");
        assert_eq!(
            render(&v[1..], Some("export %s='%s'; ")),
            "export B='x y'; "
        );
    }

    #[test]
    fn placeholders_with_and_without_spaces() {
        let s = fill(
            "chmod +x {{.Path}}; {{ .Vars }} {{.Path}}",
            &[("Path", "/tmp/s.sh"), ("Vars", "A='1' ")],
        );
        assert_eq!(s, "chmod +x /tmp/s.sh; A='1'  /tmp/s.sh");
    }
}
