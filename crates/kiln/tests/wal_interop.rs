//! Prometheus replays a WAL written by Kiln (interop: built with `KILN_INTEROP=1`): Kiln
//! writes series and sample records across two segments and a checkpoint through
//! `kiln_tsdb::wal`, snappy-compressed (Kiln's default, as Prometheus's) and plain, and
//! `promtool tsdb dump` must read back exactly the samples the checkpoint and the
//! remaining segment keep. (Zstd records need Prometheus 2.52 or newer, so 2.42 cannot
//! check them.) Reading Prometheus's own WALs is checked
//! without a peer, against fixtures, in `crates/kiln-tsdb/src/wal/interop_tests.rs`.

mod common;

use kiln_model::Labels;
use kiln_tsdb::wal::record::{encode_samples, encode_series};
use kiln_tsdb::wal::{Compression, RefSample, RefSeries, Wal, WalOptions, checkpoint};

use common::{ok_stdout, promtool, require_peer};

#[test]
#[cfg_attr(
    not(kiln_interop),
    ignore = "interop: needs KILN_INTEROP=1 and promtool from Debian's prometheus (scripts/test installs it)"
)]
fn promtool_reads_kiln_wal_and_checkpoint() {
    require_peer("promtool", "prometheus");
    for compression in [Compression::Snappy, Compression::None] {
        promtool_reads(compression);
    }
}

fn promtool_reads(compression: Compression) {
    let data = tempfile::tempdir().expect("tempdir");
    let wal_dir = data.path().join("wal");
    let opts = WalOptions {
        compression,
        ..WalOptions::default()
    };
    let mut w = Wal::open(&wal_dir, opts).expect("open WAL");
    let t0 = 1_700_000_000_000i64;
    let mut buf = Vec::new();
    let series: Vec<RefSeries> = (1..=50u64)
        .map(|id| RefSeries {
            id,
            labels: Labels::from_pairs(&[("__name__", "kiln_test"), ("i", &id.to_string())]),
        })
        .collect();
    encode_series(&series, &mut buf);
    w.log_record(&buf).expect("log series");
    for k in 0..200i64 {
        if k == 100 {
            w.next_segment().expect("cut segment");
        }
        buf.clear();
        // Ids in descending order: negative id deltas.
        let samples: Vec<RefSample> = (1..=50u64)
            .rev()
            .map(|id| RefSample {
                id,
                t: t0 + k * 1000,
                v: (id as i64 * k) as f64,
            })
            .collect();
        encode_samples(&samples, &mut buf);
        w.log_record(&buf).expect("log samples");
    }
    // Checkpoint segment 0 keeping samples from k = 50 on, then drop segment 0.
    let stats = checkpoint(&wal_dir, 0, 0, |_| true, t0 + 50_000, compression).expect("checkpoint");
    assert_eq!(stats.dropped_samples, 50 * 50);
    w.truncate(1).expect("truncate");
    w.close().expect("close");

    let stdout = ok_stdout(
        "promtool tsdb dump",
        promtool(&[
            "tsdb",
            "dump",
            "--match",
            "{__name__=\"kiln_test\", i=\"7\"}",
            data.path().to_str().expect("utf-8 path"),
        ]),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 150, "{compression}: {stdout}");
    assert_eq!(
        lines[0],
        format!("{{__name__=\"kiln_test\", i=\"7\"}} 350 {}", t0 + 50_000)
    );
    assert_eq!(
        lines[149],
        format!("{{__name__=\"kiln_test\", i=\"7\"}} 1393 {}", t0 + 199_000)
    );
}
