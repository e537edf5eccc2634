//! Criterion benches of the TSDB's hot paths: appending to the head, encoding WAL
//! records, and selecting series from the head and from a block.
//!
//! `cargo bench -p kiln-tsdb --bench tsdb`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kiln_model::{Labels, MatchType, Matcher};
use kiln_storage::{Appender, Querier, SampleValue, ValueKind};
use kiln_tsdb::db::{Db, DbOptions};
use kiln_tsdb::head::{Head, HeadOptions};
use kiln_tsdb::wal::record::{RefSample, encode_samples};

fn series(n: usize) -> Vec<Labels> {
    (0..n)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "DCGM_FI_DEV_GPU_UTIL"),
                ("gpu", &(i % 8).to_string()),
                ("instance", &format!("gpu-node-{:05}", i / 8)),
                ("job", "dcgm"),
            ])
        })
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let labels = series(1000);
    let mut g = c.benchmark_group("head");
    g.throughput(Throughput::Elements(1000 * 120));
    // 120 scrapes of 1000 series, one commit per scrape, reusing series refs.
    g.bench_function("append_1000_series_x_120", |b| {
        b.iter_batched(
            || Head::new(HeadOptions::default()),
            |head| {
                let mut refs = vec![0u64; labels.len()];
                for step in 0..120i64 {
                    let mut app = head.appender();
                    for (i, l) in labels.iter().enumerate() {
                        let v = SampleValue::Float((step * 7 + i as i64) as f64 * 0.25);
                        refs[i] = app.append(refs[i], l, step * 15_000, v).expect("append");
                    }
                    app.commit().expect("commit");
                }
                head
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_wal_encode(c: &mut Criterion) {
    let samples: Vec<RefSample> = (0..2000u64)
        .map(|i| RefSample {
            id: i + 1,
            t: 1_700_000_000_000,
            v: i as f64 * 0.5,
        })
        .collect();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_samples_2000", |b| {
        b.iter(|| {
            buf.clear();
            encode_samples(black_box(&samples), &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

fn bench_select(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = DbOptions {
        retention_time: None,
        ..DbOptions::default()
    };
    let db = Db::open(tmp.path(), opts).expect("open");
    let labels = series(20_000);
    for step in 0..120i64 {
        let mut app = db.appender();
        for l in &labels {
            app.append(0, l, step * 15_000, SampleValue::Float(step as f64))
                .expect("append");
        }
        app.commit().expect("commit");
    }
    let one_host = [Matcher::equal("instance", "gpu-node-00042")];
    let regex = [
        Matcher::equal("__name__", "DCGM_FI_DEV_GPU_UTIL"),
        Matcher::new(MatchType::Regex, "instance", "gpu-node-0001.*").expect("regex"),
        Matcher::new(MatchType::NotEqual, "gpu", "0").expect("matcher"),
    ];
    let mut g = c.benchmark_group("select");
    let run = |db: &Db, m: &[Matcher]| {
        let q = db.querier(i64::MIN, i64::MAX);
        let mut set = q.select(true, None, m);
        let mut n = 0usize;
        while let Some(s) = set.next() {
            let mut it = s.iterator();
            while it.next() == ValueKind::Float {
                n += 1;
            }
        }
        n
    };
    g.bench_function("head_one_host", |b| {
        b.iter(|| black_box(run(&db, &one_host)))
    });
    g.bench_function("head_regex_and_not_equal", |b| {
        b.iter(|| black_box(run(&db, &regex)))
    });
    db.flush_head().expect("persist");
    g.bench_function("block_one_host", |b| {
        b.iter(|| black_box(run(&db, &one_host)))
    });
    g.bench_function("block_regex_and_not_equal", |b| {
        b.iter(|| black_box(run(&db, &regex)))
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_wal_encode, bench_select);
criterion_main!(benches);
