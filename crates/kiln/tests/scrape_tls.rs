//! Scraping over HTTPS (interop: built with `KILN_INTEROP=1`): Debian's `prometheus-node-exporter` serves
//! TLS with a client-certificate requirement (its `--web.config.file`), certificates
//! made by `openssl` for the test. Each job exercises one part of `tls_config`; only the
//! right combinations may scrape.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, free_port, http, require_peer, start_kiln_server};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and `kiln-test.local`, a client
/// certificate; all P-256, valid for two days.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=kiln-test-ca"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:kiln-test.local,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext");
        let subj = format!("/CN=kiln-test-{name}");
        let (key, csr, crt, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req", "-subj", subj.as_str()];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    }
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and Debian's prometheus-node-exporter and openssl (scripts/test installs it)"
)]
fn scrapes_https_targets_with_tls_config() {
    require_peer("prometheus-node-exporter", "prometheus-node-exporter");
    require_peer("openssl", "openssl");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make_certificates(dir);
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .expect("write web config");
    let node_port = free_port();
    let _node = ChildGuard(
        Command::new("prometheus-node-exporter")
            .current_dir(dir)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .arg("--web.config.file=web.yml")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter"),
    );

    // Relative paths: relative to the config file's directory.
    let client = "cert_file: client.crt, key_file: client.key";
    let jobs = [
        ("full", format!("{{ca_file: ca.crt, {client}}}"), true),
        ("no_client_cert", "{ca_file: ca.crt}".to_owned(), false),
        ("system_roots", format!("{{{client}}}"), false),
        (
            "skip_verify",
            format!("{{insecure_skip_verify: true, {client}}}"),
            true,
        ),
        (
            "server_name",
            format!("{{ca_file: ca.crt, server_name: kiln-test.local, {client}}}"),
            true,
        ),
        (
            "wrong_server_name",
            format!("{{ca_file: ca.crt, server_name: other.local, {client}}}"),
            false,
        ),
        (
            "tls13_only",
            format!("{{ca_file: ca.crt, min_version: TLS13, {client}}}"),
            true,
        ),
    ];
    let mut yaml = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    for (job, tls, _) in &jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    scheme: https\n    tls_config: {tls}\n    \
             static_configs: [{{targets: ['127.0.0.1:{node_port}']}}]\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), yaml).expect("write config");
    let server = start_kiln_server(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        dir.join("data").to_str().expect("path"),
        "--config.file",
        dir.join("prometheus.yml").to_str().expect("path"),
    ]);

    // Wait until every target has been scraped, then compare health with expectations.
    let deadline = Instant::now() + Duration::from_secs(30);
    let targets = loop {
        let (_, body) = http(server.port, "GET", "/api/v1/targets").expect("targets");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let active = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if active.len() == jobs.len() && active.iter().all(|t| t["health"] != "unknown") {
            break active;
        }
        assert!(Instant::now() < deadline, "targets not all scraped: {body}");
        std::thread::sleep(Duration::from_millis(250));
    };
    for (job, _, ok) in &jobs {
        let t = targets
            .iter()
            .find(|t| t["labels"]["job"] == *job)
            .unwrap_or_else(|| panic!("no target for job {job}"));
        let want = if *ok { "up" } else { "down" };
        assert_eq!(t["health"], want, "job {job}: {t}");
        if !ok {
            let err = t["lastError"].as_str().unwrap_or_default();
            assert!(!err.is_empty(), "job {job} failed without an error");
        }
    }
    let unknown_ca = targets
        .iter()
        .find(|t| t["labels"]["job"] == "system_roots")
        .expect("system_roots target");
    let err = unknown_ca["lastError"].as_str().unwrap_or_default();
    assert!(err.contains("certificate"), "{err}");
}
