//! kiln's one renderer of the Go-template values Packer fills in at build time
//! (`{{ .HTTPIP }}`, `{{ .HTTPPort }}`, `{{ .Name }}`, `{{ .SSHPublicKey }}`…). [`render`] is
//! strict, for boot commands: only `{{ .Field }}` with a known field is allowed, anything else
//! is an error rather than being typed into the guest. [`render_known`] is lenient, for
//! options rendered in several passes (`execute_command`, output names, provisioner options):
//! what its lookup does not resolve is left as written for a later pass.

use std::collections::BTreeMap;

/// A template expression that cannot be rendered. Messages never include the values themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{{ .X }}` where X is not a known value.
    #[error("boot_command uses unknown value `.{name}` at byte {offset}; known values: {known}")]
    UnknownValue {
        /// The field name, without the dot.
        name: String,
        /// Byte offset of the `{{`.
        offset: usize,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// `{{` without `}}`.
    #[error("boot_command has `{{{{` at byte {offset} without a closing `}}}}`")]
    Unclosed {
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// Something other than `{{ .Field }}`.
    #[error("boot_command template `{expr}` at byte {offset} is not supported; only {{{{ .Field }}}} values are")]
    Unsupported {
        /// The expression between the braces.
        expr: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
}

/// Calls `each(offset, expression)` for every `{{ expression }}` in `text` (the expression
/// trimmed) and puts what it returns in its place; `None` keeps the placeholder as written.
/// An unclosed `{{` is passed to `each` as `Err(offset)`, whose `None` keeps the rest as is.
fn expand<E>(
    text: &str,
    mut each: impl FnMut(Result<(usize, &str), usize>) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut base = 0;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let offset = base + open;
        let Some(close) = rest[open + 2..].find("}}") else {
            if let Some(v) = each(Err(offset))? {
                out.push_str(&v);
            } else {
                out.push_str(&rest[open..]);
            }
            return Ok(out);
        };
        let consumed = open + 2 + close + 2;
        match each(Ok((offset, rest[open + 2..open + 2 + close].trim())))? {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..consumed]),
        }
        base += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces each `{{ expression }}` in `text` that `lookup` resolves; the others stay as
/// written. `lookup` gets the trimmed expression (`.Name`, ``build `Host` ``).
pub fn render_known(text: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let r: Result<String, std::convert::Infallible> =
        expand(text, |e| Ok(e.ok().and_then(|(_, x)| lookup(x))));
    match r {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// Replaces every `{{ .Field }}` in `cmd` with `values["Field"]`.
pub fn render(cmd: &str, values: &BTreeMap<String, String>) -> Result<String, RenderError> {
    expand(cmd, |e| {
        let (offset, expr) = e.map_err(|offset| RenderError::Unclosed { offset })?;
        let name = expr
            .strip_prefix('.')
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| RenderError::Unsupported {
                expr: expr.to_string(),
                offset,
            })?;
        let value = values.get(name).ok_or_else(|| RenderError::UnknownValue {
            name: name.to_string(),
            offset,
            known: values
                .keys()
                .map(|k| format!(".{k}"))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        Ok(Some(value.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        [
            ("HTTPIP", "10.0.2.2"),
            ("HTTPPort", "8080"),
            ("Name", "debian"),
            ("SSHPublicKey", "ssh-ed25519 AAAA secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn renders_values_with_any_spacing() {
        let s = "url=http://{{ .HTTPIP }}:{{.HTTPPort}}/{{  .Name\t}}.cfg<enter>";
        assert_eq!(
            render(s, &values()).unwrap(),
            "url=http://10.0.2.2:8080/debian.cfg<enter>"
        );
        assert_eq!(
            render("{{.SSHPublicKey}}", &values()).unwrap(),
            "ssh-ed25519 AAAA secret"
        );
        assert_eq!(render("no templates", &values()).unwrap(), "no templates");
    }

    #[test]
    fn unknown_value_is_named_without_leaking_values() {
        let e = render("ab{{ .HTTPIp }}", &values()).unwrap_err();
        assert_eq!(
            e,
            RenderError::UnknownValue {
                name: "HTTPIp".into(),
                offset: 2,
                known: ".HTTPIP, .HTTPPort, .Name, .SSHPublicKey".into()
            }
        );
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn lenient_rendering_keeps_what_it_cannot_resolve() {
        let r = render_known("a {{.Path}} {{ .Name }} {{ build `Host` }} {{ x", |e| {
            (e == ".Name").then(|| "vm".to_string())
        });
        assert_eq!(r, "a {{.Path}} vm {{ build `Host` }} {{ x");
    }

    #[test]
    fn unsupported_and_unclosed() {
        assert!(matches!(
            render("{{ user `x` }}", &values()),
            Err(RenderError::Unsupported { offset: 0, .. })
        ));
        assert!(matches!(
            render("{{ . }}", &values()),
            Err(RenderError::Unsupported { .. })
        ));
        assert_eq!(
            render("x{{ .Name", &values()),
            Err(RenderError::Unclosed { offset: 1 })
        );
    }
}
