//! `/`: what a browser finds at the listen address until the web UI lands. It says
//! what this server answers (the Prometheus HTTP API, federation, its own metrics) and
//! how to point Grafana and promtool at it, with links that work as they are.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Links shown on the page: (path, what it is).
const QUERY_LINKS: &[(&str, &str)] = &[
    ("/api/v1/query?query=up", "instant query (`up` now)"),
    ("/api/v1/series?match[]=up", "series matching a selector"),
    ("/api/v1/labels", "label names"),
    ("/api/v1/label/__name__/values", "metric names"),
    ("/api/v1/metadata", "metric metadata from scrapes"),
    (
        "/api/v1/format_query?query=sum(rate(x[5m]))by(job)",
        "format a query",
    ),
];

const STATUS_LINKS: &[(&str, &str)] = &[
    ("/api/v1/targets", "scrape targets and their health"),
    ("/api/v1/rules", "recording and alerting rules"),
    ("/api/v1/alerts", "active alerts"),
    ("/api/v1/alertmanagers", "Alertmanagers in use"),
    ("/api/v1/status/config", "the running configuration"),
    ("/api/v1/status/flags", "command-line flags"),
    ("/api/v1/status/runtimeinfo", "runtime information"),
    ("/api/v1/status/buildinfo", "build information"),
    ("/api/v1/status/tsdb", "TSDB cardinality"),
];

const OTHER_LINKS: &[(&str, &str)] = &[
    (
        "/federate?match[]={job=\"kiln\"}",
        "federation: newest samples as text exposition",
    ),
    ("/metrics", "Kiln's own metrics"),
    ("/-/healthy", "health check"),
    ("/-/ready", "readiness check"),
];

/// The landing page. The `Host` the browser used fills in the example URLs.
pub(crate) async fn landing(headers: HeaderMap) -> Html<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:9090");
    Html(page(host))
}

/// Unknown paths: Prometheus's (Go's) plain 404.
pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

fn page(host: &str) -> String {
    let base = format!("http://{}", escape(host));
    let list = |links: &[(&str, &str)]| -> String {
        links
            .iter()
            .map(|(path, what)| {
                let href = escape(&href(path));
                format!(
                    "<li><a href=\"{href}\"><code>{}</code></a> — {}</li>\n",
                    escape(path),
                    escape(what)
                )
            })
            .collect()
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Kiln</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
code, pre {{ background: #f3f3f3; border-radius: 3px; padding: 0 .2rem; }}
pre {{ padding: .6rem; overflow-x: auto; }}
h2 {{ margin-top: 1.6rem; font-size: 1.15rem; }}
</style>
</head>
<body>
<h1>Kiln {version}</h1>
<p>A Prometheus-compatible monitoring server. This build has no web UI yet: the
address serves the <strong>Prometheus HTTP API</strong>, so Grafana, <code>promtool</code>
and anything that talks to Prometheus work against it as they are.</p>

<h2>Grafana</h2>
<p>Add a data source of type <em>Prometheus</em> with the URL <code>{base}</code>.
Dashboards written for Prometheus work unchanged.</p>

<h2>promtool and curl</h2>
<pre>promtool query instant {base} 'up'
curl '{base}/api/v1/query?query=up'</pre>

<h2>Queries</h2>
<ul>
{queries}</ul>

<h2>Status</h2>
<ul>
{status}</ul>

<h2>Federation, self-monitoring, health</h2>
<ul>
{other}</ul>
<p>Remote write goes to <code>POST /api/v1/write</code>, remote read to
<code>POST /api/v1/read</code>; reloads (with <code>--web.enable-lifecycle</code>) to
<code>POST /-/reload</code>.</p>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        queries = list(QUERY_LINKS),
        status = list(STATUS_LINKS),
        other = list(OTHER_LINKS),
    )
}

/// A link's path with the characters a URL must not hold raw percent-encoded.
fn href(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            '{' => "%7B".to_owned(),
            '}' => "%7D".to_owned(),
            '"' => "%22".to_owned(),
            '[' => "%5B".to_owned(),
            ']' => "%5D".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_what_is_served_with_the_callers_host() {
        let p = page("kiln.example:9090");
        assert!(p.contains("<code>http://kiln.example:9090</code>"), "{p}");
        for path in [
            "/api/v1/query?query=up",
            "/federate?match[]={job=\"kiln\"}",
            "/metrics",
        ] {
            assert!(
                p.contains(&format!("href=\"{}\"", escape(&href(path)))),
                "{path}"
            );
        }
        assert!(
            p.contains("/federate?match%5B%5D=%7Bjob=%22kiln%22%7D"),
            "{p}"
        );
        assert!(p.contains("Grafana"));
    }

    #[test]
    fn a_hostile_host_header_is_escaped() {
        let p = page("<script>x</script>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
    }
}
