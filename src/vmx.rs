//! TEMPORARY stand-in, replaced by the real library at merge
//!
//! A minimal `.vmx` model: one `key = "value"` per line, other lines kept as they are.
//! Lookup is case-insensitive; values are stored encoded (`|22` for `"`, `|7C` for `|`, `|0A`
//! for a newline) and decoded by [`Vmx::get`].

/// Why a `.vmx` text could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VmxError {
    /// A line that is neither blank, a comment, nor `key = "value"`.
    #[error("line {line}: not a `key = \"value\"` line: {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Entry { key: String, value: String },
    Other(String),
}

/// A `.vmx` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vmx {
    lines: Vec<Line>,
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '|' => out.push_str("|7C"),
            '"' => out.push_str("|22"),
            '\n' => out.push_str("|0A"),
            c => out.push(c),
        }
    }
    out
}

fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('|') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 3..];
            }
            None => {
                out.push('|');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Vmx {
    /// Reads `text`.
    pub fn parse(text: &str) -> Result<Vmx, VmxError> {
        let mut lines = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
                lines.push(Line::Other(raw.to_owned()));
                continue;
            }
            let (key, value) = t.split_once('=').ok_or_else(|| VmxError::Syntax {
                line: n + 1,
                text: raw.to_owned(),
            })?;
            lines.push(Line::Entry {
                key: key.trim().to_owned(),
                value: value.trim().trim_matches('"').to_owned(),
            });
        }
        Ok(Vmx { lines })
    }

    /// An empty file.
    pub fn new() -> Vmx {
        Vmx::default()
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .rposition(|l| matches!(l, Line::Entry { key: k, .. } if k.eq_ignore_ascii_case(key)))
    }

    /// The decoded value of `key`, compared case-insensitively.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.lines.get(self.find(key)?) {
            Some(Line::Entry { value, .. }) => Some(decode(value)),
            _ => None,
        }
    }

    /// Sets `key` in place, or appends it.
    pub fn set(&mut self, key: &str, value: &str) {
        let value = encode(value);
        match self.find(key).and_then(|i| self.lines.get_mut(i)) {
            Some(Line::Entry { value: v, .. }) => *v = value,
            _ => self.lines.push(Line::Entry {
                key: key.to_owned(),
                value,
            }),
        }
    }

    /// Removes every line of `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.remove_matching(|k| k.eq_ignore_ascii_case(key)) > 0
    }

    /// Removes every entry whose key `pred` accepts; how many.
    pub fn remove_matching(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Entry { key, .. } if pred(key)));
        before - self.lines.len()
    }

    /// The keys, in file order.
    pub fn keys(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { key, .. } => Some(key.clone()),
                Line::Other(_) => None,
            })
            .collect()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Entry { key, value } => out.push_str(&format!("{key} = \"{value}\"\n")),
                Line::Other(t) => out.push_str(&format!("{t}\n")),
            }
        }
        out
    }
}
