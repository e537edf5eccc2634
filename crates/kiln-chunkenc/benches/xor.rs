//! Encode and decode a full (120-sample) XOR chunk of GPU-gauge-like data.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kiln_chunkenc::{SAMPLES_PER_CHUNK, XorEncoder, XorIterator};

/// 15 s scrapes with a little jitter; utilisation in percent with two decimals, moving
/// in small steps and sometimes staying put, like a GPU exporter's gauges.
fn gpu_samples() -> Vec<(i64, f64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut t = 1_700_000_000_000i64;
    let mut util = 63.0f64;
    (0..SAMPLES_PER_CHUNK)
        .map(|_| {
            t += 15_000 + (rnd() % 5) as i64 - 2;
            if rnd() % 4 != 0 {
                util = (util + (rnd() % 1001) as f64 / 100.0 - 5.0).clamp(0.0, 100.0);
                util = (util * 100.0).round() / 100.0;
            }
            (t, util)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let samples = gpu_samples();
    let mut g = c.benchmark_group("xor");
    g.throughput(Throughput::Elements(samples.len() as u64));

    g.bench_function("encode_120", |b| {
        let mut enc = XorEncoder::new();
        b.iter(|| {
            enc.reset();
            for &(t, v) in &samples {
                enc.append(t, v);
            }
            black_box(enc.bytes().len())
        })
    });
    g.bench_function("encode_120_fresh", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut enc = XorEncoder::new();
                for &(t, v) in &samples {
                    enc.append(t, v);
                }
                enc.into_bytes()
            },
            BatchSize::SmallInput,
        )
    });

    let gpu = encode(samples.iter().copied());
    let mut count = 0.0;
    let counter = encode((0..SAMPLES_PER_CHUNK as i64).map(|i| {
        count += (i % 3) as f64;
        (1_700_000_000_000 + i * 15_000, count)
    }));
    for (name, bytes) in [("decode_120", &gpu), ("decode_120_counter", &counter)] {
        g.bench_function(name, |b| {
            let mut it = XorIterator::new(bytes);
            b.iter(|| {
                it.reset(black_box(bytes));
                let mut sum = 0.0;
                while it.next() {
                    sum += it.at().1;
                }
                black_box(sum)
            })
        });
    }
    g.finish();
}

/// One chunk of `samples`.
fn encode(samples: impl Iterator<Item = (i64, f64)>) -> Vec<u8> {
    let mut enc = XorEncoder::new();
    for (t, v) in samples {
        enc.append(t, v);
    }
    enc.into_bytes()
}

criterion_group!(benches, bench);
criterion_main!(benches);
