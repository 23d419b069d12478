//! Canonical formatting of HCL2 source, as `packer fmt` does it (HashiCorp's `hclwrite` rules):
//! two-space indentation by bracket nesting, one space between most tokens (none inside
//! brackets, around `.`, before `,` or after a function name), `=` aligned across consecutive
//! single-line attributes, trailing comments aligned, everything else — comments, blank lines,
//! string and heredoc contents — kept as written. Only whitespace between tokens changes.
//!
//! The formatter works on tokens, not on a syntax tree, so it never reorders or drops anything;
//! the source is parsed first only to refuse invalid HCL, as Packer does.

/// Why a source could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The source is not valid HCL.
    #[error("invalid HCL: {0}")]
    Parse(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Newline,
    Comment,
    Ident,
    Number,
    OBrace,
    CBrace,
    OBrack,
    CBrack,
    OParen,
    CParen,
    Comma,
    Dot,
    Ellipsis,
    Equal,
    Colon,
    DoubleColon,
    Question,
    Arrow,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    Compare,
    Logic,
    OQuote,
    CQuote,
    QuotedLit,
    TemplateInterp,
    TemplateControl,
    TemplateSeqEnd,
    OHeredoc,
    StringLit,
    CHeredoc,
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    spaces: usize,
}

impl Token {
    fn bracket_change(&self) -> i32 {
        match self.kind {
            Kind::OBrace
            | Kind::OBrack
            | Kind::OParen
            | Kind::TemplateInterp
            | Kind::TemplateControl => 1,
            Kind::CBrace | Kind::CBrack | Kind::CParen | Kind::TemplateSeqEnd => -1,
            _ => 0,
        }
    }

    /// Line comments carry their newline, so they end a line too.
    fn ends_line(&self) -> bool {
        self.kind == Kind::Newline || (self.kind == Kind::Comment && self.text.ends_with('\n'))
    }
}

/// Formats HCL2 source to Packer's canonical style.
pub fn format_source(src: &str) -> Result<String, FormatError> {
    hcl_edit::parser::parse_body(src).map_err(|e| FormatError::Parse(e.to_string()))?;
    let mut tokens = Lexer::new(src).run();
    format_tokens(&mut tokens);
    let mut out = String::with_capacity(src.len());
    for t in &tokens {
        out.extend(std::iter::repeat_n(' ', t.spaces));
        out.push_str(&t.text);
    }
    Ok(out)
}

/// A line split into cells: everything before the attribute's `=` (`lead`), the `=` and its
/// value (`assign`), and a trailing comment. Ranges index the token list.
struct Line {
    lead: std::ops::Range<usize>,
    assign: Option<std::ops::Range<usize>>,
    comment: Option<usize>,
}

fn lines(tokens: &[Token]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.ends_line() {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < tokens.len() {
        out.push(start..tokens.len());
    }
    out.into_iter()
        .map(|mut lead| {
            let mut comment = None;
            if lead.len() > 1 && tokens[lead.end - 1].kind == Kind::Comment {
                comment = Some(lead.end - 1);
                lead.end -= 1;
            }
            let mut assign = None;
            if let Some(eq) = (lead.start + 1..lead.end).find(|&i| tokens[i].kind == Kind::Equal) {
                // Only a value that ends on this line is aligned.
                let net: i32 = tokens[eq..lead.end].iter().map(Token::bracket_change).sum();
                if net == 0 {
                    assign = Some(eq..lead.end);
                    lead.end = eq;
                }
            }
            Line {
                lead,
                assign,
                comment,
            }
        })
        .collect()
}

fn format_tokens(tokens: &mut [Token]) {
    let lines = lines(tokens);
    indent(tokens, &lines);
    for line in &lines {
        space_cell(tokens, line.lead.clone());
        if let Some(assign) = &line.assign {
            tokens[assign.start].spaces = 1;
            space_cell(tokens, assign.clone());
        }
    }
    align(tokens, &lines);
}

fn indent(tokens: &mut [Token], lines: &[Line]) {
    let mut stack: Vec<i32> = Vec::new();
    for line in lines {
        if line.lead.is_empty() {
            continue;
        }
        if tokens[line.lead.start].kind == Kind::Newline {
            tokens[line.lead.start].spaces = 0;
            continue;
        }
        let mut net = 0;
        for t in &tokens[line.lead.clone()] {
            net += t.bracket_change();
            if t.kind == Kind::OHeredoc {
                break;
            }
        }
        if let Some(assign) = &line.assign {
            net += tokens[assign.clone()]
                .iter()
                .map(Token::bracket_change)
                .sum::<i32>();
        }
        if net < 0 {
            let mut closed = -net;
            while closed > 0 {
                let Some(top) = stack.last_mut() else { break };
                if closed >= *top {
                    closed -= *top;
                    stack.pop();
                } else {
                    *top -= closed;
                    closed = 0;
                }
            }
        }
        tokens[line.lead.start].spaces = 2 * stack.len();
        if net > 0 {
            stack.push(net);
        }
    }
}

fn space_cell(tokens: &mut [Token], cell: std::ops::Range<usize>) {
    for i in cell.start..cell.end.saturating_sub(1) {
        let before = (i > cell.start).then(|| tokens[i - 1].kind);
        let space = space_after(&tokens[i], before, &tokens[i + 1]);
        tokens[i + 1].spaces = usize::from(space);
    }
}

/// Whether `subject` is followed by a space, given the token `before` it (None at the start of
/// a cell) and the one `after` it.
fn space_after(subject: &Token, before: Option<Kind>, after: &Token) -> bool {
    use Kind::*;
    let (s, a) = (subject.kind, after.kind);
    match () {
        _ if a == Newline => false,
        _ if s == Ident && a == OParen => false,
        _ if (s == Ident && a == DoubleColon) || (s == DoubleColon && a == Ident) => false,
        _ if s == Dot || a == Dot => false,
        _ if a == Comma || a == Ellipsis => false,
        _ if s == Comma => true,
        _ if matches!(s, QuotedLit | StringLit | OQuote | OHeredoc)
            || matches!(a, QuotedLit | StringLit | CQuote | CHeredoc) =>
        {
            false
        }
        // `for x in [a, b]`: `in` is a keyword there, not a value being indexed.
        _ if s == Ident && subject.text == "in" && before == Some(Ident) => true,
        _ if a == OBrack && (matches!(s, Ident | Number) || subject.bracket_change() < 0) => false,
        _ if s == Bang => false,
        _ if s == Minus => !matches!(
            before,
            None | Some(
                OParen
                    | OBrace
                    | OBrack
                    | Equal
                    | Colon
                    | Comma
                    | Question
                    | Plus
                    | Minus
                    | Star
                    | Slash
                    | Percent
                    | Compare
                    | Logic
                    | Bang
            )
        ),
        _ if s == OBrace || a == CBrace => !(s == OBrace && a == CBrace),
        _ if matches!(s, TemplateInterp | TemplateControl) && a == OBrace => true,
        _ if s == CBrace && a == TemplateSeqEnd => true,
        _ if s == TemplateSeqEnd && matches!(a, TemplateInterp | TemplateControl) => false,
        _ if subject.bracket_change() > 0 => false,
        _ if after.bracket_change() < 0 => false,
        _ => true,
    }
}

fn columns(tokens: &[Token], cell: std::ops::Range<usize>) -> usize {
    tokens[cell].iter().map(|t| t.spaces + t.text.len()).sum()
}

/// Aligns the `=` of consecutive attribute lines, then trailing comments.
fn align(tokens: &mut [Token], lines: &[Line]) {
    let mut chain: Vec<&Line> = Vec::new();
    let flush_assign = |tokens: &mut [Token], chain: &mut Vec<&Line>| {
        let max = chain
            .iter()
            .map(|l| columns(tokens, l.lead.clone()))
            .max()
            .unwrap_or(0);
        for l in chain.drain(..) {
            if let Some(assign) = &l.assign {
                tokens[assign.start].spaces = max - columns(tokens, l.lead.clone()) + 1;
            }
        }
    };
    for line in lines {
        if line.assign.is_some() {
            chain.push(line);
        } else {
            flush_assign(tokens, &mut chain);
        }
    }
    flush_assign(tokens, &mut chain);

    let width = |tokens: &[Token], l: &Line| {
        columns(tokens, l.lead.clone()) + l.assign.clone().map_or(0, |a| columns(tokens, a))
    };
    let flush_comments = |tokens: &mut [Token], chain: &mut Vec<&Line>| {
        let max = chain.iter().map(|l| width(tokens, l)).max().unwrap_or(0);
        for l in chain.drain(..) {
            if let Some(c) = l.comment {
                tokens[c].spaces = max - width(tokens, l) + 1;
            }
        }
    };
    for line in lines {
        if line.comment.is_some() {
            chain.push(line);
        } else {
            flush_comments(tokens, &mut chain);
        }
    }
    flush_comments(tokens, &mut chain);
}

/// Splits source into tokens the way HCL's scanner does for formatting purposes: templates
/// are split into literal parts and the expressions inside `${…}` and `%{…}`, heredoc bodies
/// are literal lines, and whitespace between tokens is dropped.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            tokens: Vec::new(),
        }
    }

    fn run(mut self) -> Vec<Token> {
        self.expression(false);
        self.tokens
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn push(&mut self, kind: Kind, len: usize) {
        let text = self.src[self.pos..self.pos + len].to_owned();
        self.tokens.push(Token {
            kind,
            text,
            spaces: 0,
        });
        self.pos += len;
    }

    /// Expression tokens until the end of input, or until the `}` closing a template
    /// sequence when `in_template`.
    fn expression(&mut self, in_template: bool) {
        let mut depth = 0usize;
        while let Some(c) = self.rest().chars().next() {
            let rest = self.rest();
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' if rest.starts_with("\r\n") => self.push(Kind::Newline, 2),
                '\n' => self.push(Kind::Newline, 1),
                '#' => self.line_comment(),
                '/' if rest.starts_with("//") => self.line_comment(),
                '/' if rest.starts_with("/*") => {
                    let len = rest[2..].find("*/").map_or(rest.len(), |i| i + 4);
                    self.push(Kind::Comment, len);
                }
                '~' if in_template && depth == 0 && rest.starts_with("~}") => {
                    self.push(Kind::TemplateSeqEnd, 2);
                    return;
                }
                '}' if in_template && depth == 0 => {
                    self.push(Kind::TemplateSeqEnd, 1);
                    return;
                }
                '{' => {
                    depth += 1;
                    self.push(Kind::OBrace, 1);
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    self.push(Kind::CBrace, 1);
                }
                '"' => {
                    self.push(Kind::OQuote, 1);
                    self.quoted();
                }
                '<' if rest.starts_with("<<") && self.heredoc_start().is_some() => self.heredoc(),
                _ => {
                    let (kind, len) = self.punct_or_word(rest);
                    self.push(kind, len);
                }
            }
        }
    }

    fn punct_or_word(&self, rest: &str) -> (Kind, usize) {
        const PUNCT: &[(&str, Kind)] = &[
            ("...", Kind::Ellipsis),
            ("==", Kind::Compare),
            ("!=", Kind::Compare),
            ("<=", Kind::Compare),
            (">=", Kind::Compare),
            ("&&", Kind::Logic),
            ("||", Kind::Logic),
            ("=>", Kind::Arrow),
            ("::", Kind::DoubleColon),
            ("<", Kind::Compare),
            (">", Kind::Compare),
            ("=", Kind::Equal),
            ("[", Kind::OBrack),
            ("]", Kind::CBrack),
            ("(", Kind::OParen),
            (")", Kind::CParen),
            (",", Kind::Comma),
            (".", Kind::Dot),
            (":", Kind::Colon),
            ("?", Kind::Question),
            ("+", Kind::Plus),
            ("-", Kind::Minus),
            ("*", Kind::Star),
            ("/", Kind::Slash),
            ("%", Kind::Percent),
            ("!", Kind::Bang),
        ];
        let first = rest.chars().next().unwrap_or(' ');
        if first.is_ascii_digit() {
            let bytes = rest.as_bytes();
            let mut len = 0;
            while len < bytes.len() && bytes[len].is_ascii_digit() {
                len += 1;
            }
            if len + 1 < bytes.len() && bytes[len] == b'.' && bytes[len + 1].is_ascii_digit() {
                len += 1;
                while len < bytes.len() && bytes[len].is_ascii_digit() {
                    len += 1;
                }
            }
            if len < bytes.len() && (bytes[len] == b'e' || bytes[len] == b'E') {
                let mut e = len + 1;
                if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
                    e += 1;
                }
                if e < bytes.len() && bytes[e].is_ascii_digit() {
                    len = e;
                    while len < bytes.len() && bytes[len].is_ascii_digit() {
                        len += 1;
                    }
                }
            }
            return (Kind::Number, len);
        }
        if first.is_alphabetic() || first == '_' {
            let len = rest
                .char_indices()
                .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .map_or(rest.len(), |(i, _)| i);
            return (Kind::Ident, len);
        }
        for (p, kind) in PUNCT {
            if rest.starts_with(p) {
                return (*kind, p.len());
            }
        }
        (Kind::Other, first.len_utf8())
    }

    fn line_comment(&mut self) {
        let rest = self.rest();
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        self.push(Kind::Comment, len);
    }

    /// The body of a quoted template, after its opening quote.
    fn quoted(&mut self) {
        let mut lit = 0;
        loop {
            let rest = &self.rest()[lit..];
            let Some(c) = rest.chars().next() else { break };
            if c == '"' || c == '\n' {
                self.flush_lit(Kind::QuotedLit, lit);
                if c == '"' {
                    self.push(Kind::CQuote, 1);
                }
                return;
            }
            if c == '\\' {
                lit += 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                continue;
            }
            if rest.starts_with("$${") || rest.starts_with("%%{") {
                lit += 3;
                continue;
            }
            if rest.starts_with("${") || rest.starts_with("%{") {
                self.flush_lit(Kind::QuotedLit, lit);
                lit = 0;
                self.template_sequence();
                continue;
            }
            lit += c.len_utf8();
        }
        self.flush_lit(Kind::QuotedLit, lit);
    }

    fn flush_lit(&mut self, kind: Kind, len: usize) {
        if len > 0 {
            self.push(kind, len);
        }
    }

    /// `${…}` or `%{…}` with an optional `~` strip marker, and the expression inside.
    fn template_sequence(&mut self) {
        let kind = if self.rest().starts_with('$') {
            Kind::TemplateInterp
        } else {
            Kind::TemplateControl
        };
        let len = if self.rest()[2..].starts_with('~') {
            3
        } else {
            2
        };
        self.push(kind, len);
        self.expression(true);
    }

    /// `<<ID\n` or `<<-ID\n`: the length of the opener and the delimiter.
    fn heredoc_start(&self) -> Option<(usize, &'a str)> {
        let rest = self.rest();
        let after = rest[2..].strip_prefix('-').unwrap_or(&rest[2..]);
        let marker = rest.len() - after.len();
        let id_len = after
            .char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .map_or(after.len(), |(i, _)| i);
        if id_len == 0 {
            return None;
        }
        let tail = &after[id_len..];
        let nl = if tail.starts_with("\r\n") {
            2
        } else if tail.starts_with('\n') {
            1
        } else {
            return None;
        };
        Some((marker + id_len + nl, &after[..id_len]))
    }

    fn heredoc(&mut self) {
        let Some((open_len, delimiter)) = self.heredoc_start() else {
            return;
        };
        self.push(Kind::OHeredoc, open_len);
        while !self.rest().is_empty() {
            let rest = self.rest();
            let line_len = rest.find('\n').map_or(rest.len(), |i| i + 1);
            let line = rest[..line_len].trim_end_matches(['\n', '\r']);
            if line.trim_start() == delimiter {
                self.push(Kind::CHeredoc, line.len());
                return;
            }
            self.heredoc_line();
        }
    }

    /// One line of a heredoc body: literal text with template sequences in it.
    fn heredoc_line(&mut self) {
        let mut lit = 0;
        loop {
            let rest = &self.rest()[lit..];
            let Some(c) = rest.chars().next() else { break };
            if c == '\n' {
                lit += 1;
                break;
            }
            if rest.starts_with("$${") || rest.starts_with("%%{") {
                lit += 3;
                continue;
            }
            if rest.starts_with("${") || rest.starts_with("%{") {
                self.flush_lit(Kind::StringLit, lit);
                lit = 0;
                self.template_sequence();
                continue;
            }
            lit += c.len_utf8();
        }
        self.flush_lit(Kind::StringLit, lit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        format_source(src).unwrap()
    }

    #[test]
    fn indents_and_aligns_attributes() {
        let src = "variable \"x\" {\ntype = string\n    default=\"a\"   # why\n  description     = \"d\"\n}\n";
        assert_eq!(
            fmt(src),
            "variable \"x\" {\n  type        = string\n  default     = \"a\" # why\n  description = \"d\"\n}\n"
        );
    }

    #[test]
    fn blank_lines_and_blocks_break_alignment() {
        let src = "a = 1\nlong_name = 2\n\nb = 3\nblk {\nc = 4\n}\n";
        assert_eq!(
            fmt(src),
            "a         = 1\nlong_name = 2\n\nb = 3\nblk {\n  c = 4\n}\n"
        );
    }

    #[test]
    fn expression_spacing() {
        assert_eq!(fmt("a = [1,2 , 3]\n"), "a = [1, 2, 3]\n");
        assert_eq!(fmt("a = {x=1, y = \"2\"}\n"), "a = { x = 1, y = \"2\" }\n");
        assert_eq!(
            fmt("a = 1-2\nb = -1\nc = x[0]\n"),
            "a = 1 - 2\nb = -1\nc = x[0]\n"
        );
        assert_eq!(
            fmt("a = [ for s in var.l : upper(s) if s!=\"\" ]\n"),
            "a = [for s in var.l : upper(s) if s != \"\"]\n"
        );
        assert_eq!(
            fmt("a = !true\nb = f(x,y...)\n"),
            "a = !true\nb = f(x, y...)\n"
        );
        assert_eq!(fmt("a = c ? 1 : 2\n"), "a = c ? 1 : 2\n");
        assert_eq!(fmt("a = {}\n"), "a = {}\n");
    }

    #[test]
    fn templates_keep_literals_and_tidy_interpolations() {
        assert_eq!(
            fmt("a = \"x  ${ var.y }-${upper( \"q\" )}\"\n"),
            "a = \"x  ${var.y}-${upper(\"q\")}\"\n"
        );
        assert_eq!(
            fmt("a = \"%{ if c }y%{ endif }\"\n"),
            "a = \"%{if c}y%{endif}\"\n"
        );
        assert_eq!(fmt("a = \"esc \\\" ${x}\"\n"), "a = \"esc \\\" ${x}\"\n");
    }

    #[test]
    fn heredocs_are_kept_verbatim() {
        let src = "x {\nh = <<EOF\n  keep   this\n    ${ v }\nEOF\nother = 1\n}\n";
        assert_eq!(
            fmt(src),
            "x {\n  h     = <<EOF\n  keep   this\n    ${v}\nEOF\n  other = 1\n}\n"
        );
        let src = "i = <<-EOT\n      x\n    EOT\n";
        assert_eq!(fmt(src), src);
    }

    #[test]
    fn comments_survive() {
        let src = "# top\n/* block\n   comment */\na = 1 // end\n";
        assert_eq!(fmt(src), src);
    }

    #[test]
    fn invalid_hcl_is_refused() {
        assert!(matches!(format_source("a = {"), Err(FormatError::Parse(_))));
    }

    #[test]
    fn formatting_is_idempotent_on_odd_input() {
        let src = "a   =   [\n\"x\",\n  \"y\"\n    ]\nb = { for k,v in m: k=>v }\n";
        let once = fmt(src);
        assert_eq!(fmt(&once), once);
        assert_eq!(
            once,
            "a = [\n  \"x\",\n  \"y\"\n]\nb = { for k, v in m : k => v }\n"
        );
    }

    proptest::proptest! {
        /// Any input either is refused as invalid or formats to a fixed point, without panics.
        #[test]
        fn never_panics_and_is_idempotent(src in "[a-z0-9 =\\[\\]{}(),.:?!<>+*/%\"$~#\n-]{0,80}") {
            if let Ok(once) = format_source(&src) {
                proptest::prop_assert_eq!(format_source(&once).unwrap(), once);
            }
        }

        /// Whitespace changes only: removing all spaces gives the same text before and after.
        #[test]
        fn only_whitespace_changes(body in "(([a-z]{1,6}) *= *(\"[a-z ${}]{0,8}\"|[0-9]{1,3}|\\[[0-9, ]{0,9}\\]) *\n){1,6}") {
            if let Ok(out) = format_source(&body) {
                let strip = |s: &str| s.chars().filter(|c| *c != ' ').collect::<String>();
                proptest::prop_assert_eq!(strip(&out), strip(&body));
            }
        }
    }
}
