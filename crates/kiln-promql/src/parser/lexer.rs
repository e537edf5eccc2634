//! The PromQL lexer: turns a query into tokens with byte offsets, one at a time.
//!
//! It follows Prometheus's lexer state for state, because its error messages and the
//! points where it gives up are part of what users see (`unclosed left parenthesis`,
//! `unexpected character inside braces: '.'`, `bad number or duration syntax: "5x"`):
//! - *statements* (the default): operators, numbers and durations, strings,
//!   identifiers and keywords (case-insensitive), parentheses, `@`, `#` comments;
//! - *inside braces* (after `{`): label names (keywords are plain identifiers here),
//!   strings, `,` and the four match operators;
//! - *duration expression* (right after `[`): numbers, durations, `step()`,
//!   `range()`, `min_of`/`max_of`, arithmetic and `:`; after the first number or
//!   duration the lexer is back in statements mode with the bracket still open, as
//!   Prometheus's is, so `:` and the duration keywords keep their meaning there.
//!
//! An error is a token of its own ([`Tok::Error`]) carrying Prometheus's message;
//! after it (and after the end of input) the lexer only returns [`Tok::Eof`].

use super::go;

/// The kinds of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    Eof,
    Error,
    Comment,
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    String,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Colon,
    /// `=` (inside braces, and as a lone character outside, where it is an error later).
    Eql,
    // Operators.
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eqlc,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    TrimUpper,
    TrimLower,
    EqlRegex,
    NeqRegex,
    At,
    Atan2,
    Land,
    Lor,
    Lunless,
    // Aggregators.
    Avg,
    Bottomk,
    Count,
    CountValues,
    Group,
    Max,
    Min,
    Quantile,
    Stddev,
    Stdvar,
    Sum,
    Topk,
    Limitk,
    LimitRatio,
    // Keywords.
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Fill,
    FillLeft,
    FillRight,
    Ignoring,
    Offset,
    Smoothed,
    Anchored,
    On,
    Without,
    // Preprocessors: `@ start()`, `@ end()` and duration-expression functions.
    Start,
    End,
    Step,
    Range,
    MaxOf,
    MinOf,
}

/// Words with a meaning of their own outside braces (matched case-insensitively).
const KEYWORDS: &[(&str, Tok)] = &[
    ("and", Tok::Land),
    ("or", Tok::Lor),
    ("unless", Tok::Lunless),
    ("atan2", Tok::Atan2),
    ("sum", Tok::Sum),
    ("avg", Tok::Avg),
    ("count", Tok::Count),
    ("min", Tok::Min),
    ("max", Tok::Max),
    ("group", Tok::Group),
    ("stddev", Tok::Stddev),
    ("stdvar", Tok::Stdvar),
    ("topk", Tok::Topk),
    ("bottomk", Tok::Bottomk),
    ("count_values", Tok::CountValues),
    ("quantile", Tok::Quantile),
    ("limitk", Tok::Limitk),
    ("limit_ratio", Tok::LimitRatio),
    ("offset", Tok::Offset),
    ("smoothed", Tok::Smoothed),
    ("anchored", Tok::Anchored),
    ("by", Tok::By),
    ("without", Tok::Without),
    ("on", Tok::On),
    ("ignoring", Tok::Ignoring),
    ("group_left", Tok::GroupLeft),
    ("group_right", Tok::GroupRight),
    ("fill", Tok::Fill),
    ("fill_left", Tok::FillLeft),
    ("fill_right", Tok::FillRight),
    ("bool", Tok::Bool),
    ("start", Tok::Start),
    ("end", Tok::End),
    ("step", Tok::Step),
    ("range", Tok::Range),
    ("max_of", Tok::MaxOf),
    ("min_of", Tok::MinOf),
    ("inf", Tok::Number),
    ("nan", Tok::Number),
];

/// The keywords that may appear in a duration expression.
const DURATION_KEYWORDS: &[(&str, Tok)] = &[
    ("step", Tok::Step),
    ("range", Tok::Range),
    ("max_of", Tok::MaxOf),
    ("min_of", Tok::MinOf),
];

fn keyword(word: &str) -> Option<Tok> {
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|&(_, t)| t)
}

impl Tok {
    pub(crate) fn is_operator(self) -> bool {
        matches!(
            self,
            Tok::Add
                | Tok::Sub
                | Tok::Mul
                | Tok::Div
                | Tok::Mod
                | Tok::Pow
                | Tok::Eqlc
                | Tok::Neq
                | Tok::Lss
                | Tok::Lte
                | Tok::Gtr
                | Tok::Gte
                | Tok::TrimUpper
                | Tok::TrimLower
                | Tok::EqlRegex
                | Tok::NeqRegex
                | Tok::At
                | Tok::Atan2
                | Tok::Land
                | Tok::Lor
                | Tok::Lunless
        )
    }

    pub(crate) fn is_aggregator(self) -> bool {
        matches!(
            self,
            Tok::Avg
                | Tok::Bottomk
                | Tok::Count
                | Tok::CountValues
                | Tok::Group
                | Tok::Max
                | Tok::Min
                | Tok::Quantile
                | Tok::Stddev
                | Tok::Stdvar
                | Tok::Sum
                | Tok::Topk
                | Tok::Limitk
                | Tok::LimitRatio
        )
    }

    pub(crate) fn is_keyword(self) -> bool {
        matches!(
            self,
            Tok::Bool
                | Tok::By
                | Tok::GroupLeft
                | Tok::GroupRight
                | Tok::Fill
                | Tok::FillLeft
                | Tok::FillRight
                | Tok::Ignoring
                | Tok::Offset
                | Tok::Smoothed
                | Tok::Anchored
                | Tok::On
                | Tok::Without
        )
    }

    /// The token's fixed spelling, for the kinds that have one (Prometheus's
    /// `ItemTypeStr`): these are described by their text alone in error messages.
    fn has_fixed_spelling(self) -> bool {
        !matches!(
            self,
            Tok::Eof
                | Tok::Error
                | Tok::Comment
                | Tok::Identifier
                | Tok::MetricIdentifier
                | Tok::Number
                | Tok::Duration
                | Tok::String
        )
    }
}

/// One token: its kind, where it starts and its text (for errors, the message).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: Tok,
    pub(crate) pos: usize,
    pub(crate) text: String,
}

impl Token {
    /// How an error message names the token, as Prometheus does (`<by>`, `<op:+>`,
    /// `<aggr:sum>`, `identifier "foo"`, `number "1"`, `"("`, `end of input`).
    pub(crate) fn describe(&self) -> String {
        let shown = || -> String {
            if self.kind.is_keyword() {
                format!("<{}>", self.text)
            } else if self.kind.is_operator() {
                format!("<op:{}>", self.text)
            } else if self.kind.is_aggregator() {
                format!("<aggr:{}>", self.text)
            } else if self.text.chars().count() > 10 {
                let cut: String = self.text.chars().take(10).collect();
                format!("{}...", go::quote(&cut))
            } else {
                go::quote(&self.text)
            }
        };
        if self.kind.has_fixed_spelling() {
            return shown();
        }
        let what = match self.kind {
            Tok::Eof => return "end of input".to_owned(),
            Tok::Error => "error",
            Tok::Comment => "comment",
            Tok::Identifier => "identifier",
            Tok::MetricIdentifier => "metric identifier",
            Tok::String => "string",
            Tok::Number => "number",
            _ => "duration",
        };
        match self.kind {
            Tok::Error => format!("{what} {}", self.text),
            Tok::Identifier | Tok::MetricIdentifier => format!("{what} {}", go::quote(&self.text)),
            _ => format!("{what} {}", shown()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Statements,
    InsideBraces,
    DurationExpr,
    /// After the end of input or an error: only `Eof` from here on.
    Done,
}

/// The lexer over one query.
pub(crate) struct Lexer<'q> {
    input: &'q str,
    pos: usize,
    start: usize,
    mode: Mode,
    paren_depth: i64,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
}

/// Stands for Go's `eof` rune (-1) where a message prints it: `%q` of -1 is `'�'`.
const EOF_CHAR: char = '\u{FFFD}';

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

impl<'q> Lexer<'q> {
    pub(crate) fn new(input: &'q str) -> Self {
        Lexer {
            input,
            pos: 0,
            start: 0,
            mode: Mode::Statements,
            paren_depth: 0,
            bracket_open: false,
            got_colon: false,
            got_duration: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn is(&self, valid: &str) -> bool {
        self.peek().is_some_and(|c| valid.contains(c))
    }

    fn emit(&mut self, kind: Tok) -> Token {
        let t = Token {
            kind,
            pos: self.start,
            text: self.input[self.start..self.pos].to_owned(),
        };
        self.start = self.pos;
        t
    }

    fn error(&mut self, message: String) -> Token {
        self.mode = Mode::Done;
        Token {
            kind: Tok::Error,
            pos: self.start,
            text: message,
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
        self.start = self.pos;
    }

    /// The next token (comments included).
    pub(crate) fn next_token(&mut self) -> Token {
        loop {
            let t = match self.mode {
                Mode::Done => {
                    self.start = self.pos;
                    Some(Token {
                        kind: Tok::Eof,
                        pos: self.input.len(),
                        text: String::new(),
                    })
                }
                Mode::Statements => self.statements(),
                Mode::InsideBraces => self.inside_braces(),
                Mode::DurationExpr => self.duration_expr(),
            };
            if let Some(t) = t {
                return t;
            }
        }
    }

    /// One step in statements mode; `None` when it only skipped something.
    fn statements(&mut self) -> Option<Token> {
        if self.input[self.pos..].starts_with('#') {
            return Some(self.line_comment());
        }
        let Some(c) = self.bump() else {
            if self.paren_depth != 0 {
                return Some(self.error("unclosed left parenthesis".to_owned()));
            }
            if self.bracket_open {
                return Some(self.error("unclosed left bracket".to_owned()));
            }
            self.mode = Mode::Done;
            return Some(self.emit(Tok::Eof));
        };
        let tok = match c {
            ',' => self.emit(Tok::Comma),
            c if is_space(c) => {
                self.skip_spaces();
                return None;
            }
            '*' => self.emit(Tok::Mul),
            '/' => self.emit(Tok::Div),
            '%' => self.emit(Tok::Mod),
            '+' => self.emit(Tok::Add),
            '-' => self.emit(Tok::Sub),
            '^' => self.emit(Tok::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.bump();
                    self.emit(Tok::Eqlc)
                }
                Some('~') => {
                    return Some(self.error(format!(
                        "unexpected character after '=': {}",
                        go::quote_rune('~')
                    )));
                }
                _ => self.emit(Tok::Eql),
            },
            '!' => match self.bump() {
                Some('=') => self.emit(Tok::Neq),
                other => {
                    return Some(self.error(format!(
                        "unexpected character after '!': {}",
                        go::quote_rune(other.unwrap_or(EOF_CHAR))
                    )));
                }
            },
            '<' => {
                if self.accept("=") {
                    self.emit(Tok::Lte)
                } else if self.accept("/") {
                    self.emit(Tok::TrimUpper)
                } else {
                    self.emit(Tok::Lss)
                }
            }
            '>' => {
                if self.accept("=") {
                    self.emit(Tok::Gte)
                } else if self.accept("/") {
                    self.emit(Tok::TrimLower)
                } else {
                    self.emit(Tok::Gtr)
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|n| n.is_ascii_digit())) =>
            {
                self.pos -= 1;
                return Some(self.number_or_duration());
            }
            '"' | '\'' => return Some(self.string(c)),
            '`' => return Some(self.raw_string()),
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.pos -= 1;
                    return Some(self.keyword_or_identifier());
                }
                if c == ':' {
                    if self.got_colon {
                        return Some(
                            self.error(format!("unexpected colon {}", go::quote_rune(':'))),
                        );
                    }
                    self.got_colon = true;
                    return Some(self.emit(Tok::Colon));
                }
                if let Some(t) = self.duration_keyword() {
                    return Some(t);
                }
                return Some(self.error(format!(
                    "unexpected character: {}, expected {}",
                    go::quote_rune(c),
                    go::quote_rune(':')
                )));
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Tok::LeftParen)
            }
            ')' => self.right_paren(),
            '{' => {
                self.mode = Mode::InsideBraces;
                self.emit(Tok::LeftBrace)
            }
            '[' => {
                if self.bracket_open {
                    return Some(
                        self.error(format!("unexpected left bracket {}", go::quote_rune('['))),
                    );
                }
                self.got_colon = false;
                let t = self.emit(Tok::LeftBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.mode = Mode::DurationExpr;
                t
            }
            ']' => {
                if !self.bracket_open {
                    return Some(
                        self.error(format!("unexpected right bracket {}", go::quote_rune(']'))),
                    );
                }
                self.bracket_open = false;
                self.emit(Tok::RightBracket)
            }
            '@' => self.emit(Tok::At),
            c => {
                return Some(self.error(format!("unexpected character: {}", go::quote_rune(c))));
            }
        };
        Some(tok)
    }

    /// `)`, or an error when it closes nothing. Prometheus emits the parenthesis before
    /// it checks, so the error sits just after it.
    fn right_paren(&mut self) -> Token {
        let t = self.emit(Tok::RightParen);
        self.paren_depth -= 1;
        if self.paren_depth < 0 {
            return self.error(format!(
                "unexpected right parenthesis {}",
                go::quote_rune(')')
            ));
        }
        t
    }

    fn line_comment(&mut self) -> Token {
        while let Some(c) = self.peek() {
            if c == '\r' || c == '\n' {
                break;
            }
            self.bump();
        }
        self.emit(Tok::Comment)
    }

    /// A duration keyword (`step`, `range`, `min_of`, `max_of`) whose first character
    /// was just read; `None` (with the word consumed, as Prometheus leaves it) when the
    /// word is something else.
    fn duration_keyword(&mut self) -> Option<Token> {
        let first = self.input[self.start..].chars().next()?;
        if !DURATION_KEYWORDS
            .iter()
            .any(|(k, _)| k.starts_with(first.to_ascii_lowercase()))
        {
            return None;
        }
        while self.peek().is_some_and(is_alpha) {
            self.bump();
        }
        let word = &self.input[self.start..self.pos];
        let tok = DURATION_KEYWORDS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(word))
            .map(|&(_, t)| t)?;
        Some(self.emit(tok))
    }

    fn inside_braces(&mut self) -> Option<Token> {
        if self.input[self.pos..].starts_with('#') {
            return Some(self.line_comment());
        }
        let Some(c) = self.bump() else {
            return Some(self.error("unexpected end of input inside braces".to_owned()));
        };
        let tok = match c {
            c if is_space(c) => {
                self.skip_spaces();
                return None;
            }
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alphanumeric) {
                    self.bump();
                }
                self.emit(Tok::Identifier)
            }
            ',' => self.emit(Tok::Comma),
            '"' | '\'' => return Some(self.string(c)),
            '`' => return Some(self.raw_string()),
            '=' => {
                if self.accept("~") {
                    self.emit(Tok::EqlRegex)
                } else {
                    self.emit(Tok::Eql)
                }
            }
            '!' => match self.bump() {
                Some('~') => self.emit(Tok::NeqRegex),
                Some('=') => self.emit(Tok::Neq),
                other => {
                    return Some(self.error(format!(
                        "unexpected character after '!' inside braces: {}",
                        go::quote_rune(other.unwrap_or(EOF_CHAR))
                    )));
                }
            },
            '{' => {
                return Some(self.error(format!("unexpected left brace {}", go::quote_rune('{'))));
            }
            '}' => {
                self.mode = Mode::Statements;
                self.emit(Tok::RightBrace)
            }
            c => {
                return Some(self.error(format!(
                    "unexpected character inside braces: {}",
                    go::quote_rune(c)
                )));
            }
        };
        Some(tok)
    }

    fn duration_expr(&mut self) -> Option<Token> {
        let Some(c) = self.bump() else {
            return Some(self.error("unexpected end of input in duration expression".to_owned()));
        };
        let tok = match c {
            ']' => {
                self.bracket_open = false;
                self.got_colon = false;
                self.mode = Mode::Statements;
                self.emit(Tok::RightBracket)
            }
            ':' => {
                let t = self.emit(Tok::Colon);
                if !self.got_duration {
                    return Some(self.error(
                        "unexpected colon before duration in duration expression".to_owned(),
                    ));
                }
                if self.got_colon {
                    return Some(
                        self.error("unexpected repeated colon in duration expression".to_owned()),
                    );
                }
                self.got_colon = true;
                t
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Tok::LeftParen)
            }
            ')' => self.right_paren(),
            c if is_space(c) => {
                self.skip_spaces();
                return None;
            }
            '+' => self.emit(Tok::Add),
            '-' => self.emit(Tok::Sub),
            '*' => self.emit(Tok::Mul),
            '/' => self.emit(Tok::Div),
            '%' => self.emit(Tok::Mod),
            '^' => self.emit(Tok::Pow),
            ',' => self.emit(Tok::Comma),
            c if c.is_ascii_digit()
                || (c == '.' && self.peek().is_some_and(|n| n.is_ascii_digit())) =>
            {
                self.pos -= 1;
                self.got_duration = true;
                return Some(self.number_or_duration());
            }
            c => {
                if let Some(t) = self.duration_keyword() {
                    return Some(t);
                }
                return Some(self.error(format!(
                    "unexpected character in duration expression: {}",
                    go::quote_rune(c)
                )));
            }
        };
        Some(tok)
    }

    /// A number or a duration; back to statements mode afterwards.
    fn number_or_duration(&mut self) -> Token {
        self.mode = Mode::Statements;
        if self.scan_number() {
            return self.emit(Tok::Number);
        }
        if self.accept_remaining_duration() {
            return self.emit(Tok::Duration);
        }
        let text = &self.input[self.start..self.pos];
        let message = format!("bad number or duration syntax: {}", go::quote(text));
        self.error(message)
    }

    /// The rest of a duration after its first digits: a unit, then more `digits unit`
    /// pairs, not followed by a letter or digit. On success the position is just past the
    /// duration; on failure it is past the character that did not fit (the error shows
    /// it, as Prometheus's does).
    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        match self.peek() {
            Some(c) if is_alphanumeric(c) => {
                self.bump();
                false
            }
            _ => true,
        }
    }

    /// Scans a decimal, hexadecimal or octal number, or a float with an exponent and
    /// digit-separating underscores. Whether it is a valid number is decided when it is
    /// converted; this only finds where it ends.
    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        self.accept(".");
        self.accept(digits);
        // Prometheus's loop, kept as it is (hexadecimal `e`s included): its verdicts
        // decide which texts are bad numbers.
        let mut dot = false;
        let mut exponent = false;
        let all = format!("{digits}._eE");
        while self.is(&all) {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exponent {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") || digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exponent = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            while self.accept(digits) {}
        }
        if self.pos == initial {
            return false;
        }
        !self.peek().is_some_and(is_alphanumeric)
    }

    fn string(&mut self, quote: char) -> Token {
        loop {
            match self.bump() {
                Some('\\') => {
                    if let Some(message) = self.escape(quote) {
                        return self.error(message);
                    }
                }
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".to_owned()),
                None | Some('\n') => return self.error("unterminated quoted string".to_owned()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.after_string()
    }

    fn raw_string(&mut self) -> Token {
        loop {
            match self.bump() {
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".to_owned()),
                None => return self.error("unterminated raw string".to_owned()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.after_string()
    }

    fn after_string(&mut self) -> Token {
        let t = self.emit(Tok::String);
        // A string inside braces keeps the lexer there; elsewhere it is a statement.
        if self.mode != Mode::InsideBraces {
            self.mode = Mode::Statements;
        }
        t
    }

    /// Checks an escape sequence after `\` (Go's rules); `Some(message)` when invalid.
    fn escape(&mut self, quote: char) -> Option<String> {
        let c = self.bump();
        let (mut n, base, max) = match c {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return None,
            Some(c) if c == quote => return None,
            Some('0'..='7') => {
                self.pos -= 1;
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return Some("escape sequence not terminated".to_owned()),
            Some(c) => return Some(format!("unknown escape sequence {}", go::format_u(c))),
        };
        let mut value: u32 = 0;
        while n > 0 {
            let c = self.bump();
            let d = c.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return Some(match c {
                    None => "escape sequence not terminated".to_owned(),
                    Some(c) => format!("illegal character {} in escape sequence", go::format_u(c)),
                });
            }
            value = value.saturating_mul(base).saturating_add(d);
            n -= 1;
        }
        if value > max || (0xD800..0xE000).contains(&value) {
            return Some("escape sequence is an invalid Unicode code point".to_owned());
        }
        None
    }

    fn keyword_or_identifier(&mut self) -> Token {
        while self.peek().is_some_and(|c| is_alphanumeric(c) || c == ':') {
            self.bump();
        }
        let word = &self.input[self.start..self.pos];
        match keyword(word) {
            Some(Tok::Fill | Tok::FillLeft | Tok::FillRight) if !self.followed_by_paren() => {
                self.emit(Tok::Identifier)
            }
            Some(kw) => self.emit(kw),
            None if word.contains(':') => self.emit(Tok::MetricIdentifier),
            None => self.emit(Tok::Identifier),
        }
    }

    fn followed_by_paren(&self) -> bool {
        self.input[self.pos..]
            .chars()
            .find(|&c| !is_space(c))
            .is_some_and(|c| c == '(')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(input: &str) -> Vec<(Tok, String)> {
        let mut l = Lexer::new(input);
        let mut out = Vec::new();
        loop {
            let t = l.next_token();
            if t.kind == Tok::Eof {
                return out;
            }
            let end = t.kind == Tok::Error;
            out.push((t.kind, t.text));
            if end {
                return out;
            }
        }
    }

    fn check(input: &str, want: &[(Tok, &str)]) {
        let got = lex(input);
        let want: Vec<(Tok, String)> = want.iter().map(|(t, s)| (*t, s.to_string())).collect();
        assert_eq!(got, want, "{input}");
    }

    #[test]
    fn tokens() {
        use Tok::*;
        check("1 + 2", &[(Number, "1"), (Add, "+"), (Number, "2")]);
        check("foo:bar", &[(MetricIdentifier, "foo:bar")]);
        check("SUM BY", &[(Sum, "SUM"), (By, "BY")]);
        check("Inf nan", &[(Number, "Inf"), (Number, "nan")]);
        check(
            "fill + fill()",
            &[
                (Identifier, "fill"),
                (Add, "+"),
                (Fill, "fill"),
                (LeftParen, "("),
                (RightParen, ")"),
            ],
        );
        check(
            r#"{a=~"x", b!="y"}"#,
            &[
                (LeftBrace, "{"),
                (Identifier, "a"),
                (EqlRegex, "=~"),
                (String, "\"x\""),
                (Comma, ","),
                (Identifier, "b"),
                (Neq, "!="),
                (String, "\"y\""),
                (RightBrace, "}"),
            ],
        );
        check(
            "x[5m:1m]",
            &[
                (Identifier, "x"),
                (LeftBracket, "["),
                (Duration, "5m"),
                (Colon, ":"),
                (Duration, "1m"),
                (RightBracket, "]"),
            ],
        );
        check(
            "x[step()]",
            &[
                (Identifier, "x"),
                (LeftBracket, "["),
                (Step, "step"),
                (LeftParen, "("),
                (RightParen, ")"),
                (RightBracket, "]"),
            ],
        );
        check(
            "0x1F 1e-3 .5 1_000",
            &[
                (Number, "0x1F"),
                (Number, "1e-3"),
                (Number, ".5"),
                (Number, "1_000"),
            ],
        );
        check(
            "a # comment\n+ b",
            &[
                (Identifier, "a"),
                (Comment, "# comment"),
                (Add, "+"),
                (Identifier, "b"),
            ],
        );
        check(
            "a </ b >/ c",
            &[
                (Identifier, "a"),
                (TrimUpper, "</"),
                (Identifier, "b"),
                (TrimLower, ">/"),
                (Identifier, "c"),
            ],
        );
    }

    #[test]
    fn errors() {
        use Tok::*;
        check(
            "(a",
            &[
                (LeftParen, "("),
                (Identifier, "a"),
                (Error, "unclosed left parenthesis"),
            ],
        );
        check(
            "a)",
            &[
                (Identifier, "a"),
                (Error, "unexpected right parenthesis ')'"),
            ],
        );
        check(
            "a[5m",
            &[
                (Identifier, "a"),
                (LeftBracket, "["),
                (Duration, "5m"),
                (Error, "unclosed left bracket"),
            ],
        );
        check(
            "a]",
            &[(Identifier, "a"), (Error, "unexpected right bracket ']'")],
        );
        check("5x", &[(Error, "bad number or duration syntax: \"5\"")]);
        check("5mx", &[(Error, "bad number or duration syntax: \"5mx\"")]);
        check(
            "{a.b}",
            &[
                (LeftBrace, "{"),
                (Identifier, "a"),
                (Error, "unexpected character inside braces: '.'"),
            ],
        );
        check(
            "{a",
            &[
                (LeftBrace, "{"),
                (Identifier, "a"),
                (Error, "unexpected end of input inside braces"),
            ],
        );
        check("\"abc", &[(Error, "unterminated quoted string")]);
        check("\"\\q\"", &[(Error, "unknown escape sequence U+0071 'q'")]);
        check(
            "a $",
            &[(Identifier, "a"), (Error, "unexpected character: '$'")],
        );
        check(
            "a =~ b",
            &[
                (Identifier, "a"),
                (Error, "unexpected character after '=': '~'"),
            ],
        );
        check(
            "a !",
            &[
                (Identifier, "a"),
                (Error, "unexpected character after '!': '\u{FFFD}'"),
            ],
        );
        check(
            "x[5m::]",
            &[
                (Identifier, "x"),
                (LeftBracket, "["),
                (Duration, "5m"),
                (Colon, ":"),
                (Error, "unexpected colon ':'"),
            ],
        );
        check(
            "x[:5m]",
            &[
                (Identifier, "x"),
                (LeftBracket, "["),
                (
                    Error,
                    "unexpected colon before duration in duration expression",
                ),
            ],
        );
        check(
            "x[5m foo]",
            &[
                (Identifier, "x"),
                (LeftBracket, "["),
                (Duration, "5m"),
                (Error, "unexpected character: 'f', expected ':'"),
            ],
        );
    }

    #[test]
    fn positions() {
        let mut l = Lexer::new("sum by (a)");
        let starts: Vec<usize> = std::iter::from_fn(|| {
            let t = l.next_token();
            (t.kind != Tok::Eof).then_some(t.pos)
        })
        .collect();
        assert_eq!(starts, vec![0, 4, 7, 8, 9]);
    }

    #[test]
    fn descriptions() {
        let t = |kind, text: &str| Token {
            kind,
            pos: 0,
            text: text.to_owned(),
        };
        assert_eq!(t(Tok::By, "by").describe(), "<by>");
        assert_eq!(t(Tok::Add, "+").describe(), "<op:+>");
        assert_eq!(t(Tok::Sum, "sum").describe(), "<aggr:sum>");
        assert_eq!(t(Tok::Identifier, "foo").describe(), "identifier \"foo\"");
        assert_eq!(t(Tok::Number, "1").describe(), "number \"1\"");
        assert_eq!(t(Tok::Duration, "5m").describe(), "duration \"5m\"");
        assert_eq!(
            t(Tok::String, "\"abc\"").describe(),
            "string \"\\\"abc\\\"\""
        );
        assert_eq!(
            t(Tok::String, "\"abcdefghijkl\"").describe(),
            "string \"\\\"abcdefghi\"..."
        );
        assert_eq!(t(Tok::LeftParen, "(").describe(), "\"(\"");
        assert_eq!(t(Tok::Eof, "").describe(), "end of input");
        assert_eq!(t(Tok::Start, "start").describe(), "\"start\"");
    }
}
