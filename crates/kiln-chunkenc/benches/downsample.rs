//! Downsampling one series: a day of 15 s counter samples to 5m aggregate chunks, and
//! those to 1h (the compactor's hot path, per series).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_chunkenc::downsample::{RES_1H, RES_5M, downsample_aggr, downsample_raw};

/// A request counter scraped every 15 s for a day, resetting every 6 hours.
fn day_of_counter() -> Vec<(i64, f64)> {
    (0..24 * 240i64)
        .map(|i| (1_700_000_000_000 + i * 15_000, ((i % 1440) * 7) as f64))
        .collect()
}

fn bench(c: &mut Criterion) {
    let raw = day_of_counter();
    let mut g = c.benchmark_group("downsample");
    g.throughput(Throughput::Elements(raw.len() as u64));
    g.bench_function("raw_day_to_5m", |b| {
        b.iter(|| black_box(downsample_raw(black_box(&raw), RES_5M)))
    });
    let five = downsample_raw(&raw, RES_5M);
    let views: Vec<&[u8]> = five.iter().map(|c| c.data.as_slice()).collect();
    let (mint, maxt) = (five[0].min_time, five[five.len() - 1].max_time);
    g.throughput(Throughput::Elements(24 * 12));
    g.bench_function("5m_day_to_1h", |b| {
        b.iter(|| {
            black_box(downsample_aggr(
                black_box(&views),
                mint,
                maxt,
                RES_5M,
                RES_1H,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
