//! Parse and encode a ~1 MB node-exporter-like exposition, reported in MB/s of text
//! (`cargo bench -p kiln-exposition --bench parse`).
//!
//! The document is generated: the families, label shapes and value kinds of a
//! node_exporter on a 64-CPU, 8-GPU host (cpu seconds per cpu and mode, filesystem and
//! network per device, histograms, a little go runtime), repeated over hosts-worth of
//! device names until it reaches about 1 MB.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln_exposition::{
    Entry, Format, MetricFamily, MetricType, Parser, encode_openmetrics_eof,
    encode_openmetrics_family_header, encode_openmetrics_sample, encode_text_family_header,
    encode_text_sample,
};
use kiln_model::Labels;

struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

fn rnd(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn families(target_bytes: usize) -> Vec<Family> {
    let mut st = 0x2545_f491_4f6c_dd1du64;
    let mut fams = Vec::new();
    let mut size = 0usize;
    let mut round = 0;
    while size < target_bytes {
        let r = round;
        round += 1;
        let mut add = |fams: &mut Vec<Family>,
                       name: String,
                       help: &str,
                       kind,
                       samples: Vec<(Labels, f64)>| {
            let f = Family {
                name,
                help: help.to_owned(),
                kind,
                samples,
            };
            let mut text = Vec::new();
            encode_text(std::slice::from_ref(&f), &mut text);
            size += text.len();
            fams.push(f);
        };
        let modes = [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ];
        let mut cpu = Vec::new();
        for c in 0..64 {
            for m in modes {
                let v = (rnd(&mut st) % 100_000_000) as f64 / 100.0;
                cpu.push((
                    Labels::from_pairs(&[
                        ("__name__", format!("node_cpu_seconds_total_{r}").as_str()),
                        ("cpu", &c.to_string()),
                        ("mode", m),
                    ]),
                    v,
                ));
            }
        }
        add(
            &mut fams,
            format!("node_cpu_seconds_total_{r}"),
            "Seconds the CPUs spent in each mode.",
            MetricType::Counter,
            cpu,
        );

        for (metric, help) in [
            (
                "node_filesystem_avail_bytes",
                "Filesystem space available to non-root users in bytes.",
            ),
            ("node_filesystem_size_bytes", "Filesystem size in bytes."),
            (
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
            ),
        ] {
            let mut s = Vec::new();
            for d in 0..12 {
                let dev = format!("/dev/nvme{d}n1p1");
                let mnt = format!("/mnt/data{d}");
                s.push((
                    Labels::from_pairs(&[
                        ("__name__", format!("{metric}_{r}").as_str()),
                        ("device", &dev),
                        ("fstype", "ext4"),
                        ("mountpoint", &mnt),
                    ]),
                    (rnd(&mut st) % 4_000_000_000_000) as f64,
                ));
            }
            add(
                &mut fams,
                format!("{metric}_{r}"),
                help,
                MetricType::Gauge,
                s,
            );
        }
        for (metric, help) in [
            (
                "node_network_receive_bytes_total",
                "Network device statistic receive_bytes.",
            ),
            (
                "node_network_transmit_bytes_total",
                "Network device statistic transmit_bytes.",
            ),
            (
                "node_network_receive_drop_total",
                "Network device statistic receive_drop.",
            ),
        ] {
            let mut s = Vec::new();
            for d in ["eth0", "eth1", "ib0", "ib1", "lo", "docker0", "veth1a2b3c"] {
                s.push((
                    Labels::from_pairs(&[
                        ("__name__", format!("{metric}_{r}").as_str()),
                        ("device", d),
                    ]),
                    (rnd(&mut st) % 1_000_000_000_000) as f64,
                ));
            }
            add(
                &mut fams,
                format!("{metric}_{r}"),
                help,
                MetricType::Counter,
                s,
            );
        }
        let mut gpu = Vec::new();
        for g in 0..8 {
            gpu.push((
                Labels::from_pairs(&[
                    ("__name__", format!("DCGM_FI_DEV_GPU_UTIL_{r}").as_str()),
                    ("gpu", &g.to_string()),
                    (
                        "UUID",
                        &format!("GPU-{:08x}-1c2d-3e4f", rnd(&mut st) as u32),
                    ),
                    ("modelName", "NVIDIA H100 80GB HBM3"),
                ]),
                (rnd(&mut st) % 101) as f64,
            ));
        }
        add(
            &mut fams,
            format!("DCGM_FI_DEV_GPU_UTIL_{r}"),
            "GPU utilization (in %).",
            MetricType::Gauge,
            gpu,
        );

        let mut hist = Vec::new();
        let name = format!("node_disk_io_time_seconds_{r}");
        let mut count = 0.0;
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ] {
            count += (rnd(&mut st) % 1000) as f64;
            hist.push((
                Labels::from_pairs(&[("__name__", format!("{name}_bucket").as_str()), ("le", le)]),
                count,
            ));
        }
        hist.push((
            Labels::from_pairs(&[("__name__", format!("{name}_sum"))]),
            count * 0.0371,
        ));
        hist.push((
            Labels::from_pairs(&[("__name__", format!("{name}_count"))]),
            count,
        ));
        add(
            &mut fams,
            name,
            "Disk IO time.",
            MetricType::Histogram,
            hist,
        );

        add(
            &mut fams,
            format!("go_memstats_heap_inuse_bytes_{r}"),
            "Number of heap bytes that are in use.",
            MetricType::Gauge,
            vec![(
                Labels::from_pairs(&[("__name__", format!("go_memstats_heap_inuse_bytes_{r}"))]),
                1.2345678e7,
            )],
        );
    }
    fams
}

fn encode_text(fams: &[Family], out: &mut Vec<u8>) {
    for f in fams {
        encode_text_family_header(
            out,
            &MetricFamily {
                name: &f.name,
                help: Some(&f.help),
                kind: f.kind,
                unit: None,
            },
        );
        for (labels, v) in &f.samples {
            encode_text_sample(out, labels, *v, None);
        }
    }
}

fn encode_om(fams: &[Family], out: &mut Vec<u8>) {
    for f in fams {
        encode_openmetrics_family_header(
            out,
            &MetricFamily {
                name: &f.name,
                help: Some(&f.help),
                kind: f.kind,
                unit: None,
            },
        );
        for (labels, v) in &f.samples {
            encode_openmetrics_sample(out, f.kind, labels, *v, Some(1_700_000_000_123));
        }
    }
    encode_openmetrics_eof(out);
}

fn bench(c: &mut Criterion) {
    let fams = families(1 << 20);
    let mut text = Vec::new();
    encode_text(&fams, &mut text);
    let mut om = Vec::new();
    encode_om(&fams, &mut om);
    let samples: usize = fams.iter().map(|f| f.samples.len()).sum();
    eprintln!(
        "exposition: {} families, {samples} samples, text {} bytes, OpenMetrics {} bytes",
        fams.len(),
        text.len(),
        om.len()
    );

    let mut g = c.benchmark_group("exposition");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_text", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in Parser::new(black_box(&text), Format::Text004) {
                if let Ok(Entry::Sample(_)) = e {
                    n += 1;
                }
            }
            assert_eq!(n, samples);
            n
        })
    });
    g.bench_function("encode_text", |b| {
        let mut out = Vec::with_capacity(text.len());
        b.iter(|| {
            out.clear();
            encode_text(black_box(&fams), &mut out);
            out.len()
        })
    });
    g.throughput(Throughput::Bytes(om.len() as u64));
    g.bench_function("parse_openmetrics", |b| {
        b.iter(|| {
            Parser::new(black_box(&om), Format::OpenMetrics)
                .filter(|e| matches!(e, Ok(Entry::Sample(_))))
                .count()
        })
    });
    g.bench_function("encode_openmetrics", |b| {
        let mut out = Vec::with_capacity(om.len());
        b.iter(|| {
            out.clear();
            encode_om(black_box(&fams), &mut out);
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
