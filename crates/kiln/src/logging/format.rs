//! The log line layout of Prometheus 3 (Go's `log/slog` through `promslog`), in logfmt
//! and JSON, as a `tracing_subscriber` event formatter.
//!
//! Every line holds, in this order: `time` (UTC, milliseconds, RFC 3339), `level`
//! (`DEBUG`, `INFO`, `WARN`, `ERROR`), `source` (`file:line` of the call), `msg`, then
//! `component` (an explicit field of that name, or else the subsystem the event's
//! target belongs to, see [`component_of`]), then the event's other fields in the order
//! they were written. Nothing is ever coloured: the lines go to pipes, files and log
//! shippers as often as to terminals.
//!
//! logfmt values are written bare unless they are empty or hold a space, `=`, `"`, a
//! control or other unprintable character; quoted values use Go's escapes (`\"`, `\\`,
//! `\n`, `\t`, `\xHH`, `\uHHHH`), so a line always stays one line. JSON values keep their
//! type: integers and finite floats are numbers, booleans are booleans, everything else
//! (including `Display`/`Debug` values and errors) is a string.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The two layouts `--log.format` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `key=value` pairs, Prometheus's default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Formats events as Prometheus 3 does. See the module docs.
pub(crate) struct SlogFormat {
    format: LogFormat,
    /// The wall clock; tests pass a fixed one.
    now: fn() -> SystemTime,
}

impl SlogFormat {
    pub(crate) fn new(format: LogFormat) -> SlogFormat {
        SlogFormat {
            format,
            now: SystemTime::now,
        }
    }

    #[cfg(test)]
    fn with_clock(format: LogFormat, now: fn() -> SystemTime) -> SlogFormat {
        SlogFormat { format, now }
    }
}

/// A field's value, keeping the type JSON needs.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

/// The `msg` and the other fields of one event, in the order they were recorded.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(i128::from(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Int(i128::from(value)));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.push(field, Value::Int(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        match i128::try_from(value) {
            Ok(v) => self.push(field, Value::Int(v)),
            Err(_) => self.push(field, Value::Str(value.to_string())),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::Str(value.to_owned()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Str(error_chain(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::Str(format!("{value:?}")));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = match value {
                Value::Str(s) => s,
                other => plain_text(&other),
            };
            return;
        }
        // Events bridged from the `log` crate carry their origin as fields; the
        // metadata already says it.
        if name.starts_with("log.") {
            return;
        }
        self.pairs.push((name, value));
    }
}

/// An error and its causes, `a: b: c`, skipping a cause the text already holds (many
/// errors print their source themselves).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The subsystem an event's target (its module path) belongs to, named as Prometheus
/// names its loggers' `component`s; `None` for the binary's own wiring and for other
/// crates.
pub(crate) fn component_of(target: &str) -> Option<&'static str> {
    let krate = target.split("::").next().unwrap_or(target);
    let rest = target.strip_prefix(krate).unwrap_or("");
    Some(match krate {
        "kiln_tsdb" => "tsdb",
        "kiln_rules" if rest == "::notify" || rest.starts_with("::notify::") => "notifier",
        "kiln_rules" => "rules",
        "kiln_scrape" => "scrape",
        "kiln_remote" => "remote",
        "kiln_server" => "web",
        "kiln_discovery" => "discovery",
        _ => return None,
    })
}

/// Upper-case level names as `log/slog` writes them.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// `file:line` of the call, the file relative to the workspace's `crates/` directory
/// (`kiln-tsdb/src/db/open.rs:57`) so that the many `mod.rs` stay apart; other crates'
/// files keep their last two path components.
fn source_of(file: Option<&str>, line: Option<u32>) -> String {
    let Some(file) = file else {
        return String::new();
    };
    let file = file.replace('\\', "/");
    let short = match file.rfind("crates/") {
        Some(i) => &file[i + "crates/".len()..],
        None => {
            let mut parts = file.rsplitn(3, '/');
            let last = parts.next().unwrap_or("");
            match parts.next() {
                Some(dir) => &file[file.len() - last.len() - dir.len() - 1..],
                None => last,
            }
        }
    };
    match line {
        Some(l) => format!("{short}:{l}"),
        None => short.to_owned(),
    }
}

/// `2026-12-07T10:00:00.123Z`: UTC with milliseconds, as `promslog` writes times.
fn format_time(t: SystemTime) -> String {
    let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = kiln_model::calendar::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// A value as text, floats as Go prints them (`NaN`, `+Inf`).
fn plain_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) if f.is_nan() => "NaN".to_owned(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { "+Inf" } else { "-Inf" }.to_owned(),
        Value::Float(f) => f.to_string(),
    }
}

/// Whether Go's unicode.IsPrint would call `c` printable (approximated: no control
/// characters, no white space but the ASCII space, no invisible format characters).
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Whether a logfmt value must be quoted: empty, or holding a space, `=`, `"`, or a
/// character that is not printable. A backslash alone does not force quoting (as in
/// slog).
fn needs_quoting(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || !is_printable(c))
}

/// Appends `s` quoted with Go's `strconv.Quote` escapes.
fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !is_printable(c) && (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if !is_printable(c) => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends one logfmt `key=value` pair, preceded by a space unless it is the first.
fn push_logfmt_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    if needs_quoting(key) {
        push_go_quoted(out, key);
    } else {
        out.push_str(key);
    }
    out.push('=');
    if needs_quoting(value) {
        push_go_quoted(out, value);
    } else {
        out.push_str(value);
    }
}

/// Appends `s` as a JSON string, escaped as slog's JSON handler does.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends one JSON `"key":value` member, preceded by a comma unless it is the first.
fn push_json_member(out: &mut String, key: &str, value: &Value) {
    if out.len() > 1 {
        out.push(',');
    }
    push_json_string(out, key);
    out.push(':');
    match value {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        other => push_json_string(out, &plain_text(other)),
    }
}

impl SlogFormat {
    /// One event as one line, without the newline.
    fn line(&self, event: &Event<'_>) -> String {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !fields.pairs.iter().any(|(k, _)| *k == "component")
            && let Some(c) = component_of(meta.target())
        {
            fields
                .pairs
                .insert(0, ("component", Value::Str(c.to_owned())));
        }
        let head = [
            ("time", Value::Str(format_time((self.now)()))),
            ("level", Value::Str(level_name(meta.level()).to_owned())),
            ("source", Value::Str(source_of(meta.file(), meta.line()))),
            ("msg", Value::Str(fields.message)),
        ];
        let all = head.iter().map(|(k, v)| (*k, v)).chain(
            fields
                .pairs
                .iter()
                .map(|(k, v)| (*k, v))
                // Fields named like the header would make the line ambiguous.
                .filter(|(k, _)| !matches!(*k, "time" | "level" | "source" | "msg")),
        );
        match self.format {
            LogFormat::Logfmt => {
                let mut out = String::new();
                for (k, v) in all {
                    push_logfmt_pair(&mut out, k, &plain_text(v));
                }
                out
            }
            LogFormat::Json => {
                let mut out = String::from("{");
                for (k, v) in all {
                    push_json_member(&mut out, k, v);
                }
                out.push('}');
                out
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for SlogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", self.line(event))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// 2026-12-07T10:00:00.123Z.
    fn fixed_clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_637_600_123)
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    /// The lines `emit` logs in `format`, with the `source` value (a line number of
    /// this file) replaced by `S`.
    fn render(format: LogFormat, emit: &dyn Fn()) -> String {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(SlogFormat::with_clock(format, fixed_clock))
            .with_writer(capture.clone())
            .with_max_level(Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = capture.0.lock().expect("capture lock").clone();
        let text = String::from_utf8(bytes).expect("utf-8 log output");
        text.lines()
            .map(|l| {
                let (key, end) = match format {
                    LogFormat::Logfmt => ("source=", ' '),
                    LogFormat::Json => ("\"source\":\"", '"'),
                };
                let Some(start) = l.find(key).map(|i| i + key.len()) else {
                    return l.to_owned();
                };
                let stop = l[start..].find(end).map_or(l.len(), |i| start + i);
                format!("{}S{}", &l[..start], &l[stop..])
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn check(emit: &dyn Fn(), want_logfmt: &str, want_json: &str) {
        assert_eq!(render(LogFormat::Logfmt, emit), want_logfmt, "logfmt");
        let json = render(LogFormat::Json, emit);
        assert_eq!(json, want_json, "json");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert!(parsed.is_object());
    }

    /// An error with a cause it does not print itself.
    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading segment 3")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn lines_in_both_formats() {
        check(
            &|| tracing::info!("Server is ready to receive web requests."),
            r#"time=2026-12-07T10:00:00.123Z level=INFO source=S msg="Server is ready to receive web requests.""#,
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"INFO","source":"S","msg":"Server is ready to receive web requests."}"#,
        );
        // Field order is the order written; types survive in JSON.
        check(
            &|| tracing::warn!(b = 2u64, a = -1i64, ok = true, ratio = 0.5, "x"),
            "time=2026-12-07T10:00:00.123Z level=WARN source=S msg=x b=2 a=-1 ok=true ratio=0.5",
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"WARN","source":"S","msg":"x","b":2,"a":-1,"ok":true,"ratio":0.5}"#,
        );
        // Quoting: empty, space, `=`, `"`; a backslash alone stays bare; Go escapes.
        check(
            &|| {
                tracing::error!(
                    empty = "",
                    path = r"C:\data",
                    eq = "a=b",
                    quote = "say \"hi\"",
                    nl = "two\nlines\t\u{1}",
                    uni = "nœud-α",
                    nbsp = "a\u{a0}b",
                    "failed"
                )
            },
            r#"time=2026-12-07T10:00:00.123Z level=ERROR source=S msg=failed empty="" path=C:\data eq="a=b" quote="say \"hi\"" nl="two\nlines\t\x01" uni=nœud-α nbsp="a\u00a0b""#,
            concat!(
                r#"{"time":"2026-12-07T10:00:00.123Z","level":"ERROR","source":"S","msg":"failed","empty":"","path":"C:\\data","eq":"a=b","quote":"say \"hi\"","nl":"two\nlines\t\u0001","uni":"nœud-α","nbsp":"a"#,
                "\u{a0}",
                r#"b"}"#
            ),
        );
        // Display and Debug values are strings; floats Go cannot print as numbers too.
        check(
            &|| {
                tracing::debug!(
                    took = ?Duration::from_millis(1500),
                    addr = %"127.0.0.1:9090",
                    nan = f64::NAN,
                    inf = f64::INFINITY,
                    "d"
                )
            },
            "time=2026-12-07T10:00:00.123Z level=DEBUG source=S msg=d took=1.5s addr=127.0.0.1:9090 nan=NaN inf=+Inf",
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"DEBUG","source":"S","msg":"d","took":"1.5s","addr":"127.0.0.1:9090","nan":"NaN","inf":"+Inf"}"#,
        );
        // An error field holds its causes.
        check(
            &|| {
                let e = Outer(std::io::Error::other("disk full"));
                tracing::error!(
                    err = &e as &(dyn std::error::Error + 'static),
                    "write failed"
                )
            },
            r#"time=2026-12-07T10:00:00.123Z level=ERROR source=S msg="write failed" err="reading segment 3: disk full""#,
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"ERROR","source":"S","msg":"write failed","err":"reading segment 3: disk full"}"#,
        );
    }

    #[test]
    fn component_comes_from_the_target_or_an_explicit_field() {
        check(
            &|| tracing::info!(target: "kiln_tsdb::db::open", blocks = 3, "Blocks loaded"),
            r#"time=2026-12-07T10:00:00.123Z level=INFO source=S msg="Blocks loaded" component=tsdb blocks=3"#,
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"INFO","source":"S","msg":"Blocks loaded","component":"tsdb","blocks":3}"#,
        );
        check(
            &|| tracing::info!(target: "kiln::server", added = 1, component = "scrape", "Scrape pools changed"),
            r#"time=2026-12-07T10:00:00.123Z level=INFO source=S msg="Scrape pools changed" added=1 component=scrape"#,
            r#"{"time":"2026-12-07T10:00:00.123Z","level":"INFO","source":"S","msg":"Scrape pools changed","added":1,"component":"scrape"}"#,
        );
        for (target, want) in [
            ("kiln_tsdb::db::compact", Some("tsdb")),
            ("kiln_rules::manager", Some("rules")),
            ("kiln_rules::notify", Some("notifier")),
            ("kiln_rules::notify::send", Some("notifier")),
            ("kiln_rules::notifyish", Some("rules")),
            ("kiln_scrape::scrape_loop", Some("scrape")),
            ("kiln_remote::send::queue", Some("remote")),
            ("kiln_server::api", Some("web")),
            ("kiln_discovery", Some("discovery")),
            ("kiln::server", None),
            ("hyper::proto", None),
        ] {
            let got = component_of(target);
            assert_eq!(got, want, "{target}");
        }
    }

    #[test]
    fn source_is_this_file_and_line() {
        let line = line!() + 1;
        let emit = || tracing::info!("here");
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(SlogFormat::with_clock(LogFormat::Logfmt, fixed_clock))
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(
            text.contains(&format!(" source=kiln/src/logging/format.rs:{line} ")),
            "{text}"
        );
    }

    #[test]
    fn times_and_sources() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_796_637_600_123, "2026-12-07T10:00:00.123Z"),
            (951_782_399_999, "2000-02-28T23:59:59.999Z"),
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(format_time(t), want);
        }
        for (file, line, want) in [
            (
                Some("crates/kiln-tsdb/src/db/open.rs"),
                Some(57),
                "kiln-tsdb/src/db/open.rs:57",
            ),
            (
                Some("/home/u/.cargo/registry/src/index/hyper-1.0.0/src/proto/h1.rs"),
                Some(9),
                "proto/h1.rs:9",
            ),
            (Some("main.rs"), None, "main.rs"),
            (None, Some(3), ""),
        ] {
            assert_eq!(source_of(file, line), want, "{file:?}");
        }
    }
}
