//! The boot_command grammar: turns a rendered command string into [`Action`]s. Pure: no I/O, no
//! clock. Follows Packer's grammar (special keys, `On`/`Off` holds, `<wait…>`), types unknown
//! `<tags>` literally with a [`Warning`] as Packer does, and adds kiln's `<waitFor "text" [timeout]>`.

use std::time::Duration;

use crate::keys::{special_key, SpecialKey};

/// A key as the boot command names it: a special key or a character of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `<enter>`, `<leftCtrl>`…
    Special(SpecialKey),
    /// A literal character, typed with the layout's key (and Shift when the layout says so).
    Char(char),
}

/// What to do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Press and release.
    Tap,
    /// Press and hold (`<xOn>`).
    Down,
    /// Release (`<xOff>`).
    Up,
}

/// One step of a boot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Press, hold or release a key.
    Key {
        /// Which key.
        key: Key,
        /// Tap, hold or release.
        press: Press,
    },
    /// `<wait>`, `<wait5>`, `<wait1m30s>`.
    Wait(Duration),
    /// kiln extension: wait until `text` appears on the guest's serial console.
    WaitFor {
        /// The text to wait for (exact bytes, UTF-8).
        text: String,
        /// How long to wait; `None` means [`DEFAULT_WAIT_FOR_TIMEOUT`].
        timeout: Option<Duration>,
    },
}

/// How long `<waitFor "text">` waits when no timeout is given.
pub const DEFAULT_WAIT_FOR_TIMEOUT: Duration = Duration::from_secs(300);

/// Where in the command something is: byte offset, and 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset into the command string.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Position {
    fn at(input: &str, offset: usize) -> Self {
        let before = &input[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position {
            offset,
            line,
            column,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Something legal but probably unintended, such as an unknown `<tag>` typed literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where the tag starts.
    pub position: Position,
    /// What happened and what to do.
    pub message: String,
}

/// A boot command that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot_command at {position}: {kind}")]
pub struct ParseError {
    /// Where the problem starts.
    pub position: Position,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with a boot command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// `<waitX>` where X is not a duration.
    #[error("`{0}` is not a duration; write <wait>, <wait10> (seconds) or a duration such as <wait1m30s>")]
    BadDuration(String),
    /// A zero or negative wait.
    #[error("wait duration `{0}` must be positive")]
    NonPositiveDuration(String),
    /// A malformed `<waitFor …>`.
    #[error("malformed <waitFor>: {0}; write <waitFor \"text\"> or <waitFor \"text\" 2m>")]
    BadWaitFor(&'static str),
}

/// A parsed boot command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The actions, in order.
    pub actions: Vec<Action>,
    /// Warnings for the caller to show.
    pub warnings: Vec<Warning>,
}

/// Parses a rendered boot command (the template strings already joined and rendered).
pub fn parse(input: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let mut i = 0;
    while let Some(c) = input[i..].chars().next() {
        if c == '<' {
            if let Some(len) = parse_tag(input, i, &mut out)? {
                i += len;
                continue;
            }
        }
        out.actions.push(Action::Key {
            key: Key::Char(c),
            press: Press::Tap,
        });
        i += c.len_utf8();
    }
    Ok(out)
}

/// Parses the tag starting at `start` (a `<`). Returns its length in bytes, or `None` when the `<`
/// does not start a tag and is typed as a character.
fn parse_tag(input: &str, start: usize, out: &mut Parsed) -> Result<Option<usize>, ParseError> {
    let rest = &input[start + 1..];
    if starts_with_ignore_case(rest, "waitfor") {
        let after = &rest["waitfor".len()..];
        if after.starts_with('>') {
            return Err(ParseError {
                position: Position::at(input, start),
                kind: ParseErrorKind::BadWaitFor("the text is missing"),
            });
        }
        if after.starts_with([' ', '"']) {
            let (action, len) = parse_wait_for(input, start + 1 + "waitfor".len())?;
            out.actions.push(action);
            return Ok(Some(len + 1 + "waitfor".len()));
        }
    }
    if let Some(len) = parse_wait(input, start, out)? {
        return Ok(Some(len));
    }
    // A tag body is a single character (for `<xOn>`), or ASCII letters and digits.
    let Some(first) = rest.chars().next() else {
        return Ok(None);
    };
    let body_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (body, close) = if rest[body_len..].starts_with('>') && body_len > 0 {
        (&rest[..body_len], body_len)
    } else {
        // `<%On>`: a single non-alphanumeric character followed by On/Off.
        let n = first.len_utf8();
        let tail = &rest[n..];
        let suffix_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        if !tail[suffix_len..].starts_with('>') {
            return Ok(None);
        }
        (&rest[..n + suffix_len], n + suffix_len)
    };
    let len = close + 2;
    let lower = body.to_ascii_lowercase();

    if let Some(key) = special_key(body) {
        out.actions.push(Action::Key {
            key: Key::Special(key),
            press: Press::Tap,
        });
        return Ok(Some(len));
    }
    for (suffix, press) in [("on", Press::Down), ("off", Press::Up)] {
        if let Some(name) = lower.strip_suffix(suffix) {
            let name = &body[..name.len()];
            if let Some(key) = special_key(name) {
                out.actions.push(Action::Key {
                    key: Key::Special(key),
                    press,
                });
                return Ok(Some(len));
            }
            let mut chars = name.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                out.actions.push(Action::Key {
                    key: Key::Char(c),
                    press,
                });
                return Ok(Some(len));
            }
        }
    }
    // `<=>` or `<->` is plainly text; only name-like tags are probably misspelt keys.
    if !body.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let tag = &input[start..start + len];
    out.warnings.push(Warning {
        position: Position::at(input, start),
        message: format!(
            "unknown key `{tag}` is typed literally, as Packer does; check its spelling"
        ),
    });
    Ok(None)
}

/// Parses `<wait>` and `<waitDURATION>` at `start`. `<waitress>` and the like are not waits.
fn parse_wait(input: &str, start: usize, out: &mut Parsed) -> Result<Option<usize>, ParseError> {
    let rest = &input[start + 1..];
    if !starts_with_ignore_case(rest, "wait") {
        return Ok(None);
    }
    let spec_from = start + 1 + "wait".len();
    let tail = &input[spec_from..];
    let spec_len = tail
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | 'µ' | 'μ')))
        .unwrap_or(tail.len());
    let spec = &tail[..spec_len];
    if !tail[spec_len..].starts_with('>') {
        return Ok(None);
    }
    let len = spec_from + spec_len + 1 - start;
    if spec.is_empty() {
        out.actions.push(Action::Wait(Duration::from_secs(1)));
        return Ok(Some(len));
    }
    if !spec.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | '+' | '-')) {
        return Ok(None);
    }
    let error = |kind| ParseError {
        position: Position::at(input, spec_from),
        kind,
    };
    let negative = spec
        .strip_prefix('-')
        .is_some_and(|s| parse_duration(s).is_some());
    match parse_duration(spec) {
        _ if negative => Err(error(ParseErrorKind::NonPositiveDuration(spec.into()))),
        // Not a duration Packer's grammar knows, so not a wait: the caller types it as it
        // is, with its unknown-tag warning.
        None => Ok(None),
        Some(d) if d.is_zero() => Err(error(ParseErrorKind::NonPositiveDuration(spec.into()))),
        Some(d) => {
            out.actions.push(Action::Wait(d));
            Ok(Some(len))
        }
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Parses `<waitFor "text" [duration]>` from just after `waitFor`. Inside the quotes `\"` is a quote
/// and `\\` a backslash. Returns the action and the length consumed up to and including `>`.
fn parse_wait_for(input: &str, from: usize) -> Result<(Action, usize), ParseError> {
    let error = |offset: usize, what| ParseError {
        position: Position::at(input, offset),
        kind: ParseErrorKind::BadWaitFor(what),
    };
    let rest = &input[from..];
    let open = rest.len() - rest.trim_start_matches(' ').len();
    if !rest[open..].starts_with('"') {
        return Err(error(from + open, "the text must be in double quotes"));
    }
    let mut text = String::new();
    let mut chars = rest[open + 1..].char_indices();
    let close = loop {
        match chars.next() {
            None => return Err(error(from + open, "the quoted text is not closed")),
            Some((i, '"')) => break open + 1 + i,
            Some((i, '\\')) => match chars.next() {
                Some((_, c @ ('"' | '\\'))) => text.push(c),
                _ => return Err(error(from + open + 1 + i, "only \\\" and \\\\ are escapes")),
            },
            Some((_, c)) => text.push(c),
        }
    };
    if text.is_empty() {
        return Err(error(from + open, "the text is empty"));
    }
    let tail = &rest[close + 1..];
    let Some(end) = tail.find('>') else {
        return Err(error(from + close + 1, "missing `>`"));
    };
    let spec = tail[..end].trim_matches(' ');
    let timeout = if spec.is_empty() {
        None
    } else {
        let at = from + close + 1 + (tail.len() - tail.trim_start_matches(' ').len());
        let kind = match parse_duration(spec) {
            None => ParseErrorKind::BadDuration(spec.into()),
            Some(d) if d.is_zero() => ParseErrorKind::NonPositiveDuration(spec.into()),
            Some(d) => {
                return Ok((
                    Action::WaitFor {
                        text,
                        timeout: Some(d),
                    },
                    close + 1 + end + 1,
                ))
            }
        };
        return Err(ParseError {
            position: Position::at(input, at),
            kind,
        });
    };
    Ok((Action::WaitFor { text, timeout }, close + 1 + end + 1))
}

/// Parses a wait duration as Packer does: a bare number is seconds, otherwise a Go duration
/// (`1m30s`, `1.5h`, `300ms`). Negative or unparsable values give `None`; zero gives `Some(0)`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().map(Duration::from_secs);
    }
    match parse_go_duration(s)? {
        (false, d) => Some(d),
        (true, d) if d.is_zero() => Some(d),
        (true, _) => None,
    }
}

/// Parses a Go duration (`time.ParseDuration`'s grammar: `300ms`, `-1.5h`, `1h30m`, `0`): its
/// sign (true when negative) and magnitude, or `None`. This is kiln's one parser of Go
/// durations; options, template functions and boot command waits all use it.
pub fn parse_go_duration(s: &str) -> Option<(bool, Duration)> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    // Go's durations are i64 nanoseconds: longer ones (about 292 years) are invalid there.
    if total > i64::MAX as f64 / 1e9 {
        return None;
    }
    Duration::try_from_secs_f64(total)
        .ok()
        .map(|d| (negative, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SPECIAL_KEYS;

    fn actions(s: &str) -> Vec<Action> {
        parse(s).unwrap().actions
    }

    fn tap(c: char) -> Action {
        Action::Key {
            key: Key::Char(c),
            press: Press::Tap,
        }
    }

    fn special(name: &str, press: Press) -> Action {
        Action::Key {
            key: Key::Special(special_key(name).unwrap()),
            press,
        }
    }

    #[test]
    fn every_special_key_in_any_case_and_hold_form() {
        for k in SPECIAL_KEYS {
            for name in [
                k.name.to_string(),
                k.name.to_uppercase(),
                k.name.to_lowercase(),
            ] {
                assert_eq!(
                    actions(&format!("<{name}>")),
                    vec![special(k.name, Press::Tap)]
                );
                assert_eq!(
                    actions(&format!("<{name}On>")),
                    vec![special(k.name, Press::Down)]
                );
                assert_eq!(
                    actions(&format!("<{name}OFF>")),
                    vec![special(k.name, Press::Up)]
                );
            }
        }
    }

    #[test]
    fn literal_text_with_shifted_characters() {
        assert_eq!(actions("aB!"), vec![tap('a'), tap('B'), tap('!')]);
    }

    #[test]
    fn modifier_chord() {
        assert_eq!(
            actions("<leftCtrlOn>c<leftCtrlOff>"),
            vec![
                special("leftCtrl", Press::Down),
                tap('c'),
                special("leftCtrl", Press::Up)
            ]
        );
    }

    #[test]
    fn single_character_holds() {
        let hold = |c, press| Action::Key {
            key: Key::Char(c),
            press,
        };
        assert_eq!(actions("<aOn>"), vec![hold('a', Press::Down)]);
        assert_eq!(actions("<AOff>"), vec![hold('A', Press::Up)]);
        assert_eq!(actions("<%on>"), vec![hold('%', Press::Down)]);
        assert_eq!(actions("<1Off>"), vec![hold('1', Press::Up)]);
    }

    #[test]
    fn waits() {
        assert_eq!(
            actions("<wait>"),
            vec![Action::Wait(Duration::from_secs(1))]
        );
        assert_eq!(
            actions("<WAIT10>"),
            vec![Action::Wait(Duration::from_secs(10))]
        );
        assert_eq!(
            actions("<wait1m30s>"),
            vec![Action::Wait(Duration::from_secs(90))]
        );
        assert_eq!(
            actions("<wait500ms>"),
            vec![Action::Wait(Duration::from_millis(500))]
        );
        assert_eq!(
            actions("<wait1.5h>"),
            vec![Action::Wait(Duration::from_secs(5400))]
        );
        assert_eq!(
            actions("<wait2us>"),
            vec![Action::Wait(Duration::from_micros(2))]
        );
        assert_eq!(
            actions("<wait0.5s>"),
            vec![Action::Wait(Duration::from_millis(500))]
        );
    }

    #[test]
    fn zero_and_malformed_waits_are_errors_with_position() {
        let e = parse("ab<wait0>").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::NonPositiveDuration("0".into()));
        assert_eq!((e.position.offset, e.position.column), (7, 8));
        // Not a duration: typed literally with a warning, as Packer types it.
        let p = parse("x\n  <wait5x>").unwrap();
        assert_eq!(p.actions.len(), 1 + 1 + 2 + 8, "{:?}", p.actions);
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(
            (p.warnings[0].position.line, p.warnings[0].position.column),
            (2, 3)
        );
        assert!(
            p.warnings[0].message.contains("`<wait5x>`"),
            "{:?}",
            p.warnings
        );
        assert!(parse("<wait0s>").is_err());
        assert!(parse("<wait1..5s>").is_ok());
        let e = parse("<wait-5s>").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::NonPositiveDuration("-5s".into()));
    }

    #[test]
    fn less_than_that_starts_no_key_is_typed() {
        assert_eq!(actions("a<b"), vec![tap('a'), tap('<'), tap('b')]);
        assert_eq!(actions("<"), vec![tap('<')]);
        assert_eq!(
            actions("<<enter>"),
            vec![tap('<'), special("enter", Press::Tap)]
        );
        assert_eq!(actions("< >"), vec![tap('<'), tap(' '), tap('>')]);
        assert!(parse("1 < 2 > 0").unwrap().warnings.is_empty());
        let p = parse("<=>").unwrap();
        assert_eq!(p.actions, vec![tap('<'), tap('='), tap('>')]);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn unknown_tags_are_typed_literally_with_a_warning() {
        let p = parse("x<foo>").unwrap();
        assert_eq!(p.actions, "x<foo>".chars().map(tap).collect::<Vec<_>>());
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].position.column, 2);
        assert!(p.warnings[0].message.contains("<foo>"));
        let p = parse("<waitress><f13>").unwrap();
        assert_eq!(p.actions.len(), 15);
        assert_eq!(p.warnings.len(), 2);
    }

    #[test]
    fn wait_for() {
        assert_eq!(
            actions(r#"<waitFor "boot:">"#),
            vec![Action::WaitFor {
                text: "boot:".into(),
                timeout: None
            }]
        );
        assert_eq!(
            actions(r#"a<WAITFOR "say \"hi\" \\ <ok>" 2m>b"#),
            vec![
                tap('a'),
                Action::WaitFor {
                    text: r#"say "hi" \ <ok>"#.into(),
                    timeout: Some(Duration::from_secs(120))
                },
                tap('b')
            ]
        );
    }

    #[test]
    fn malformed_wait_for() {
        for (s, column) in [
            (r#"<waitFor boot>"#, 10),
            (r#"<waitFor "boot>"#, 10),
            (r#"<waitFor "">"#, 10),
            (r#"<waitFor "a\n">"#, 12),
            (r#"<waitFor "a""#, 13),
            (r#"ab<waitfor>"#, 3),
        ] {
            let e = parse(s).unwrap_err();
            assert!(matches!(e.kind, ParseErrorKind::BadWaitFor(_)), "{s}: {e}");
            assert_eq!(e.position.column, column, "{s}: {e}");
        }
        let e = parse(r#"<waitFor "a" soon>"#).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadDuration("soon".into()));
        assert_eq!(e.position.column, 14);
        let e = parse(r#"<waitFor "a" 0s>"#).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::NonPositiveDuration("0s".into()));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let p = parse("éé<nope>").unwrap();
        assert_eq!(p.warnings[0].position.offset, 4);
        assert_eq!(p.warnings[0].position.column, 3);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("+5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("-5s"), None);
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1e3s"), None);
    }
}
