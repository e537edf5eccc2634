//! `kiln server` with service discovery: file_sd_configs (relative paths, files added,
//! changed and removed while running) and http_sd_configs, end to end through scrapes,
//! queries and the targets API.

mod common;

use std::time::Duration;

use common::{exporter, http, serve_fixed, start_kiln_server, wait_for};

#[test]
fn file_and_http_discovery_feed_the_scrapes() {
    let a = exporter("disc_a 1\n");
    let b = exporter("disc_b 2\n");
    let c = exporter("disc_c 3\n");
    let sd_body: &'static str = Box::leak(
        format!(r#"[{{"targets":["127.0.0.1:{c}"],"labels":{{"pool":"inference"}}}}]"#)
            .into_boxed_str(),
    );
    let sd = serve_fixed("application/json", sd_body);

    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(tmp.path().join("targets")).expect("mkdir");
    let write_targets = |name: &str, port: u16| {
        std::fs::write(
            tmp.path().join("targets").join(name),
            format!("- targets: ['127.0.0.1:{port}']\n  labels:\n    team: ml\n"),
        )
        .expect("write targets");
    };
    write_targets("a.yml", a);
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: files\n\
             \x20   file_sd_configs:\n\
             \x20     - files: ['targets/*.yml']\n\
             \x20   relabel_configs:\n\
             \x20     - source_labels: [__meta_filepath]\n\
             \x20       regex: '.*/(.*)'\n\
             \x20       target_label: sd_file\n\
             \x20 - job_name: http\n\
             \x20   http_sd_configs:\n\
             \x20     - url: http://127.0.0.1:{sd}/sd\n\
             \x20       refresh_interval: 1s\n"
        ),
    )
    .expect("write config");
    let server = start_kiln_server(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--config.file",
        config.to_str().expect("path"),
    ]);
    let limit = Duration::from_secs(30);

    // The relative file path is relative to the config file's directory.
    wait_for(
        server.port,
        "disc_a",
        &[r#""team":"ml""#, r#""sd_file":"a.yml""#, r#""job":"files""#],
        limit,
    );
    wait_for(
        server.port,
        "disc_c",
        &[r#""pool":"inference""#, r#""job":"http""#],
        limit,
    );
    let (_, targets) = http(server.port, "GET", "/api/v1/targets").expect("targets");
    assert!(
        targets.contains(r#""__meta_url":"http://127.0.0.1:"#),
        "{targets}"
    );
    assert!(targets.contains(r#""__meta_filepath":""#), "{targets}");

    // A new file adds its target; removing the first file stops its target, whose
    // series go stale.
    write_targets("b.yml", b);
    wait_for(server.port, "disc_b", &[r#""sd_file":"b.yml""#], limit);
    std::fs::remove_file(tmp.path().join("targets").join("a.yml")).expect("rm");
    wait_for(
        server.port,
        "count(disc_a)%20or%20vector(0)",
        &[r#""value":["#, r#","0"]"#],
        limit,
    );
    wait_for(
        server.port,
        "up%7Bjob%3D%22files%22%7D",
        &[r#","1"]"#],
        limit,
    );
}
