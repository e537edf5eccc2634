//! Prometheus's template functions (template_reference.md), on top of Go's builtins.

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::{FuncMap, TemplateError, Value};

use super::format;

/// A sample as the `query` function returns it: labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Answers the `query` template function: an instant query at the evaluation time.
pub type QueryFn = Arc<dyn Fn(&str) -> Result<Vec<QuerySample>, String> + Send + Sync>;

/// What the functions need from outside the template.
#[derive(Default, Clone)]
pub(super) struct Context {
    pub(super) query: Option<QueryFn>,
    pub(super) external_url: String,
    /// The evaluation time, Unix seconds (`now`).
    pub(super) now: f64,
}

/// Go's `text/template` builtins, which `gotmpl` provides itself.
const BUILTINS: &[&str] = &[
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery",
];

pub(super) fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

fn arg<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a Value, TemplateError> {
    args.get(i)
        .ok_or_else(|| err(format!("wrong number of args for {func}: want {}", i + 1)))
}

fn string_arg(args: &[Value], i: usize, func: &str) -> Result<String, TemplateError> {
    match arg(args, i, func)? {
        Value::String(s) => Ok(s.to_string()),
        other => Err(err(format!(
            "{func}: expected a string, got {}",
            other.type_name()
        ))),
    }
}

/// Prometheus's `convertToFloat`: numbers as they are, strings parsed.
fn float_arg(args: &[Value], i: usize, func: &str) -> Result<f64, TemplateError> {
    match arg(args, i, func)? {
        Value::Float(f) => Ok(*f),
        Value::Int(n) => Ok(*n as f64),
        Value::Uint(n) => Ok(*n as f64),
        Value::String(s) => parse_go_float(s)
            .ok_or_else(|| err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
        other => Err(err(format!("can't convert {} to float", other.type_name()))),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn string(s: impl AsRef<str>) -> Value {
    Value::String(s.as_ref().into())
}

fn func(
    f: impl Fn(&[Value]) -> Result<Value, TemplateError> + Send + Sync + 'static,
) -> gotmpl::ValueFunc {
    Arc::new(f)
}

fn sample_value(s: &QuerySample) -> Value {
    let mut m = BTreeMap::new();
    m.insert(Arc::from("Labels"), super::string_map(&s.labels));
    m.insert(Arc::from("Value"), Value::Float(s.value));
    Value::Map(Arc::new(m))
}

/// The functions for one expansion.
pub(super) fn function_map(ctx: &Context) -> FuncMap {
    let mut m = FuncMap::new();
    let number = |f: fn(f64) -> String, name: &'static str| {
        func(move |args| Ok(string(f(float_arg(args, 0, name)?))))
    };
    m.insert("humanize".into(), number(format::humanize, "humanize"));
    m.insert(
        "humanize1024".into(),
        number(format::humanize1024, "humanize1024"),
    );
    m.insert(
        "humanizeDuration".into(),
        number(format::humanize_duration, "humanizeDuration"),
    );
    m.insert(
        "humanizePercentage".into(),
        number(format::humanize_percentage, "humanizePercentage"),
    );
    m.insert(
        "humanizeTimestamp".into(),
        func(|args| {
            let v = float_arg(args, 0, "humanizeTimestamp")?;
            if !v.is_finite() {
                return Ok(string(format::go_g(v, Some(4))));
            }
            format::go_time_utc(v)
                .map(string)
                .ok_or_else(|| err(format!("humanizeTimestamp: {v} is out of range")))
        }),
    );
    m.insert(
        "toTime".into(),
        func(|args| {
            let v = float_arg(args, 0, "toTime")?;
            format::go_time_utc(v)
                .map(string)
                .ok_or_else(|| err(format!("toTime: {v} is out of range")))
        }),
    );
    m.insert(
        "toDuration".into(),
        func(|args| {
            Ok(string(format::go_duration(float_arg(
                args,
                0,
                "toDuration",
            )?)))
        }),
    );
    let now = ctx.now;
    m.insert("now".into(), func(move |_| Ok(Value::Float(now))));
    m.insert(
        "parseDuration".into(),
        func(|args| {
            let s = string_arg(args, 0, "parseDuration")?;
            kiln_model::duration::parse_duration_ms(&s)
                .map(|ms| Value::Float(ms as f64 / 1000.0))
                .map_err(|e| err(e.to_string()))
        }),
    );
    m.insert(
        "title".into(),
        func(|args| Ok(string(title(&string_arg(args, 0, "title")?)))),
    );
    m.insert(
        "toUpper".into(),
        func(|args| Ok(string(string_arg(args, 0, "toUpper")?.to_uppercase()))),
    );
    m.insert(
        "toLower".into(),
        func(|args| Ok(string(string_arg(args, 0, "toLower")?.to_lowercase()))),
    );
    m.insert(
        "stripPort".into(),
        func(|args| {
            let s = string_arg(args, 0, "stripPort")?;
            Ok(string(split_host_port(&s).map_or(s.as_str(), |(h, _)| h)))
        }),
    );
    m.insert(
        "stripDomain".into(),
        func(|args| Ok(string(strip_domain(&string_arg(args, 0, "stripDomain")?)))),
    );
    m.insert(
        "match".into(),
        func(|args| {
            let re = regex::Regex::new(&string_arg(args, 0, "match")?)
                .map_err(|e| err(e.to_string()))?;
            Ok(Value::Bool(re.is_match(&string_arg(args, 1, "match")?)))
        }),
    );
    m.insert(
        "reReplaceAll".into(),
        func(|args| {
            let re = regex::Regex::new(&string_arg(args, 0, "reReplaceAll")?)
                .map_err(|e| err(e.to_string()))?;
            let repl = string_arg(args, 1, "reReplaceAll")?;
            let text = string_arg(args, 2, "reReplaceAll")?;
            Ok(string(re.replace_all(&text, repl.as_str())))
        }),
    );
    m.insert(
        "urlQueryEscape".into(),
        func(|args| {
            Ok(string(query_escape(&string_arg(
                args,
                0,
                "urlQueryEscape",
            )?)))
        }),
    );
    m.insert(
        "graphLink".into(),
        func(|args| {
            let e = query_escape(&string_arg(args, 0, "graphLink")?);
            Ok(string(format!("/graph?g0.expr={e}&g0.tab=0")))
        }),
    );
    m.insert(
        "tableLink".into(),
        func(|args| {
            let e = query_escape(&string_arg(args, 0, "tableLink")?);
            Ok(string(format!("/graph?g0.expr={e}&g0.tab=1")))
        }),
    );
    m.insert(
        "safeHtml".into(),
        func(|args| Ok(string(string_arg(args, 0, "safeHtml")?))),
    );
    m.insert(
        "args".into(),
        func(|args| {
            let map = args
                .iter()
                .enumerate()
                .map(|(i, v)| (Arc::from(format!("arg{i}").as_str()), v.clone()))
                .collect();
            Ok(Value::Map(Arc::new(map)))
        }),
    );
    let url = ctx.external_url.clone();
    m.insert("externalURL".into(), func(move |_| Ok(string(&url))));
    let prefix = url_path(&ctx.external_url).to_owned();
    m.insert("pathPrefix".into(), func(move |_| Ok(string(&prefix))));
    let query = ctx.query.clone();
    m.insert(
        "query".into(),
        func(move |args| {
            let q = string_arg(args, 0, "query")?;
            let Some(run) = &query else {
                return Err(err("query: no query engine in this context"));
            };
            let samples = run(&q).map_err(err)?;
            Ok(Value::List(samples.iter().map(sample_value).collect()))
        }),
    );
    m.insert(
        "first".into(),
        func(|args| match arg(args, 0, "first")? {
            Value::List(l) => l
                .first()
                .cloned()
                .ok_or_else(|| err("first() called on vector with no elements")),
            other => Err(err(format!(
                "first: expected a list, got {}",
                other.type_name()
            ))),
        }),
    );
    m.insert(
        "label".into(),
        func(|args| {
            let name = string_arg(args, 0, "label")?;
            let sample = arg(args, 1, "label")?;
            let value = sample
                .field("Labels")
                .and_then(|l| l.field(&name))
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(string(value))
        }),
    );
    m.insert(
        "value".into(),
        func(|args| {
            Ok(arg(args, 0, "value")?
                .field("Value")
                .cloned()
                .unwrap_or(Value::Nil))
        }),
    );
    m.insert(
        "strvalue".into(),
        func(|args| {
            let v = arg(args, 0, "strvalue")?
                .field("Labels")
                .and_then(|l| l.field("__value__"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Ok(string(v))
        }),
    );
    m.insert(
        "sortByLabel".into(),
        func(|args| {
            let name = string_arg(args, 0, "sortByLabel")?;
            let Value::List(list) = arg(args, 1, "sortByLabel")? else {
                return Err(err("sortByLabel: expected a list of samples"));
            };
            let key = |v: &Value| {
                v.field("Labels")
                    .and_then(|l| l.field(&name))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let mut sorted: Vec<Value> = list.to_vec();
            sorted.sort_by_key(key);
            Ok(Value::List(sorted.into()))
        }),
    );
    m.insert(
        super::PRINT_FN.into(),
        func(|args| {
            Ok(match args.last() {
                Some(Value::Float(f)) => string(format::go_g(*f, None)),
                Some(v) => v.clone(),
                None => Value::Nil,
            })
        }),
    );
    m
}

/// `cases.Title` as Prometheus uses it: the first letter of every word upper case,
/// the rest left as they are.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if !in_word && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        in_word = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// Go's `net.SplitHostPort` for the forms a target address takes.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

fn strip_domain(s: &str) -> String {
    let (host, port) = split_host_port(s).unwrap_or((s, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_owned();
    }
    let short = host.split('.').next().unwrap_or(host);
    if port.is_empty() {
        short.to_owned()
    } else if short.contains(':') {
        format!("[{short}]:{port}")
    } else {
        format!("{short}:{port}")
    }
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The path of a URL (`http://host:9090/prom` -> `/prom`), empty without one.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_helpers_match_go() {
        assert_eq!(title("gpu is idle"), "Gpu Is Idle");
        assert_eq!(title("hello_world foo-bar"), "Hello_world Foo-Bar");
        assert_eq!(split_host_port("node:9100"), Some(("node", "9100")));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", "80")));
        assert_eq!(split_host_port("node"), None);
        assert_eq!(strip_domain("node1.example.com:9100"), "node1:9100");
        assert_eq!(strip_domain("node1.example.com"), "node1");
        assert_eq!(strip_domain("10.0.0.1:9100"), "10.0.0.1:9100");
        assert_eq!(query_escape("rate(x[5m]) > 0"), "rate%28x%5B5m%5D%29+%3E+0");
        assert_eq!(url_path("http://host:9090/prom/"), "/prom/");
        assert_eq!(url_path("http://host:9090"), "");
    }
}
