//! Parsing test scripts into commands.
//!
//! Lines are trimmed; a line starting with `#` counts as blank. A blank line ends a
//! `load` or `eval` block (as in Prometheus, so a comment inside a block ends it too).
//! A line that does not parse is reported with its line number; the parser then skips
//! to the next blank line and goes on, so one bad command does not hide the rest.

use kiln_model::{Labels, parse_duration_ms};

use super::series::{SeqValue, SeriesLine, parse_number, parse_quoted, parse_series_line};

/// A parsed script: its commands in order, and the lines that did not parse.
#[derive(Debug, Default)]
pub struct Script {
    pub commands: Vec<Command>,
    pub errors: Vec<ParseError>,
}

/// A line that did not parse (1-based line number).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum Command {
    Load(Load),
    /// `clear`: drop all loaded data.
    Clear {
        line: usize,
    },
    Eval(Eval),
}

/// `load <interval>` or `load_with_nhcb <interval>` and its series.
#[derive(Debug, Clone)]
pub struct Load {
    pub line: usize,
    /// Milliseconds between points; point `i` of a series is at `i * interval`.
    pub interval: i64,
    /// `load_with_nhcb`: classic histograms are also loaded as native histograms with
    /// custom buckets.
    pub with_nhcb: bool,
    /// Series with the line each came from.
    pub series: Vec<(usize, SeriesLine)>,
}

/// Instant or range evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    /// `eval instant at <t>`.
    Instant { at: i64 },
    /// `eval range from <start> to <end> step <step>`.
    Range { start: i64, end: i64, step: i64 },
}

/// How an expected message is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgMatch {
    /// No message given: anything matches.
    Any,
    /// `msg: <text>`: exact match.
    Exact(String),
    /// `regex: <re>`: unanchored regular expression match.
    Regex(String),
}

/// The `expect` lines of an eval (and the deprecated `eval_*` forms mapped onto them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    /// `expect fail`: the query must fail.
    pub fail: Option<MsgMatch>,
    /// `expect warn`: each must match some warning, and every warning must match one.
    pub warn: Vec<MsgMatch>,
    pub no_warn: bool,
    pub info: Vec<MsgMatch>,
    pub no_info: bool,
    /// `expect ordered`: the result must come in the listed order.
    pub ordered: bool,
}

/// One expected series of an eval.
#[derive(Debug, Clone)]
pub struct ExpectedSeries {
    pub line: usize,
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

/// What an eval expects as its result.
#[derive(Debug, Clone)]
pub enum Expected {
    /// Series (an instant vector, or a matrix for range queries and range vectors), in
    /// the listed order, labels unique (a repeated label set replaces the earlier line,
    /// as in Prometheus). Empty means an empty result.
    Series(Vec<ExpectedSeries>),
    /// A line with just a number: a scalar result.
    Scalar(f64),
    /// `expect string "..."`.
    String(String),
}

/// `expect range vector from <start> to <end> step <step>`: the timestamps of the range
/// vector an instant query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeVectorSpec {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// An `eval` command.
#[derive(Debug, Clone)]
pub struct Eval {
    pub line: usize,
    /// The eval line as written, for reports.
    pub text: String,
    pub query: String,
    pub mode: EvalMode,
    pub expect: Expectations,
    pub range_vector: Option<RangeVectorSpec>,
    pub expected: Expected,
}

impl Eval {
    /// Whether any expected value is a native histogram.
    pub fn expects_histograms(&self) -> bool {
        match &self.expected {
            Expected::Series(s) => s.iter().any(|s| s.values.contains(&SeqValue::Histogram)),
            _ => false,
        }
    }
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Script {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut script = Script::default();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let res = if word == "clear" {
            if l.eq_ignore_ascii_case("clear") {
                Ok((i + 1, Command::Clear { line: i + 1 }))
            } else {
                Err(ParseError {
                    line: i + 1,
                    message: format!("invalid command {l:?}"),
                })
            }
        } else if word.starts_with("load") {
            parse_load(&lines, i).map(|(next, c)| (next, Command::Load(c)))
        } else if word.starts_with("eval") {
            parse_eval(&lines, i).map(|(next, c)| (next, Command::Eval(c)))
        } else {
            Err(ParseError {
                line: i + 1,
                message: format!("invalid command {l:?}"),
            })
        };
        match res {
            Ok((next, cmd)) => {
                script.commands.push(cmd);
                i = next;
            }
            Err(e) => {
                // Skip the rest of the block.
                i = e.line.max(i + 1);
                while i < lines.len() && !lines[i].is_empty() {
                    i += 1;
                }
                script.errors.push(e);
            }
        }
    }
    script
}

fn err(line_idx: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line: line_idx + 1,
        message: message.into(),
    }
}

fn parse_time(s: &str, what: &str, line_idx: usize) -> Result<i64, ParseError> {
    parse_duration_ms(s).map_err(|_| err(line_idx, format!("invalid {what} {s:?}: not a duration")))
}

/// Splits off the first whitespace-separated word.
fn next_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn parse_load(lines: &[&str], i: usize) -> Result<(usize, Load), ParseError> {
    let (word, rest) = next_word(lines[i]);
    let with_nhcb = match word {
        "load" => false,
        "load_with_nhcb" => true,
        _ => {
            return Err(err(
                i,
                format!(
                    "invalid load command {:?} (load[_with_nhcb] <step:duration>)",
                    lines[i]
                ),
            ));
        }
    };
    let (interval, extra) = next_word(rest);
    if interval.is_empty() || !extra.is_empty() {
        return Err(err(
            i,
            format!(
                "invalid load command {:?} (load[_with_nhcb] <step:duration>)",
                lines[i]
            ),
        ));
    }
    let interval = parse_time(interval, "load interval", i)?;
    let mut load = Load {
        line: i + 1,
        interval,
        with_nhcb,
        series: Vec::new(),
    };
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let s = parse_series_line(lines[j]).map_err(|m| err(j, m))?;
        load.series.push((j + 1, s));
        j += 1;
    }
    Ok((j, load))
}

fn parse_eval(lines: &[&str], i: usize) -> Result<(usize, Eval), ParseError> {
    let line = lines[i];
    let (word, rest) = next_word(line);
    let mut expect = Expectations::default();
    let variant = word.strip_prefix("eval").unwrap_or("");
    match variant {
        "" => {}
        "_fail" => expect.fail = Some(MsgMatch::Any),
        "_warn" => expect.warn.push(MsgMatch::Any),
        "_info" => expect.info.push(MsgMatch::Any),
        "_ordered" => expect.ordered = true,
        _ => return Err(err(i, format!("invalid command {word:?}"))),
    }
    let (kind, rest) = next_word(rest);
    let usage = "invalid eval command (eval[_fail|_warn|_info|_ordered] instant at <time> <query> | eval[_fail|_warn|_info] range from <start> to <end> step <step> <query>)";
    let (mode, query) = match kind {
        "instant" => {
            let (at_kw, rest) = next_word(rest);
            let (at, query) = next_word(rest);
            if at_kw != "at" || at.is_empty() || query.is_empty() {
                return Err(err(i, usage));
            }
            (
                EvalMode::Instant {
                    at: parse_time(at, "evaluation time", i)?,
                },
                query,
            )
        }
        "range" => {
            if expect.ordered {
                return Err(err(i, "eval_ordered is not allowed for range queries"));
            }
            let (from_kw, rest) = next_word(rest);
            let (start, rest) = next_word(rest);
            let (to_kw, rest) = next_word(rest);
            let (end, rest) = next_word(rest);
            let (step_kw, rest) = next_word(rest);
            let (step, query) = next_word(rest);
            if from_kw != "from"
                || to_kw != "to"
                || step_kw != "step"
                || step.is_empty()
                || query.is_empty()
            {
                return Err(err(i, usage));
            }
            let start = parse_time(start, "start time", i)?;
            let end = parse_time(end, "end time", i)?;
            let step = parse_time(step, "step", i)?;
            (EvalMode::Range { start, end, step }, query)
        }
        _ => return Err(err(i, usage)),
    };
    let mut ev = Eval {
        line: i + 1,
        text: line.to_owned(),
        query: query.to_owned(),
        mode,
        expect,
        range_vector: None,
        expected: Expected::Series(Vec::new()),
    };
    let is_instant = matches!(mode, EvalMode::Instant { .. });
    let mut series: Vec<ExpectedSeries> = Vec::new();
    let mut scalar = None;
    let mut string = None;
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let l = lines[j];
        if let Some(rest) = l.strip_prefix("expected_fail_message") {
            if ev.expect.fail.is_none() {
                return Err(err(
                    j,
                    "expected_fail_message is only allowed after eval_fail",
                ));
            }
            ev.expect.fail = Some(MsgMatch::Exact(rest.trim().to_owned()));
        } else if let Some(rest) = l.strip_prefix("expected_fail_regexp") {
            if ev.expect.fail.is_none() {
                return Err(err(
                    j,
                    "expected_fail_regexp is only allowed after eval_fail",
                ));
            }
            ev.expect.fail = Some(MsgMatch::Regex(rest.trim().to_owned()));
        } else if let Some(rest) = l.strip_prefix("expect range vector") {
            if !is_instant {
                return Err(err(
                    j,
                    "expect range vector is only allowed for instant queries",
                ));
            }
            ev.range_vector = Some(parse_range_vector(rest, j)?);
        } else if let Some(rest) = l.strip_prefix("expect string") {
            if !is_instant {
                return Err(err(j, "expect string is only allowed for instant queries"));
            }
            let rest = rest.trim();
            let (s, tail) =
                parse_quoted(rest).map_err(|m| err(j, format!("invalid expect string: {m}")))?;
            if !tail.trim().is_empty() {
                return Err(err(
                    j,
                    "invalid expect string: text after the closing quote",
                ));
            }
            string = Some(s);
        } else if l.starts_with("expect") {
            parse_expect(l, j, &mut ev.expect)?;
        } else if let Some(v) = parse_number(l) {
            // A scalar result ends the block, as in Prometheus.
            scalar = Some(v);
            j += 1;
            break;
        } else {
            let s = parse_series_line(l).map_err(|m| err(j, m))?;
            if s.values.is_empty() {
                return Err(err(j, "expected series has no values"));
            }
            if is_instant && ev.range_vector.is_none() && s.values.len() > 1 {
                return Err(err(
                    j,
                    "expecting multiple values in instant evaluation not allowed",
                ));
            }
            series.retain(|e| e.labels != s.labels);
            series.push(ExpectedSeries {
                line: j + 1,
                labels: s.labels,
                values: s.values,
            });
        }
        j += 1;
    }
    ev.expected = match (scalar, string) {
        (Some(_), Some(_)) => {
            return Err(err(i, "an eval cannot expect both a scalar and a string"));
        }
        (Some(v), None) if series.is_empty() => Expected::Scalar(v),
        (None, Some(s)) if series.is_empty() => Expected::String(s),
        (None, None) => Expected::Series(series),
        _ => {
            return Err(err(
                i,
                "an eval cannot expect both series and a scalar or string",
            ));
        }
    };
    validate(&ev.expect).map_err(|m| err(i, m))?;
    Ok((j, ev))
}

/// `[from] <start> to <end> step <step>` after `expect range vector`.
fn parse_range_vector(rest: &str, j: usize) -> Result<RangeVectorSpec, ParseError> {
    let usage =
        "invalid expect range vector (expect range vector from <start> to <end> step <step>)";
    let (mut w, mut rest) = next_word(rest);
    if w == "from" {
        (w, rest) = next_word(rest);
    }
    let start = w;
    let (to_kw, rest) = next_word(rest);
    let (end, rest) = next_word(rest);
    let (step_kw, rest) = next_word(rest);
    let (step, rest) = next_word(rest);
    if to_kw != "to" || step_kw != "step" || step.is_empty() || !rest.is_empty() {
        return Err(err(j, usage));
    }
    Ok(RangeVectorSpec {
        start: parse_time(start, "range vector start", j)?,
        end: parse_time(end, "range vector end", j)?,
        step: parse_time(step, "range vector step", j)?,
    })
}

/// `expect <type> [msg|regex: <text>]`.
fn parse_expect(l: &str, j: usize, e: &mut Expectations) -> Result<(), ParseError> {
    let usage =
        "invalid expect statement, must match `expect <type> <match_type>: <string>` format";
    let rest = l.strip_prefix("expect").unwrap_or("");
    if !rest.starts_with(char::is_whitespace) {
        return Err(err(j, usage));
    }
    let (kind, rest) = next_word(rest);
    let matcher = if rest.is_empty() {
        MsgMatch::Any
    } else if let Some(m) = rest.strip_prefix("msg:") {
        MsgMatch::Exact(unquote_message(m.trim()))
    } else if let Some(m) = rest.strip_prefix("regex:") {
        MsgMatch::Regex(unquote_message(m.trim()))
    } else {
        return Err(err(j, usage));
    };
    if let MsgMatch::Exact(s) | MsgMatch::Regex(s) = &matcher
        && s.is_empty()
    {
        return Err(err(
            j,
            "expected message or regular expression after msg:/regex:",
        ));
    }
    let takes_message = matches!(kind, "fail" | "warn" | "info");
    if !takes_message && matcher != MsgMatch::Any {
        return Err(err(j, format!("expect {kind} does not take a message")));
    }
    match kind {
        "fail" => {
            if matches!(e.fail, Some(ref m) if *m != MsgMatch::Any) {
                return Err(err(j, "only one expect fail line is allowed"));
            }
            e.fail = Some(matcher);
        }
        "warn" => e.warn.push(matcher),
        "info" => e.info.push(matcher),
        "no_warn" => e.no_warn = true,
        "no_info" => e.no_info = true,
        "ordered" => e.ordered = true,
        _ => return Err(err(j, format!("{usage}: unknown type {kind:?}"))),
    }
    Ok(())
}

/// A message written in quotes (`msg: "text"`) means the text inside them.
fn unquote_message(s: &str) -> String {
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('`') && s.ends_with('`')))
        && let Ok((v, tail)) = parse_quoted(s)
        && tail.is_empty()
    {
        return v;
    }
    s.to_owned()
}

fn validate(e: &Expectations) -> Result<(), String> {
    if !e.warn.is_empty() && e.no_warn {
        return Err("invalid expect lines: warn and no_warn cannot be used together".into());
    }
    if !e.info.is_empty() && e.no_info {
        return Err("invalid expect lines: info and no_info cannot be used together".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_eval(text: &str) -> Eval {
        let s = parse_script(text);
        assert!(s.errors.is_empty(), "{text}: {:?}", s.errors);
        assert_eq!(s.commands.len(), 1, "{text}");
        match &s.commands[0] {
            Command::Eval(e) => e.clone(),
            other => panic!("{text}: not an eval: {other:?}"),
        }
    }

    #[test]
    fn commands() {
        let text = "# comment\nload 5m\n  a{x=\"1\"} 1+1x2\n  b 0 _ stale\n\nclear\n\nload_with_nhcb 1m\n  c_bucket{le=\"1\"} 1\n\neval instant at 10m a\n  a{x=\"1\"} 3\n";
        let s = parse_script(text);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.commands.len(), 4);
        match &s.commands[0] {
            Command::Load(l) => {
                assert_eq!((l.line, l.interval, l.with_nhcb), (2, 300_000, false));
                assert_eq!(l.series.len(), 2);
                assert_eq!(l.series[1].0, 4);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.commands[1], Command::Clear { line: 6 }));
        assert!(matches!(&s.commands[2], Command::Load(l) if l.with_nhcb && l.interval == 60_000));
        match &s.commands[3] {
            Command::Eval(e) => {
                assert_eq!(e.line, 11);
                assert_eq!(e.query, "a");
                assert_eq!(e.mode, EvalMode::Instant { at: 600_000 });
                assert!(
                    matches!(&e.expected, Expected::Series(v) if v.len() == 1 && v[0].line == 12)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eval_headers() {
        let check = |text: &str, mode: EvalMode, query: &str| {
            let e = one_eval(text);
            assert_eq!(e.mode, mode, "{text}");
            assert_eq!(e.query, query, "{text}");
        };
        check(
            "eval instant at 0 vector(1)",
            EvalMode::Instant { at: 0 },
            "vector(1)",
        );
        check(
            "eval instant at 1h30m  sum by (a) (x{y=\"z w\"})",
            EvalMode::Instant { at: 5_400_000 },
            "sum by (a) (x{y=\"z w\"})",
        );
        check(
            "eval instant at 10s53ms x",
            EvalMode::Instant { at: 10_053 },
            "x",
        );
        check(
            "eval range from 0 to 10m step 1m rate(x[5m])",
            EvalMode::Range {
                start: 0,
                end: 600_000,
                step: 60_000,
            },
            "rate(x[5m])",
        );
        check(
            "eval\tinstant\tat\t5m\tx",
            EvalMode::Instant { at: 300_000 },
            "x",
        );
    }

    #[test]
    fn expectations() {
        let check = |text: &str, want: Expectations| {
            assert_eq!(one_eval(text).expect, want, "{text}");
        };
        let e = Expectations::default;
        check("eval instant at 0 x", e());
        check(
            "eval_fail instant at 0 x",
            Expectations {
                fail: Some(MsgMatch::Any),
                ..e()
            },
        );
        check(
            "eval_warn instant at 0 x",
            Expectations {
                warn: vec![MsgMatch::Any],
                ..e()
            },
        );
        check(
            "eval_info range from 0 to 1m step 1m x",
            Expectations {
                info: vec![MsgMatch::Any],
                ..e()
            },
        );
        check(
            "eval_ordered instant at 0 x",
            Expectations {
                ordered: true,
                ..e()
            },
        );
        check(
            "eval_fail instant at 0 x\n  expected_fail_message boom here",
            Expectations {
                fail: Some(MsgMatch::Exact("boom here".into())),
                ..e()
            },
        );
        check(
            "eval_fail instant at 0 x\n  expected_fail_regexp bo+m",
            Expectations {
                fail: Some(MsgMatch::Regex("bo+m".into())),
                ..e()
            },
        );
        check(
            "eval instant at 0 x\n  expect fail msg:invalid label name \"a\\xc5z\"",
            Expectations {
                fail: Some(MsgMatch::Exact("invalid label name \"a\\xc5z\"".into())),
                ..e()
            },
        );
        check(
            "eval instant at 0 x\n  expect fail msg: \"vector cannot contain metrics\"",
            Expectations {
                fail: Some(MsgMatch::Exact("vector cannot contain metrics".into())),
                ..e()
            },
        );
        check(
            "eval instant at 0 x\n  expect warn msg: PromQL warning: a b (1:5)\n  expect warn regex: c.*d\n  expect no_info",
            Expectations {
                warn: vec![
                    MsgMatch::Exact("PromQL warning: a b (1:5)".into()),
                    MsgMatch::Regex("c.*d".into()),
                ],
                no_info: true,
                ..e()
            },
        );
        check(
            "eval instant at 0 x\n  expect info\n  expect no_warn\n  expect ordered",
            Expectations {
                info: vec![MsgMatch::Any],
                no_warn: true,
                ordered: true,
                ..e()
            },
        );
    }

    #[test]
    fn expected_results() {
        let e = one_eval("eval instant at 0 1\n  -Inf");
        assert!(matches!(e.expected, Expected::Scalar(v) if v == f64::NEG_INFINITY));
        let e = one_eval("eval instant at 0 \"Foo\"\n\texpect string `Foo`");
        assert!(matches!(&e.expected, Expected::String(s) if s == "Foo"));
        let e = one_eval("eval instant at 0 \" Foo \"\n\texpect string \" Foo \"");
        assert!(matches!(&e.expected, Expected::String(s) if s == " Foo "));
        let e = one_eval("eval instant at 0 \"\"\n\texpect string \"\"");
        assert!(matches!(&e.expected, Expected::String(s) if s.is_empty()));
        let e = one_eval(
            "eval instant at 1m m[1m]\n  expect range vector from 10s to 1m step 10s\n  m{a=\"1\"} 2 3 4 5 6",
        );
        assert_eq!(
            e.range_vector,
            Some(RangeVectorSpec {
                start: 10_000,
                end: 60_000,
                step: 10_000
            })
        );
        assert!(matches!(&e.expected, Expected::Series(s) if s[0].values.len() == 5));
        let e = one_eval(
            "eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 _ 3\n  {} 1x2\n  m{a=\"1\"} 7x2",
        );
        match &e.expected {
            Expected::Series(s) => {
                assert_eq!(s.len(), 2, "a repeated label set replaces the earlier line");
                assert_eq!(s[1].values, vec![SeqValue::Float(7.0); 3]);
                assert_eq!(s[1].line, 4);
            }
            other => panic!("{other:?}"),
        }
        let e = one_eval("eval instant at 0 x\n  {} {{count:1}}");
        assert!(e.expects_histograms());
    }

    #[test]
    fn errors() {
        for (text, line) in [
            ("bogus", 1),
            ("load\n a 1", 1),
            ("load 5x\n a 1", 1),
            ("load 5m\n a{ 1", 2),
            ("\neval instant 0 x", 2),
            ("eval instant at x y", 1),
            ("eval range from 0 to 1m x", 1),
            ("eval_ordered range from 0 to 1m step 1m x", 1),
            ("eval_bogus instant at 0 x", 1),
            ("eval instant at 0 x\n  a 1 2", 2),
            ("eval instant at 0 x\n  expect bogus", 2),
            ("eval instant at 0 x\n  expect no_warn msg: x", 2),
            ("eval instant at 0 x\n  expect warn\n  expect no_warn", 1),
            ("eval instant at 0 x\n  expected_fail_message x", 2),
            ("eval instant at 0 x\n  expect string Foo", 2),
            ("eval instant at 0 x\n  1\n  a 1", 3),
            ("clear now", 1),
        ] {
            let s = parse_script(text);
            assert_eq!(s.errors.len(), 1, "{text}: {:?}", s.errors);
            assert_eq!(s.errors[0].line, line, "{text}: {:?}", s.errors);
        }
        // After an error the parser resumes at the next block.
        let s = parse_script("load 5m\n a{ 1\n b 2\n\neval instant at 0 b\n  b 2\n");
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.commands.len(), 1);
    }
}
