//! Blocks into a bucket: `kiln tools bucket upload-blocks` and `ls`, and `kiln server`
//! shipping its blocks (Thanos's sidecar role), on a local-directory bucket; what lands
//! there reads the same with the real promtool.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    data_with_blocks, external_labels_config, http, kiln, ok_stdout, promtool_dump, require_peer,
    start_kiln_server,
};

/// `objstore.yml` of a FILESYSTEM bucket in `dir`, through an environment variable as
/// users write them.
fn objstore_file(tmp: &Path, dir: &Path) -> std::path::PathBuf {
    let file = tmp.join("objstore.yml");
    std::fs::write(
        &file,
        "type: FILESYSTEM\nconfig:\n  directory: ${KILN_TEST_BUCKET}\n",
    )
    .expect("write objstore.yml");
    std::fs::create_dir_all(dir).expect("bucket dir");
    file
}

fn kiln_with_bucket(bucket: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env("KILN_TEST_BUCKET", bucket)
        .output()
        .expect("run kiln")
}

/// `kiln tools bucket --objstore.config-file CONFIG ARGS...` on a directory bucket.
fn bucket_tool(bucket: &Path, config: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["tools", "bucket", "--objstore.config-file", config];
    all.extend_from_slice(args);
    kiln_with_bucket(bucket, &all)
}

fn block_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .filter(|e| e.path().join("meta.json").exists())
        .count()
}

#[test]
fn upload_blocks_then_ls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let bucket = tmp.path().join("bucket");
    let config = objstore_file(tmp.path(), &bucket);
    let config = config.to_str().expect("path");
    let blocks = block_count(&data);
    assert!(blocks >= 2, "{blocks}");

    let refused = kiln_with_bucket(
        &bucket,
        &[
            "tools",
            "bucket",
            "upload-blocks",
            "--objstore.config-file",
            config,
            "--path",
            data.to_str().expect("path"),
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no external labels"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let out = ok_stdout(
        "upload-blocks",
        bucket_tool(
            &bucket,
            config,
            &[
                "upload-blocks",
                "--path",
                data.to_str().expect("path"),
                "--label",
                "cluster=\"eu-1\"",
                "--label",
                "replica=0",
            ],
        ),
    );
    assert_eq!(
        out,
        format!("uploaded {blocks} block(s); 0 already in the bucket\n")
    );
    // Again: nothing to do.
    let again = ok_stdout(
        "upload-blocks again",
        bucket_tool(
            &bucket,
            config,
            &[
                "upload-blocks",
                "--path",
                data.to_str().expect("path"),
                "--label",
                "cluster=eu-1",
            ],
        ),
    );
    assert!(again.starts_with("uploaded 0 block(s)"), "{again}");

    // An interrupted upload: a block directory without meta.json is not listed.
    std::fs::create_dir_all(bucket.join("01JAAAAAAAAAAAAAAAAAAAAAAA/chunks")).expect("mkdir");
    let ls = bucket_tool(&bucket, config, &["ls"]);
    let ids = ok_stdout("ls", ls.clone());
    assert_eq!(ids.lines().count(), blocks, "{ids}");
    assert!(
        String::from_utf8_lossy(&ls.stderr).contains("1 block directory without meta.json"),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let wide = ok_stdout(
        "ls -o wide",
        bucket_tool(&bucket, config, &["ls", "-o", "wide"]),
    );
    let first = wide.lines().next().expect("a line");
    assert!(first.contains(" -- 2023-11-"), "{first}");
    assert!(
        first.contains("Compaction: 1, Downsample: 0, Source: bucket.upload, Labels: {cluster=\"eu-1\", replica=\"0\"}, Size: "),
        "{first}"
    );
    let json = ok_stdout(
        "ls -o json",
        bucket_tool(&bucket, config, &["ls", "-o", "json"]),
    );
    assert!(json.contains("\"source\": \"bucket.upload\""), "{json}");

    let inspect = ok_stdout("inspect", bucket_tool(&bucket, config, &["inspect"]));
    let lines: Vec<&str> = inspect.lines().collect();
    assert_eq!(lines.len(), blocks + 1, "{inspect}");
    assert!(
        lines[0].starts_with("ULID") && lines[0].contains("UNTIL-DOWN"),
        "{inspect}"
    );
    assert!(lines[1].contains("2023-11-14 22:13:20"), "{inspect}");
    assert!(lines[1].contains("cluster=eu-1,replica=0"), "{inspect}");
    assert!(lines[1].contains("bucket.upload"), "{inspect}");

    // Markers, as Thanos writes them.
    let first = ids.lines().next().expect("a block").to_owned();
    let mark = |extra: &[&str]| {
        let mut args = vec!["mark", "--id", &first, "--marker", "no-compact-mark.json"];
        args.extend_from_slice(extra);
        ok_stdout("mark", bucket_tool(&bucket, config, &args))
    };
    assert_eq!(
        mark(&["--details", "index too large"]),
        format!("block {first}: marked with no-compact-mark.json\n")
    );
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.join(&first).join("no-compact-mark.json")).expect("marker"),
    )
    .expect("json");
    assert_eq!(marker["id"], first.as_str());
    assert_eq!(marker["details"], "index too large");
    assert_eq!(marker["reason"], "manual");
    assert!(marker["no_compact_time"].as_i64().expect("time") > 1_700_000_000);
    assert!(mark(&[]).contains("already has"));
    assert!(mark(&["--remove"]).contains("removed"));
    let bad = bucket_tool(
        &bucket,
        config,
        &[
            "mark",
            "--id",
            "01JAAAAAAAAAAAAAAAAAAAAAAA",
            "--marker",
            "deletion-mark.json",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not in the bucket"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn rewrite_deletes_series_and_retires_the_old_block() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let bucket = tmp.path().join("bucket");
    let config = objstore_file(tmp.path(), &bucket);
    let config = config.to_str().expect("path");
    ok_stdout(
        "upload-blocks",
        bucket_tool(
            &bucket,
            config,
            &[
                "upload-blocks",
                "--path",
                data.to_str().expect("path"),
                "--label",
                "cluster=a",
            ],
        ),
    );
    let ls = ok_stdout("ls", bucket_tool(&bucket, config, &["ls"]));
    let old = ls.lines().next().expect("a block").to_owned();
    let deletions = "- matchers: '{__name__=\"gpu_temperature_celsius\"}'\n";
    let tmp_dir = tmp.path().join("work");
    let rewrite = |extra: &[&str]| {
        let mut args = vec![
            "rewrite",
            "--id",
            &old,
            "--rewrite.to-delete-config",
            deletions,
            "--tmp.dir",
            tmp_dir.to_str().expect("path"),
        ];
        args.extend_from_slice(extra);
        ok_stdout("rewrite", bucket_tool(&bucket, config, &args))
    };
    let dry = rewrite(&[]);
    assert!(
        dry.starts_with(&format!("block {old}: dry run: series ")),
        "{dry}"
    );
    assert!(
        !bucket.join(&old).join("deletion-mark.json").exists(),
        "a dry run changes nothing"
    );

    let done = rewrite(&["--no-dry-run"]);
    let new = done
        .trim_end()
        .rsplit_once("new block ")
        .map(|(_, id)| id.to_owned())
        .unwrap_or_else(|| panic!("no new block in {done:?}"));
    let mark: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.join(&old).join("deletion-mark.json")).expect("deletion mark"),
    )
    .expect("json");
    assert_eq!(mark["details"], format!("rewritten as {new}"));
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.join(&new).join("meta.json")).expect("new meta.json"),
    )
    .expect("json");
    assert_eq!(meta["thanos"]["source"], "bucket.rewrite");
    assert_eq!(meta["thanos"]["labels"]["cluster"], "a");
    assert_eq!(
        meta["thanos"]["rewrites"][0]["deletions_applied"][0]["matchers"],
        "{__name__=\"gpu_temperature_celsius\"}"
    );
    // The new block holds everything but the deleted series.
    let check = tmp.path().join("check");
    std::fs::create_dir_all(check.join(&new).join("chunks")).expect("mkdir");
    for f in ["index", "meta.json", "chunks/000001"] {
        std::fs::copy(bucket.join(&new).join(f), check.join(&new).join(f)).expect("copy");
    }
    let dump = ok_stdout(
        "dump",
        kiln(&["tsdb", "dump", check.to_str().expect("path")]),
    );
    assert!(!dump.contains("gpu_temperature_celsius"), "deleted");
    assert!(dump.contains("gpu_power_watts"), "the rest stays");
    assert!(
        std::fs::read_dir(&tmp_dir).map_or(true, |d| d.count() == 0),
        "work dir cleaned"
    );
}

#[test]
fn downsample_writes_5m_blocks_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 50 hours in one 54h window: a raw block long enough to downsample.
    let om = tmp.path().join("long.om");
    common::write_openmetrics(&om, 8745 * 194_400, 50, 60);
    let data = tmp.path().join("data");
    common::backfill_with(&om, &data, &["--max-block-duration", "54h"]);
    assert_eq!(block_count(&data), 1);
    let bucket = tmp.path().join("bucket");
    let config = objstore_file(tmp.path(), &bucket);
    let config = config.to_str().expect("path");
    ok_stdout(
        "upload-blocks",
        bucket_tool(
            &bucket,
            config,
            &[
                "upload-blocks",
                "--shipper.upload-compacted",
                "--path",
                data.to_str().expect("path"),
                "--label",
                "cluster=a",
            ],
        ),
    );
    let work = tmp.path().join("work");
    let downsample = || {
        ok_stdout(
            "downsample",
            bucket_tool(
                &bucket,
                config,
                &["downsample", "--tmp.dir", work.to_str().expect("path")],
            ),
        )
    };
    let first = downsample();
    assert!(
        first.contains("downsampled to") && first.ends_with("1 downsampled block(s) written\n"),
        "{first}"
    );
    assert_eq!(
        downsample(),
        "0 downsampled block(s) written\n",
        "done once"
    );
    let wide = ok_stdout(
        "ls -o wide",
        bucket_tool(&bucket, config, &["ls", "-o", "wide"]),
    );
    assert!(
        wide.contains("Downsample: 300000, Source: compactor, Labels: {cluster=\"a\"}"),
        "{wide}"
    );
    assert!(
        wide.contains("Downsample: 0, Source: bucket.upload"),
        "{wide}"
    );
    let verify = ok_stdout("verify", bucket_tool(&bucket, config, &["verify"]));
    assert!(
        verify.ends_with("2 block(s) checked, 0 problem(s)\n"),
        "{verify}"
    );
}

#[test]
fn verify_finds_overlaps_missing_files_and_broken_indexes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let bucket = tmp.path().join("bucket");
    let config = objstore_file(tmp.path(), &bucket);
    let config = config.to_str().expect("path");
    let upload = |dir: &Path| {
        ok_stdout(
            "upload-blocks",
            bucket_tool(
                &bucket,
                config,
                &[
                    "upload-blocks",
                    "--path",
                    dir.to_str().expect("path"),
                    "--label",
                    "cluster=a",
                ],
            ),
        )
    };
    upload(&data);
    let blocks = block_count(&data);
    let verify = || bucket_tool(&bucket, config, &["verify"]);
    let clean = ok_stdout("verify", verify());
    assert_eq!(clean, format!("{blocks} block(s) checked, 0 problem(s)\n"));

    // The same data again under new block ids: every block overlaps its twin.
    let again = tmp.path().join("again");
    std::fs::create_dir_all(&again).expect("mkdir");
    common::backfill(&tmp.path().join("in.om"), &again);
    upload(&again);
    // A chunk file cut short and an index overwritten.
    let mut dirs: Vec<_> = std::fs::read_dir(&bucket)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    dirs.sort();
    std::fs::write(dirs[0].join("chunks/000001"), b"short").expect("cut");
    std::fs::write(dirs[1].join("index"), b"not an index").expect("overwrite");
    let out = verify();
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report.matches("overlapped_blocks: ").count(),
        blocks,
        "{report}"
    );
    assert!(
        report.contains("missing_files: ") && report.contains("chunks/000001 is 5 bytes"),
        "{report}"
    );
    assert!(
        report.contains("index_known_issues: ") && report.contains("the index does not read"),
        "{report}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("problem(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn uploaded_blocks_read_the_same_with_promtool() {
    require_peer("promtool", "prometheus");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let bucket = tmp.path().join("bucket");
    let config = objstore_file(tmp.path(), &bucket);
    ok_stdout(
        "upload-blocks",
        kiln_with_bucket(
            &bucket,
            &[
                "tools",
                "bucket",
                "--objstore.config-file",
                config.to_str().expect("path"),
                "upload-blocks",
                "--path",
                data.to_str().expect("path"),
                "--label",
                "cluster=a",
            ],
        ),
    );
    // A directory bucket holds the blocks as a data directory does.
    let want = promtool_dump(&data, &[]);
    let got = promtool_dump(&bucket, &[]);
    assert!(want.lines().count() > 1000, "{}", want.lines().count());
    common::assert_same_dump("promtool dump of the bucket", &want, &got);
}

#[test]
fn server_ships_its_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = data_with_blocks(tmp.path());
    let blocks = block_count(&data);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).expect("bucket dir");
    let cfg = external_labels_config(tmp.path());
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let server = start_kiln_server(&[
        "--config.file",
        cfg.to_str().expect("path"),
        "--storage.tsdb.path",
        data.to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
        "--objstore.config",
        &objstore,
        "--shipper.sync-interval",
        "200ms",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while block_count(&bucket) < blocks {
        assert!(
            Instant::now() < deadline,
            "the server shipped {} of {blocks} blocks in 30 s",
            block_count(&bucket)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let record = std::fs::read_to_string(data.join("thanos.shipper.json")).expect("record");
    let record: serde_json::Value = serde_json::from_str(&record).expect("json");
    assert_eq!(record["version"], 1);
    assert_eq!(record["uploaded"].as_array().map(Vec::len), Some(blocks));
    let ulid = record["uploaded"][0].as_str().expect("ulid");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bucket.join(ulid).join("meta.json")).expect("meta.json"),
    )
    .expect("json");
    assert_eq!(meta["thanos"]["source"], "sidecar");
    assert_eq!(meta["thanos"]["labels"]["cluster"], "eu-1");
    assert_eq!(meta["thanos"]["labels"]["replica"], "0");
    let (status, metrics) = http(server.port, "GET", "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("thanos_shipper_uploads_total {blocks}\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains("thanos_objstore_bucket_operations_total{bucket="),
        "{metrics}"
    );
    let (_, flags) = http(server.port, "GET", "/api/v1/status/flags").expect("flags");
    assert!(
        flags.contains("\"objstore.config\":\"<secret>\""),
        "{flags}"
    );
}

#[test]
fn server_refuses_to_ship_without_external_labels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bucket = tmp.path().join("bucket");
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let out = kiln(&[
        "server",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--web.listen-address",
        "127.0.0.1:0",
        "--objstore.config",
        &objstore,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs external labels"), "{stderr}");

    let bad = kiln(&[
        "server",
        "--storage.tsdb.path",
        tmp.path().join("data").to_str().expect("path"),
        "--objstore.config",
        "type: SWIFT\nconfig: {}\n",
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("type \\\"SWIFT\\\" is not a bucket type Kiln supports")
            || stderr.contains("type \"SWIFT\" is not a bucket type Kiln supports"),
        "{stderr}"
    );
}
