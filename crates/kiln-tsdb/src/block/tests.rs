//! Block tests: golden bytes, round trips, postings, corruption and property tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_model::{Labels, LabelsBuilder};
use proptest::prelude::*;

use super::chunks::{ChunkReader, ChunkWriter, chunk_ref};
use super::index::{ChunkMeta, IndexReader, IndexWriter, IndexWriterOptions, intersect};
use super::*;

fn crc(b: &[u8]) -> [u8; 4] {
    crc32c::crc32c(b).to_be_bytes()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

/// Writes an index of `series` (sorted here) to a temp dir and returns its bytes.
fn write_index(
    series: &[(Labels, Vec<ChunkMeta>)],
    opts: IndexWriterOptions,
    explicit_symbols: bool,
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let mut w = IndexWriter::with_options(&path, opts).unwrap();
    if explicit_symbols {
        let mut syms = BTreeSet::new();
        for (l, _) in series {
            for p in l.iter() {
                syms.insert(p.name.to_owned());
                syms.insert(p.value.to_owned());
            }
        }
        w.add_symbols(&syms).unwrap();
    }
    for (l, c) in series {
        w.add_series(l, c).unwrap();
    }
    w.finish().unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn crc32c_is_castagnoli() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

/// The index of one series `{a="1"}` with one chunk (0..10 at ref 8), laid out by hand.
fn golden_tiny_index(legacy: bool) -> Vec<u8> {
    let mut f = vec![0xBA, 0xAA, 0xD7, 0x00, 0x02];
    // Symbol table at 5: len 8, count 2, "1", "a".
    let sym_body = [0, 0, 0, 2, 1, b'1', 1, b'a'];
    f.extend_from_slice(&[0, 0, 0, 8]);
    f.extend_from_slice(&sym_body);
    f.extend_from_slice(&crc(&sym_body));
    assert_eq!(f.len(), 21);
    // Series: padded to 32 (id 2): 1 label (name sym 1, value sym 0), 1 chunk: mint 0,
    // maxt-mint 10, ref 8.
    f.resize(32, 0);
    let series = [1, 1, 0, 1, 0, 10, 8];
    f.push(7);
    f.extend_from_slice(&series);
    f.extend_from_slice(&crc(&series));
    assert_eq!(f.len(), 44);
    let label_indices_at = 44;
    let mut label_table = Vec::new();
    if legacy {
        // Label index for "a": 1 name, 1 entry: symbol 0.
        let li = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        f.extend_from_slice(&[0, 0, 0, 12]);
        f.extend_from_slice(&li);
        f.extend_from_slice(&crc(&li));
        label_table = vec![0, 0, 0, 1, 1, 1, b'a', 44];
    }
    let postings_at = f.len() as u8;
    // All postings, then postings of a="1": both [2].
    let list = [0, 0, 0, 1, 0, 0, 0, 2];
    for _ in 0..2 {
        f.extend_from_slice(&[0, 0, 0, 8]);
        f.extend_from_slice(&list);
        f.extend_from_slice(&crc(&list));
    }
    let label_table_at = f.len() as u8;
    if legacy {
        f.extend_from_slice(&[0, 0, 0, label_table.len() as u8]);
        f.extend_from_slice(&label_table);
        f.extend_from_slice(&crc(&label_table));
    }
    let pot_at = f.len() as u8;
    let pot = [
        0,
        0,
        0,
        2,
        2,
        0,
        0,
        postings_at,
        2,
        1,
        b'a',
        1,
        b'1',
        postings_at + 16,
    ];
    f.extend_from_slice(&[0, 0, 0, 14]);
    f.extend_from_slice(&pot);
    f.extend_from_slice(&crc(&pot));
    let mut toc = Vec::new();
    for v in [
        5u8,
        21,
        label_indices_at,
        label_table_at,
        postings_at,
        pot_at,
    ] {
        toc.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, v]);
    }
    f.extend_from_slice(&toc);
    f.extend_from_slice(&crc(&toc));
    f
}

#[test]
fn golden_tiny_index_bytes() {
    let series = vec![(
        labels(&[("a", "1")]),
        vec![ChunkMeta {
            min_time: 0,
            max_time: 10,
            chunk_ref: 8,
        }],
    )];
    for legacy in [false, true] {
        let want = golden_tiny_index(legacy);
        let opts = IndexWriterOptions {
            legacy_label_indices: legacy,
        };
        assert_eq!(write_index(&series, opts, true), want, "legacy={legacy}");
        assert_eq!(
            write_index(&series, opts, false),
            want,
            "legacy={legacy}, derived symbols"
        );
        let r = IndexReader::from_bytes(want).unwrap();
        assert_eq!(r.series(2).unwrap(), series[0]);
        assert_eq!(r.all_postings().unwrap().into_vec(), vec![2]);
        assert_eq!(r.label_values("a").unwrap(), vec!["1"]);
    }
    // Without legacy sections the layout is exactly 150 bytes.
    assert_eq!(golden_tiny_index(false).len(), 150);
}

#[test]
fn empty_index() {
    let bytes = write_index(&[], IndexWriterOptions::default(), false);
    // Header, empty symbol table (len 4, count 0, CRC of 4 zero bytes), padding to 20,
    // the empty all-postings list, the postings offset table, TOC.
    let mut want = vec![0, 0, 0, 4, 0, 0, 0, 0];
    want.extend_from_slice(&crc(&[0; 4]));
    assert_eq!(&bytes[5..17], &want[..]);
    let r = IndexReader::from_bytes(bytes).unwrap();
    assert_eq!(r.toc().series, 17);
    assert_eq!(r.toc().postings, 17);
    assert!(r.all_postings().unwrap().is_empty());
    assert!(r.label_names().is_empty());
    assert!(r.series(1).is_err());
    assert_eq!(r.check().unwrap(), 0);
}

/// A few hundred series over several label names, with 1..4 chunks each.
fn sample_series(n: usize) -> Vec<(Labels, Vec<ChunkMeta>)> {
    let mut out = Vec::new();
    let mut next_ref = 8u64;
    for i in 0..n {
        let mut b = LabelsBuilder::new();
        b.set("__name__", &format!("metric_{}", i % 7));
        b.set("instance", &format!("host-{:03}", i % 53));
        b.set("job", if i % 3 == 0 { "api" } else { "db" });
        if i % 5 == 0 {
            b.set("zone", "ü-ñ");
        }
        b.set("i", &i.to_string());
        let mut chunks = Vec::new();
        for c in 0..(i % 4 + 1) as i64 {
            chunks.push(ChunkMeta {
                min_time: c * 1000 - 500,
                max_time: c * 1000 + 499,
                chunk_ref: next_ref,
            });
            next_ref += 37 + c as u64;
        }
        out.push((b.build(), chunks));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    // Chunk references must increase across series in series order.
    let mut r = 8;
    for (_, chunks) in &mut out {
        for c in chunks {
            c.chunk_ref = r;
            r += 100;
        }
    }
    out
}

fn check_index_matches(r: &IndexReader, series: &[(Labels, Vec<ChunkMeta>)]) {
    let ids: Vec<u32> = r.all_postings().unwrap().collect();
    assert_eq!(ids.len(), series.len());
    let mut by_pair: BTreeMap<(String, String), Vec<u32>> = BTreeMap::new();
    let mut builder = LabelsBuilder::new();
    let mut chunks = Vec::new();
    for (id, (l, c)) in ids.iter().zip(series) {
        // The reusable-buffer variant, twice to catch leaked state.
        for _ in 0..2 {
            r.series_into(*id, &mut builder, &mut chunks).unwrap();
            assert_eq!(&builder.build(), l);
            assert_eq!(&chunks, c);
        }
        for p in l.iter() {
            by_pair
                .entry((p.name.to_owned(), p.value.to_owned()))
                .or_default()
                .push(*id);
        }
    }
    let names: BTreeSet<String> = by_pair.keys().map(|k| k.0.clone()).collect();
    assert_eq!(r.label_names(), names.iter().cloned().collect::<Vec<_>>());
    for name in &names {
        let want: Vec<String> = by_pair
            .keys()
            .filter(|k| &k.0 == name)
            .map(|k| k.1.clone())
            .collect();
        assert_eq!(r.label_values(name).unwrap(), want, "values of {name}");
    }
    for ((name, value), want) in &by_pair {
        assert_eq!(
            &r.postings(name, value).unwrap().into_vec(),
            want,
            "{name}={value}"
        );
        // A value just below or above is absent.
        assert!(
            r.postings(name, &format!("{value}\u{0}"))
                .unwrap()
                .is_empty()
                || by_pair.contains_key(&(name.clone(), format!("{value}\u{0}")))
        );
    }
    assert!(r.postings("nope", "x").unwrap().is_empty());
    assert!(r.label_values("nope").unwrap().is_empty());
    assert_eq!(r.check().unwrap(), series.len() as u64);
}

#[test]
fn index_round_trip_and_postings() {
    let series = sample_series(400);
    for legacy in [false, true] {
        let opts = IndexWriterOptions {
            legacy_label_indices: legacy,
        };
        let bytes = write_index(&series, opts, true);
        assert_eq!(
            bytes,
            write_index(&series, opts, false),
            "derived symbols give the same file"
        );
        let r = IndexReader::from_bytes(bytes).unwrap();
        check_index_matches(&r, &series);

        // Matcher-style queries: job="api" AND instance=~"host-00.", and job!="api".
        let matching = r
            .postings_for_values("instance", |v| v.starts_with("host-00"))
            .unwrap();
        let both = intersect(vec![r.postings("job", "api").unwrap(), matching]).into_vec();
        let want: Vec<u32> = r
            .all_postings()
            .unwrap()
            .filter(|&id| {
                let (l, _) = r.series(id).unwrap();
                l.get("job") == Some("api")
                    && l.get("instance").is_some_and(|v| v.starts_with("host-00"))
            })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(both, want);
        let not_api =
            index::without(r.all_postings().unwrap(), r.postings("job", "api").unwrap()).into_vec();
        assert_eq!(not_api, r.postings("job", "db").unwrap().into_vec());
    }
}

#[test]
fn index_writer_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IndexWriter::new(dir.path().join("index")).unwrap();
    w.add_symbols(["1", "2", "a"]).unwrap();
    assert!(matches!(
        w.add_symbols(["0"]),
        Err(BlockError::SymbolsOutOfOrder { .. })
    ));
    let c = |min, max, r| ChunkMeta {
        min_time: min,
        max_time: max,
        chunk_ref: r,
    };
    w.add_series(&labels(&[("a", "2")]), &[c(0, 5, 10)])
        .unwrap();
    let e = w.add_series(&labels(&[("a", "1")]), &[]).unwrap_err();
    assert!(matches!(e, BlockError::SeriesOutOfOrder { .. }), "{e}");
    assert_eq!(e.kind(), kiln_storage::ErrorKind::BadData);
    assert!(matches!(
        w.add_series(&Labels::empty(), &[]),
        Err(BlockError::EmptyLabels)
    ));
    assert!(matches!(
        w.add_series(&labels(&[("a", "3")]), &[]),
        Err(BlockError::MissingSymbol { .. })
    ));
    for bad in [
        vec![c(5, 4, 10)],
        vec![c(0, 5, 10), c(5, 6, 11)],
        vec![c(0, 5, 9)],
    ] {
        let e = w
            .add_series(&labels(&[("a", "2"), ("b", "x")]), &bad)
            .unwrap_err();
        assert!(matches!(e, BlockError::InvalidChunks { .. }), "{e}");
    }
    assert!(matches!(
        w.add_symbols(["b"]),
        Err(BlockError::WrongStage { .. })
    ));
}

/// Flipping any byte that a checksum or header covers makes open or `check` fail; no
/// flip or truncation panics.
#[test]
fn corrupted_index_gives_errors_not_panics() {
    let good = golden_tiny_index(false);
    let padding = 21..32;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        let res = IndexReader::from_bytes(bad).and_then(|r| r.check());
        match res {
            Err(e) => {
                assert!(e.is_corruption(), "byte {i}: {e}");
                assert!(e.to_string().contains("<memory>"), "{e}");
            }
            Ok(_) => assert!(padding.contains(&i), "flipping byte {i} went unnoticed"),
        }
    }
    for n in 0..good.len() {
        assert!(
            IndexReader::from_bytes(good[..n].to_vec()).is_err(),
            "truncated to {n}"
        );
    }
    // A larger index: every flip must at least not panic.
    let big = write_index(
        &sample_series(40),
        IndexWriterOptions {
            legacy_label_indices: true,
        },
        true,
    );
    for i in 0..big.len() {
        let mut bad = big.clone();
        bad[i] = bad[i].wrapping_add(1);
        if let Ok(r) = IndexReader::from_bytes(bad) {
            let _ = r.check();
            for name in r.label_names() {
                let _ = r.label_values(&name);
                let _ = r.postings_for_values(&name, |_| true);
            }
            let _ = r.series(u32::MAX);
            let _ = r.symbol(u32::MAX);
        }
    }
}

#[test]
fn index_errors_name_file_section_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index");
    let mut bytes = golden_tiny_index(false);
    bytes[40] ^= 1; // inside the series entry
    std::fs::write(&path, &bytes).unwrap();
    let r = IndexReader::open(&path).unwrap();
    let e = r.series(2).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string())
            && msg.contains("series")
            && msg.contains("offset 33"),
        "{msg}"
    );
    assert!(matches!(
        e,
        BlockError::Corrupt {
            offset: 33,
            problem: Corruption::Checksum { .. },
            ..
        }
    ));

    let mut v1 = golden_tiny_index(false);
    v1[4] = 1;
    assert!(matches!(
        IndexReader::from_bytes(v1),
        Err(BlockError::UnsupportedVersion { version: 1, .. })
    ));
    let mut v3 = golden_tiny_index(false);
    v3[4] = 3;
    assert_eq!(IndexReader::from_bytes(v3).unwrap().version(), 3);
}

#[test]
fn chunk_segments_round_trip_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("chunks");
    let mut w = ChunkWriter::with_segment_size(&cdir, 100).unwrap();
    let mut refs = Vec::new();
    for i in 0..20u8 {
        let data = vec![i; usize::from(i) * 3];
        refs.push((w.write(i % 4, &data).unwrap(), i % 4, data));
    }
    let big = vec![7u8; 300];
    refs.push((w.write(1, &big).unwrap(), 1, big));
    assert!(w.segments() > 3);
    w.finish().unwrap();
    assert_eq!(refs[0].0, chunk_ref(0, 8));
    let r = ChunkReader::open(&cdir).unwrap();
    assert!(cdir.join("000001").exists());
    assert_eq!(r.segment_count(), std::fs::read_dir(&cdir).unwrap().count());
    for (cref, enc, data) in &refs {
        assert_eq!(r.chunk(*cref).unwrap(), (*enc, data.as_slice()));
    }
    for seg in std::fs::read_dir(&cdir).unwrap() {
        let len = seg.unwrap().metadata().unwrap().len();
        assert!(len <= 100 || len > 300, "segment of {len} bytes");
    }
}

#[test]
fn corrupted_chunks_give_errors_naming_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ChunkWriter::new(dir.path()).unwrap();
    let a = w.write(1, b"hello").unwrap();
    let b = w.write(2, b"world!").unwrap();
    w.finish().unwrap();
    let seg = dir.path().join("000001");
    let good = std::fs::read(&seg).unwrap();
    assert_eq!(&good[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
    // Chunk a: len 5, encoding 1, "hello", CRC over encoding and data.
    let mut want = vec![5, 1];
    want.extend_from_slice(b"hello");
    want.extend_from_slice(&crc(&want[1..]));
    assert_eq!(&good[8..8 + want.len()], &want[..]);

    // Bytes 5..8 are header padding, which readers ignore (as Prometheus does).
    for i in (0..good.len()).filter(|i| !(5..8).contains(i)) {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let res = ChunkReader::from_segments(vec![bad])
            .and_then(|r| r.chunk(a).and(r.chunk(b)).map(|_| ()));
        let e = res.expect_err(&format!("flip at {i} unnoticed"));
        assert!(e.is_corruption() && e.to_string().contains("000001"), "{e}");
    }
    for n in 0..good.len() {
        let res = ChunkReader::from_segments(vec![good[..n].to_vec()])
            .and_then(|r| r.chunk(a).and(r.chunk(b)).map(|_| ()));
        assert!(res.is_err(), "truncated to {n}");
    }
    std::fs::write(&seg, &good[..good.len() - 1]).unwrap();
    let r = ChunkReader::open(dir.path()).unwrap();
    let e = r.chunk(b).unwrap_err();
    assert!(
        matches!(&e, BlockError::Corrupt { path, offset: 27, .. } if path == &seg),
        "{e}"
    );
    for bad_ref in [
        chunk_ref(1, 8),
        chunk_ref(0, 3),
        chunk_ref(0, 10_000),
        chunk_ref(0, 9),
    ] {
        assert!(r.chunk(bad_ref).is_err());
    }
}

/// Opaque XOR-like chunks: the first two bytes hold the sample count, as in real ones.
fn fake_chunk(samples: u16, fill: u8) -> Vec<u8> {
    let mut v = samples.to_be_bytes().to_vec();
    v.extend(std::iter::repeat_n(fill, usize::from(fill % 13) + 3));
    v
}

#[test]
fn block_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let series = sample_series(300);
    let mut data: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut w = BlockWriter::create(dir.path(), -500, 4_000).unwrap();
    let ulid = w.ulid();
    let mut samples = 0;
    for (i, (l, metas)) in series.iter().enumerate() {
        let chunks: Vec<Vec<u8>> = (0..metas.len())
            .map(|c| fake_chunk(120, (i + c) as u8))
            .collect();
        samples += 120 * metas.len() as u64;
        let input: Vec<ChunkData<'_>> = metas
            .iter()
            .zip(&chunks)
            .map(|(m, d)| (m.min_time, m.max_time, ENCODING_XOR, d.as_slice()))
            .collect();
        w.add_series(l, &input).unwrap();
        data.push(chunks);
    }
    assert!(dir.path().join(format!("{ulid}.tmp-for-creation")).is_dir());
    assert_eq!(w.finish(FinishOptions::default()).unwrap(), ulid);
    assert!(!dir.path().join(format!("{ulid}.tmp-for-creation")).exists());

    let bdir = dir.path().join(ulid.to_string());
    let b = BlockReader::open(&bdir).unwrap();
    let m = b.meta();
    assert_eq!((m.min_time, m.max_time, m.version), (-500, 4_000, 1));
    assert_eq!(m.stats.num_series, 300);
    assert_eq!(m.stats.num_samples, samples);
    assert_eq!(m.stats.num_float_samples, samples);
    assert_eq!(
        m.stats.num_chunks,
        series.iter().map(|s| s.1.len() as u64).sum::<u64>()
    );
    assert_eq!(
        (m.compaction.level, m.compaction.sources.clone()),
        (1, vec![ulid])
    );
    assert!(b.tombstones().is_empty());
    assert_eq!(std::fs::read(bdir.join("tombstones")).unwrap().len(), 9);

    let ids: Vec<u32> = b.index().all_postings().unwrap().collect();
    for (id, ((l, metas), chunks)) in ids.iter().zip(series.iter().zip(&data)) {
        let (got_l, got_metas) = b.index().series(*id).unwrap();
        assert_eq!(&got_l, l);
        for ((got, want), bytes) in got_metas.iter().zip(metas).zip(chunks) {
            assert_eq!((got.min_time, got.max_time), (want.min_time, want.max_time));
            assert_eq!(
                b.chunks().chunk(got.chunk_ref).unwrap(),
                (ENCODING_XOR, bytes.as_slice())
            );
        }
    }
}

#[test]
fn block_writer_rejects_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        BlockWriter::create(dir.path(), 10, 10),
        Err(BlockError::InvalidTimeRange { .. })
    ));
    let mut w = BlockWriter::create(dir.path(), 0, 100).unwrap();
    let e = w
        .add_series(&labels(&[("a", "1")]), &[(50, 100, 1, b"xx")])
        .unwrap_err();
    assert!(matches!(e, BlockError::InvalidChunks { .. }), "{e}");
    w.add_series(&labels(&[("a", "2")]), &[(0, 99, 1, b"xx")])
        .unwrap();
    assert!(matches!(
        w.add_series(&labels(&[("a", "1")]), &[]),
        Err(BlockError::SeriesOutOfOrder { .. })
    ));
    drop(w);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "unfinished block removed"
    );

    // An empty block is valid: no segments, empty postings.
    let w = BlockWriter::create(dir.path(), 0, 100).unwrap();
    let ulid = w.finish(FinishOptions::default()).unwrap();
    let b = BlockReader::open(dir.path().join(ulid.to_string())).unwrap();
    assert_eq!(b.chunks().segment_count(), 0);
    assert!(b.index().all_postings().unwrap().is_empty());
}

#[test]
fn corrupt_block_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::create(dir.path(), 0, 100).unwrap();
    w.add_series(&labels(&[("a", "1")]), &[(0, 9, 1, &fake_chunk(3, 1))])
        .unwrap();
    let bdir = dir
        .path()
        .join(w.finish(FinishOptions::default()).unwrap().to_string());
    let check = |file: &str, mutate: &dyn Fn(&mut Vec<u8>)| {
        let path = bdir.join(file);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        mutate(&mut bad);
        std::fs::write(&path, &bad).unwrap();
        let res = BlockReader::open(&bdir).and_then(|b| {
            b.index().check()?;
            for id in b.index().all_postings()? {
                for c in b.index().series(id)?.1 {
                    b.chunks().chunk(c.chunk_ref)?;
                }
            }
            Ok(())
        });
        let e = res.expect_err(file);
        assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
        std::fs::write(&path, &good).unwrap();
    };
    check("index", &|b| b[40] ^= 4);
    check("index", &|b| b.truncate(b.len() - 1));
    check("chunks/000001", &|b| b[12] ^= 4);
    check("chunks/000001", &|b| b.truncate(10));
    check("meta.json", &|b| b.truncate(b.len() / 2));
    check("meta.json", &|b| {
        *b =
            br#"{"ulid":"01BKGV7JBM69T2G1BGBGM6KB12","minTime":0,"maxTime":1,"version":2}"#.to_vec()
    });
    check("tombstones", &|b| b[5] ^= 1);
    BlockReader::open(&bdir).unwrap();
}

#[test]
fn meta_json_matches_prometheus_layout() {
    let ulid: ulid::Ulid = "01BKGV7JBM69T2G1BGBGM6KB12".parse().unwrap();
    let parent: ulid::Ulid = "01BKGTZQ1SYQJTR4PB43C8PD98".parse().unwrap();
    let meta = BlockMeta {
        ulid,
        min_time: 1_602_237_600_000,
        max_time: 1_602_244_800_000,
        stats: BlockStats {
            num_samples: 553,
            num_float_samples: 553,
            num_series: 2,
            num_chunks: 5,
            ..BlockStats::default()
        },
        compaction: BlockMetaCompaction {
            level: 2,
            sources: vec![parent, ulid],
            parents: vec![BlockDesc {
                ulid: parent,
                min_time: 1,
                max_time: 2,
            }],
            hints: vec!["a<b>&c".into()],
            ..BlockMetaCompaction::default()
        },
        version: 1,
        thanos: None,
    };
    let want = "{\n\t\"ulid\": \"01BKGV7JBM69T2G1BGBGM6KB12\",\n\t\"minTime\": 1602237600000,\n\t\"maxTime\": 1602244800000,\n\t\"stats\": {\n\t\t\"numSamples\": 553,\n\t\t\"numFloatSamples\": 553,\n\t\t\"numSeries\": 2,\n\t\t\"numChunks\": 5\n\t},\n\t\"compaction\": {\n\t\t\"level\": 2,\n\t\t\"sources\": [\n\t\t\t\"01BKGTZQ1SYQJTR4PB43C8PD98\",\n\t\t\t\"01BKGV7JBM69T2G1BGBGM6KB12\"\n\t\t],\n\t\t\"parents\": [\n\t\t\t{\n\t\t\t\t\"ulid\": \"01BKGTZQ1SYQJTR4PB43C8PD98\",\n\t\t\t\t\"minTime\": 1,\n\t\t\t\t\"maxTime\": 2\n\t\t\t}\n\t\t],\n\t\t\"hints\": [\n\t\t\t\"a\\u003cb\\u003e\\u0026c\"\n\t\t]\n\t},\n\t\"version\": 1\n}";
    assert_eq!(String::from_utf8(meta.to_json()).unwrap(), want);
    assert_eq!(
        BlockMeta::from_json(want.as_bytes(), Path::new("m")).unwrap(),
        meta
    );

    // Empty stats are an empty object; unknown fields are ignored; Thanos is kept.
    let thanos = r#"{"ulid":"01BKGV7JBM69T2G1BGBGM6KB12","minTime":0,"maxTime":7200000,"stats":{},"compaction":{"level":1,"sources":null,"parents":null,"x":1},"version":1,"thanos":{"labels":{"a":"b"},"downsample":{"resolution":0},"source":"sidecar"}}"#;
    let m = BlockMeta::from_json(thanos.as_bytes(), Path::new("m")).unwrap();
    assert_eq!(m.thanos.as_ref().unwrap()["source"], "sidecar");
    let again = BlockMeta::from_json(&m.to_json(), Path::new("m")).unwrap();
    assert_eq!(again, m);
    assert!(
        String::from_utf8(m.to_json())
            .unwrap()
            .contains("\t\"stats\": {},\n")
    );
    for bad in [
        &b"{"[..],
        b"[]",
        b"",
        br#"{"ulid":"zz","minTime":0,"maxTime":1,"version":1}"#,
    ] {
        let e = BlockMeta::from_json(bad, Path::new("m")).unwrap_err();
        assert!(e.is_corruption(), "{e}");
    }
}

#[test]
fn meta_write_is_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let meta = BlockMeta::from_json(
        br#"{"ulid":"01BKGV7JBM69T2G1BGBGM6KB12","minTime":0,"maxTime":1,"compaction":{"level":1},"version":1}"#,
        Path::new("m"),
    )
    .unwrap();
    let n = meta::write_meta(dir.path(), &meta).unwrap();
    assert_eq!(
        n,
        std::fs::metadata(dir.path().join("meta.json"))
            .unwrap()
            .len()
    );
    assert!(!dir.path().join("meta.json.tmp").exists());
    assert_eq!(meta::read_meta(dir.path()).unwrap(), meta);
    let e = meta::read_meta(&dir.path().join("missing")).unwrap_err();
    assert_eq!(e.kind(), kiln_storage::ErrorKind::NotFound);
}

fn arb_series() -> impl Strategy<Value = Vec<(Labels, Vec<ChunkMeta>)>> {
    let names = prop::sample::select(vec!["__name__", "a", "b", "job", "zz", "ü"]);
    let value = prop::string::string_regex("[a-c0-9é]{1,6}").unwrap();
    let one = (
        prop::collection::vec((names, value), 1..5),
        prop::collection::vec((0i64..1000, 0i64..1000), 0..4),
    );
    prop::collection::vec(one, 0..40).prop_map(|raw| {
        let mut map: BTreeMap<Labels, Vec<(i64, i64)>> = BTreeMap::new();
        for (pairs, times) in raw {
            map.insert(Labels::from_pairs(&pairs), times);
        }
        let mut r = 8u64;
        let mut t = -5_000i64;
        map.into_iter()
            .map(|(l, times)| {
                let chunks = times
                    .into_iter()
                    .map(|(gap, len)| {
                        let min_time = t + gap + 1;
                        t = min_time + len;
                        r += 10 + gap as u64;
                        ChunkMeta {
                            min_time,
                            max_time: t,
                            chunk_ref: r,
                        }
                    })
                    .collect();
                (l, chunks)
            })
            .collect()
    })
}

/// Builds an index-header from `bytes` (an index) the way a store gateway does, from the
/// ranges it names, and checks it answers as the reader over the whole index does.
fn check_header_matches(bytes: &[u8], r: &IndexReader) {
    use super::index::header::IndexHeader;
    let dir = tempfile::tempdir().unwrap();
    let index = Path::new("index");
    let size = bytes.len() as u64;
    let version =
        IndexHeader::index_version(&bytes[..IndexHeader::INDEX_HEAD_LEN as usize], index).unwrap();
    let tail = &bytes[(size - IndexHeader::INDEX_TOC_LEN) as usize..];
    let (toc, src) = IndexHeader::index_toc(tail, size, index).unwrap();
    let range = |r: &std::ops::Range<u64>| &bytes[r.start as usize..r.end as usize];
    let path = dir.path().join("index-header");
    let h = IndexHeader::write(
        &path,
        version,
        size,
        &toc,
        range(&src.symbols),
        range(&src.postings_offset_table),
    )
    .unwrap();
    assert!(
        h.size() < size || size < 200,
        "a header is smaller than its index"
    );
    let h = IndexHeader::open(&path).unwrap();
    assert_eq!(h.label_names(), r.label_names());
    let postings_of = |range: std::ops::Range<u64>| {
        let list = &bytes[range.start as usize..range.end as usize];
        IndexHeader::decode_postings(list, range.start, index)
            .unwrap()
            .into_vec()
    };
    let ids = match h.all_postings_range().unwrap() {
        Some(range) => postings_of(range),
        None => Vec::new(),
    };
    assert_eq!(ids, r.all_postings().unwrap().into_vec());
    for name in r.label_names() {
        let values = r.label_values(&name).unwrap();
        assert_eq!(h.label_values(&name).unwrap(), values);
        let ranges = h.postings_ranges(&name, |_| true).unwrap();
        assert_eq!(
            ranges.iter().map(|p| p.value.clone()).collect::<Vec<_>>(),
            values
        );
        for p in ranges {
            assert_eq!(
                h.postings_range(&name, &p.value).unwrap(),
                Some(p.range.clone())
            );
            assert_eq!(
                h.postings_range(&name, &format!("{}\u{0}", p.value))
                    .unwrap()
                    .is_some(),
                values.contains(&format!("{}\u{0}", p.value))
            );
            assert_eq!(
                postings_of(p.range),
                r.postings(&name, &p.value).unwrap().into_vec(),
                "{name}={}",
                p.value
            );
        }
    }
    let mut builder = LabelsBuilder::new();
    let mut chunks = Vec::new();
    for id in ids {
        let off = (u64::from(id) * index::SERIES_ALIGN) as usize;
        let len = super::index::header::series_entry_len(&bytes[off..]).unwrap() as usize;
        // Exactly the entry, and with bytes after it, decode alike.
        for end in [off + len, bytes.len()] {
            h.decode_series(&bytes[off..end], id, index, &mut builder, Some(&mut chunks))
                .unwrap();
            let (labels, metas) = r.series(id).unwrap();
            assert_eq!(builder.build(), labels);
            assert_eq!(chunks, metas);
        }
        let short = h.decode_series(&bytes[off..off + len - 1], id, index, &mut builder, None);
        assert!(short.is_err(), "a cut entry is an error");
    }
}

#[test]
fn index_header_answers_as_the_index() {
    for n in [0, 1, 400] {
        let series = sample_series(n);
        for legacy in [false, true] {
            let opts = IndexWriterOptions {
                legacy_label_indices: legacy,
            };
            let bytes = write_index(&series, opts, true);
            let r = IndexReader::from_bytes(bytes.clone()).unwrap();
            check_header_matches(&bytes, &r);
        }
    }
}

#[test]
fn corrupt_index_header_is_an_error() {
    use super::index::header::IndexHeader;
    let series = sample_series(50);
    let bytes = write_index(&series, IndexWriterOptions::default(), true);
    let index = Path::new("index");
    let size = bytes.len() as u64;
    let (toc, src) = IndexHeader::index_toc(&bytes[(size - 52) as usize..], size, index).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index-header");
    let range = |r: &std::ops::Range<u64>| &bytes[r.start as usize..r.end as usize];
    IndexHeader::write(
        &path,
        2,
        size,
        &toc,
        range(&src.symbols),
        range(&src.postings_offset_table),
    )
    .unwrap();
    // A cut symbol table is refused at write time.
    let cut = &range(&src.symbols)[..10];
    assert!(
        IndexHeader::write(&path, 2, size, &toc, cut, range(&src.postings_offset_table)).is_err()
    );
    // Every flipped byte and every truncation of the file is an error, never a panic.
    let good = std::fs::read(&path).unwrap();
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x55;
        std::fs::write(&path, &bad).unwrap();
        assert!(IndexHeader::open(&path).is_err(), "flip at {i}");
        std::fs::write(&path, &good[..i]).unwrap();
        assert!(IndexHeader::open(&path).is_err(), "cut at {i}");
    }
    // A TOC pointing outside the index is refused.
    let mut tail = bytes[(size - 52) as usize..].to_vec();
    tail[0..8].copy_from_slice(&(size * 2).to_be_bytes());
    let body_crc = crc32c::crc32c(&tail[..48]).to_be_bytes();
    tail[48..].copy_from_slice(&body_crc);
    assert!(IndexHeader::index_toc(&tail, size, index).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn index_round_trip_property(series in arb_series(), legacy in any::<bool>()) {
        let bytes = write_index(&series, IndexWriterOptions { legacy_label_indices: legacy }, true);
        let r = IndexReader::from_bytes(bytes.clone()).unwrap();
        check_index_matches(&r, &series);
        check_header_matches(&bytes, &r);
    }
}

#[test]
fn block_round_trip_with_xor_chunks() {
    use kiln_chunkenc::{SAMPLES_PER_CHUNK, XorEncoder, XorIterator};

    let dir = tempfile::tempdir().unwrap();
    let mut all_labels: Vec<Labels> = (0..200)
        .map(|i| {
            labels(&[
                ("__name__", "up"),
                ("instance", &format!("10.0.0.{i}:9100")),
                ("job", "node"),
            ])
        })
        .collect();
    all_labels.sort();
    let samples = |i: usize| -> Vec<(i64, f64)> {
        (0..250)
            .map(|j| (j as i64 * 15_000, (i * j) as f64 / 7.0))
            .collect()
    };

    let mut w = BlockWriter::create(dir.path(), 0, 250 * 15_000).unwrap();
    let mut syms: BTreeSet<&str> = BTreeSet::new();
    for l in &all_labels {
        for p in l.iter() {
            syms.insert(p.name);
            syms.insert(p.value);
        }
    }
    w.add_symbols(syms).unwrap();
    for (i, l) in all_labels.iter().enumerate() {
        let mut encoded = Vec::new();
        for part in samples(i).chunks(SAMPLES_PER_CHUNK) {
            let mut e = XorEncoder::new();
            for &(t, v) in part {
                e.append(t, v);
            }
            encoded.push((part[0].0, part[part.len() - 1].0, e.into_bytes()));
        }
        let input: Vec<ChunkData<'_>> = encoded
            .iter()
            .map(|(a, b, d)| (*a, *b, ENCODING_XOR, d.as_slice()))
            .collect();
        w.add_series(l, &input).unwrap();
    }
    let ulid = w.finish(FinishOptions::default()).unwrap();

    let b = BlockReader::open(dir.path().join(ulid.to_string())).unwrap();
    assert_eq!(b.meta().stats.num_samples, 200 * 250);
    assert_eq!(b.meta().stats.num_chunks, 200 * 3);
    for (i, id) in b.index().all_postings().unwrap().enumerate() {
        let (l, metas) = b.index().series(id).unwrap();
        assert_eq!(l, all_labels[i]);
        let mut got = Vec::new();
        for m in metas {
            let (enc, data) = b.chunks().chunk(m.chunk_ref).unwrap();
            assert_eq!(enc, ENCODING_XOR);
            let mut it = XorIterator::new(data);
            while it.next() {
                got.push(it.at());
            }
            assert!(it.err().is_none());
        }
        assert_eq!(got, samples(i));
    }
    assert_eq!(b.index().postings("job", "node").unwrap().len(), 200);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fuzz entry points never panic on arbitrary bytes.
    #[test]
    fn readers_never_panic_on_random_bytes(
        body in prop::collection::vec(any::<u8>(), 0..400),
        cut in 0usize..400,
        r in any::<u64>(),
    ) {
        let mut idx = vec![0xBA, 0xAA, 0xD7, 0x00, 0x02];
        idx.extend_from_slice(&body);
        if let Ok(reader) = IndexReader::from_bytes(idx) {
            let _ = reader.check();
            let _ = reader.series((r >> 32) as u32);
        }
        // A valid index with its tail replaced by random bytes.
        let mut good = golden_tiny_index(true);
        let at = cut.min(good.len());
        good.truncate(at);
        good.extend_from_slice(&body);
        if let Ok(reader) = IndexReader::from_bytes(good) {
            let _ = reader.check();
            let _ = reader.label_values("a");
        }
        let mut seg = vec![0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0];
        seg.extend_from_slice(&body);
        if let Ok(c) = ChunkReader::from_segments(vec![seg, body.clone()]) {
            let _ = c.chunk(r);
            let _ = c.chunk(r & 0xff);
        }
        let _ = tombstones::Tombstones::decode(&body, Path::new("t"));
        let _ = BlockMeta::from_json(&body, Path::new("m"));
    }
}

/// Found by the `index_reader` fuzz target: a series entry claiming a length near
/// `u64::MAX` overflowed while building the error.
#[test]
fn fuzz_regression_huge_series_length() {
    let hex = "baaad7000200000008000000020131016195e75b9c0000000000000000000000ffffffffffffffffff012c9d0000000800000001000000025502add10000000800000001000000025502add10000000e000000020200002c02016101313cd1e4245600000000000000050000000000000015000000000000002c000000000000004c000000000000002c000000000000004c53de64d2";
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let r = IndexReader::from_bytes(bytes).unwrap();
    let ids: Vec<u32> = r.all_postings().unwrap().collect();
    for id in ids {
        assert!(
            r.series(id).is_err(),
            "series {id} must be reported corrupt"
        );
    }
}
