//! The storage benchmark behind `bench/tsdb/run.sh`: ingest a realistic GPU-fleet data
//! set into a real data directory (WAL on) on one thread, then persist it as blocks, and
//! report append throughput, resident memory per active series and bytes per sample.
//!
//! ```text
//! cargo run --release -p kiln-tsdb --example tsdb_bench -- --series 1000000 --samples 120 --dir /tmp/kiln-bench
//! cargo run --release -p kiln-tsdb --example tsdb_bench -- --series 20000 --samples 120 --openmetrics /tmp/fleet.om
//! ```
//!
//! With `--openmetrics FILE` it writes the same data as an OpenMetrics file instead, so
//! that `promtool tsdb create-blocks-from openmetrics` and `kiln tsdb create-blocks-from
//! openmetrics` can be compared on identical input.
//!
//! The data: hosts with 8 GPUs each, scraped every 15 s; per GPU: utilization,
//! temperature, power, memory used, SM clock, ECC errors, training steps and tokens
//! (counters), and a 10-bucket inference latency histogram. Values move the way real
//! ones do (slow drifts, integer counters, rounded gauges), because XOR compression
//! depends on it.

use std::io::Write;
use std::time::Instant;

use kiln_model::Labels;
use kiln_storage::{Appender, SampleValue};
use kiln_tsdb::db::{Db, DbOptions};

const SCRAPE_INTERVAL_MS: i64 = 15_000;
const START_MS: i64 = 1_767_225_600_000;
const GPUS_PER_HOST: usize = 8;
const LE: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

/// One series of the data set: its labels and how its value evolves.
struct SeriesSpec {
    labels: Labels,
    kind: Kind,
    seed: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Utilization,
    Temperature,
    Power,
    MemoryUsed,
    SmClock,
    EccErrors,
    Steps,
    Tokens,
    Bucket(usize),
}

fn series_per_gpu() -> usize {
    8 + LE.len()
}

/// Builds `n` series: whole GPUs (18 series each) until `n` is reached.
fn build_series(n: usize) -> Vec<SeriesSpec> {
    let mut out = Vec::with_capacity(n);
    let mut gpu_index = 0usize;
    while out.len() < n {
        let host = gpu_index / GPUS_PER_HOST;
        let gpu = gpu_index % GPUS_PER_HOST;
        let host_name = format!("gpu-node-{host:05}");
        let cluster = format!("cluster-{}", host % 16);
        let gpu_s = gpu.to_string();
        let base = [
            ("cluster", cluster.as_str()),
            ("gpu", gpu_s.as_str()),
            ("instance", host_name.as_str()),
            ("job", "dcgm"),
            ("model", "H100-SXM5-80GB"),
        ];
        let mut add = |name: &str, extra: Option<(&str, &str)>, kind: Kind| {
            if out.len() >= n {
                return;
            }
            let mut pairs: Vec<(&str, &str)> = base.to_vec();
            pairs.push(("__name__", name));
            if let Some(e) = extra {
                pairs.push(e);
            }
            out.push(SeriesSpec {
                labels: Labels::from_pairs(&pairs),
                kind,
                seed: out.len() as u64,
            });
        };
        add("DCGM_FI_DEV_GPU_UTIL", None, Kind::Utilization);
        add("DCGM_FI_DEV_GPU_TEMP", None, Kind::Temperature);
        add("DCGM_FI_DEV_POWER_USAGE", None, Kind::Power);
        add("DCGM_FI_DEV_FB_USED", None, Kind::MemoryUsed);
        add("DCGM_FI_DEV_SM_CLOCK", None, Kind::SmClock);
        add("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", None, Kind::EccErrors);
        add("training_steps_total", None, Kind::Steps);
        add("training_tokens_total", None, Kind::Tokens);
        for (b, le) in LE.iter().enumerate() {
            add(
                "inference_request_duration_seconds_bucket",
                Some(("le", le)),
                Kind::Bucket(b),
            );
        }
        gpu_index += 1;
    }
    out
}

/// A cheap deterministic hash for pseudo-random but reproducible values.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn unit(seed: u64, step: u64) -> f64 {
    (mix(seed.wrapping_mul(1_000_003).wrapping_add(step)) >> 11) as f64 / (1u64 << 53) as f64
}

fn value(s: &SeriesSpec, step: u64) -> f64 {
    let drift = (step as f64 / 40.0 + (s.seed % 97) as f64).sin();
    match s.kind {
        Kind::Utilization => (70.0 + 25.0 * drift + 5.0 * unit(s.seed, step))
            .clamp(0.0, 100.0)
            .round(),
        Kind::Temperature => (62.0 + 8.0 * drift).round(),
        Kind::Power => {
            ((550.0 + 120.0 * drift + 20.0 * unit(s.seed, step)) * 1000.0).round() / 1000.0
        }
        Kind::MemoryUsed => (60_000.0 + 8_000.0 * drift).round(),
        Kind::SmClock => {
            if unit(s.seed, step) < 0.9 {
                1980.0
            } else {
                1755.0
            }
        }
        Kind::EccErrors => (step / 500) as f64,
        Kind::Steps => (step * 3 + s.seed % 11) as f64,
        Kind::Tokens => (step * 3 * 4096 * 8) as f64,
        Kind::Bucket(b) => {
            ((step * 40 * (b as u64 + 1)) / 10 + (unit(s.seed, step) * 3.0) as u64) as f64
        }
    }
}

struct Args {
    series: usize,
    samples: u64,
    dir: std::path::PathBuf,
    openmetrics: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        series: 100_000,
        samples: 120,
        dir: std::env::temp_dir().join("kiln-tsdb-bench"),
        openmetrics: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--series" => a.series = val()?.parse().map_err(|e| format!("--series: {e}"))?,
            "--samples" => a.samples = val()?.parse().map_err(|e| format!("--samples: {e}"))?,
            "--dir" => a.dir = val()?.into(),
            "--openmetrics" => a.openmetrics = Some(val()?.into()),
            "--bench" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// Resident set size of this process in bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds (user + system) used by this process so far (Linux).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn write_openmetrics(
    series: &[SeriesSpec],
    samples: u64,
    path: &std::path::Path,
) -> std::io::Result<()> {
    // OpenMetrics wants each family's lines together: write family by family.
    let mut families: Vec<&str> = Vec::new();
    for s in series {
        let name = s.labels.metric_name().unwrap_or("unknown");
        if !families.contains(&name) {
            families.push(name);
        }
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for fam in families {
        let family = fam
            .strip_suffix("_bucket")
            .or_else(|| fam.strip_suffix("_total"))
            .unwrap_or(fam);
        let kind = if fam.ends_with("_bucket") {
            "histogram"
        } else if fam.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        writeln!(w, "# TYPE {family} {kind}")?;
        for s in series
            .iter()
            .filter(|s| s.labels.metric_name() == Some(fam))
        {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            for step in 0..samples {
                let t = START_MS + step as i64 * SCRAPE_INTERVAL_MS;
                // OpenMetrics timestamps are seconds; every scrape is on a whole second.
                writeln!(
                    w,
                    "{fam}{{{}}} {} {}",
                    labels.join(","),
                    value(s, step),
                    t / 1000
                )?;
            }
        }
    }
    writeln!(w, "# EOF")?;
    w.flush()
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let series = build_series(args.series);
    if let Some(path) = &args.openmetrics {
        write_openmetrics(&series, args.samples, path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!(
            "wrote {} series x {} samples to {}",
            series.len(),
            args.samples,
            path.display()
        );
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    let opts = DbOptions {
        retention_time: None,
        ..DbOptions::default()
    };
    let db = Db::open(&args.dir, opts).map_err(|e| e.to_string())?;
    let rss_before = rss_bytes();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut refs = vec![0u64; series.len()];
    // One commit per scrape of one host (all its GPUs' series), as a scraper does.
    let per_host = GPUS_PER_HOST * series_per_gpu();
    for step in 0..args.samples {
        let t = START_MS + step as i64 * SCRAPE_INTERVAL_MS;
        for (h, chunk) in series.chunks(per_host).enumerate() {
            let mut app = db.appender();
            for (i, s) in chunk.iter().enumerate() {
                let idx = h * per_host + i;
                refs[idx] = app
                    .append(refs[idx], &s.labels, t, SampleValue::Float(value(s, step)))
                    .map_err(|e| e.to_string())?;
            }
            app.commit().map_err(|e| e.to_string())?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let samples = series.len() as u64 * args.samples;
    let rss_after = rss_bytes();
    println!("series:                    {}", series.len());
    println!("samples:                   {samples}");
    println!(
        "append throughput:         {:.0} samples/s (one thread, WAL on, {elapsed:.1} s)",
        samples as f64 / elapsed
    );
    println!(
        "cpu per 1M samples:        {:.3} s",
        cpu / (samples as f64 / 1e6)
    );
    println!(
        "resident memory:           {:.1} MiB after ingest ({:.1} MiB before)",
        rss_after as f64 / 1048576.0,
        rss_before as f64 / 1048576.0
    );
    println!(
        "memory per active series:  {:.0} bytes (RSS growth / series)",
        (rss_after.saturating_sub(rss_before)) as f64 / series.len() as f64
    );

    let started = Instant::now();
    db.flush_head().map_err(|e| e.to_string())?;
    let block_bytes: u64 = db.blocks().iter().map(|b| dir_size(b.dir())).sum();
    let block_samples: u64 = db.blocks().iter().map(|b| b.meta().stats.num_samples).sum();
    println!(
        "persist head to blocks:    {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "block bytes:               {block_bytes} ({} blocks, {block_samples} samples)",
        db.blocks().len()
    );
    println!(
        "bytes per sample (blocks): {:.3}",
        block_bytes as f64 / block_samples.max(1) as f64
    );
    db.close().map_err(|e| e.to_string())?;
    Ok(())
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}
