//! The line parser for both text formats.

use std::borrow::Cow;

use kiln_model::{LabelsBuilder, METRIC_NAME};

use crate::error::{ParseError, ParseErrorReason as R, snippet};
use crate::{Entry, Format, MetricType, ParserOptions, SampleLine};

/// Go's `math.NaN()` bit pattern, which Prometheus stores for a parsed `NaN`.
const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// OpenMetrics limit on an exemplar's label names and values together, in code points.
const EXEMPLAR_MAX_RUNES: usize = 128;

const TEXT_TYPES: &str = "counter, gauge, histogram, summary, untyped";
const OM_TYPES: &str =
    "counter, gauge, histogram, gaugehistogram, summary, info, stateset, unknown";

/// Parses a text exposition (0.0.4) or OpenMetrics 1.0 text document into entries.
///
/// Yields one [`Entry`] per `# HELP`, `# TYPE`, `# UNIT` line and sample line (text-format
/// comments and blank lines are skipped); OpenMetrics ends with [`Entry::Eof`]. The
/// first error ends the iteration.
///
/// Borrows the input: family names and escape-free help texts are slices of it. Each
/// sample allocates its [`kiln_model::Labels`]; label values with escapes allocate a
/// temporary string. Nothing is sized by a number read from the input, and no line
/// longer than [`ParserOptions::max_line_bytes`] is scanned past that limit.
#[derive(Debug)]
pub struct Parser<'a> {
    input: &'a [u8],
    /// `input` as text when all of it is UTF-8 (checked once, up front), so lines need
    /// no check of their own; `None` sends each line through its own check, which
    /// finds the position of the bad byte.
    text: Option<&'a str>,
    pos: usize,
    /// Line number of the line most recently read (0 before the first).
    line_no: usize,
    format: Format,
    opts: ParserOptions,
    done: bool,
    /// The type of the most recent `# TYPE` line (OpenMetrics exemplar rules).
    cur_type: MetricType,
    builder: LabelsBuilder,
    names: Vec<&'a str>,
    /// Names of the current sample's labels written with an empty value.
    empty: Vec<String>,
}

/// An error inside one line, before the line number is attached.
struct Fail {
    column: usize,
    reason: R,
}

type Res<T> = Result<T, Fail>;

impl<'a> Parser<'a> {
    /// A parser with default [`ParserOptions`].
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Self::with_options(input, format, ParserOptions::default())
    }

    pub fn with_options(input: &'a [u8], format: Format, opts: ParserOptions) -> Self {
        Parser {
            input,
            text: std::str::from_utf8(input).ok(),
            pos: 0,
            line_no: 0,
            format,
            opts,
            done: false,
            cur_type: MetricType::Unknown,
            builder: LabelsBuilder::new(),
            names: Vec::new(),
            empty: Vec::new(),
        }
    }

    /// The 1-based number of the line the last entry (or error) came from.
    pub fn line(&self) -> usize {
        self.line_no
    }

    fn fail(&mut self, column: usize, reason: R) -> Option<Result<Entry<'a>, ParseError>> {
        self.done = true;
        Some(Err(ParseError {
            line: self.line_no,
            column,
            reason,
        }))
    }

    /// Splits off the next line (without its `\n`), enforcing the length limit.
    fn next_line(&mut self) -> Result<&'a [u8], Fail> {
        let rest = &self.input[self.pos..];
        let window = &rest[..rest.len().min(self.opts.max_line_bytes.saturating_add(1))];
        let (line, consumed) = match window.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], n + 1),
            None if window.len() > self.opts.max_line_bytes => {
                return Err(Fail {
                    column: self.opts.max_line_bytes + 1,
                    reason: R::LineTooLong {
                        limit: self.opts.max_line_bytes,
                    },
                });
            }
            None => (rest, rest.len()),
        };
        self.pos += consumed;
        Ok(line)
    }

    fn parse_line(&mut self, line: &'a str) -> Res<Option<Entry<'a>>> {
        let mut cur = Cur { s: line, i: 0 };
        match self.format {
            Format::OpenMetrics => self.om_line(&mut cur),
            Format::Text004 => self.text_line(&mut cur),
        }
    }

    // ---- OpenMetrics ----

    fn om_line(&mut self, cur: &mut Cur<'a>) -> Res<Option<Entry<'a>>> {
        if cur.at_end() {
            return Err(cur.unexpected("a metric name or '#'"));
        }
        if cur.eat(b'#') {
            return self.om_descriptor(cur).map(Some);
        }
        self.sample(cur, true).map(|s| Some(Entry::Sample(s)))
    }

    fn om_descriptor(&mut self, cur: &mut Cur<'a>) -> Res<Entry<'a>> {
        if cur.rest() == " EOF" {
            return Ok(Entry::Eof);
        }
        let keyword = if cur.eat_str(" HELP ") {
            "HELP"
        } else if cur.eat_str(" TYPE ") {
            "TYPE"
        } else if cur.eat_str(" UNIT ") {
            "UNIT"
        } else {
            return Err(cur.unexpected("\" HELP \", \" TYPE \", \" UNIT \" or \" EOF\" after '#'"));
        };
        let family = cur.metric_name()?;
        if !cur.eat(b' ') {
            return Err(cur.unexpected(match keyword {
                "HELP" => "a space and the help text",
                "TYPE" => "a space and the metric type",
                _ => "a space and the unit",
            }));
        }
        let text = cur.rest();
        let at = cur.i + 1;
        cur.i = cur.s.len();
        match keyword {
            "HELP" => Ok(Entry::Help {
                family,
                text: unescape(text, true),
            }),
            "TYPE" => {
                let kind = MetricType::from_openmetrics(text).ok_or_else(|| Fail {
                    column: at,
                    reason: R::UnknownMetricType {
                        found: text.to_owned(),
                        allowed: OM_TYPES,
                    },
                })?;
                self.cur_type = kind;
                Ok(Entry::Type { family, kind })
            }
            _ => {
                if !family.ends_with(text) {
                    return Err(Fail {
                        column: at,
                        reason: R::UnitNotSuffix {
                            family: family.to_owned(),
                            unit: text.to_owned(),
                        },
                    });
                }
                Ok(Entry::Unit { family, unit: text })
            }
        }
    }

    // ---- Text 0.0.4 ----

    fn text_line(&mut self, cur: &mut Cur<'a>) -> Res<Option<Entry<'a>>> {
        cur.skip_ws();
        if cur.at_end() {
            return Ok(None);
        }
        if !cur.eat(b'#') {
            return self.sample(cur, false).map(|s| Some(Entry::Sample(s)));
        }
        cur.skip_ws();
        let keyword = cur.take_while(|b| !is_ws(b));
        if (keyword != "HELP" && keyword != "TYPE") || cur.skip_ws() == 0 {
            return Ok(None); // an ordinary comment
        }
        let family = cur.metric_name()?;
        if keyword == "HELP" {
            if !cur.at_end() && cur.skip_ws() == 0 {
                return Err(cur.unexpected("whitespace after the metric name"));
            }
            return Ok(Some(Entry::Help {
                family,
                text: unescape(cur.rest(), false),
            }));
        }
        if cur.skip_ws() == 0 {
            return Err(cur.unexpected("whitespace and the metric type"));
        }
        let at = cur.i + 1;
        let word = cur.take_while(|b| !is_ws(b));
        cur.skip_ws();
        if !cur.at_end() {
            return Err(cur.unexpected("end of line after the metric type"));
        }
        let kind = MetricType::from_text(word).ok_or_else(|| Fail {
            column: at,
            reason: R::UnknownMetricType {
                found: word.to_owned(),
                allowed: TEXT_TYPES,
            },
        })?;
        Ok(Some(Entry::Type { family, kind }))
    }

    // ---- Samples (both formats) ----

    fn sample(&mut self, cur: &mut Cur<'a>, om: bool) -> Res<SampleLine<'a>> {
        let series_from = cur.i;
        let name = cur.metric_name()?;
        self.names.clear();
        self.empty.clear();
        if !self.opts.skip_labels {
            self.builder.reset();
            self.builder.set(METRIC_NAME, name);
            self.names.push(METRIC_NAME);
        }
        let labels_at = cur.i + 1;
        if om {
            if cur.eat(b'{') {
                self.labels(cur, true, true)?;
            }
            cur.expect(b' ', "a space and the sample value")?;
        } else {
            let ws = cur.skip_ws();
            if cur.eat(b'{') {
                self.labels(cur, false, true)?;
                cur.skip_ws();
            } else if ws == 0 {
                return Err(cur.unexpected("whitespace, '{' or the sample value"));
            }
        }
        let series = cur.s[series_from..cur.i].trim_end();
        self.names.sort_unstable();
        if let Some(w) = self.names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Fail {
                column: labels_at,
                reason: R::DuplicateLabel {
                    name: w[0].to_owned(),
                },
            });
        }

        let value_at = cur.i + 1;
        let value_text = cur.token(om);
        if value_text.is_empty() {
            return Err(cur.unexpected("a sample value"));
        }
        let value = parse_go_float(value_text).map_err(|reason| Fail {
            column: value_at,
            reason,
        })?;

        let timestamp_ms = if om {
            self.om_tail(cur, name)?
        } else {
            cur.skip_ws();
            if cur.at_end() {
                None
            } else {
                let at = cur.i + 1;
                let text = cur.token(false);
                let ts = text.parse::<i64>().map_err(|_| Fail {
                    column: at,
                    reason: R::InvalidTimestamp {
                        text: text.to_owned(),
                    },
                })?;
                cur.skip_ws();
                if !cur.at_end() {
                    return Err(cur.unexpected("end of line after the timestamp"));
                }
                Some(ts)
            }
        };
        let labels = if self.opts.skip_labels {
            kiln_model::Labels::empty()
        } else {
            self.builder.build()
        };
        Ok(SampleLine {
            series,
            labels,
            value,
            timestamp_ms,
            empty_label_names: std::mem::take(&mut self.empty),
        })
    }

    /// After an OpenMetrics value: `[ timestamp][ # exemplar]`.
    fn om_tail(&mut self, cur: &mut Cur<'a>, name: &str) -> Res<Option<i64>> {
        if cur.at_end() {
            return Ok(None);
        }
        cur.expect(b' ', "a space, then a timestamp or '#'")?;
        let mut ts = None;
        if cur.peek() != Some(b'#') {
            let at = cur.i + 1;
            let text = cur.token(true);
            ts = Some(om_timestamp_ms(text).map_err(|reason| Fail { column: at, reason })?);
            if cur.at_end() {
                return Ok(ts);
            }
            cur.expect(b' ', "a space and '#' (exemplar) or end of line")?;
        }
        let at = cur.i + 1;
        cur.expect(b'#', "'#' (exemplar) or end of line")?;
        let allowed = match self.cur_type {
            MetricType::Counter => name.ends_with("_total"),
            MetricType::Histogram | MetricType::GaugeHistogram => name.ends_with("_bucket"),
            _ => false,
        };
        if !allowed {
            return Err(Fail {
                column: at,
                reason: R::ExemplarNotAllowed {
                    metric: name.to_owned(),
                },
            });
        }
        cur.expect(b' ', "a space and the exemplar's '{'")?;
        let labels_at = cur.i + 1;
        cur.expect(b'{', "'{' (exemplar labels)")?;
        let runes = self.labels(cur, true, false)?;
        if runes > EXEMPLAR_MAX_RUNES {
            return Err(Fail {
                column: labels_at,
                reason: R::ExemplarLabelsTooLong {
                    runes,
                    limit: EXEMPLAR_MAX_RUNES,
                },
            });
        }
        cur.expect(b' ', "a space and the exemplar value")?;
        let at = cur.i + 1;
        let text = cur.token(true);
        if text.is_empty() {
            return Err(cur.unexpected("the exemplar value"));
        }
        parse_go_float(text).map_err(|reason| Fail { column: at, reason })?;
        if !cur.at_end() {
            cur.expect(b' ', "a space and the exemplar timestamp, or end of line")?;
            let at = cur.i + 1;
            om_timestamp_ms(cur.token(true)).map_err(|reason| Fail { column: at, reason })?;
            if !cur.at_end() {
                return Err(cur.unexpected("end of line after the exemplar timestamp"));
            }
        }
        Ok(ts)
    }

    /// Parses a label set after its `{`, through the `}`. Stores the pairs into the
    /// builder when `store`, else only validates them; returns the code points of all
    /// names and values (for the exemplar limit).
    fn labels(&mut self, cur: &mut Cur<'a>, om: bool, store: bool) -> Res<usize> {
        if store && self.opts.skip_labels {
            cur.skip_label_set()?;
            return Ok(0);
        }
        let mut runes = 0;
        if !om {
            cur.skip_ws();
        }
        if cur.eat(b'}') {
            return Ok(0);
        }
        loop {
            if !om {
                cur.skip_ws();
            }
            let name_at = cur.i + 1;
            let name = cur.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                cur.i = name_at - 1;
                return Err(cur.unexpected("a label name"));
            }
            if name.len() > self.opts.max_label_bytes {
                return Err(Fail {
                    column: name_at,
                    reason: R::LabelTooLong {
                        name: snippet(name),
                        limit: self.opts.max_label_bytes,
                    },
                });
            }
            if !om {
                cur.skip_ws();
            }
            cur.expect(b'=', "'='")?;
            if !om {
                cur.skip_ws();
            }
            let value_at = cur.i + 1;
            let raw = cur.quoted()?;
            let value = unescape(raw, true);
            if value.len() > self.opts.max_label_bytes {
                return Err(Fail {
                    column: value_at,
                    reason: R::LabelTooLong {
                        name: name.to_owned(),
                        limit: self.opts.max_label_bytes,
                    },
                });
            }
            if store {
                if self.names.len() >= self.opts.max_labels {
                    return Err(Fail {
                        column: name_at,
                        reason: R::TooManyLabels {
                            limit: self.opts.max_labels,
                        },
                    });
                }
                self.names.push(name);
                if value.is_empty() {
                    self.empty.push(name.to_owned());
                }
                self.builder.set(name, &value);
            } else {
                runes += name.chars().count() + value.chars().count();
            }
            if !om {
                cur.skip_ws();
            }
            if cur.eat(b',') {
                if !om {
                    cur.skip_ws();
                    if cur.eat(b'}') {
                        return Ok(runes);
                    }
                }
                continue;
            }
            if cur.eat(b'}') {
                return Ok(runes);
            }
            return Err(cur.unexpected("',' or '}'"));
        }
    }
}

/// The labels of a series written as `series` (a [`SampleLine::series`]), and the names
/// of labels it writes with an empty value.
pub fn series_labels(
    series: &str,
    format: Format,
) -> Result<(kiln_model::Labels, Vec<String>), ParseError> {
    let mut doc = String::with_capacity(series.len() + 10);
    doc.push_str(series);
    doc.push_str(" 0\n");
    if format == Format::OpenMetrics {
        doc.push_str("# EOF\n");
    }
    let mut parser = Parser::new(doc.as_bytes(), format);
    match parser.next() {
        Some(Ok(Entry::Sample(s))) => Ok((s.labels, s.empty_label_names)),
        Some(Err(e)) => Err(e),
        _ => Err(ParseError {
            line: 1,
            column: 1,
            reason: R::Unexpected {
                expected: "a metric name",
                found: snippet(series),
            },
        }),
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.input.len() {
                self.done = true;
                return match self.format {
                    Format::OpenMetrics => {
                        self.line_no += 1;
                        self.fail(1, R::MissingEof)
                    }
                    Format::Text004 => None,
                };
            }
            self.line_no += 1;
            let start = self.pos;
            let bytes = match self.next_line() {
                Ok(b) => b,
                Err(f) => return self.fail(f.column, f.reason),
            };
            let line = match self.text {
                // Lines end at '\n', a character boundary, so the slice is valid.
                Some(text) => &text[start..start + bytes.len()],
                None => match std::str::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => return self.fail(e.valid_up_to() + 1, R::InvalidUtf8),
                },
            };
            match self.parse_line(line) {
                Ok(None) => continue,
                Ok(Some(Entry::Eof)) => {
                    self.done = true;
                    if self.pos < self.input.len() {
                        self.line_no += 1;
                        return self.fail(1, R::DataAfterEof);
                    }
                    return Some(Ok(Entry::Eof));
                }
                Ok(Some(e)) => return Some(Ok(e)),
                Err(f) => return self.fail(f.column, f.reason),
            }
        }
    }
}

/// A cursor over one line.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    /// Moves past the `}` that closes the label set the cursor is in, without checking
    /// the pairs: a `}` or escaped quote inside a quoted value does not end it.
    fn skip_label_set(&mut self) -> Res<()> {
        let bytes = self.s.as_bytes();
        let mut quoted = false;
        let mut j = self.i;
        while j < bytes.len() {
            match bytes[j] {
                // A backslash escapes the next byte inside quotes; continuation bytes of
                // multi-byte characters never equal the bytes matched here.
                b'\\' if quoted => j += 1,
                b'"' => quoted = !quoted,
                b'}' if !quoted => {
                    self.i = j + 1;
                    return Ok(());
                }
                _ => {}
            }
            j += 1;
        }
        self.i = bytes.len();
        Err(self.unexpected(if quoted {
            "'\"' (end of a label value)"
        } else {
            "'}'"
        }))
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.i..).unwrap_or("")
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, p: &str) -> bool {
        if self.rest().starts_with(p) {
            self.i += p.len();
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &'static str) -> Fail {
        Fail {
            column: self.i + 1,
            reason: R::Unexpected {
                expected,
                found: snippet(self.rest()),
            },
        }
    }

    fn expect(&mut self, b: u8, expected: &'static str) -> Res<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// Consumes ASCII bytes matching `f` (never splits a UTF-8 character, since only
    /// ASCII bytes can match).
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        let bytes = self.s.as_bytes();
        while self.i < bytes.len() && bytes[self.i].is_ascii() && f(bytes[self.i]) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or("")
    }

    /// Consumes spaces and tabs, returning how many.
    fn skip_ws(&mut self) -> usize {
        self.take_while(is_ws).len()
    }

    /// A value or timestamp token: up to the next space (OpenMetrics) or blank (text).
    fn token(&mut self, om: bool) -> &'a str {
        let start = self.i;
        let bytes = self.s.as_bytes();
        while self.i < bytes.len() && !(bytes[self.i] == b' ' || (!om && bytes[self.i] == b'\t')) {
            self.i += 1;
        }
        // Stops only before an ASCII byte or at the end: a char boundary.
        self.s.get(start..self.i).unwrap_or("")
    }

    fn metric_name(&mut self) -> Res<&'a str> {
        let start = self.i;
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            self.i = start;
            return Err(self.unexpected("a metric name"));
        }
        Ok(name)
    }

    /// A double-quoted string, returned raw (escapes intact), closing quote consumed.
    fn quoted(&mut self) -> Res<&'a str> {
        self.expect(b'"', "'\"' (a quoted label value)")?;
        let start = self.i;
        let bytes = self.s.as_bytes();
        let mut j = start;
        while j < bytes.len() {
            match bytes[j] {
                // Skipping one byte after a backslash may land inside a multi-byte
                // character; its continuation bytes never equal '"' or '\\'.
                b'\\' => j += 2,
                b'"' => {
                    self.i = j + 1;
                    return Ok(self.s.get(start..j).unwrap_or(""));
                }
                _ => j += 1,
            }
        }
        self.i = self.s.len();
        Err(self.unexpected("a closing '\"'"))
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Resolves `\\`, `\n` and (when `quote`) `\"`; any other backslash stays as it is, as in
/// Prometheus. Borrows when there is nothing to resolve.
fn unescape(raw: &str, quote: bool) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    Cow::Owned(out)
}

/// Parses a float the way Prometheus's parsers do: Go's `strconv.ParseFloat` without
/// hex floats or digit separators (`p`, `P`, `_` are refused). `NaN` gets Go's NaN bit
/// pattern; a finite number beyond the float64 range is an error, not an infinity.
pub(crate) fn parse_go_float(s: &str) -> Result<f64, R> {
    let invalid = || R::InvalidValue {
        text: snippet_raw(s),
    };
    if s.is_empty() || s.contains(['p', 'P', '_']) {
        return Err(invalid());
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("nan") {
        // Go accepts no sign on NaN.
        return if unsigned.len() == s.len() {
            Ok(f64::from_bits(GO_NAN_BITS))
        } else {
            Err(invalid())
        };
    }
    let v: f64 = s.parse().map_err(|_| invalid())?;
    if v.is_infinite()
        && !(unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity"))
    {
        return Err(R::ValueOutOfRange {
            text: snippet_raw(s),
        });
    }
    Ok(v)
}

/// An OpenMetrics timestamp (float seconds) in milliseconds, truncated toward zero as
/// Prometheus does (`int64(ts * 1000)`).
pub(crate) fn om_timestamp_ms(s: &str) -> Result<i64, R> {
    let bad = || R::InvalidTimestamp {
        text: snippet_raw(s),
    };
    let secs = parse_go_float(s).map_err(|_| bad())?;
    let ms = secs * 1000.0;
    // i64::MIN as f64 is exactly -2^63; i64::MAX as f64 rounds up to 2^63.
    if !ms.is_finite() || ms < i64::MIN as f64 || ms >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(ms as i64)
}

fn snippet_raw(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}
