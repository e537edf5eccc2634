//! The loaded configuration as YAML, for `/api/v1/status/config`: every default filled
//! in, fields in Prometheus's order and spelling, secrets (`password`, `credentials`,
//! TLS `key`, remote storage `headers` values) shown as `<secret>`, and the password of
//! a URL's user info (`url`, `proxy_url`, `api_server`) as `xxxxx`, as Prometheus shows
//! them. Rendering a config without secrets and parsing the result gives the same
//! config back (tested).
//!
//! Sections Kiln accepts but does not apply yet (`storage`, ...) are not rendered,
//! since they are not part of what runs.

use std::collections::BTreeMap;

use kiln_model::relabel::RelabelConfig;

use crate::alerting::{AlertingConfig, AlertmanagerConfig};
use crate::http::HttpClientConfig;
use crate::remote::{RemoteReadConfig, RemoteWriteConfig};
use crate::scrape::ScrapeConfig;
use crate::sd::{
    DnsRecordType, DnsSdConfig, FileSdConfig, HttpSdConfig, KubernetesRole, KubernetesSdConfig,
    StaticConfig,
};
use crate::secret::{Secret, SecretUrl};
use crate::units::{Duration, Size};
use crate::{Config, DEFAULT_SCRAPE_PROTOCOLS, GlobalConfig, ScrapeLimits};

const SECRET: &str = crate::SECRET_PLACEHOLDER;

/// A YAML value with its mapping keys in the order they are written.
enum Node {
    /// A string, quoted when YAML would read it as something else.
    Str(String),
    /// A number or boolean, written as is.
    Plain(String),
    Seq(Vec<Node>),
    /// A sequence of scalars written on one line, `[a, b]`, as Prometheus writes
    /// `source_labels`.
    Flow(Vec<String>),
    Map(Vec<(String, Node)>),
}

/// Builds a mapping, leaving out what Prometheus leaves out when empty.
#[derive(Default)]
struct MapBuilder(Vec<(String, Node)>);

impl MapBuilder {
    fn str(mut self, k: &str, v: impl Into<String>) -> Self {
        self.0.push((k.into(), Node::Str(v.into())));
        self
    }
    fn str_nonempty(self, k: &str, v: &str) -> Self {
        if v.is_empty() { self } else { self.str(k, v) }
    }
    fn plain(mut self, k: &str, v: impl ToString) -> Self {
        self.0.push((k.into(), Node::Plain(v.to_string())));
        self
    }
    fn plain_nonzero(self, k: &str, v: u64) -> Self {
        if v == 0 { self } else { self.plain(k, v) }
    }
    fn duration(self, k: &str, v: Duration) -> Self {
        self.str(k, v.to_string())
    }
    fn node(mut self, k: &str, v: Node) -> Self {
        self.0.push((k.into(), v));
        self
    }
    fn seq_nonempty(self, k: &str, items: Vec<Node>) -> Self {
        if items.is_empty() {
            self
        } else {
            self.node(k, Node::Seq(items))
        }
    }
    fn strings(self, k: &str, items: &[String]) -> Self {
        self.node(
            k,
            Node::Seq(items.iter().map(|s| Node::Str(s.clone())).collect()),
        )
    }
    fn strings_nonempty(self, k: &str, items: &[String]) -> Self {
        if items.is_empty() {
            self
        } else {
            self.strings(k, items)
        }
    }
    fn string_map_nonempty(self, k: &str, m: &BTreeMap<String, String>) -> Self {
        if m.is_empty() {
            return self;
        }
        let entries = m
            .iter()
            .map(|(a, b)| (a.clone(), Node::Str(b.clone())))
            .collect();
        self.node(k, Node::Map(entries))
    }
    /// A mapping whose values are secrets: the keys, each with `<secret>`.
    fn secret_map_nonempty(self, k: &str, m: &BTreeMap<String, Secret>) -> Self {
        if m.is_empty() {
            return self;
        }
        let entries = m
            .keys()
            .map(|a| (a.clone(), Node::Str(SECRET.to_owned())))
            .collect();
        self.node(k, Node::Map(entries))
    }
    /// A URL, its password redacted.
    fn url(self, k: &str, v: &SecretUrl) -> Self {
        self.str(k, v.redacted())
    }
    fn url_nonempty(self, k: &str, v: &SecretUrl) -> Self {
        if v.is_empty() { self } else { self.url(k, v) }
    }
    fn extend(mut self, other: MapBuilder) -> Self {
        self.0.extend(other.0);
        self
    }
    fn build(self) -> Node {
        Node::Map(self.0)
    }
}

impl Config {
    /// The configuration as YAML, as `/api/v1/status/config` shows it.
    pub fn to_yaml(&self) -> String {
        let mut root = MapBuilder::default().node("global", global(&self.global));
        root = root
            .strings_nonempty("rule_files", &self.rule_files)
            .strings_nonempty("scrape_config_files", &self.scrape_config_files);
        if !self.alerting.alertmanagers.is_empty()
            || !self.alerting.alert_relabel_configs.is_empty()
        {
            root = root.node("alerting", alerting(&self.alerting));
        }
        let jobs = self.scrape_configs.iter().map(scrape_config).collect();
        root = root.seq_nonempty("scrape_configs", jobs);
        root = root
            .seq_nonempty(
                "remote_write",
                self.remote_write.iter().map(remote_write).collect(),
            )
            .seq_nonempty(
                "remote_read",
                self.remote_read.iter().map(remote_read).collect(),
            );
        let mut out = String::new();
        if let Node::Map(entries) = root.build() {
            write_map(&mut out, &entries, 0, String::new());
        }
        out
    }
}

fn size(s: Size) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let (mut n, mut unit) = (s.0, 0);
    while n != 0 && n % 1024 == 0 && unit + 1 < units.len() {
        n /= 1024;
        unit += 1;
    }
    format!("{n}{}", units[unit])
}

fn limits(l: &ScrapeLimits) -> MapBuilder {
    let mut m = MapBuilder::default();
    if l.body_size_limit.0 != 0 {
        m = m.str("body_size_limit", size(l.body_size_limit));
    }
    m.plain_nonzero("sample_limit", l.sample_limit)
        .plain_nonzero("label_limit", l.label_limit)
        .plain_nonzero("label_name_length_limit", l.label_name_length_limit)
        .plain_nonzero("label_value_length_limit", l.label_value_length_limit)
        .plain_nonzero("target_limit", l.target_limit)
        .plain_nonzero("keep_dropped_targets", l.keep_dropped_targets)
}

fn protocols(list: &[String]) -> Vec<String> {
    if list.is_empty() {
        DEFAULT_SCRAPE_PROTOCOLS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        list.to_vec()
    }
}

fn global(g: &GlobalConfig) -> Node {
    MapBuilder::default()
        .duration("scrape_interval", g.scrape_interval)
        .duration("scrape_timeout", g.scrape_timeout)
        .strings("scrape_protocols", &protocols(&g.scrape_protocols))
        .duration("evaluation_interval", g.evaluation_interval)
        .duration("rule_query_offset", g.rule_query_offset)
        .string_map_nonempty("external_labels", &g.external_labels)
        .str_nonempty("query_log_file", &g.query_log_file)
        .str_nonempty("scrape_failure_log_file", &g.scrape_failure_log_file)
        .extend(limits(&g.limits))
        .str(
            "metric_name_validation_scheme",
            &g.metric_name_validation_scheme,
        )
        .plain("scrape_native_histograms", g.scrape_native_histograms)
        .plain(
            "convert_classic_histograms_to_nhcb",
            g.convert_classic_histograms_to_nhcb,
        )
        .plain(
            "always_scrape_classic_histograms",
            g.always_scrape_classic_histograms,
        )
        .plain("extra_scrape_metrics", g.extra_scrape_metrics)
        .build()
}

fn http_client(h: &HttpClientConfig) -> MapBuilder {
    let mut m = MapBuilder::default();
    if let Some(b) = &h.basic_auth {
        let mut auth = MapBuilder::default()
            .str_nonempty("username", &b.username)
            .str_nonempty("username_file", &b.username_file);
        if !b.password.is_empty() {
            auth = auth.str("password", SECRET);
        }
        m = m.node(
            "basic_auth",
            auth.str_nonempty("password_file", &b.password_file).build(),
        );
    }
    if let Some(a) = &h.authorization {
        let mut auth = MapBuilder::default().str("type", &a.kind);
        if !a.credentials.is_empty() {
            auth = auth.str("credentials", SECRET);
        }
        m = m.node(
            "authorization",
            auth.str_nonempty("credentials_file", &a.credentials_file)
                .build(),
        );
    }
    let t = &h.tls_config;
    let mut tls = MapBuilder::default()
        .str_nonempty("ca", &t.ca)
        .str_nonempty("cert", &t.cert);
    if !t.key.is_empty() {
        tls = tls.str("key", SECRET);
    }
    tls = tls
        .str_nonempty("ca_file", &t.ca_file)
        .str_nonempty("cert_file", &t.cert_file)
        .str_nonempty("key_file", &t.key_file)
        .str_nonempty("server_name", &t.server_name)
        .plain("insecure_skip_verify", t.insecure_skip_verify)
        .str_nonempty("min_version", &t.min_version)
        .str_nonempty("max_version", &t.max_version);
    if *t != crate::TlsConfig::default() {
        m = m.node("tls_config", tls.build());
    }
    m = m
        .plain("follow_redirects", h.follow_redirects)
        .plain("enable_http2", h.enable_http2)
        .url_nonempty("proxy_url", &h.proxy_url)
        .str_nonempty("no_proxy", &h.no_proxy);
    if h.proxy_from_environment {
        m = m.plain("proxy_from_environment", true);
    }
    m
}

fn relabel(r: &RelabelConfig) -> Node {
    let mut m = MapBuilder::default();
    if !r.source_labels.is_empty() {
        m = m.node("source_labels", Node::Flow(r.source_labels.clone()));
    }
    m = m
        .str("separator", &r.separator)
        .str("regex", r.regex.as_str());
    if r.modulus != 0 {
        m = m.plain("modulus", r.modulus);
    }
    m.str_nonempty("target_label", &r.target_label)
        .str("replacement", &r.replacement)
        .str("action", r.action.as_str())
        .build()
}

fn scrape_config(sc: &ScrapeConfig) -> Node {
    let mut m = MapBuilder::default().str("job_name", &sc.job_name);
    if sc.honor_labels {
        m = m.plain("honor_labels", true);
    }
    m = m
        .plain("honor_timestamps", sc.honor_timestamps)
        .plain("track_timestamps_staleness", sc.track_timestamps_staleness)
        .duration("scrape_interval", sc.scrape_interval)
        .duration("scrape_timeout", sc.scrape_timeout)
        .strings("scrape_protocols", &protocols(&sc.scrape_protocols))
        .str_nonempty("fallback_scrape_protocol", &sc.fallback_scrape_protocol)
        .plain("scrape_native_histograms", sc.scrape_native_histograms)
        .plain(
            "always_scrape_classic_histograms",
            sc.always_scrape_classic_histograms,
        )
        .plain(
            "convert_classic_histograms_to_nhcb",
            sc.convert_classic_histograms_to_nhcb,
        )
        .plain("extra_scrape_metrics", sc.extra_scrape_metrics)
        .str("metrics_path", &sc.metrics_path)
        .str("scheme", sc.scheme.as_str());
    if !sc.params.is_empty() {
        let params = sc
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Node::Seq(v.iter().map(|s| Node::Str(s.clone())).collect()),
                )
            })
            .collect();
        m = m.node("params", Node::Map(params));
    }
    m = m
        .plain("enable_compression", sc.enable_compression)
        .extend(limits(&sc.limits))
        .str(
            "metric_name_validation_scheme",
            &sc.metric_name_validation_scheme,
        )
        .str_nonempty("scrape_failure_log_file", &sc.scrape_failure_log_file)
        .extend(http_client(&sc.http_client))
        .seq_nonempty(
            "relabel_configs",
            sc.relabel_configs.iter().map(relabel).collect(),
        )
        .seq_nonempty(
            "metric_relabel_configs",
            sc.metric_relabel_configs.iter().map(relabel).collect(),
        );
    discovery(
        m,
        &Discovery {
            static_configs: &sc.static_configs,
            file_sd_configs: &sc.file_sd_configs,
            http_sd_configs: &sc.http_sd_configs,
            dns_sd_configs: &sc.dns_sd_configs,
            kubernetes_sd_configs: &sc.kubernetes_sd_configs,
        },
    )
    .build()
}

fn alerting(a: &AlertingConfig) -> Node {
    let ams = a.alertmanagers.iter().map(alertmanager).collect();
    MapBuilder::default()
        .seq_nonempty(
            "alert_relabel_configs",
            a.alert_relabel_configs.iter().map(relabel).collect(),
        )
        .seq_nonempty("alertmanagers", ams)
        .build()
}

fn alertmanager(am: &AlertmanagerConfig) -> Node {
    let m = MapBuilder::default()
        .extend(http_client(&am.http_client))
        .str("scheme", am.scheme.as_str())
        .str_nonempty("path_prefix", &am.path_prefix)
        .duration("timeout", am.timeout)
        .str("api_version", &am.api_version)
        .seq_nonempty(
            "relabel_configs",
            am.relabel_configs.iter().map(relabel).collect(),
        )
        .seq_nonempty(
            "alert_relabel_configs",
            am.alert_relabel_configs.iter().map(relabel).collect(),
        );
    discovery(
        m,
        &Discovery {
            static_configs: &am.static_configs,
            file_sd_configs: &am.file_sd_configs,
            http_sd_configs: &am.http_sd_configs,
            dns_sd_configs: &am.dns_sd_configs,
            kubernetes_sd_configs: &am.kubernetes_sd_configs,
        },
    )
    .build()
}

fn remote_write(rw: &RemoteWriteConfig) -> Node {
    let q = &rw.queue_config;
    let queue = MapBuilder::default()
        .plain("capacity", q.capacity)
        .plain("max_shards", q.max_shards)
        .plain("min_shards", q.min_shards)
        .plain("max_samples_per_send", q.max_samples_per_send)
        .duration("batch_send_deadline", q.batch_send_deadline)
        .duration("min_backoff", q.min_backoff)
        .duration("max_backoff", q.max_backoff)
        .plain("retry_on_http_429", q.retry_on_http_429)
        .duration("sample_age_limit", q.sample_age_limit);
    let md = &rw.metadata_config;
    let metadata = MapBuilder::default()
        .plain("send", md.send)
        .duration("send_interval", md.send_interval)
        .plain("max_samples_per_send", md.max_samples_per_send);
    MapBuilder::default()
        .url("url", &rw.url)
        .duration("remote_timeout", rw.remote_timeout)
        .secret_map_nonempty("headers", &rw.headers)
        .seq_nonempty(
            "write_relabel_configs",
            rw.write_relabel_configs.iter().map(relabel).collect(),
        )
        .str("name", &rw.name)
        .plain("send_exemplars", rw.send_exemplars)
        .plain("send_native_histograms", rw.send_native_histograms)
        .str("protobuf_message", rw.protobuf_message.as_str())
        .node("queue_config", queue.build())
        .node("metadata_config", metadata.build())
        .extend(http_client(&rw.http_client))
        .build()
}

fn remote_read(rr: &RemoteReadConfig) -> Node {
    MapBuilder::default()
        .url("url", &rr.url)
        .str("name", &rr.name)
        .string_map_nonempty("required_matchers", &rr.required_matchers)
        .duration("remote_timeout", rr.remote_timeout)
        .secret_map_nonempty("headers", &rr.headers)
        .plain("read_recent", rr.read_recent)
        .plain("filter_external_labels", rr.filter_external_labels)
        .extend(http_client(&rr.http_client))
        .build()
}

/// The service-discovery fields of a scrape or Alertmanager config.
struct Discovery<'a> {
    static_configs: &'a [StaticConfig],
    file_sd_configs: &'a [FileSdConfig],
    http_sd_configs: &'a [HttpSdConfig],
    dns_sd_configs: &'a [DnsSdConfig],
    kubernetes_sd_configs: &'a [KubernetesSdConfig],
}

fn discovery(m: MapBuilder, sd: &Discovery<'_>) -> MapBuilder {
    let statics = sd
        .static_configs
        .iter()
        .map(|s| {
            MapBuilder::default()
                .strings("targets", &s.targets)
                .string_map_nonempty("labels", &s.labels)
                .build()
        })
        .collect();
    let files = sd
        .file_sd_configs
        .iter()
        .map(|f| {
            MapBuilder::default()
                .strings("files", &f.files)
                .duration("refresh_interval", f.refresh_interval)
                .build()
        })
        .collect();
    let https = sd
        .http_sd_configs
        .iter()
        .map(|h| {
            MapBuilder::default()
                .extend(http_client(&h.http_client))
                .url("url", &h.url)
                .duration("refresh_interval", h.refresh_interval)
                .build()
        })
        .collect();
    let dns = sd
        .dns_sd_configs
        .iter()
        .map(|d| {
            let kind = match d.record_type {
                DnsRecordType::Srv => "SRV",
                DnsRecordType::A => "A",
                DnsRecordType::Aaaa => "AAAA",
                DnsRecordType::Mx => "MX",
                DnsRecordType::Ns => "NS",
            };
            let mut m = MapBuilder::default()
                .strings("names", &d.names)
                .duration("refresh_interval", d.refresh_interval)
                .str("type", kind);
            if d.port != 0 {
                m = m.plain("port", d.port);
            }
            m.build()
        })
        .collect();
    let kubernetes = sd
        .kubernetes_sd_configs
        .iter()
        .map(|k| {
            let role = |r: KubernetesRole| match r {
                KubernetesRole::Node => "node",
                KubernetesRole::Pod => "pod",
                KubernetesRole::Service => "service",
                KubernetesRole::Endpoints => "endpoints",
                KubernetesRole::EndpointSlice => "endpointslice",
                KubernetesRole::Ingress => "ingress",
            };
            let mut namespaces =
                MapBuilder::default().plain("own_namespace", k.namespaces.own_namespace);
            namespaces = namespaces.strings_nonempty("names", &k.namespaces.names);
            let selectors = k
                .selectors
                .iter()
                .map(|s| {
                    MapBuilder::default()
                        .str("role", role(s.role))
                        .str_nonempty("label", &s.label)
                        .str_nonempty("field", &s.field)
                        .build()
                })
                .collect();
            let a = &k.attach_metadata;
            let attach = MapBuilder::default()
                .plain("node", a.node)
                .plain("namespace", a.namespace)
                .plain("deployment", a.deployment)
                .plain("job", a.job)
                .plain("cronjob", a.cronjob);
            MapBuilder::default()
                .url_nonempty("api_server", &k.api_server)
                .str("role", role(k.role))
                .str_nonempty("kubeconfig_file", &k.kubeconfig_file)
                .node("namespaces", namespaces.build())
                .seq_nonempty("selectors", selectors)
                .node("attach_metadata", attach.build())
                .extend(http_client(&k.http_client))
                .build()
        })
        .collect();
    m.seq_nonempty("static_configs", statics)
        .seq_nonempty("file_sd_configs", files)
        .seq_nonempty("http_sd_configs", https)
        .seq_nonempty("dns_sd_configs", dns)
        .seq_nonempty("kubernetes_sd_configs", kubernetes)
}

// --- emitting -----------------------------------------------------------------------

/// A scalar as YAML: plain when YAML reads it back as the same string, else quoted.
fn quote(s: &str) -> String {
    let special = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with(['.', '+', '-']);
    let plain_chars = s
        .chars()
        .all(|c| c.is_alphanumeric() || "_./:@%+-()*^$|<>".contains(c));
    let starts_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || "_./<".contains(c));
    if !special && !numeric && plain_chars && starts_ok && !s.contains(": ") {
        return s.to_owned();
    }
    if s.chars().any(|c| c.is_control()) {
        // JSON's string syntax is YAML's double-quoted syntax for these escapes.
        return serde_json::to_string(s).unwrap_or_else(|_| format!("'{s}'"));
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn scalar(node: &Node) -> Option<String> {
    match node {
        Node::Str(s) => Some(quote(s)),
        Node::Plain(s) => Some(s.clone()),
        Node::Flow(items) => Some(format!(
            "[{}]",
            items
                .iter()
                .map(|s| quote(s))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Node::Seq(items) if items.is_empty() => Some("[]".into()),
        Node::Map(entries) if entries.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// Writes mapping entries at `indent`; the first line starts with `first_prefix`
/// instead (`"- "` for a mapping inside a sequence).
fn write_map(out: &mut String, entries: &[(String, Node)], indent: usize, first_prefix: String) {
    let pad = " ".repeat(indent);
    for (i, (key, value)) in entries.iter().enumerate() {
        let prefix = if i == 0 {
            first_prefix.as_str()
        } else {
            pad.as_str()
        };
        let key = quote(key);
        if let Some(s) = scalar(value) {
            out.push_str(&format!("{prefix}{key}: {s}\n"));
            continue;
        }
        out.push_str(&format!("{prefix}{key}:\n"));
        match value {
            Node::Map(inner) => write_map(out, inner, indent + 2, " ".repeat(indent + 2)),
            Node::Seq(items) => write_seq(out, items, indent),
            _ => {}
        }
    }
}

/// Writes sequence items at `indent`, the way Prometheus (Go's yaml.v2) does: the
/// dashes at the parent key's indentation.
fn write_seq(out: &mut String, items: &[Node], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        if let Some(s) = scalar(item) {
            out.push_str(&format!("{pad}- {s}\n"));
            continue;
        }
        match item {
            Node::Map(entries) => write_map(out, entries, indent + 2, format!("{pad}- ")),
            Node::Seq(inner) => {
                out.push_str(&format!("{pad}-\n"));
                write_seq(out, inner, indent + 2);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const FULL: &str = r#"
global:
  scrape_interval: 15s
  external_labels: {cluster: 'gpu-east', replica: "1"}
  sample_limit: 50000
rule_files: [rules/*.yml]
scrape_configs:
  - job_name: node
    honor_labels: true
    scrape_protocols: [PrometheusText0.0.4]
    params: {'match[]': ['{job="x"}', up]}
    body_size_limit: 10MB
    basic_auth: {username: admin, password_file: /etc/pw}
    tls_config: {ca_file: /etc/ca.pem, server_name: 'node.local', min_version: TLS12}
    relabel_configs:
      - source_labels: [__address__, __meta_x]
        regex: '([^:]+):\d+'
        target_label: host
        replacement: '${1}'
      - action: hashmod
        source_labels: [__address__]
        modulus: 4
        target_label: __tmp_shard
      - action: labelmap
        regex: '__meta_kubernetes_pod_label_(.+)'
    static_configs:
      - targets: ['10.0.0.1:9100', '[fe80::1]:9100']
        labels: {rack: 'r1: top', empty: '', 'yes': 'no'}
    file_sd_configs: [{files: [targets/*.json], refresh_interval: 1m}]
    dns_sd_configs: [{names: [_node._tcp.example.com]}, {names: [db.example.com], type: A, port: 5432}]
    http_sd_configs: [{url: 'http://sd.example.com/targets', authorization: {credentials_file: /t}}]
    kubernetes_sd_configs:
      - role: endpointslice
        api_server: https://k8s.example.com
        namespaces: {names: [ml]}
        selectors: [{role: pod, label: 'app=triton'}]
        attach_metadata: {node: true}
"#;

    #[test]
    fn rendering_round_trips() {
        let config = Config::parse(FULL, "full.yml").expect("parse");
        let yaml = config.to_yaml();
        let mut again = Config::parse(&yaml, "rendered.yml")
            .unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{yaml}"));
        // The only change: the default protocol list is now written out.
        assert_eq!(again.to_yaml(), yaml);
        let mut config = config;
        for c in [&mut config, &mut again] {
            c.global.scrape_protocols.clear();
            for sc in &mut c.scrape_configs {
                if sc.scrape_protocols == crate::DEFAULT_SCRAPE_PROTOCOLS {
                    sc.scrape_protocols.clear();
                }
            }
        }
        assert_eq!(again, config, "{yaml}");
        assert!(yaml.contains("- job_name: node\n"), "{yaml}");
        assert!(
            yaml.contains("  - targets:\n    - 10.0.0.1:9100\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("source_labels: [__address__, __meta_x]"),
            "{yaml}"
        );
        assert!(yaml.contains("body_size_limit: 10MiB"), "{yaml}");
        assert!(yaml.contains("scrape_interval: 15s"), "{yaml}");
    }

    #[test]
    fn secrets_are_masked() {
        let config = Config::parse(
            "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: hunter2}\n  \
             - job_name: b\n    authorization: {credentials: tok3n}\n    \
             tls_config: {cert: CERTPEM, key: KEYPEM}\n",
            "s.yml",
        )
        .expect("parse");
        let yaml = config.to_yaml();
        for secret in ["hunter2", "tok3n", "KEYPEM"] {
            assert!(!yaml.contains(secret), "{secret} leaked:\n{yaml}");
        }
        assert_eq!(yaml.matches("<secret>").count(), 3, "{yaml}");
        assert!(yaml.contains("cert: CERTPEM"), "{yaml}");
    }

    /// Every URL that may carry `user:password@`, and remote storage headers, as
    /// Prometheus shows them: the password as `xxxxx`, header values as `<secret>`.
    #[test]
    fn url_passwords_and_headers_are_masked() {
        let config = Config::parse(
            r#"
scrape_configs:
  - job_name: a
    proxy_url: http://proxyuser:pw-proxy@proxy:3128
    http_sd_configs: [{url: 'https://sduser:pw-sd@sd.example.com/targets'}]
    kubernetes_sd_configs:
      - {role: pod, api_server: 'https://k8s:pw-k8s@k8s.example.com'}
remote_write:
  - url: https://rwuser:pw-write@lts.example.com/push
    headers: {X-Scope-OrgID: team-a, X-Api-Key: pw-header}
remote_read:
  - url: http://rruser:pw-read@lts.example.com/read
    headers: {X-Api-Key: pw-header-read}
"#,
            "s.yml",
        )
        .expect("parse");
        let yaml = config.to_yaml();
        assert!(!yaml.contains("pw-"), "a secret leaked:\n{yaml}");
        for shown in [
            "proxy_url: http://proxyuser:xxxxx@proxy:3128",
            "url: https://sduser:xxxxx@sd.example.com/targets",
            "api_server: https://k8s:xxxxx@k8s.example.com",
            "url: https://rwuser:xxxxx@lts.example.com/push",
            "X-Api-Key: <secret>",
            "X-Scope-OrgID: <secret>",
            "url: http://rruser:xxxxx@lts.example.com/read",
        ] {
            assert!(yaml.contains(shown), "want {shown:?} in:\n{yaml}");
        }
        // Debug of the whole config shows no secret of these either.
        let debug = format!("{config:?}");
        assert!(!debug.contains("pw-"), "a secret leaked in Debug: {debug}");
    }
}
