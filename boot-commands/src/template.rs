//! kiln's one renderer of the Go templates (text/template) Packer fills in at build time
//! (`{{ .HTTPIP }}`, `{{ .HTTPPort }}`, `{{ .Name }}`, `{{ .SSHPublicKey }}`…). One scanner
//! ([`pieces`]) splits a text into literal text and `{{ … }}` actions, as Go's lexer does
//! (a `}}` inside a string literal or a comment does not close an action); three renderers sit
//! on it:
//!
//! - [`render`] is strict, for boot commands: only `{{ .Field }}` with a known field is allowed,
//!   anything else is an error rather than being typed into the guest.
//! - [`render_known`] is lenient, for options rendered in several passes (`execute_command`,
//!   output names, provisioner options): what its lookup does not resolve is left as written
//!   for a later pass.
//! - [`Template`] is a strict subset of text/template, for whole files Packer renders (VMware's
//!   `.vmx` templates): text, `{{ .Field }}`, `{{ if }}…{{ else if }}…{{ else }}…{{ end }}`,
//!   `{{-`/`-}}` trimming, `{{/* comments */}}`, string/integer/bool literals, parentheses and
//!   the functions `and`, `or`, `not`, `eq`, `ne` with Go's semantics. Anything else (`range`,
//!   `with`, pipes, variables, other functions, unknown fields) is an error with the line and
//!   column, rather than output Packer would not have written.

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

/// One piece of a template, as [`pieces`] splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// `{{ inner }}`: the byte offset of its `{{` and the text between the braces, untrimmed.
    Action { offset: usize, inner: &'a str },
    /// A `{{` with no `}}` after it, at this byte offset; always the last piece.
    Unclosed { offset: usize },
}

/// Where the action that starts `s` (the text after a `{{`) ends: the offset of its `}}`.
/// As in Go's lexer, a `}}` inside a `"…"` or `` `…` `` literal or a `/* … */` comment does not
/// count; a quote or comment that is never closed (a `"` to the end of its line) is read as a
/// plain character, so the first `}}` after it still closes the action and the error is
/// reported about the action, not about the rest of the file.
fn action_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let skip_to = match c {
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            b'"' => {
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        Some(b'\\') => j += 2,
                        Some(b'"') => break Some(j + 1),
                        Some(b'\n') | None => break None,
                        Some(_) => j += 1,
                    }
                }
            }
            b'`' => s
                .get(i + 1..)
                .and_then(|r| r.find('`'))
                .map(|j| i + 1 + j + 1),
            b'/' if b.get(i + 1) == Some(&b'*') => s
                .get(i + 2..)
                .and_then(|r| r.find("*/"))
                .map(|j| i + 2 + j + 2),
            _ => None,
        };
        i = skip_to.unwrap_or(i + 1);
    }
    None
}

/// Splits `text` into literal text and `{{ … }}` actions.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = text.get(at..).and_then(|r| r.find("{{")).map(|o| at + o) {
        if open > at {
            out.push(Piece::Text(&text[at..open]));
        }
        let body = &text[open + 2..];
        let Some(close) = action_end(body) else {
            out.push(Piece::Unclosed { offset: open });
            return out;
        };
        out.push(Piece::Action {
            offset: open,
            inner: &body[..close],
        });
        at = open + 2 + close + 2;
    }
    if at < text.len() {
        out.push(Piece::Text(&text[at..]));
    }
    out
}

/// Calls `each(offset, expression)` for every `{{ expression }}` in `text` (the expression
/// trimmed) and puts what it returns in its place; `None` keeps the placeholder as written.
/// An unclosed `{{` is passed to `each` as `Err(offset)`, whose `None` keeps the rest as is.
fn expand<E>(
    text: &str,
    mut each: impl FnMut(Result<(usize, &str), usize>) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Action { offset, inner } => match each(Ok((offset, inner.trim())))? {
                Some(v) => out.push_str(&v),
                None => {
                    out.push_str("{{");
                    out.push_str(inner);
                    out.push_str("}}");
                }
            },
            Piece::Unclosed { offset } => match each(Err(offset))? {
                Some(v) => out.push_str(&v),
                None => out.push_str(text.get(offset..).unwrap_or_default()),
            },
        }
    }
    Ok(out)
}

/// `name` when `expr` is `.name` with a Go identifier's characters.
fn field_name(expr: &str) -> Option<&str> {
    expr.strip_prefix('.').filter(|n| is_identifier(n))
}

fn is_identifier(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_alphanumeric() || c == '_')
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
        let name = field_name(expr).ok_or_else(|| RenderError::Unsupported {
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

/// A value a [`Template`] reads from its data, or computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string; printed as is, true when not empty.
    Str(String),
    /// An integer; printed in decimal, true when not 0.
    Int(i64),
    /// A bool; printed `true`/`false`.
    Bool(bool),
}

impl Value {
    /// Go's truth: false, 0 and the empty string are false.
    fn truth(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Int(i) => *i != 0,
            Value::Bool(b) => *b,
        }
    }

    fn print(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(s),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "integer",
            Value::Bool(_) => "bool",
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// A template that cannot be parsed or rendered, at a 1-based line and column (in characters)
/// of the template text. Messages never include the data's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct TemplateError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: TemplateErrorKind,
}

/// What is wrong in a [`TemplateError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateErrorKind {
    /// `{{` without `}}`.
    #[error("`{{{{` without a closing `}}}}`")]
    Unclosed,
    /// `{{ }}`, `{{ if }}`, `( )`: a value is missing.
    #[error("missing value")]
    MissingValue,
    /// A Go template feature kiln does not render.
    #[error(
        "{0} is not supported (kiln renders fields, if/else/end, literals, and, or, not, eq, ne)"
    )]
    Unsupported(String),
    /// `{{ .X }}` where the data has no X.
    #[error("unknown field `.{name}`; known fields: {known}")]
    UnknownField {
        /// The field name, without the dot.
        name: String,
        /// The fields that exist, comma-separated.
        known: String,
    },
    /// A name that is neither a supported function nor a keyword.
    #[error("function `{0}` is not defined (kiln renders and, or, not, eq, ne)")]
    UnknownFunction(String),
    /// A function called with the wrong number of arguments.
    #[error("wrong number of arguments for `{func}`: want {want}, got {got}")]
    Arity {
        /// The function.
        func: &'static str,
        /// What it takes.
        want: &'static str,
        /// What it was given.
        got: usize,
    },
    /// Arguments given to something that is not a function.
    #[error("`{0}` is not a function and takes no arguments")]
    NotAFunction(String),
    /// `eq`/`ne` of a string and a number, say.
    #[error("incompatible types for comparison: {0} and {1}")]
    Incomparable(&'static str, &'static str),
    /// A character that starts no token.
    #[error("unexpected {0:?} in action")]
    UnexpectedChar(char),
    /// A `(` without `)`, a `)` without `(`.
    #[error("unbalanced parentheses")]
    Parentheses,
    /// A string literal not closed on its line (`"…`) or at all (`` `… ``).
    #[error("unterminated string literal")]
    UnterminatedString,
    /// A `\x` escape Go does not have, or kiln does not decode.
    #[error("unsupported escape `\\{0}` in string literal")]
    BadEscape(char),
    /// A number kiln does not read (it reads decimal integers).
    #[error("bad number `{0}`: kiln reads decimal integers")]
    BadNumber(String),
    /// `{{ else }}` or `{{ end }}` outside an `if`, or after its `else`.
    #[error("unexpected `{{{{ {0} }}}}`")]
    Unexpected(&'static str),
    /// Something after `else`/`end` in their action.
    #[error("unexpected text after `{0}`")]
    Trailing(&'static str),
    /// The text ends inside an `if` (opened at the error's position).
    #[error("`{{{{ if }}}}` without `{{{{ end }}}}`")]
    MissingEnd,
    /// A comment that does not follow `{{` (or `{{- `) right away or end right before `}}`.
    #[error("a comment must be `{{{{/* … */}}}}`, alone in its action")]
    Comment,
    /// `if`s or parentheses nested deeper than [`MAX_DEPTH`].
    #[error("nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// How deep `if`s and parentheses may nest: rendering recurses, and a text nested deeper than
/// any real template must not overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// A function of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    And,
    Or,
    Not,
    Eq,
    Ne,
}

impl Func {
    fn named(name: &str) -> Option<Func> {
        Some(match name {
            "and" => Func::And,
            "or" => Func::Or,
            "not" => Func::Not,
            "eq" => Func::Eq,
            "ne" => Func::Ne,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Func::And => "and",
            Func::Or => "or",
            Func::Not => "not",
            Func::Eq => "eq",
            Func::Ne => "ne",
        }
    }

    /// Go's arities: `and`/`or` take one or more, `eq` two or more, `not` one, `ne` two.
    fn check_arity(self, got: usize) -> Result<(), TemplateErrorKind> {
        let (ok, want) = match self {
            Func::And | Func::Or => (got >= 1, "at least 1"),
            Func::Eq => (got >= 2, "at least 2"),
            Func::Not => (got == 1, "1"),
            Func::Ne => (got == 2, "2"),
        };
        ok.then_some(()).ok_or(TemplateErrorKind::Arity {
            func: self.name(),
            want,
            got,
        })
    }
}

/// An expression, with the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Field {
        name: String,
        at: usize,
    },
    Lit(Value),
    Call {
        func: Func,
        args: Vec<Expr>,
        at: usize,
    },
}

/// The template's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Print(Expr),
    /// `if`/`else if` arms in order, then the `else` body.
    If {
        arms: Vec<(Expr, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
}

/// A token of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Field(String),
    Ident(String),
    Lit(Value),
    Open,
    Close,
}

/// An error at a byte offset, before it is turned into a line and column.
type At<T> = Result<T, (usize, TemplateErrorKind)>;

/// Splits an action's text (starting at byte `base` of the template) into tokens.
fn lex(inner: &str, base: usize) -> At<Vec<(Tok, usize)>> {
    let mut out = Vec::new();
    let mut chars = inner.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = base + i;
        let rest = inner.get(i..).unwrap_or_default();
        let word_len = |r: &str| {
            r.find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(r.len())
        };
        let consumed = match c {
            c if c.is_whitespace() => 0,
            '(' => {
                out.push((Tok::Open, at));
                0
            }
            ')' => {
                out.push((Tok::Close, at));
                0
            }
            '.' => {
                let after = rest.get(1..).unwrap_or_default();
                let n = word_len(after);
                let name = after.get(..n).unwrap_or_default();
                if !is_identifier(name) {
                    return Err((
                        at,
                        TemplateErrorKind::Unsupported("`.` without a field name".into()),
                    ));
                }
                if after.get(n..).is_some_and(|r| r.starts_with('.')) {
                    return Err((
                        at,
                        TemplateErrorKind::Unsupported("a field of a field".into()),
                    ));
                }
                out.push((Tok::Field(name.to_owned()), at));
                n
            }
            c if c.is_alphabetic() || c == '_' => {
                let n = word_len(rest);
                let word = rest.get(..n).unwrap_or_default();
                let tok = match word {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    w => Tok::Ident(w.to_owned()),
                };
                out.push((tok, at));
                n.saturating_sub(c.len_utf8())
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit())) =>
            {
                // Up to the next blank or parenthesis, so `1.5` or `0x1F` is one bad number.
                let n = rest
                    .find(|c: char| is_space(c) || c == '(' || c == ')')
                    .unwrap_or(rest.len());
                let text = rest.get(..n).unwrap_or_default();
                let value = text
                    .parse::<i64>()
                    .map_err(|_| (at, TemplateErrorKind::BadNumber(text.to_owned())))?;
                out.push((Tok::Lit(Value::Int(value)), at));
                n - 1
            }
            '"' => {
                let (value, n) = quoted(rest).map_err(|(o, k)| (at + o, k))?;
                out.push((Tok::Lit(Value::Str(value)), at));
                n - 1
            }
            '`' => {
                let body = rest.get(1..).unwrap_or_default();
                let end = body
                    .find('`')
                    .ok_or((at, TemplateErrorKind::UnterminatedString))?;
                out.push((Tok::Lit(Value::Str(body[..end].to_owned())), at));
                end + 1
            }
            '|' => {
                return Err((
                    at,
                    TemplateErrorKind::Unsupported("a pipeline (`|`)".into()),
                ))
            }
            '$' => {
                return Err((
                    at,
                    TemplateErrorKind::Unsupported("a variable (`$`)".into()),
                ))
            }
            '\'' => {
                return Err((
                    at,
                    TemplateErrorKind::Unsupported("a character constant".into()),
                ))
            }
            c => return Err((at, TemplateErrorKind::UnexpectedChar(c))),
        };
        // Skip the rest of the token (its first character is consumed already).
        let stop = i + c.len_utf8() + consumed;
        while chars.peek().is_some_and(|(j, _)| *j < stop) {
            chars.next();
        }
    }
    Ok(out)
}

/// Reads the `"…"` literal `s` starts with: its value and its length in bytes. Offsets in
/// errors are from the start of `s`.
fn quoted(s: &str) -> At<(String, usize)> {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, i + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars
                    .next()
                    .ok_or((0, TemplateErrorKind::UnterminatedString))?;
                value.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => return Err((i, TemplateErrorKind::BadEscape(other))),
                });
            }
            c => value.push(c),
        }
    }
    Err((0, TemplateErrorKind::UnterminatedString))
}

/// Parses a command from tokens: an operand alone, or a function and its arguments, up to a
/// `)` or the end.
struct Parser<'t> {
    toks: &'t [(Tok, usize)],
    i: usize,
    /// Where the action ends, for errors about what is missing at its end.
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(Tok, usize)> {
        self.toks.get(self.i)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end, |(_, at)| *at)
    }

    /// A command, up to `)` or the end.
    fn command(&mut self, depth: usize) -> At<Expr> {
        if depth > MAX_DEPTH {
            return Err((self.here(), TemplateErrorKind::TooDeep));
        }
        let start = self.here();
        let mut func = None;
        let mut args = Vec::new();
        while let Some((tok, at)) = self.peek().cloned() {
            if tok == Tok::Close {
                break;
            }
            self.i += 1;
            let operand = match tok {
                Tok::Field(name) => Expr::Field { name, at },
                Tok::Lit(v) => Expr::Lit(v),
                Tok::Open => {
                    let e = self.command(depth + 1)?;
                    match self.peek() {
                        Some((Tok::Close, _)) => self.i += 1,
                        _ => return Err((at, TemplateErrorKind::Parentheses)),
                    }
                    e
                }
                Tok::Ident(name) => {
                    let f = Func::named(&name).ok_or_else(|| (at, ident_error(&name)))?;
                    if func.is_none() && args.is_empty() {
                        func = Some(f);
                        continue;
                    }
                    // A function as an argument is a call without arguments, as in Go, and
                    // none of the subset's functions takes none.
                    f.check_arity(0).map_err(|k| (at, k))?;
                    args.push(Expr::Call {
                        func: f,
                        args: Vec::new(),
                        at,
                    });
                    continue;
                }
                Tok::Close => break,
            };
            args.push(operand);
        }
        match func {
            Some(func) => {
                func.check_arity(args.len()).map_err(|k| (start, k))?;
                Ok(Expr::Call {
                    func,
                    args,
                    at: start,
                })
            }
            None => {
                let mut args = args.into_iter();
                let first = args
                    .next()
                    .ok_or((start, TemplateErrorKind::MissingValue))?;
                if args.next().is_some() {
                    let what = match &first {
                        Expr::Field { name, .. } => format!(".{name}"),
                        _ => "a literal".to_owned(),
                    };
                    return Err((start, TemplateErrorKind::NotAFunction(what)));
                }
                Ok(first)
            }
        }
    }

    /// A whole action's command: no `)` may be left over.
    fn pipeline(&mut self) -> At<Expr> {
        let e = self.command(0)?;
        match self.peek() {
            Some((_, at)) => Err((*at, TemplateErrorKind::Parentheses)),
            None => Ok(e),
        }
    }
}

/// The error for an identifier that is no function: Go's keywords kiln does not render are
/// named as such.
fn ident_error(name: &str) -> TemplateErrorKind {
    match name {
        "range" | "with" | "define" | "template" | "block" | "break" | "continue" | "nil"
        | "if" | "else" | "end" => TemplateErrorKind::Unsupported(format!("`{name}` here")),
        _ => TemplateErrorKind::UnknownFunction(name.to_owned()),
    }
}

/// What one action is.
enum Action {
    Print(Expr),
    If(Expr),
    ElseIf(Expr),
    Else,
    End,
    Comment,
}

/// Whitespace as Go's trim markers see it.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Reads an action's text (after `{{`, at byte `base`): whether it trims before and after, and
/// what it is.
fn action(inner: &str, base: usize) -> At<(bool, bool, Action)> {
    let trim_left = inner.starts_with('-') && inner[1..].starts_with(is_space);
    let trim_right = inner.ends_with('-') && inner[..inner.len() - 1].ends_with(is_space);
    let from = if trim_left { 2 } else { 0 };
    let to = if trim_right {
        inner.len() - 2
    } else {
        inner.len()
    };
    let body = inner.get(from..to.max(from)).unwrap_or_default();
    let base = base + from;
    if body.starts_with("/*") {
        return if body.len() >= 4 && body.ends_with("*/") {
            Ok((trim_left, trim_right, Action::Comment))
        } else {
            Err((base, TemplateErrorKind::Comment))
        };
    }
    let toks = lex(body, base)?;
    let end = base + body.len();
    let keyword = match toks.first() {
        Some((Tok::Ident(w), _)) => w.as_str(),
        _ => "",
    };
    let parse = |skip: usize| {
        Parser {
            toks: toks.get(skip..).unwrap_or_default(),
            i: 0,
            end,
        }
        .pipeline()
    };
    let alone = |what: &'static str, skip: usize| match toks.get(skip) {
        Some((_, at)) => Err((*at, TemplateErrorKind::Trailing(what))),
        None => Ok(()),
    };
    let a = match keyword {
        "if" => Action::If(parse(1)?),
        "else" => match toks.get(1) {
            Some((Tok::Ident(w), _)) if w == "if" => Action::ElseIf(parse(2)?),
            _ => {
                alone("else", 1)?;
                Action::Else
            }
        },
        "end" => {
            alone("end", 1)?;
            Action::End
        }
        _ => Action::Print(parse(0)?),
    };
    Ok((trim_left, trim_right, a))
}

/// An `if` being read: its arms so far, the condition and body of the arm being read, and
/// whether that is the `else` body.
struct Open {
    at: usize,
    arms: Vec<(Expr, Vec<Node>)>,
    cond: Option<Expr>,
    body: Vec<Node>,
}

/// A parsed template (see the module notes for the subset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
    /// Every field the template reads, with where, in source order.
    fields: Vec<(String, usize)>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Self::parse_at(text).map_err(|(at, kind)| error_at(text, at, kind))
    }

    fn parse_at(text: &str) -> At<Template> {
        // First the actions, with their trim markers applied to the text around them.
        let mut items: Vec<Result<String, (usize, Action)>> = Vec::new();
        let mut trim_next = false;
        for piece in pieces(text) {
            match piece {
                Piece::Text(t) => {
                    let t = if trim_next {
                        t.trim_start_matches(is_space)
                    } else {
                        t
                    };
                    items.push(Ok(t.to_owned()));
                    trim_next = false;
                }
                Piece::Action { offset, inner } => {
                    let (left, right, a) = action(inner, offset + 2)?;
                    if left {
                        if let Some(Ok(prev)) = items.last_mut() {
                            prev.truncate(prev.trim_end_matches(is_space).len());
                        }
                    }
                    trim_next = right;
                    items.push(Err((offset, a)));
                }
                Piece::Unclosed { offset } => return Err((offset, TemplateErrorKind::Unclosed)),
            }
        }
        // Then the tree, with a stack of the `if`s open.
        let mut fields = Vec::new();
        let mut stack: Vec<Open> = Vec::new();
        let mut top: Vec<Node> = Vec::new();
        for item in items {
            let body = match stack.last_mut() {
                Some(open) => &mut open.body,
                None => &mut top,
            };
            match item {
                Ok(t) if t.is_empty() => {}
                Ok(t) => body.push(Node::Text(t)),
                Err((at, a)) => match a {
                    Action::Comment => {}
                    Action::Print(e) => {
                        collect_fields(&e, &mut fields);
                        body.push(Node::Print(e));
                    }
                    Action::If(cond) => {
                        if stack.len() >= MAX_DEPTH {
                            return Err((at, TemplateErrorKind::TooDeep));
                        }
                        collect_fields(&cond, &mut fields);
                        stack.push(Open {
                            at,
                            arms: Vec::new(),
                            cond: Some(cond),
                            body: Vec::new(),
                        });
                    }
                    Action::ElseIf(_) | Action::Else => {
                        let open = stack
                            .last_mut()
                            .filter(|o| o.cond.is_some())
                            .ok_or((at, TemplateErrorKind::Unexpected("else")))?;
                        let body = std::mem::take(&mut open.body);
                        if let Some(c) = open.cond.take() {
                            open.arms.push((c, body));
                        }
                        if let Action::ElseIf(cond) = a {
                            collect_fields(&cond, &mut fields);
                            open.cond = Some(cond);
                        }
                    }
                    Action::End => {
                        let mut open = stack
                            .pop()
                            .ok_or((at, TemplateErrorKind::Unexpected("end")))?;
                        let body = std::mem::take(&mut open.body);
                        let otherwise = match open.cond.take() {
                            Some(c) => {
                                open.arms.push((c, body));
                                Vec::new()
                            }
                            None => body,
                        };
                        let node = Node::If {
                            arms: open.arms,
                            otherwise,
                        };
                        match stack.last_mut() {
                            Some(parent) => parent.body.push(node),
                            None => top.push(node),
                        }
                    }
                },
            }
        }
        if let Some(open) = stack.first() {
            return Err((open.at, TemplateErrorKind::MissingEnd));
        }
        Ok(Template {
            source: text.to_owned(),
            nodes: top,
            fields,
        })
    }

    /// Renders with `data`. Every field the template names must be in `data`, used or not, so
    /// a misspelt field is found whatever the options.
    pub fn render(&self, data: &BTreeMap<String, Value>) -> Result<String, TemplateError> {
        self.render_at(data)
            .map_err(|(at, kind)| error_at(&self.source, at, kind))
    }

    fn render_at(&self, data: &BTreeMap<String, Value>) -> At<String> {
        if let Some((name, at)) = self.fields.iter().find(|(n, _)| !data.contains_key(n)) {
            return Err((*at, unknown_field(name, data)));
        }
        let mut out = String::with_capacity(self.source.len());
        exec(&self.nodes, data, &mut out)?;
        Ok(out)
    }
}

fn unknown_field(name: &str, data: &BTreeMap<String, Value>) -> TemplateErrorKind {
    TemplateErrorKind::UnknownField {
        name: name.to_owned(),
        known: data
            .keys()
            .map(|k| format!(".{k}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn collect_fields(e: &Expr, out: &mut Vec<(String, usize)>) {
    match e {
        Expr::Field { name, at } => out.push((name.clone(), *at)),
        Expr::Lit(_) => {}
        Expr::Call { args, .. } => args.iter().for_each(|a| collect_fields(a, out)),
    }
}

/// The 1-based line and column (in characters) of byte `at` of `text`.
fn error_at(text: &str, at: usize, kind: TemplateErrorKind) -> TemplateError {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    TemplateError {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        kind,
    }
}

fn exec(nodes: &[Node], data: &BTreeMap<String, Value>, out: &mut String) -> At<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(e) => eval(e, data)?.print(out),
            Node::If { arms, otherwise } => {
                let mut chosen = otherwise;
                for (cond, body) in arms {
                    if eval(cond, data)?.truth() {
                        chosen = body;
                        break;
                    }
                }
                exec(chosen, data, out)?;
            }
        }
    }
    Ok(())
}

fn eval(e: &Expr, data: &BTreeMap<String, Value>) -> At<Value> {
    match e {
        Expr::Field { name, at } => data
            .get(name)
            .cloned()
            .ok_or_else(|| (*at, unknown_field(name, data))),
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Call { func, args, at } => {
            let mut values = args.iter().map(|a| eval(a, data));
            match func {
                // Go's `and` gives the first false argument or the last, `or` the first true
                // one or the last; both stop evaluating there.
                Func::And | Func::Or => {
                    let want = *func == Func::Or;
                    let mut last = Value::Bool(false);
                    for v in values {
                        last = v?;
                        if last.truth() == want {
                            break;
                        }
                    }
                    Ok(last)
                }
                Func::Not => Ok(Value::Bool(
                    !values.next().transpose()?.is_some_and(|v| v.truth()),
                )),
                Func::Eq | Func::Ne => {
                    let first = values
                        .next()
                        .transpose()?
                        .ok_or((*at, TemplateErrorKind::MissingValue))?;
                    let mut equal = false;
                    for v in values {
                        let v = v?;
                        if std::mem::discriminant(&v) != std::mem::discriminant(&first) {
                            return Err((
                                *at,
                                TemplateErrorKind::Incomparable(first.kind(), v.kind()),
                            ));
                        }
                        equal |= v == first;
                    }
                    Ok(Value::Bool(equal == (*func == Func::Eq)))
                }
            }
        }
    }
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

    fn data() -> BTreeMap<String, Value> {
        [
            ("Name", Value::from("vm")),
            ("Empty", Value::from("")),
            ("Usb", Value::from("TRUE")),
            ("UsbVersion", Value::from("3.2")),
            ("Unit", Value::from(3)),
            ("Zero", Value::from(0)),
            ("On", Value::from(true)),
            ("Off", Value::from(false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn go(text: &str) -> Result<String, TemplateError> {
        Template::parse(text)?.render(&data())
    }

    fn kind(text: &str) -> (usize, usize, TemplateErrorKind) {
        let e = go(text).unwrap_err();
        (e.line, e.column, e.kind)
    }

    #[test]
    fn go_template_prints_fields_and_literals() {
        assert_eq!(
            go("a{{ .Name }}b{{.Unit}}c{{ .On }}").unwrap(),
            "avmb3ctrue"
        );
        assert_eq!(
            go(r#"{{ "x\"}}\n" }}{{ `r}}\n` }}{{ -4 }}{{ false }}"#).unwrap(),
            "x\"}}\nr}}\\n-4false"
        );
        assert_eq!(go("{{ (.Name) }}").unwrap(), "vm");
        assert_eq!(go("no actions } {").unwrap(), "no actions } {");
    }

    #[test]
    fn go_template_if_else_chains_use_go_truth() {
        let t = "{{ if .Empty }}a{{ else if .Zero }}b{{ else if .Off }}c{{ else }}d{{ end }}";
        assert_eq!(go(t).unwrap(), "d");
        assert_eq!(go("{{ if .Name }}a{{ else }}b{{ end }}").unwrap(), "a");
        assert_eq!(
            go("{{ if .Unit }}{{ if .Off }}x{{ else }}y{{ end }}{{ end }}").unwrap(),
            "y"
        );
        assert_eq!(go("{{ if .Usb }}{{ end }}").unwrap(), "");
    }

    #[test]
    fn go_template_and_or_return_an_operand_and_compare_like_go() {
        assert_eq!(go("{{ and .Name .Unit }}").unwrap(), "3");
        assert_eq!(go("{{ and .Name .Empty .Unit }}").unwrap(), "");
        assert_eq!(go("{{ or .Empty .Zero }}").unwrap(), "0");
        assert_eq!(go("{{ or .Empty .Name .Unit }}").unwrap(), "vm");
        assert_eq!(go("{{ not .Empty }}{{ not .Unit }}").unwrap(), "truefalse");
        assert_eq!(
            go(r#"{{ eq .UsbVersion "3.1" "3.2" }}{{ ne .Unit 3 }}{{ eq .On true }}"#).unwrap(),
            "truefalsetrue"
        );
        // Packer's default template's USB 3 line.
        let usb3 =
            r#"{{ if and .Usb (or (eq .UsbVersion "3.1") (eq .UsbVersion "3.2")) }}xhci{{ end }}"#;
        assert_eq!(go(usb3).unwrap(), "xhci");
    }

    #[test]
    fn go_template_trims_and_skips_comments() {
        let t = "vhv = \"{{if .On -}} TRUE {{- else -}} FALSE {{- end -}}\"\n";
        assert_eq!(go(t).unwrap(), "vhv = \"TRUE\"\n");
        assert_eq!(go("a {{/* c }} \" */}} b").unwrap(), "a  b");
        assert_eq!(go("a \n {{- /* c */ -}} \n b").unwrap(), "ab");
        // `{{-3}}` is the number -3, not a trim marker.
        assert_eq!(go("a {{-3}}").unwrap(), "a -3");
    }

    #[test]
    fn go_template_errors_name_line_and_column() {
        use TemplateErrorKind as K;
        assert!(
            matches!(kind("x\n  {{ .Nmae }}"), (2, 6, K::UnknownField { name, .. }) if name == "Nmae")
        );
        // Unknown fields are errors in branches not taken too.
        assert!(matches!(
            kind("{{ if .Off }}{{ .Nope }}{{ end }}"),
            (1, 17, K::UnknownField { .. })
        ));
        assert_eq!(
            kind("é{{ range .Name }}{{ end }}"),
            (1, 5, K::Unsupported("`range` here".into()))
        );
        assert_eq!(
            kind("{{ with .Name }}"),
            (1, 4, K::Unsupported("`with` here".into()))
        );
        assert_eq!(
            kind("{{ .Name | lower }}"),
            (1, 10, K::Unsupported("a pipeline (`|`)".into()))
        );
        assert_eq!(
            kind("{{ user `x` }}"),
            (1, 4, K::UnknownFunction("user".into()))
        );
        assert_eq!(
            kind("{{ $x := 1 }}"),
            (1, 4, K::Unsupported("a variable (`$`)".into()))
        );
        assert_eq!(
            kind("{{ .A.B }}"),
            (1, 4, K::Unsupported("a field of a field".into()))
        );
        assert_eq!(kind("\n\n{{ if .On }}a"), (3, 1, K::MissingEnd));
        assert_eq!(kind("a{{ end }}"), (1, 2, K::Unexpected("end")));
        assert_eq!(
            kind("{{ if .On }}{{ else }}{{ else }}{{ end }}"),
            (1, 23, K::Unexpected("else"))
        );
        assert_eq!(kind("{{ else x }}"), (1, 9, K::Trailing("else")));
        assert_eq!(kind("ab {{ .Name"), (1, 4, K::Unclosed));
        assert_eq!(kind("{{ }}"), (1, 4, K::MissingValue));
        assert_eq!(kind("{{ if }}{{ end }}"), (1, 7, K::MissingValue));
        assert_eq!(
            kind("{{ eq .Name }}"),
            (
                1,
                4,
                K::Arity {
                    func: "eq",
                    want: "at least 2",
                    got: 1
                }
            )
        );
        assert_eq!(
            kind("{{ not }}"),
            (
                1,
                4,
                K::Arity {
                    func: "not",
                    want: "1",
                    got: 0
                }
            )
        );
        assert_eq!(
            kind("{{ eq .Name .Unit }}"),
            (1, 4, K::Incomparable("string", "integer"))
        );
        assert_eq!(
            kind("{{ .Name .Unit }}"),
            (1, 4, K::NotAFunction(".Name".into()))
        );
        assert_eq!(kind("{{ (eq .Unit 1 }}"), (1, 4, K::Parentheses));
        assert_eq!(kind("{{ .Name) }}"), (1, 9, K::Parentheses));
        assert_eq!(kind("{{ \"abc }}"), (1, 4, K::UnterminatedString));
        assert_eq!(kind("{{ 1.5 }}"), (1, 4, K::BadNumber("1.5".into())));
        assert_eq!(kind("{{ /* c */ }}"), (1, 4, K::UnexpectedChar('/')));
        let deep = format!("{{{{ {}1{} }}}}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(kind(&deep), (1, _, K::TooDeep)));
        let nested = "{{ if 1 }}".repeat(100);
        assert!(matches!(kind(&nested), (1, _, K::TooDeep)));
        let e = go("\n {{ .Secret }}").unwrap_err();
        assert_eq!(
            e.to_string().lines().next().unwrap_or_default().get(..29),
            Some("line 2, column 5: unknown fie")
        );
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

    proptest::proptest! {
        #[test]
        fn go_template_never_panics(s in r#"([{}()\-/*"`.| \n$é1]|if|else|end|and|or|not|eq|ne|range|Name|Unit|On|true)*"#) {
            if let Ok(t) = Template::parse(&s) {
                let _ = t.render(&data());
            }
        }

        #[test]
        fn text_without_actions_renders_as_is(s in "[^{]*") {
            proptest::prop_assert_eq!(go(&s).unwrap(), s);
        }
    }
}
