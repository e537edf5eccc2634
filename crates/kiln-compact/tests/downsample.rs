//! A raw block downsampled to 5m and then to 1h: the series, their sample counts, sums,
//! extremes and counter increases survive, and the blocks say their resolution.

#![allow(clippy::unwrap_used)]

use kiln_chunkenc::aggr::{AGGR_ENCODING, AggrType, decode_aggr_chunk};
use kiln_chunkenc::downsample::{RES_1H, RES_5M, apply_counter_resets};
use kiln_chunkenc::{XorEncoder, XorIterator};
use kiln_compact::{downsample_block, next_resolution};
use kiln_model::Labels;
use kiln_tsdb::block::{BlockReader, BlockWriter, ENCODING_XOR, FinishOptions};

const H: i64 = 3_600_000;

/// A counter sampled every 30 s for 24 h that resets every 5 h, per series.
fn raw(series: usize) -> Vec<(i64, f64)> {
    (0..24 * 120i64)
        .map(|i| (i * 30_000, ((i % 600) * (series as i64 + 1)) as f64))
        .collect()
}

fn write_raw_block(dir: &std::path::Path) -> BlockReader {
    let mut w = BlockWriter::create(dir, 0, 24 * H).unwrap();
    for s in 0..3 {
        let labels = Labels::from_pairs(&[("__name__", "requests_total"), ("s", &s.to_string())]);
        let samples = raw(s);
        let encoded: Vec<(i64, i64, Vec<u8>)> = samples
            .chunks(120)
            .map(|c| {
                let mut e = XorEncoder::new();
                for &(t, v) in c {
                    e.append(t, v);
                }
                (c[0].0, c[c.len() - 1].0, e.into_bytes())
            })
            .collect();
        let chunks: Vec<(i64, i64, u8, &[u8])> = encoded
            .iter()
            .map(|(a, b, d)| (*a, *b, ENCODING_XOR, d.as_slice()))
            .collect();
        w.add_series(&labels, &chunks).unwrap();
    }
    let id = w.finish(FinishOptions::default()).unwrap();
    BlockReader::open(dir.join(id.to_string())).unwrap()
}

/// Per series: (windows counted, sum of counts, sum of sums, min, max, counter increase).
fn summary(block: &BlockReader) -> Vec<(String, usize, f64, f64, f64, f64, f64)> {
    let index = block.index();
    let mut out = Vec::new();
    for id in index.all_postings().unwrap().into_vec() {
        let (labels, metas) = index.series(id).unwrap();
        let mut per: [Vec<(i64, f64)>; 5] = Default::default();
        let mut counters: Vec<Vec<u8>> = Vec::new();
        for m in &metas {
            let (encoding, data) = block.chunks().chunk(m.chunk_ref).unwrap();
            assert_eq!(encoding, AGGR_ENCODING);
            let subs = decode_aggr_chunk(data).unwrap();
            for a in AggrType::ALL {
                let s = subs[a as usize].unwrap();
                if a == AggrType::Counter {
                    counters.push(s.data.to_vec());
                    continue;
                }
                let mut it = XorIterator::new(s.data);
                while it.next() {
                    per[a as usize].push(it.at());
                }
            }
        }
        let views: Vec<&[u8]> = counters.iter().map(Vec::as_slice).collect();
        let c = apply_counter_resets(&views).unwrap();
        let sum = |a: AggrType| per[a as usize].iter().map(|s| s.1).sum::<f64>();
        out.push((
            labels.to_string(),
            per[AggrType::Count as usize].len(),
            sum(AggrType::Count),
            sum(AggrType::Sum),
            per[AggrType::Min as usize]
                .iter()
                .map(|s| s.1)
                .fold(f64::MAX, f64::min),
            per[AggrType::Max as usize]
                .iter()
                .map(|s| s.1)
                .fold(-f64::MAX, f64::max),
            c.samples[c.samples.len() - 1].1 - c.samples[0].1,
        ));
    }
    out
}

fn increase(samples: &[(i64, f64)]) -> f64 {
    samples
        .windows(2)
        .map(|w| {
            if w[1].1 >= w[0].1 {
                w[1].1 - w[0].1
            } else {
                w[1].1
            }
        })
        .sum()
}

#[test]
fn raw_to_5m_to_1h() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_raw_block(tmp.path());
    let out = tmp.path().join("down");
    std::fs::create_dir_all(&out).unwrap();
    let thanos = |r: i64| serde_json::json!({"labels": {"cluster": "a"}, "downsample": {"resolution": r}, "source": "compactor"});

    let five = downsample_block(&src, 0, &out, thanos(RES_5M)).unwrap();
    assert_eq!((five.resolution, five.skipped_chunks), (RES_5M, 0));
    let five = BlockReader::open(out.join(five.block.unwrap().to_string())).unwrap();
    assert_eq!(
        (five.meta().min_time, five.meta().max_time),
        (src.meta().min_time, src.meta().max_time)
    );
    assert_eq!(
        five.meta().thanos.as_ref().unwrap()["downsample"]["resolution"],
        RES_5M
    );
    assert_eq!(five.meta().stats.num_series, 3);
    assert_eq!(
        five.meta().stats.num_samples,
        3 * 24 * 12,
        "one per 5m window"
    );

    let hour = downsample_block(&five, RES_5M, &out, thanos(RES_1H)).unwrap();
    let hour = BlockReader::open(out.join(hour.block.unwrap().to_string())).unwrap();
    assert_eq!(hour.meta().stats.num_samples, 3 * 24, "one per hour");

    for (s, (a, b)) in summary(&five).iter().zip(summary(&hour)).enumerate() {
        let samples = raw(s);
        let total: f64 = samples.iter().map(|x| x.1).sum();
        assert_eq!(a.2, samples.len() as f64, "5m counts every raw sample");
        assert_eq!(b.2, samples.len() as f64, "1h too");
        assert_eq!((a.3, b.3), (total, total), "sums");
        assert_eq!((a.4, b.4), (0.0, 0.0), "min");
        assert_eq!(a.5, b.5, "max");
        assert_eq!(
            (a.6, b.6),
            (increase(&samples), increase(&samples)),
            "counter increase"
        );
    }
    assert_eq!(next_resolution(RES_1H), None);
    assert!(downsample_block(&hour, RES_1H, &out, thanos(0)).is_err());
}
