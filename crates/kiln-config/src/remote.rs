//! `remote_write` and `remote_read`: where Kiln sends what it stores, and which remote
//! stores it reads from when answering queries.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::http::{HttpClientConfig, with_http_client_fields};
use crate::relabel::{RawRelabelConfig, resolve_all};
use crate::secret::{Secret, SecretUrl, UrlKind};
use crate::units::Duration;
use crate::yaml::Problem;
use kiln_model::relabel::RelabelConfig;

/// Which protobuf message a remote-write endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtobufMessage {
    /// Remote write 1.0: `prometheus.WriteRequest`.
    #[default]
    V1,
    /// Remote write 2.0: `io.prometheus.write.v2.Request` (symbol table, metadata per
    /// series).
    V2,
}

impl ProtobufMessage {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => "prometheus.WriteRequest",
            ProtobufMessage::V2 => "io.prometheus.write.v2.Request",
        }
    }
}

/// One `remote_write` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// Displays redacted: see [`SecretUrl`].
    pub url: SecretUrl,
    /// As written, or (when not written) a short hash of the entry, like Prometheus, so
    /// metrics and the sender's progress file can name it.
    pub name: String,
    pub protobuf_message: ProtobufMessage,
    pub remote_timeout: Duration,
    /// Extra request headers; those the protocol sets itself are refused. Their values
    /// are secrets (often tokens): never shown.
    pub headers: BTreeMap<String, Secret>,
    /// Applied to every series (after external labels) before it is sent; a series
    /// relabelled to nothing is not sent.
    pub write_relabel_configs: Vec<RelabelConfig>,
    pub send_exemplars: bool,
    pub send_native_histograms: bool,
    pub queue_config: QueueConfig,
    pub metadata_config: MetadataConfig,
    pub http_client: HttpClientConfig,
}

/// `queue_config`: how samples wait and are batched, and how many senders run at once.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Samples buffered per shard before reading the WAL pauses.
    pub capacity: usize,
    pub max_shards: usize,
    pub min_shards: usize,
    pub max_samples_per_send: usize,
    /// The longest a sample waits for its batch to fill.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_http_429: bool,
    /// Samples older than this when they would be sent are dropped (0: never).
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: false,
            sample_age_limit: Duration(0),
        }
    }
}

/// `metadata_config`: metric metadata (type, help, unit) sent besides samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataConfig {
    pub send: bool,
    pub send_interval: Duration,
    pub max_samples_per_send: usize,
}

impl Default for MetadataConfig {
    fn default() -> MetadataConfig {
        MetadataConfig {
            send: true,
            send_interval: Duration::from_secs(60),
            max_samples_per_send: 2000,
        }
    }
}

/// One `remote_read` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteReadConfig {
    /// Displays redacted: see [`SecretUrl`].
    pub url: SecretUrl,
    pub name: String,
    /// Equality matchers a selector must contain for this endpoint to be asked.
    pub required_matchers: BTreeMap<String, String>,
    pub remote_timeout: Duration,
    /// Values are secrets, as for remote write.
    pub headers: BTreeMap<String, Secret>,
    /// Also ask for time ranges local storage holds completely.
    pub read_recent: bool,
    /// Add the external labels as equality matchers to every request (and remove them
    /// from the results).
    pub filter_external_labels: bool,
    pub http_client: HttpClientConfig,
}

with_http_client_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteWriteConfig {
    url: Option<Spanned<String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    protobuf_message: Option<Spanned<String>>,
    #[serde(default)]
    remote_timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, Secret>>>,
    #[serde(default)]
    write_relabel_configs: Option<Vec<Spanned<RawRelabelConfig>>>,
    #[serde(default)]
    send_exemplars: Option<bool>,
    #[serde(default)]
    send_native_histograms: Option<bool>,
    #[serde(default)]
    round_robin_dns: Option<bool>,
    #[serde(default)]
    queue_config: Option<Spanned<RawQueueConfig>>,
    #[serde(default)]
    metadata_config: Option<Spanned<RawMetadataConfig>>,
    #[serde(default)]
    sigv4: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    azuread: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    google_iam: Option<Spanned<serde::de::IgnoredAny>>,
}
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueConfig {
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    max_shards: Option<i64>,
    #[serde(default)]
    min_shards: Option<i64>,
    #[serde(default)]
    max_samples_per_send: Option<i64>,
    #[serde(default)]
    batch_send_deadline: Option<Duration>,
    #[serde(default)]
    min_backoff: Option<Duration>,
    #[serde(default)]
    max_backoff: Option<Duration>,
    #[serde(default)]
    retry_on_http_429: Option<bool>,
    #[serde(default)]
    sample_age_limit: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadataConfig {
    #[serde(default)]
    send: Option<bool>,
    #[serde(default)]
    send_interval: Option<Duration>,
    #[serde(default)]
    max_samples_per_send: Option<i64>,
}

with_http_client_fields! {
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteReadConfig {
    url: Option<Spanned<String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    required_matchers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    remote_timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, Secret>>>,
    #[serde(default)]
    read_recent: Option<bool>,
    #[serde(default)]
    filter_external_labels: Option<bool>,
}
}

/// Headers the remote protocols set themselves; a config may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

/// Checks the `url` of a `section` entry; a bad one is pointed at (and quoted redacted),
/// a missing one is the entry's problem.
fn check_url(url: Option<Spanned<String>>, section: &str) -> Result<SecretUrl, Problem> {
    let Some(Spanned {
        value: url,
        referenced,
        ..
    }) = url
    else {
        return Err(format!("url for {section} is empty").into());
    };
    if url.is_empty() {
        return Err(Problem::at(
            &referenced,
            format!("url for {section} is empty"),
        ));
    }
    crate::secret::check_url(&url, "url", UrlKind::Http).map_err(|m| Problem::at(&referenced, m))
}

fn check_headers(
    headers: Option<Spanned<BTreeMap<String, Secret>>>,
) -> Result<BTreeMap<String, Secret>, Problem> {
    let Some(Spanned {
        value: headers,
        referenced,
        ..
    }) = headers
    else {
        return Ok(BTreeMap::new());
    };
    let fail = |m: String| Problem::at(&referenced, m);
    for name in headers.keys() {
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(fail(format!(
                "{name} is a reserved header. It must not be changed"
            )));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(fail(format!(
                "header name {name:?} is not a valid HTTP header name"
            )));
        }
    }
    Ok(headers)
}

fn positive(v: Option<i64>, default: usize, field: &str) -> Result<usize, String> {
    match v {
        None => Ok(default),
        Some(n) if n > 0 => usize::try_from(n).map_err(|_| format!("{field} {n} is too large")),
        Some(n) => Err(format!("{field} must be greater than 0, got {n}")),
    }
}

/// A name for an unnamed entry: 6 hex digits of a hash of what identifies it, stable
/// across restarts (the sender's progress file is kept under it).
fn generated_name(parts: &[&str]) -> String {
    // FNV-1a: fixed across builds and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:06x}", h & 0xff_ffff)
}

impl RawQueueConfig {
    fn resolve(self) -> Result<QueueConfig, String> {
        let d = QueueConfig::default();
        let q = QueueConfig {
            capacity: positive(self.capacity, d.capacity, "capacity")?,
            max_shards: positive(self.max_shards, d.max_shards, "max_shards")?,
            min_shards: positive(self.min_shards, d.min_shards, "min_shards")?,
            max_samples_per_send: positive(
                self.max_samples_per_send,
                d.max_samples_per_send,
                "max_samples_per_send",
            )?,
            batch_send_deadline: self.batch_send_deadline.unwrap_or(d.batch_send_deadline),
            min_backoff: self.min_backoff.unwrap_or(d.min_backoff),
            max_backoff: self.max_backoff.unwrap_or(d.max_backoff),
            retry_on_http_429: self.retry_on_http_429.unwrap_or(d.retry_on_http_429),
            sample_age_limit: self.sample_age_limit.unwrap_or(d.sample_age_limit),
        };
        if q.min_shards > q.max_shards {
            return Err(format!(
                "min_shards ({}) must not be greater than max_shards ({})",
                q.min_shards, q.max_shards
            ));
        }
        if q.batch_send_deadline.as_millis() <= 0 {
            return Err("batch_send_deadline must be greater than 0".into());
        }
        if q.min_backoff > q.max_backoff {
            return Err("min_backoff must not be greater than max_backoff".into());
        }
        Ok(q)
    }
}

impl RawRemoteWriteConfig {
    pub(crate) fn resolve(mut self) -> Result<RemoteWriteConfig, Problem> {
        let http2_written = self.enable_http2.is_some();
        let mut http_client = self.take_http_client().resolve()?;
        if !http2_written {
            // Remote write's own default: one connection per shard, HTTP/1.1.
            http_client.enable_http2 = false;
        }
        let url = check_url(self.url, "remote_write")?;
        let protobuf_message = match self.protobuf_message {
            None => ProtobufMessage::V1,
            Some(m) => match m.value.as_str() {
                "prometheus.WriteRequest" => ProtobufMessage::V1,
                "io.prometheus.write.v2.Request" => ProtobufMessage::V2,
                other => {
                    return Err(Problem::at(
                        &m.referenced,
                        format!(
                            "unknown remote write protobuf message {other:?}, supported: \
                             prometheus.WriteRequest, io.prometheus.write.v2.Request"
                        ),
                    ));
                }
            },
        };
        for (field, set) in [
            ("sigv4", &self.sigv4),
            ("azuread", &self.azuread),
            ("google_iam", &self.google_iam),
        ] {
            if let Some(set) = set {
                return Err(Problem::at(
                    &set.referenced,
                    format!(
                        "{field} is not supported by Kiln; use basic_auth, authorization or \
                         tls_config"
                    ),
                ));
            }
        }
        let _ = self.round_robin_dns;
        let mdd = MetadataConfig::default();
        let metadata_config = match self.metadata_config {
            None => mdd,
            Some(md) => MetadataConfig {
                send: md.value.send.unwrap_or(mdd.send),
                send_interval: md.value.send_interval.unwrap_or(mdd.send_interval),
                max_samples_per_send: positive(
                    md.value.max_samples_per_send,
                    mdd.max_samples_per_send,
                    "max_samples_per_send",
                )
                .map_err(|e| Problem::at(&md.referenced, e).within("metadata_config"))?,
            },
        };
        let remote_timeout = positive_duration(self.remote_timeout, Duration::from_secs(30))?;
        let name = match self.name {
            Some(n) if !n.is_empty() => n,
            _ => generated_name(&["write", url.expose(), protobuf_message.as_str()]),
        };
        Ok(RemoteWriteConfig {
            url,
            name,
            protobuf_message,
            remote_timeout,
            headers: check_headers(self.headers)?,
            write_relabel_configs: resolve_all(
                self.write_relabel_configs,
                "write_relabel_configs",
            )?,
            send_exemplars: self.send_exemplars.unwrap_or(false),
            send_native_histograms: self.send_native_histograms.unwrap_or(false),
            queue_config: match self.queue_config {
                None => QueueConfig::default(),
                Some(q) => q
                    .value
                    .resolve()
                    .map_err(|e| Problem::at(&q.referenced, e).within("queue_config"))?,
            },
            metadata_config,
            http_client,
        })
    }
}

impl RawRemoteReadConfig {
    pub(crate) fn resolve(mut self) -> Result<RemoteReadConfig, Problem> {
        let http_client = self.take_http_client().resolve()?;
        let url = check_url(self.url, "remote_read")?;
        let remote_timeout = positive_duration(self.remote_timeout, Duration::from_secs(60))?;
        let name = match self.name {
            Some(n) if !n.is_empty() => n,
            _ => generated_name(&["read", url.expose()]),
        };
        Ok(RemoteReadConfig {
            url,
            name,
            required_matchers: self.required_matchers.unwrap_or_default(),
            remote_timeout,
            headers: check_headers(self.headers)?,
            read_recent: self.read_recent.unwrap_or(false),
            filter_external_labels: self.filter_external_labels.unwrap_or(true),
            http_client,
        })
    }
}

/// A `remote_timeout`: `default` when unset, and greater than 0.
fn positive_duration(
    written: Option<Spanned<Duration>>,
    default: Duration,
) -> Result<Duration, Problem> {
    match written {
        None => Ok(default),
        Some(d) if d.value.as_millis() > 0 => Ok(d.value),
        Some(d) => Err(Problem::at(
            &d.referenced,
            "remote_timeout must be greater than 0",
        )),
    }
}

/// Resolves a list of entries, naming and pointing at the failing one, and checks that
/// names are unique.
pub(crate) fn resolve_list<R, T>(
    raw: Option<Vec<Spanned<R>>>,
    section: &str,
    resolve: impl Fn(R) -> Result<T, Problem>,
    name_of: impl Fn(&T) -> &str,
) -> Result<Vec<T>, Problem> {
    let mut out: Vec<T> = Vec::new();
    for (i, r) in raw.unwrap_or_default().into_iter().enumerate() {
        let at = r.referenced;
        let item = resolve(r.value).map_err(|e| e.or_at(&at).within(format!("{section}[{i}]")))?;
        if let Some(prev) = out.iter().position(|p| name_of(p) == name_of(&item)) {
            return Err(Problem::at(
                &at,
                format!(
                    "{section}[{i}]: found multiple {section} configs with name {:?} (the first \
                     is {section}[{prev}])",
                    name_of(&item)
                ),
            ));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Config;
    use crate::remote::ProtobufMessage;

    #[test]
    fn remote_write_defaults_and_fields() {
        let c = Config::parse(
            r#"
remote_write:
  - url: http://127.0.0.1:9201/api/v1/write
  - url: https://lts.example/api/v1/write
    name: lts
    protobuf_message: io.prometheus.write.v2.Request
    headers: {X-Scope-OrgID: team-a}
    basic_auth: {username: u, password: p}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
    queue_config:
      capacity: 2500
      min_shards: 2
      max_shards: 10
      max_samples_per_send: 500
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 10s
      retry_on_http_429: true
      sample_age_limit: 5m
    metadata_config: {send: false, send_interval: 30s}
"#,
            "p.yml",
        )
        .unwrap();
        let [a, b] = &c.remote_write[..] else {
            panic!("want two entries: {:?}", c.remote_write)
        };
        assert_eq!(a.name.len(), 6, "generated name: {}", a.name);
        assert_eq!(a.protobuf_message, ProtobufMessage::V1);
        assert_eq!(a.queue_config.capacity, 10_000);
        assert_eq!(a.queue_config.max_samples_per_send, 2000);
        assert_eq!(a.remote_timeout.as_millis(), 30_000);
        assert!(!a.http_client.enable_http2);
        assert!(a.metadata_config.send);
        assert_eq!(b.name, "lts");
        assert_eq!(b.protobuf_message, ProtobufMessage::V2);
        assert_eq!(b.headers["X-Scope-OrgID"].expose(), "team-a");
        assert_eq!(b.write_relabel_configs.len(), 1);
        let q = &b.queue_config;
        assert_eq!(
            (
                q.capacity,
                q.min_shards,
                q.max_shards,
                q.max_samples_per_send
            ),
            (2500, 2, 10, 500)
        );
        assert_eq!(q.batch_send_deadline.as_millis(), 1000);
        assert_eq!(
            (q.min_backoff.as_millis(), q.max_backoff.as_millis()),
            (100, 10_000)
        );
        assert!(q.retry_on_http_429);
        assert_eq!(q.sample_age_limit.as_millis(), 300_000);
        assert!(!b.metadata_config.send);
        assert!(c.unapplied_sections().is_empty());
        // Rendered and parsed again, the same config (but the masked password and
        // header values).
        let mut again = Config::parse(&c.to_yaml(), "rendered").unwrap();
        assert_eq!(
            again.remote_write[1].headers["X-Scope-OrgID"].expose(),
            "<secret>"
        );
        again.remote_write[1].headers = b.headers.clone();
        assert_eq!(
            again.remote_write[1]
                .http_client
                .basic_auth
                .as_ref()
                .unwrap()
                .password,
            "<secret>"
        );
        again.remote_write[1].http_client = b.http_client.clone();
        assert_eq!(again.remote_write, c.remote_write);
    }

    #[test]
    fn remote_read_fields() {
        let c = Config::parse(
            r#"
remote_read:
  - url: http://127.0.0.1:9090/api/v1/read
    required_matchers: {job: node}
    read_recent: true
    filter_external_labels: false
"#,
            "p.yml",
        )
        .unwrap();
        let r = &c.remote_read[0];
        assert_eq!(r.required_matchers["job"], "node");
        assert!(r.read_recent);
        assert!(!r.filter_external_labels);
        assert_eq!(r.remote_timeout.as_millis(), 60_000);
        let again = Config::parse(&c.to_yaml(), "rendered").unwrap();
        assert_eq!(again.remote_read, c.remote_read);
    }

    #[test]
    fn bad_remote_configs_are_refused() {
        for (yaml, want) in [
            (
                "remote_write: [{}]",
                "p.yml:1:16: remote_write[0]: url for remote_write is empty",
            ),
            (
                "remote_write: [{url: 'ftp://x'}]",
                "want an http:// or https:// URL",
            ),
            (
                "remote_write: [{url: 'http://x', protobuf_message: foo}]",
                "unknown remote write protobuf message",
            ),
            (
                "remote_write: [{url: 'http://x', headers: {Content-Type: x}}]",
                "Content-Type is a reserved header",
            ),
            (
                "remote_write: [{url: 'http://x', queue_config: {min_shards: 5, max_shards: 2}}]",
                "min_shards (5) must not be greater than max_shards (2)",
            ),
            (
                "remote_write: [{url: 'http://x', queue_config: {capacity: 0}}]",
                "capacity must be greater than 0",
            ),
            (
                "remote_write: [{url: 'http://x', queue_config: {bogus: 1}}]",
                "bogus",
            ),
            (
                "remote_write: [{url: 'http://x', name: a}, {url: 'http://y', name: a}]",
                "found multiple remote_write configs with name \"a\"",
            ),
            (
                "remote_write: [{url: 'http://x', sigv4: {}}]",
                "sigv4 is not supported",
            ),
            (
                "remote_read: [{url: 'http://x', remote_timeout: 0s}]",
                "remote_timeout must be",
            ),
        ] {
            let err = Config::parse(yaml, "p.yml").unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }
}
