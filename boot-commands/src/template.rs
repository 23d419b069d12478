//! Renders the Go-template values a boot command may use (`{{ .HTTPIP }}`, `{{ .HTTPPort }}`,
//! `{{ .Name }}`, `{{ .SSHPublicKey }}`) before parsing. Only `{{ .Field }}` is supported; other
//! template syntax is an error rather than being typed into the guest.

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

/// Replaces every `{{ .Field }}` in `cmd` with `values["Field"]`.
pub fn render(cmd: &str, values: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(cmd.len());
    let mut rest = cmd;
    let mut base = 0;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let offset = base + open;
        let Some(close) = rest[open + 2..].find("}}") else {
            return Err(RenderError::Unclosed { offset });
        };
        let expr = rest[open + 2..open + 2 + close].trim();
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
        out.push_str(value);
        let consumed = open + 2 + close + 2;
        base += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
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
