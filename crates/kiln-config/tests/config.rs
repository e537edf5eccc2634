//! prometheus.yml loading: defaults, validation messages, line numbers. (Every scrape
//! config of the lecture loading is checked in `crates/kiln/tests/lecture.rs`, where
//! the lecture's presence beside the repository is known at build time.)

use kiln_config::{Config, ConfigError, Duration, KubernetesRole, Scheme};
use kiln_model::relabel::Action;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "prometheus.yml")
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_is_the_defaults() {
    for text in ["", "# only a comment\n", "\n\n"] {
        let c = parse(text).expect("empty config");
        assert_eq!(c.global.scrape_interval, Duration::from_secs(60));
        assert_eq!(c.global.scrape_timeout, Duration::from_secs(10));
        assert_eq!(c.global.evaluation_interval, Duration::from_secs(60));
        assert!(c.scrape_configs.is_empty());
    }
}

#[test]
fn defaults_flow_from_global_to_scrape_configs() {
    let c = parse(
        "global:\n  scrape_interval: 5s\n  sample_limit: 100\n\
         scrape_configs:\n  - job_name: a\n  - job_name: b\n    scrape_interval: 1m\n    \
         sample_limit: 7\n    scrape_timeout: 20s\n",
    )
    .expect("config");
    // The global timeout (10s default) is capped at the 5s global interval.
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(5));
    let a = c.scrape_config("a").expect("job a");
    assert_eq!(a.scrape_interval, Duration::from_secs(5));
    assert_eq!(a.scrape_timeout, Duration::from_secs(5));
    assert_eq!(a.metrics_path, "/metrics");
    assert_eq!(a.scheme, Scheme::Http);
    assert!(a.honor_timestamps && !a.honor_labels && a.enable_compression);
    assert_eq!(a.limits.sample_limit, 100);
    let b = c.scrape_config("b").expect("job b");
    assert_eq!(b.scrape_interval, Duration::from_secs(60));
    assert_eq!(b.scrape_timeout, Duration::from_secs(20));
    assert_eq!(b.limits.sample_limit, 7);
}

#[test]
fn unknown_fields_are_errors_with_a_line() {
    let e = err("global:\n  scrape_interval: 15s\n  scrape_intervall: 15s\n");
    assert!(e.contains("scrape_intervall"), "{e}");
    assert!(e.contains('3'), "no line number in {e}");
    let e = err("scrape_configs:\n  - job_name: x\n    static_config:\n      - targets: [a:1]\n");
    assert!(e.contains("static_config"), "{e}");
    let e = err("scrape_configs:\n  - job_name: x\n    consul_sd_configs: []\n");
    assert!(e.contains("Kiln supports static_configs"), "{e}");
    let e = err(
        "scrape_configs:\n  - job_name: x\n    relabel_configs:\n      - action: keep\n        regexp: a\n",
    );
    assert!(e.contains("regexp"), "{e}");
}

#[test]
fn bad_values_are_errors() {
    let cases: &[(&str, &str)] = &[
        ("global:\n  scrape_interval: 15\n", "duration"),
        (
            "global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n",
            "greater than",
        ),
        (
            "global:\n  external_labels:\n    bad-name: x\n",
            "not a valid label name",
        ),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
            "multiple scrape configs with job name \"a\"",
        ),
        (
            "scrape_configs:\n  - scrape_interval: 5s\n",
            "job_name is empty",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
            "scrape timeout 6s greater than scrape interval 5s",
        ),
        ("scrape_configs:\n  - job_name: a\n    scheme: ftp\n", "ftp"),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        target_label: x\n",
            "non-zero modulus",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: keep\n        regex: '('\n",
            "invalid relabel regex",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: explode\n",
            "unknown relabel action",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    basic_auth: {password: x, password_file: /etc/pass}\n",
            "password & password_file",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    authorization: {type: Basic, credentials: x}\n",
            "use \"basic_auth\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    kubernetes_sd_configs:\n      - api_server: x\n",
            "role missing",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    dns_sd_configs:\n      - names: [x]\n        type: A\n",
            "port is required",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [targets.txt]\n",
            "must end in .json, .yml or .yaml",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://x:1/metrics']\n",
            "is not a valid hostname",
        ),
        ("global:\n  body_size_limit: 10 MB\n", "invalid size"),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_protocols: [Foo]\n",
            "unknown scrape protocol",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    oauth2: {client_id: x}\n",
            "oauth2 is not supported",
        ),
        ("global: [1, 2]\n", "prometheus.yml"),
        ("scrape_configs: {job_name: a\n", "prometheus.yml"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(
            e.contains(want),
            "config {text:?}: error {e:?} lacks {want:?}"
        );
    }
}

#[test]
fn every_sd_and_relabel_field_loads() {
    let c = parse(
        r#"
global:
  external_labels: {cluster: c1, replica: "0"}
scrape_configs:
  - job_name: everything
    scheme: https
    metrics_path: /custom
    params: {"match[]": ['{job="a"}', '{job="b"}']}
    honor_labels: true
    honor_timestamps: false
    body_size_limit: 10MB
    label_limit: 30
    target_limit: 5
    basic_auth: {username: u, password_file: /etc/pass}
    tls_config: {ca_file: /ca.pem, insecure_skip_verify: true, min_version: TLS12}
    static_configs:
      - targets: ['localhost:9090']
        labels: {env: dev}
    file_sd_configs:
      - files: [/etc/targets/*.json]
    http_sd_configs:
      - url: http://127.0.0.1:8000/sd
        refresh_interval: 15s
        authorization: {credentials: token}
    dns_sd_configs:
      - names: [_prometheus._tcp.example.org]
      - names: [node.example.org]
        type: A
        port: 9100
    kubernetes_sd_configs:
      - role: endpointslice
        namespaces: {names: [default]}
        selectors: [{role: pod, label: app=x}]
        attach_metadata: {node: true}
    relabel_configs:
      - source_labels: [__address__]
        modulus: 4
        target_label: __tmp_hash
        action: hashmod
      - source_labels: [__tmp_hash]
        regex: "1"
        action: keep
    metric_relabel_configs:
      - regex: "go_.*"
        action: labeldrop
"#,
    )
    .expect("config");
    assert_eq!(c.global.external_labels.len(), 2);
    let s = c.scrape_config("everything").expect("job");
    assert_eq!(s.scheme, Scheme::Https);
    assert_eq!(s.params["match[]"].len(), 2);
    assert_eq!(s.limits.body_size_limit.0, 10 << 20);
    assert_eq!(s.http_client.tls_config.min_version, "TLS12");
    assert_eq!(
        s.file_sd_configs[0].refresh_interval,
        Duration::from_secs(300)
    );
    assert_eq!(
        s.http_sd_configs[0].refresh_interval,
        Duration::from_secs(15)
    );
    let auth = s.http_sd_configs[0]
        .http_client
        .authorization
        .as_ref()
        .expect("authorization");
    assert_eq!(auth.kind, "Bearer");
    assert_eq!(s.dns_sd_configs.len(), 2);
    assert_eq!(s.dns_sd_configs[1].port, 9100);
    assert_eq!(
        s.kubernetes_sd_configs[0].role,
        KubernetesRole::EndpointSlice
    );
    assert_eq!(s.relabel_configs[0].action, Action::HashMod);
    assert_eq!(s.relabel_configs[0].modulus, 4);
    assert_eq!(s.metric_relabel_configs[0].action, Action::LabelDrop);
}

#[test]
fn sections_kiln_does_not_apply_yet_are_listed() {
    let c = parse("remote_write:\n  - url: http://x/api/v1/write\nstorage:\n  tsdb: {}\n")
        .expect("config");
    assert_eq!(c.unapplied_sections(), &["storage"]);
}

#[test]
fn alerting_section_is_parsed_and_checked() {
    let c = parse(concat!(
        "global:\n  external_labels: {cluster: a}\n",
        "alerting:\n",
        "  alert_relabel_configs: [{action: labeldrop, regex: replica}]\n",
        "  alertmanagers:\n",
        "    - scheme: https\n",
        "      path_prefix: /am\n",
        "      timeout: 5s\n",
        "      basic_auth: {username: u, password: p}\n",
        "      static_configs: [{targets: ['am-0:9093', 'am-1:9093']}]\n",
        "      file_sd_configs: [{files: [ams.json]}]\n",
        "      relabel_configs: [{source_labels: [__address__], regex: 'am-1.*', action: drop}]\n",
    ))
    .expect("config");
    let am = &c.alerting.alertmanagers[0];
    assert_eq!(am.scheme.as_str(), "https");
    assert_eq!(
        (am.path_prefix.as_str(), am.timeout.as_millis()),
        ("/am", 5000)
    );
    assert_eq!(am.api_version, "v2");
    assert_eq!(am.static_configs[0].targets.len(), 2);
    assert_eq!(am.relabel_configs.len(), 1);
    assert_eq!(c.alerting.alert_relabel_configs.len(), 1);
    assert!(c.unapplied_sections().is_empty());
    // Rendered for /api/v1/status/config and parsed back the same (secret masked).
    let yaml = c.to_yaml();
    assert!(
        yaml.contains("alertmanagers:") && yaml.contains("path_prefix: /am"),
        "{yaml}"
    );
    assert!(yaml.contains("password: <secret>"), "{yaml}");
    for bad in [
        "alerting:\n  alertmanagers:\n    - api_version: v1\n",
        "alerting:\n  alertmanagers:\n    - timeout: 0s\n",
        "alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['http://am:9093']}]\n",
        "alerting:\n  alertmanagerz: []\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn yaml_merge_keys_expand() {
    let c = parse("x-common: &common\n  scrape_interval: 7s\n");
    // Unknown top-level keys are errors even when only used as anchors, as in Prometheus.
    assert!(c.is_err());
    let c = parse(
        "scrape_configs:\n  - &base\n    job_name: a\n    scrape_interval: 7s\n  - <<: *base\n    job_name: b\n",
    )
    .expect("merge keys");
    assert_eq!(
        c.scrape_config("b").expect("job b").scrape_interval,
        Duration::from_secs(7)
    );
}

/// Errors found after parsing point at the value they are about (`path:line:column`),
/// and say where in the document it is.
#[test]
fn validation_errors_point_at_the_value() {
    fn check(text: &str, want: &str) {
        assert_eq!(err(text), want, "{text:?}");
    }
    check(
        "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
        "prometheus.yml:4:21: scrape_configs[0] (job \"a\"): scrape timeout 6s greater than \
         scrape interval 5s",
    );
    // A value merged from an anchor is placed at the alias that brings it in.
    check(
        "scrape_configs:\n  - &base\n    job_name: a\n    scrape_timeout: 10s\n  \
         - <<: *base\n    job_name: b\n    scrape_interval: 5s\n",
        "prometheus.yml:5:9: scrape_configs[1] (job \"b\"): scrape timeout 10s greater than \
         scrape interval 5s",
    );
    check(
        "scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - action: keep\n      \
         - action: drop\n        regex: '['\n",
        "prometheus.yml:5:9: scrape_configs[0] (job \"a\"): metric_relabel_configs[1]: invalid \
         relabel regex \"[\": unclosed character class",
    );
    check(
        "remote_write:\n  - url: http://a\n    name: x\n  - url: http://b\n    name: x\n",
        "prometheus.yml:4:5: remote_write[1]: found multiple remote_write configs with name \
         \"x\" (the first is remote_write[0])",
    );
    check(
        "scrape_configs:\n  - job_name: a\n    tls_config:\n      cert_file: c.pem\n",
        "prometheus.yml:4:7: scrape_configs[0] (job \"a\"): tls_config: exactly one of key or \
         key_file must be configured when a client certificate is configured, and neither \
         without one",
    );
    check(
        "global:\n  external_labels:\n    region: ''\n",
        "prometheus.yml:3:5: global: external label \"region\" has an empty value",
    );
    let Err(ConfigError::Invalid { position, .. }) =
        parse("alerting:\n  alertmanagers:\n    - timeout: 0s\n")
    else {
        panic!("a zero timeout is invalid");
    };
    assert_eq!((position.line, position.column), (3, 16));
}
