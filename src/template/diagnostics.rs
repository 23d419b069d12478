//! Template diagnostics: an error or warning with the file, line and column it is about, the
//! source line with a caret under the culprit, and a `hint:` saying what to do. Rendering is plain
//! text (no colour), so it reads the same in a terminal, a log file or a CI job.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a template file (1-based line and column, length in characters for the caret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given on the command line or found in the template directory.
    pub file: PathBuf,
    /// 1-based line; 0 when only the file is known (legacy JSON converted without spans).
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// How many characters to underline (at least 1).
    pub len: usize,
}

impl Location {
    /// The location of byte `offset..end` in `text`, the content of `file`.
    pub fn from_offset(file: &Path, text: &str, offset: usize, end: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        let end = end.clamp(offset, text.len());
        let piece = text.get(offset..end).unwrap_or("");
        let len = piece
            .split('\n')
            .next()
            .unwrap_or("")
            .chars()
            .count()
            .max(1);
        Self {
            file: file.to_path_buf(),
            line,
            col,
            len,
        }
    }

    /// A location naming only a file.
    pub fn file_only(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            len: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

/// Whether a diagnostic stops the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The template cannot be used.
    Error,
    /// Worth knowing; the command goes on.
    Warning,
}

/// One problem found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// One line saying what is wrong.
    pub summary: String,
    /// Where, when known.
    pub location: Option<Location>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(summary: impl Into<String>, location: Option<Location>) -> Self {
        Self {
            severity: Severity::Error,
            summary: summary.into(),
            location,
            hint: None,
        }
    }

    /// A warning at `location`.
    pub fn warning(summary: impl Into<String>, location: Option<Location>) -> Self {
        Self {
            severity: Severity::Warning,
            summary: summary.into(),
            location,
            hint: None,
        }
    }

    /// The same diagnostic with a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Render with the source line read from `location.file` (omitted if it cannot be read).
    pub fn render(&self) -> String {
        let text = self
            .location
            .as_ref()
            .filter(|l| l.line > 0)
            .and_then(|l| std::fs::read_to_string(&l.file).ok());
        self.render_with(text.as_deref())
    }

    /// Render with `source` as the content of the located file.
    pub fn render_with(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let word = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{word}: {}\n", self.summary));
        if let Some(loc) = &self.location {
            out.push_str(&format!("  --> {loc}\n"));
            let line = source.and_then(|s| s.lines().nth(loc.line.saturating_sub(1)));
            if let (Some(line), true) = (line, loc.line > 0) {
                let num = loc.line.to_string();
                let pad = " ".repeat(num.len());
                let line = line.replace('\t', " ");
                let caret_pad: String = " ".repeat(loc.col.saturating_sub(1));
                out.push_str(&format!(
                    "{pad} |\n{num} | {line}\n{pad} | {caret_pad}{}\n",
                    "^".repeat(loc.len.max(1))
                ));
            }
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  hint: {hint}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostic {}

/// Where each attribute of an evaluated body came from, so that an error found later while
/// decoding `config.foo` can point at `foo = …` in the template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanTable {
    /// What the body is, for messages: `source "qemu.vm"`, `provisioner "shell"`.
    pub what: String,
    /// The block's own location.
    pub block: Option<Location>,
    /// Attribute or nested block name (dotted for nested blocks: `qemu_img_args.create`) to the
    /// location of its name.
    pub attrs: BTreeMap<String, Location>,
}

impl SpanTable {
    /// The location of `key`, falling back to the block.
    pub fn locate(&self, key: &str) -> Option<Location> {
        self.attrs.get(key).cloned().or_else(|| self.block.clone())
    }
}

/// The closest candidate to `name`, if close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_source_line_and_caret() {
        let text = "source \"qemu\" \"x\" {\n  iso_ulr = \"a\"\n}\n";
        let loc = Location::from_offset(Path::new("t.pkr.hcl"), text, 22, 29);
        assert_eq!((loc.line, loc.col, loc.len), (2, 3, 7));
        let d = Diagnostic::error("unknown option \"iso_ulr\"", Some(loc))
            .with_hint("did you mean \"iso_url\"?");
        assert_eq!(
            d.render_with(Some(text)),
            "error: unknown option \"iso_ulr\"\n  --> t.pkr.hcl:2:3\n  |\n2 |   iso_ulr = \"a\"\n  |   ^^^^^^^\n  hint: did you mean \"iso_url\"?\n"
        );
    }

    #[test]
    fn offsets_past_the_end_do_not_panic() {
        let loc = Location::from_offset(Path::new("t"), "ab\ncd", 99, 3);
        assert_eq!((loc.line, loc.col), (2, 3));
    }
}
