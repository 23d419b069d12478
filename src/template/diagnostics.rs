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
    /// The location of byte `offset..end` in `text`, the content of `file`. For many locations
    /// in one text, [`SourceText::locate`] does not rescan the text for each.
    pub fn from_offset(file: &Path, text: &str, offset: usize, end: usize) -> Self {
        SourceText::new(file, text).locate(offset, end)
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

/// A file's text with the offset of each line's start, so that locating a byte takes a binary
/// search rather than a count of the newlines before it (which made parsing n attributes cost
/// n²).
pub struct SourceText<'a> {
    file: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceText<'a> {
    /// Indexes `text`, the content of `file`.
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    /// The file the text is of.
    pub fn file(&self) -> &Path {
        self.file
    }

    /// The location of byte `offset..end`.
    pub fn locate(&self, offset: usize, end: usize) -> Location {
        let text = self.text;
        let mut offset = offset.min(text.len());
        // A span never starts inside a character; should one, count from its start.
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line starting at or before `offset`.
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let col = text[line_start..offset].chars().count() + 1;
        let end = end.clamp(offset, text.len());
        let piece = text.get(offset..end).unwrap_or("");
        let len = piece
            .split('\n')
            .next()
            .unwrap_or("")
            .chars()
            .count()
            .max(1);
        Location {
            file: self.file.to_path_buf(),
            line,
            col,
            len,
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

/// The content of `file` as text; invalid UTF-8 is an error at the line and column of the first
/// invalid byte (a template saved as Latin-1 is found at the character to fix).
pub fn utf8_text(file: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    String::from_utf8(bytes).map_err(|e| {
        let valid_up_to = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let byte = bytes.get(valid_up_to).copied().unwrap_or(0);
        // The prefix is valid UTF-8 by definition of `valid_up_to`.
        let valid = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or("");
        let loc = Location::from_offset(file, valid, valid.len(), valid.len());
        Diagnostic::error(
            format!("invalid UTF-8: byte 0x{byte:02x} is not part of a UTF-8 character"),
            Some(loc),
        )
        .with_hint("templates and var-files must be UTF-8 text: re-save the file as UTF-8")
    })
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
            .and_then(|l| std::fs::read(&l.file).ok());
        // Lossy, so that the line of an invalid UTF-8 byte still shows (with U+FFFD for it).
        let text = text.as_deref().map(String::from_utf8_lossy);
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
    fn invalid_utf8_is_located_at_its_first_bad_byte() {
        let bytes = b"a = 1\nb = \"caf\xe9\"\n".to_vec();
        let d = utf8_text(Path::new("t.pkr.hcl"), bytes).unwrap_err();
        let loc = d.location.clone().unwrap();
        assert_eq!((loc.line, loc.col), (2, 9), "{d:?}");
        assert!(d.summary.contains("0xe9"), "{}", d.summary);
        assert_eq!(
            utf8_text(Path::new("t"), "é\n".as_bytes().to_vec()).unwrap(),
            "é\n"
        );
    }

    #[test]
    fn offsets_past_the_end_do_not_panic() {
        let loc = Location::from_offset(Path::new("t"), "ab\ncd", 99, 3);
        assert_eq!((loc.line, loc.col), (2, 3));
    }
}
