//! Parsing series selectors such as `up{job="api",instance=~"gpu-.*"}`.
//!
//! Used where a selector arrives outside a PromQL expression: `--match` flags,
//! `match[]` parameters, recording tools. String literals accept the PromQL forms:
//! double or single quotes with Go escapes, or backticks with no escapes.

use crate::labels::METRIC_NAME;
use crate::matcher::{MatchType, Matcher, MatcherError};

/// Why a selector did not parse; `pos` is a byte offset into the input.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("bad selector at byte {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Parses a series selector into matchers. A bare metric name becomes a `__name__`
/// equality matcher. At least one matcher must not match the empty string, as in
/// Prometheus (`{}` and `{a=""}` alone are rejected).
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut p = Cursor { s: input, pos: 0 };
    let mut matchers = Vec::new();
    p.skip_ws();
    if p.peek().is_some_and(is_name_start) {
        let name = p.ident(true);
        matchers.push(Matcher::equal(METRIC_NAME, name));
    }
    p.skip_ws();
    if p.peek() == Some('{') {
        p.pos += 1;
        loop {
            p.skip_ws();
            match p.peek() {
                Some('}') => {
                    p.pos += 1;
                    break;
                }
                None => return Err(p.err("unterminated '{'")),
                _ => {}
            }
            let name = if matches!(p.peek(), Some('"' | '\'' | '`')) {
                p.string()?
            } else {
                if !p.peek().is_some_and(is_name_start) {
                    return Err(p.err("expected a label name"));
                }
                p.ident(false).to_owned()
            };
            p.skip_ws();
            let op = if p.eat("=~") {
                MatchType::Regex
            } else if p.eat("!~") {
                MatchType::NotRegex
            } else if p.eat("!=") {
                MatchType::NotEqual
            } else if p.eat("=") {
                MatchType::Equal
            } else {
                return Err(p.err("expected one of =, !=, =~, !~"));
            };
            p.skip_ws();
            let value = p.string()?;
            matchers.push(Matcher::new(op, &name, &value)?);
            p.skip_ws();
            if p.eat(",") {
                continue;
            }
            if p.peek() != Some('}') {
                return Err(p.err("expected ',' or '}'"));
            }
        }
    }
    p.skip_ws();
    if p.pos != input.len() {
        return Err(p.err("unexpected trailing input"));
    }
    if matchers.is_empty() {
        return Err(p.err("empty selector"));
    }
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(SelectorError::Syntax {
            pos: 0,
            msg: "vector selector must contain at least one non-empty matcher".into(),
        });
    }
    Ok(matchers)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn err(&self, msg: &str) -> SelectorError {
        SelectorError::Syntax {
            pos: self.pos,
            msg: msg.to_owned(),
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        if self.s[self.pos..].starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += self.peek().map_or(0, char::len_utf8);
        }
    }

    /// A metric name (letters, digits, `_`, and `:` when `colons`) or label name.
    fn ident(&mut self, colons: bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':') {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.s[start..self.pos]
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c != '\\' || quote == '`' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' | '"' | '\'' => out.push(e),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = (0..n)
                        .filter_map(|_| chars.next().map(|(_, h)| h))
                        .collect();
                    let code = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == n)
                        .and_then(char::from_u32)
                        .ok_or_else(|| self.err(&format!("bad escape \\{e}{hex}")))?;
                    out.push(code);
                }
                other => return Err(self.err(&format!("unknown escape sequence \\{other}"))),
            }
        }
        Err(self.err("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: &[&str]) {
        let got: Vec<String> = parse_selector(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want, "{input}");
    }

    #[test]
    fn selectors() {
        check("up", &[r#"__name__="up""#]);
        check(r#"up{job="a"}"#, &[r#"__name__="up""#, r#"job="a""#]);
        check(
            r#"{__name__=~"gpu_.*", i!="x" , }"#,
            &[r#"__name__=~"gpu_.*""#, r#"i!="x""#],
        );
        check(r#"{x="1",a!~'b\'c'}"#, &[r#"x="1""#, r#"a!~"b'c""#]);
        check(r#"{a=`x\y`}"#, &[r#"a="x\\y""#]);
        check(
            r#"ns:metric:rate5m{a="\u00e9\n"}"#,
            &[r#"__name__="ns:metric:rate5m""#, r#"a="é\n""#],
        );
    }

    #[test]
    fn bad_selectors() {
        for bad in [
            "",
            "{}",
            r#"{a=""}"#,
            r#"{a="x"#,
            r#"{a~"x"}"#,
            r#"up{a="x"} extra"#,
            r#"{a=~"("}"#,
            "{1a=\"x\"}",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?} should fail");
        }
    }
}
