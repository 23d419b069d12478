//! VMware `.vmx` files, read and edited losslessly. A file is kept as its lines, each with its own
//! text and line ending (`\n`, `\r\n` or none on a last line), so the order and spelling of keys,
//! comments, blank lines, a `#!/usr/bin/vmware` first line, CRLF endings, a UTF-8 byte-order mark
//! and the exact quoting and `|XX` escaping of every value survive: rendering an unedited file
//! gives back its bytes, and an edit rewrites only the line it touches. Each line is parsed with
//! `nom` as blank, a comment (`#` first, after optional blanks) or `key = value`, where the value
//! is `"quoted"` or a bare word and may be followed by a comment.
//!
//! Keys are compared ASCII-case-insensitively (VMware reads `memsize` and `memSize` alike).
//! Values are decoded from VMware's `|XX` escapes (two hex digits, either case, one byte each, so
//! `|C3|A9` is `é`; a `|` not followed by two hex digits stays as it is) and encoded with upper-case
//! escapes for `"`, `|` and the ASCII control characters (a newline is `|0A`); everything else,
//! `#` and non-ASCII text included, is written as it is, as VMware writes UTF-8 files.
//!
//! Duplicate keys: VMware's own readers disagree (Packer's keeps the last, virt-v2v the first,
//! libvirt refuses the file), and no VMware documentation says which the hypervisor uses. Here the
//! **last** line of a key wins, as with Packer and as in any reader that fills a map line by line:
//! [`Vmx::get`] returns the last line's value and [`Vmx::set`] rewrites the last line, leaving the
//! earlier ones as they are (so the file still reads as the value set, and nothing else moves);
//! [`Vmx::remove`] removes them all. [`Vmx::keys`] lists every key line, duplicates included.
//!
//! Text only: a file in another `.encoding` than UTF-8 must be decoded by the caller first.

use std::fmt;

use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, space0};
use nom::combinator::{opt, recognize, rest};
use nom::sequence::delimited;
use nom::{IResult, Offset, Parser};

/// A `.vmx` file as its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vmx {
    /// The file started with a UTF-8 byte-order mark (kept out of the first line's key).
    bom: bool,
    lines: Vec<Line>,
}

/// What cannot be read as a `.vmx` file, or cannot be written into one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VmxError {
    /// A line that is neither blank, a comment nor `key = value`.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based.
        line: usize,
        reason: &'static str,
    },
    /// A key that would not read back as one key: empty, or with blanks, `=`, `"`, `#` or a
    /// control character in it.
    #[error("{key:?} is not a valid .vmx key")]
    InvalidKey { key: String },
}

/// One line: its text without the line ending, the ending, and where the key and value are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    text: String,
    ending: Ending,
    entry: Option<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The last line of a file that does not end with a newline.
    None,
    Lf,
    CrLf,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::None => "",
            Ending::Lf => "\n",
            Ending::CrLf => "\r\n",
        }
    }
}

/// Byte ranges in a key line's text: the key, and the value token (with its quotes if quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
    quoted: bool,
}

impl Line {
    fn key(&self) -> Option<&str> {
        self.entry
            .as_ref()
            .and_then(|e| self.text.get(e.key.clone()))
    }

    /// The value as written, without quotes and not decoded.
    fn raw_value(&self) -> Option<&str> {
        let e = self.entry.as_ref()?;
        let token = self.text.get(e.value.clone())?;
        Some(if e.quoted {
            token.get(1..token.len().saturating_sub(1)).unwrap_or("")
        } else {
            token
        })
    }

    fn has_key(&self, key: &str) -> bool {
        self.key().is_some_and(|k| k.eq_ignore_ascii_case(key))
    }
}

const BOM: char = '\u{feff}';

/// What a key may hold: it runs up to blanks or `=`, and a `"` or `#` in it would read ambiguously.
fn is_key_char(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || matches!(c, '=' | '"' | '#'))
}

type Res<'a, T> = IResult<&'a str, T>;

/// `"…"`: anything but a quote inside (VMware writes a quote as `|22`).
fn quoted(input: &str) -> Res<'_, &str> {
    delimited(char('"'), take_while(|c| c != '"'), char('"')).parse(input)
}

/// A bare value (`key = TRUE`), as hand-written files have; may be empty (`key =`).
fn bare(input: &str) -> Res<'_, &str> {
    take_while(|c: char| !(c == ' ' || c == '\t' || c == '"' || c == '#')).parse(input)
}

/// After the value: blanks, then an optional comment, then the end of the line.
fn tail(input: &str) -> Res<'_, Option<&str>> {
    let (input, _) = space0(input)?;
    opt((char('#'), rest).map(|(_, c)| c)).parse(input)
}

/// Parses one line's text (without its ending) into its entry, if it is a key line.
fn parse_line(text: &str) -> Result<Option<Entry>, &'static str> {
    type Failed<'a> = nom::Err<nom::error::Error<&'a str>>;
    let body = text.trim_start_matches([' ', '\t']);
    if body.is_empty() || body.starts_with('#') {
        return Ok(None);
    }
    let (after_key, key) = take_while1(is_key_char)
        .parse(body)
        .map_err(|_: Failed| "expected a key")?;
    let (after_eq, _) = (space0, char('='), space0)
        .parse(after_key)
        .map_err(|_: Failed| "expected `=` after the key")?;
    let (after_value, value, is_quoted) = if after_eq.starts_with('"') {
        let (r, v) = recognize(quoted)
            .parse(after_eq)
            .map_err(|_| "the quoted value is not closed")?;
        (r, v, true)
    } else {
        let (r, v) = bare(after_eq).map_err(|_| "expected a value")?;
        (r, v, false)
    };
    let (left, _) = tail(after_value).map_err(|_| "unreadable")?;
    if !left.is_empty() {
        return Err("unexpected text after the value");
    }
    let key_start = text.offset(key);
    let value_start = text.offset(value);
    Ok(Some(Entry {
        key: key_start..key_start + key.len(),
        value: value_start..value_start + value.len(),
        quoted: is_quoted,
    }))
}

/// Decodes VMware's `|XX` escapes (see the module notes).
pub fn decode_value(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|d| (*d as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'|', Some(hi), Some(lo)) => {
                // Two hex digits are at most 0xFF.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Escaped bytes may not form UTF-8; VMware would not write such a value.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Encodes a value for the inside of quotes: `"`, `|` and ASCII control characters as `|XX`.
pub fn encode_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '"' || c == '|' || c.is_ascii_control() {
            out.push_str(&format!("|{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `key` reads back as one key (what [`Vmx::try_set`] accepts).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(is_key_char)
}

impl Vmx {
    /// Reads a file; any line that is not blank, a comment or `key = value` is an error naming
    /// its (1-based) line number.
    pub fn parse(text: &str) -> Result<Vmx, VmxError> {
        let (bom, body) = match text.strip_prefix(BOM) {
            Some(b) => (true, b),
            None => (false, text),
        };
        let mut lines = Vec::new();
        for (n, piece) in body.split_inclusive('\n').enumerate() {
            let (text, ending) = if let Some(t) = piece.strip_suffix("\r\n") {
                (t, Ending::CrLf)
            } else if let Some(t) = piece.strip_suffix('\n') {
                (t, Ending::Lf)
            } else {
                (piece, Ending::None)
            };
            let entry = parse_line(text).map_err(|reason| VmxError::Syntax {
                line: n + 1,
                reason,
            })?;
            lines.push(Line {
                text: text.to_owned(),
                ending,
                entry,
            });
        }
        Ok(Vmx { bom, lines })
    }

    /// An empty file, starting with `.encoding = "UTF-8"` as VMware writes it.
    pub fn new() -> Vmx {
        let mut vmx = Vmx {
            bom: false,
            lines: Vec::new(),
        };
        vmx.set(".encoding", "UTF-8");
        vmx
    }

    /// The decoded value of `key` (any case); the last line's if the key is there more than once.
    pub fn get(&self, key: &str) -> Option<String> {
        self.last_index(key)
            .and_then(|i| self.lines.get(i))
            .and_then(Line::raw_value)
            .map(decode_value)
    }

    /// Sets `key` to `value` (encoded): rewrites the value on the key's last line, keeping the
    /// key's spelling and the rest of that line, or appends `key = "value"` with the file's line
    /// ending. A key that [`is_valid_key`] refuses is not written (logged); [`Vmx::try_set`] says
    /// so instead.
    pub fn set(&mut self, key: &str, value: &str) {
        if let Err(e) = self.try_set(key, value) {
            tracing::warn!("vmx: {e}; not set");
        }
    }

    /// [`Vmx::set`], or an error for an invalid key.
    pub fn try_set(&mut self, key: &str, value: &str) -> Result<(), VmxError> {
        if !is_valid_key(key) {
            return Err(VmxError::InvalidKey {
                key: key.to_owned(),
            });
        }
        let token = format!("\"{}\"", encode_value(value));
        if let Some(line) = self.last_index(key).and_then(|i| self.lines.get_mut(i)) {
            if let Some(e) = line.entry.as_mut() {
                line.text.replace_range(e.value.clone(), &token);
                e.value = e.value.start..e.value.start + token.len();
                e.quoted = true;
            }
            return Ok(());
        }
        let ending = self.ending();
        if let Some(last) = self.lines.last_mut() {
            if last.ending == Ending::None {
                last.ending = ending;
            }
        }
        let text = format!("{key} = {token}");
        let entry = Entry {
            key: 0..key.len(),
            value: key.len() + 3..text.len(),
            quoted: true,
        };
        self.lines.push(Line {
            text,
            ending,
            entry: Some(entry),
        });
        Ok(())
    }

    /// Removes every line of `key` (any case); whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.remove_matching(|k| k.eq_ignore_ascii_case(key)) > 0
    }

    /// Removes every key line whose key (as spelt) `pred` accepts; how many lines went.
    pub fn remove_matching(&mut self, pred: impl Fn(&str) -> bool) -> usize {
        let before = self.lines.len();
        self.lines.retain(|l| !l.key().is_some_and(&pred));
        before - self.lines.len()
    }

    /// The keys of all key lines in file order, as spelt (a duplicate key is listed each time).
    pub fn keys(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(Line::key)
            .map(str::to_owned)
            .collect()
    }

    /// The file's text: the same bytes as parsed, but for the lines edited.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(
            self.lines.iter().map(|l| l.text.len() + 2).sum::<usize>() + BOM.len_utf8(),
        );
        if self.bom {
            out.push(BOM);
        }
        for line in &self.lines {
            out.push_str(&line.text);
            out.push_str(line.ending.as_str());
        }
        out
    }

    fn last_index(&self, key: &str) -> Option<usize> {
        self.lines.iter().rposition(|l| l.has_key(key))
    }

    /// The file's line ending for new lines: its first line's, `\n` for an empty file.
    fn ending(&self) -> Ending {
        self.lines
            .iter()
            .map(|l| l.ending)
            .find(|e| *e != Ending::None)
            .unwrap_or(Ending::Lf)
    }
}

impl Default for Vmx {
    fn default() -> Self {
        Vmx::new()
    }
}

impl fmt::Display for Vmx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "#!/usr/bin/vmware\r\n.encoding = \"UTF-8\"\r\n\r\n# hardware\r\nmemSize = \"512\"  # MB\r\n  displayName=\"a |22b|22 #1\"\r\nbare = TRUE\r\nempty =\r\nmemsize = \"1024\"";

    #[test]
    fn an_unedited_file_renders_byte_for_byte() {
        let vmx = Vmx::parse(SAMPLE).unwrap();
        assert_eq!(vmx.render(), SAMPLE);
        assert_eq!(vmx.to_string(), SAMPLE);
        let bom = format!("\u{feff}{SAMPLE}\r\n");
        let vmx = Vmx::parse(&bom).unwrap();
        assert_eq!(vmx.render(), bom);
        assert_eq!(vmx.get(".encoding").as_deref(), Some("UTF-8"));
        assert_eq!(Vmx::parse("").unwrap().render(), "");
    }

    #[test]
    fn escapes_decode_in_either_case_and_encode_in_upper_case() {
        assert_eq!(decode_value("|22a|22 |7C|7c |0A|0a"), "\"a\" || \n\n");
        assert_eq!(decode_value("|C3|A9t|c3|a9"), "été");
        // Not escapes: a bare bar, one hex digit, a non-hex pair, a bar at the end.
        assert_eq!(decode_value("a|b |4 |zz |"), "a|b |4 |zz |");
        assert_eq!(decode_value("|FF"), "\u{fffd}");
        assert_eq!(encode_value("a\"b|c\nd\te#f é"), "a|22b|7Cc|0Ad|09e#f é");
        let vmx = Vmx::parse("annotation = \"x|0Ay|7C|22\"\n").unwrap();
        assert_eq!(vmx.get("annotation").as_deref(), Some("x\ny|\""));
    }

    #[test]
    fn lookup_ignores_case_and_the_last_duplicate_wins() {
        let vmx = Vmx::parse(SAMPLE).unwrap();
        assert_eq!(vmx.get("MEMSIZE").as_deref(), Some("1024"));
        assert_eq!(vmx.get("displayname").as_deref(), Some("a \"b\" #1"));
        assert_eq!(vmx.get("bare").as_deref(), Some("TRUE"));
        assert_eq!(vmx.get("empty").as_deref(), Some(""));
        assert_eq!(vmx.get("absent"), None);
        assert_eq!(
            vmx.keys(),
            [
                ".encoding",
                "memSize",
                "displayName",
                "bare",
                "empty",
                "memsize"
            ]
        );
    }

    /// The lines of `after` that differ from `before`'s, which must have as many lines.
    fn changed_lines(before: &str, after: &str) -> Vec<(String, String)> {
        let (b, a): (Vec<_>, Vec<_>) = (
            before.split_inclusive('\n').collect(),
            after.split_inclusive('\n').collect(),
        );
        assert_eq!(b.len(), a.len(), "{after:?}");
        b.iter()
            .zip(&a)
            .filter(|(x, y)| x != y)
            .map(|(x, y)| (x.to_string(), y.to_string()))
            .collect()
    }

    #[test]
    fn set_rewrites_only_the_value_of_the_last_line_of_the_key() {
        let mut vmx = Vmx::parse(SAMPLE).unwrap();
        vmx.set("MemSize", "2048");
        assert_eq!(
            changed_lines(SAMPLE, &vmx.render()),
            [(
                "memsize = \"1024\"".to_string(),
                "memsize = \"2048\"".to_string()
            )]
        );
        let mut vmx = Vmx::parse("MemSize = \"512\"  # MB\r\nbare = TRUE\r\n").unwrap();
        vmx.set("memsize", "a\"b");
        vmx.set("BARE", "FALSE");
        assert_eq!(
            vmx.render(),
            "MemSize = \"a|22b\"  # MB\r\nbare = \"FALSE\"\r\n"
        );
        assert_eq!(vmx.get("memsize").as_deref(), Some("a\"b"));
    }

    #[test]
    fn set_appends_with_the_files_line_ending() {
        let mut vmx = Vmx::parse("a = \"1\"\r\nb = \"2\"").unwrap();
        vmx.set("c", "x\ny");
        assert_eq!(vmx.render(), "a = \"1\"\r\nb = \"2\"\r\nc = \"x|0Ay\"\r\n");
        let mut vmx = Vmx::parse("a = \"1\"\n").unwrap();
        vmx.set("b", "2");
        assert_eq!(vmx.render(), "a = \"1\"\nb = \"2\"\n");
        assert_eq!(Vmx::parse(&vmx.render()).unwrap(), vmx);
    }

    #[test]
    fn new_starts_with_the_encoding() {
        let mut vmx = Vmx::new();
        assert_eq!(vmx.render(), ".encoding = \"UTF-8\"\n");
        vmx.set("memsize", "512");
        assert_eq!(vmx.render(), ".encoding = \"UTF-8\"\nmemsize = \"512\"\n");
        assert_eq!(Vmx::default(), Vmx::new());
    }

    #[test]
    fn remove_takes_every_line_of_the_key() {
        let mut vmx = Vmx::parse(SAMPLE).unwrap();
        assert!(vmx.remove("MEMSIZE"));
        assert!(!vmx.remove("memsize"));
        assert_eq!(vmx.get("memsize"), None);
        assert_eq!(
            vmx.render(),
            "#!/usr/bin/vmware\r\n.encoding = \"UTF-8\"\r\n\r\n# hardware\r\n  displayName=\"a |22b|22 #1\"\r\nbare = TRUE\r\nempty =\r\n"
        );
        let mut vmx = Vmx::parse("ethernet0.present = \"TRUE\"\nEthernet1.x = \"1\"\nscsi0.present = \"TRUE\"\n# ethernet2.present = \"TRUE\"\n").unwrap();
        let removed = vmx.remove_matching(|k| k.to_ascii_lowercase().starts_with("ethernet"));
        assert_eq!(removed, 2);
        assert_eq!(
            vmx.render(),
            "scsi0.present = \"TRUE\"\n# ethernet2.present = \"TRUE\"\n"
        );
    }

    #[test]
    fn what_is_not_a_vmx_line_is_an_error_naming_the_line() {
        let cases = [
            (
                "a = \"1\"\n\nnot a vmx line\n",
                3,
                "expected `=` after the key",
            ),
            ("a = \"1\nb = \"2\"\n", 1, "the quoted value is not closed"),
            (
                "a = \"1\"\r\nb = \"2\" c\r\n",
                2,
                "unexpected text after the value",
            ),
            ("= \"1\"\n", 1, "expected a key"),
            (
                "a = \"1\"\nb = \"2\"\r",
                2,
                "unexpected text after the value",
            ),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                Vmx::parse(text),
                Err(VmxError::Syntax { line, reason }),
                "{text:?}"
            );
        }
        let e = Vmx::parse("x\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: expected `=` after the key");
    }

    #[test]
    fn invalid_keys_are_refused_and_leave_the_file_alone() {
        let mut vmx = Vmx::new();
        for key in ["", "a b", "a=b", "a\"", "a#", "a\nb"] {
            assert_eq!(
                vmx.try_set(key, "1"),
                Err(VmxError::InvalidKey { key: key.into() })
            );
            vmx.set(key, "1");
        }
        assert_eq!(vmx, Vmx::new());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_renders_back(text in "(?s).{0,300}") {
            if let Ok(vmx) = Vmx::parse(&text) {
                prop_assert_eq!(vmx.render(), text.clone());
                prop_assert_eq!(Vmx::parse(&text).ok(), Some(vmx));
            }
        }

        #[test]
        fn vmx_like_text_round_trips(
            lines in proptest::collection::vec(
                "[ \t]{0,2}([A-Za-z.:_0-9]{1,8}[ \t]*=[ \t]*(\"[^\"\r\n]{0,10}\"|[A-Z]{0,4})[ \t]*(#.{0,5})?|#[^\r\n]{0,8}|)",
                0..8,
            ),
            crlf in any::<bool>(),
        ) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let vmx = Vmx::parse(&text);
            prop_assert!(vmx.is_ok(), "{:?}: {:?}", text, vmx);
            prop_assert_eq!(vmx.map(|v| v.render()).ok(), Some(text));
        }

        #[test]
        fn any_value_set_reads_back(value in "(?s).{0,40}", key in "[A-Za-z.:_0-9]{1,8}") {
            prop_assert_eq!(decode_value(&encode_value(&value)), value.clone());
            let mut vmx = Vmx::parse("a = \"1\"\r\n").unwrap();
            vmx.set(&key, &value);
            let again = Vmx::parse(&vmx.render()).unwrap();
            prop_assert_eq!(again.get(&key), Some(value));
        }
    }
}
