//! `decode`: turn an evaluated template body (a JSON object) into a typed config struct, with
//! errors that name the attribute, point at it in the template and suggest the nearest known
//! option for a misspelling.

pub use crate::template::diagnostics::suggest;
use crate::template::diagnostics::{Diagnostic, SpanTable};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Decode `value` (an object of option name to value) into `T`, reporting problems at the
/// locations in `spans`.
///
/// `T` must accept every option on its own (`#[serde(default)]`), which lets a type error be
/// pinned to the attribute that causes it, and must serialize all its option names from
/// `T::default()`, which gives the "did you mean" candidates.
pub fn decode<T>(value: &Value, spans: &SpanTable) -> Result<T, Diagnostic>
where
    T: DeserializeOwned + Serialize + Default,
{
    let err = match serde_json::from_value::<T>(value.clone()) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    if let Some(name) = unknown_field(&err) {
        let mut d = Diagnostic::error(
            format!("unknown option \"{name}\" in {}", spans.what),
            spans.locate(name),
        );
        let hint = match suggest(name, &option_names::<T>()) {
            Some(s) => format!("did you mean \"{s}\"? Remove or rename the option"),
            None => "remove the option; see the builder's documentation for the options it accepts"
                .to_owned(),
        };
        d = d.with_hint(hint);
        return Err(d);
    }
    // Find the attribute that fails on its own.
    if let Value::Object(map) = value {
        for (key, v) in map {
            let single = Value::Object([(key.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<T>(single) {
                return Err(Diagnostic::error(
                    format!(
                        "invalid value for \"{key}\" in {}: {}",
                        spans.what,
                        clean(&e.to_string())
                    ),
                    spans.locate(key),
                )
                .with_hint(format!(
                    "change the value of \"{key}\" to the type it expects"
                )));
            }
        }
    }
    Err(Diagnostic::error(
        format!("invalid {}: {}", spans.what, clean(&err)),
        spans.block.clone(),
    ))
}

/// The option names `T` knows, read from its serialized default.
pub(crate) fn option_names<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// serde_json appends " at line 0 column 0" to some messages about `Value`s; drop it.
fn clean(msg: &str) -> String {
    msg.split(" at line ").next().unwrap_or(msg).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::qemu::QemuConfig;
    use crate::template::diagnostics::Location;
    use serde_json::json;
    use std::path::Path;

    fn spans() -> SpanTable {
        let mut t = SpanTable {
            what: "source \"qemu.vm\"".into(),
            ..SpanTable::default()
        };
        t.attrs.insert(
            "memory".into(),
            Location {
                file: "a.pkr.hcl".into(),
                line: 3,
                col: 3,
                len: 6,
            },
        );
        t.attrs.insert(
            "iso_ulr".into(),
            Location {
                file: "a.pkr.hcl".into(),
                line: 4,
                col: 3,
                len: 7,
            },
        );
        t
    }

    #[test]
    fn unknown_option_suggests_the_nearest() {
        let e = decode::<QemuConfig>(&json!({"iso_ulr": "x"}), &spans()).unwrap_err();
        assert_eq!(
            e.summary,
            "unknown option \"iso_ulr\" in source \"qemu.vm\""
        );
        assert_eq!(e.location.unwrap().line, 4);
        assert_eq!(
            e.hint.unwrap(),
            "did you mean \"iso_url\"? Remove or rename the option"
        );
    }

    #[test]
    fn type_error_names_the_attribute() {
        let e =
            decode::<QemuConfig>(&json!({"iso_url": "x", "memory": "lots"}), &spans()).unwrap_err();
        assert_eq!(e.summary, "invalid value for \"memory\" in source \"qemu.vm\": invalid type: string \"lots\", expected an integer");
        assert_eq!(e.location.unwrap().line, 3);
        let _ = Path::new("");
    }
}
