//! Tests of the writer, reader, repair and checkpoint together.

use std::fs;
use std::path::Path;

use kiln_model::Labels;
use proptest::prelude::*;

use super::checkpoint::{checkpoint_name, delete_checkpoints, list_checkpoints};
use super::record::{decode_samples, encode_samples, encode_series, encode_tombstones};
use super::segment::{MAX_FRAGMENT_LEN, list_segments, segment_path};
use super::*;

/// Framing tests write records as they are, so fragment sizes are the records' sizes.
const PLAIN: WalOptions = WalOptions {
    segment_size: DEFAULT_SEGMENT_SIZE,
    compression: Compression::None,
};

const SMALL: WalOptions = WalOptions {
    segment_size: 4 * PAGE_SIZE as u64,
    compression: Compression::None,
};

/// A record whose bytes encode its number and length, to check order and content.
fn rec(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn read_all(r: &mut WalReader) -> Result<Vec<Vec<u8>>, WalError> {
    let mut out = Vec::new();
    while let Some(r) = r.next_record()? {
        out.push(r.to_vec());
    }
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<Vec<u8>>, WalError> {
    read_all(&mut WalReader::open(dir)?)
}

/// (type byte, data length) of each fragment in a segment's bytes, skipping padding.
fn fragments(seg: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < seg.len() {
        if seg[pos] == 0 {
            pos = (pos / PAGE_SIZE + 1) * PAGE_SIZE;
            continue;
        }
        let len = u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]) as usize;
        out.push((seg[pos], len));
        pos += HEADER_SIZE + len;
    }
    out
}

fn write(dir: &Path, opts: WalOptions, recs: &[Vec<u8>]) {
    let mut w = Wal::open(dir, opts).unwrap();
    for r in recs {
        w.log_record(r).unwrap();
    }
    w.close().unwrap();
}

fn corruption(e: &WalError) -> &CorruptionError {
    e.as_corruption()
        .unwrap_or_else(|| panic!("not a corruption: {e}"))
}

#[test]
fn golden_fragment_bytes() {
    // The golden series record of record_tests: 28 bytes, CRC32-C 0xe2137703 (computed
    // independently with a bitwise Castagnoli implementation).
    let mut r = Vec::new();
    encode_series(
        &[RefSeries {
            id: 1,
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
        }],
        &mut r,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), PLAIN).unwrap();
    w.log_record(&r).unwrap();
    // Written through: the file holds the fragment before close.
    let bytes = fs::read(segment_path(dir.path(), 0)).unwrap();
    let mut want = vec![0x01, 0x00, 0x1c, 0xe2, 0x13, 0x77, 0x03];
    want.extend_from_slice(&r);
    assert_eq!(bytes, want);
    w.close().unwrap();
    let bytes = fs::read(segment_path(dir.path(), 0)).unwrap();
    assert_eq!(bytes.len(), PAGE_SIZE);
    assert_eq!(&bytes[..want.len()], &want[..]);
    assert!(bytes[want.len()..].iter().all(|&b| b == 0));
}

#[test]
fn compressed_records_read_back_whatever_the_mix() {
    // Compressible sample records (large ones span pages) and incompressible noise,
    // written with each compression into one directory, segment after segment: a reader
    // takes the mix, and noise is stored plain.
    let samples = |n: u64, t0: i64| {
        let s: Vec<RefSample> = (0..n)
            .map(|i| RefSample {
                id: i,
                t: t0 + i as i64,
                v: 1.0,
            })
            .collect();
        let mut b = Vec::new();
        encode_samples(&s, &mut b);
        b
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for (i, compression) in [Compression::Snappy, Compression::Zstd, Compression::None]
        .into_iter()
        .enumerate()
    {
        let recs = vec![
            samples(10, i as i64),
            noise.clone(),
            samples(20_000, 7),
            Vec::new(),
        ];
        let opts = WalOptions {
            compression,
            ..PLAIN
        };
        let mut w = Wal::open(dir.path(), opts).unwrap();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        w.log(&refs).unwrap();
        let written: usize = recs.iter().map(Vec::len).sum();
        match compression {
            Compression::None => assert_eq!(w.bytes_saved(), 0),
            // The 20,000-sample record shrinks by a good part.
            _ => assert!(
                w.bytes_saved() as usize > written / 3,
                "{compression}: {} of {written}",
                w.bytes_saved()
            ),
        }
        w.close().unwrap();
        // Every fragment of segment i carries its record's flag; noise is plain.
        let seg = fs::read(segment_path(dir.path(), i as u64)).unwrap();
        let flags: Vec<u8> = fragments(&seg).iter().map(|(t, _)| t & !0b111).collect();
        let flag = match compression {
            Compression::None => 0,
            Compression::Snappy => 1 << 3,
            Compression::Zstd => 1 << 4,
        };
        assert!(
            flags.contains(&0),
            "{compression}: the noise record is plain"
        );
        assert!(
            flags.iter().all(|&f| f == 0 || f == flag)
                && flags.iter().filter(|&&f| f == flag).count() > 1,
            "{compression}: {flags:?}"
        );
        all.extend(recs);
    }
    assert_eq!(read_dir(dir.path()).unwrap(), all);
}

#[test]
fn fragment_layouts() {
    // (record lengths, expected (type, len) fragments of segment 0)
    let m = MAX_FRAGMENT_LEN;
    type Case = (Vec<usize>, Vec<(u8, usize)>);
    let cases: Vec<Case> = vec![
        (vec![0], vec![(1, 0)]),
        (vec![10, 20], vec![(1, 10), (1, 20)]),
        // Exactly one page.
        (vec![m, 1], vec![(1, m), (1, 1)]),
        // Leaves 3 bytes: padded, the next record starts on the next page.
        (vec![m - 3, 5], vec![(1, m - 3), (1, 5)]),
        // Leaves exactly 7 bytes: a zero-length first fragment, then the last one.
        (vec![m - 7, 10], vec![(1, m - 7), (2, 0), (4, 10)]),
        // Spans three pages.
        (vec![2 * m + 100], vec![(2, m), (3, m), (4, 100)]),
    ];
    for (lens, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
        write(dir.path(), PLAIN, &recs);
        let seg = fs::read(segment_path(dir.path(), 0)).unwrap();
        assert_eq!(fragments(&seg), want, "{lens:?}");
        assert_eq!(seg.len() % PAGE_SIZE, 0);
        assert_eq!(read_dir(dir.path()).unwrap(), recs, "{lens:?}");
    }
}

#[test]
fn records_cross_segment_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..400).map(|i| rec(i, (i * 997) % 9000)).collect();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    // Mix single logs and batches.
    for chunk in recs.chunks(7) {
        let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_slice()).collect();
        w.log(&refs).unwrap();
    }
    let (first, last) = w.segments().unwrap();
    w.close().unwrap();
    assert_eq!(first, 0);
    assert!(last > 5, "{last}");
    let segs = list_segments(dir.path()).unwrap();
    for s in &segs {
        let len = fs::metadata(&s.path).unwrap().len();
        assert!(
            len <= SMALL.segment_size && len % PAGE_SIZE as u64 == 0,
            "{len}"
        );
        // Every segment holds whole records: it reads alone.
        read_all(&mut WalReader::open_range(dir.path(), Some(s.index), Some(s.index)).unwrap())
            .unwrap();
    }
    assert_eq!(read_dir(dir.path()).unwrap(), recs);
    // A sub-range reads a contiguous run of the records.
    let mid = read_all(&mut WalReader::open_range(dir.path(), Some(2), Some(3)).unwrap()).unwrap();
    let at = recs.iter().position(|r| *r == mid[0]).unwrap();
    assert_eq!(&recs[at..at + mid.len()], &mid[..]);
    assert!(matches!(
        WalReader::open_range(dir.path(), Some(0), Some(last + 1)),
        Err(WalError::MissingSegment { .. })
    ));
}

#[test]
fn record_larger_than_segment() {
    let dir = tempfile::tempdir().unwrap();
    let big = rec(1, 5 * PAGE_SIZE + 123);
    let recs = vec![rec(0, 10), big, rec(2, 10)];
    write(dir.path(), SMALL, &recs);
    let segs = list_segments(dir.path()).unwrap();
    assert_eq!(segs.len(), 3);
    let sizes: Vec<u64> = segs
        .iter()
        .map(|s| fs::metadata(&s.path).unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        vec![PAGE_SIZE as u64, 6 * PAGE_SIZE as u64, PAGE_SIZE as u64]
    );
    assert_eq!(read_dir(dir.path()).unwrap(), recs);
}

#[test]
fn reopen_starts_a_new_segment_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    w.log_record(&rec(0, 100)).unwrap();
    w.log_record(&rec(1, 40_000)).unwrap();
    w.sync().unwrap();
    drop(w); // as kill -9: the last page stays partial
    let len0 = fs::metadata(segment_path(dir.path(), 0)).unwrap().len();
    assert_eq!(len0, (100 + 40_000 + 3 * HEADER_SIZE) as u64);
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    assert_eq!(w.current_segment(), 1);
    w.log_record(&rec(2, 5)).unwrap();
    w.close().unwrap();
    assert_eq!(
        read_dir(dir.path()).unwrap(),
        vec![rec(0, 100), rec(1, 40_000), rec(2, 5)]
    );
}

#[test]
fn truncate_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    for _ in 0..3 {
        w.log_record(b"x").unwrap();
        w.next_segment().unwrap();
    }
    assert_eq!(w.segments().unwrap(), (0, 3));
    w.truncate(2).unwrap();
    assert_eq!(w.segments().unwrap(), (2, 3));
    assert!(matches!(
        w.truncate(4),
        Err(WalError::TruncateActive { active: 3, .. })
    ));
    w.truncate(3).unwrap();
    assert_eq!(w.segments().unwrap(), (3, 3));
    w.close().unwrap();
}

#[test]
fn bad_options() {
    let dir = tempfile::tempdir().unwrap();
    for size in [0, 1000, PAGE_SIZE as u64 + 1, 1 << 41] {
        let e = Wal::open(
            dir.path(),
            WalOptions {
                segment_size: size,
                ..PLAIN
            },
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), WalErrorKind::Invalid);
    }
}

/// Writes 30 records over several segments, damages the last segment with `damage`, and
/// checks the reader reports corruption there, repair keeps every record before the
/// damage, and writing continues.
fn check_repair(damage: impl Fn(&mut Vec<u8>, &[u64]), want_reason: fn(&CorruptionReason) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    // 30 records over several segments, then 4 of 25,000 bytes alone in the last one
    // (the third of them starts with a first fragment).
    let mut recs: Vec<Vec<u8>> = (0..30).map(|i| rec(i, 3000 + i * 900)).collect();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    for r in &recs {
        w.log_record(r).unwrap();
    }
    w.next_segment().unwrap();
    for i in 30..34 {
        recs.push(rec(i, 25_000));
        w.log_record(&recs[i]).unwrap();
    }
    drop(w);
    let segs = list_segments(dir.path()).unwrap();
    let last = segs.last().unwrap().clone();
    // Record starts in the last segment.
    let mut starts = Vec::new();
    let mut reader = WalReader::open_range(dir.path(), Some(last.index), None).unwrap();
    while reader.next_record().unwrap().is_some() {
        starts.push(reader.last_position().unwrap().start);
    }
    let before_last = recs.len() - starts.len();
    let mut bytes = fs::read(&last.path).unwrap();
    damage(&mut bytes, &starts);
    fs::write(&last.path, &bytes).unwrap();

    let err = read_dir(dir.path()).unwrap_err();
    let c = corruption(&err).clone();
    assert_eq!(c.location.segment, last.index, "{err}");
    assert!(want_reason(&c.reason), "{err}");

    let w = Wal::open(dir.path(), SMALL).unwrap();
    let (mut w, stats) = w.repair(&c).unwrap();
    assert_eq!(stats.segment, last.index);
    // The record at index 2 of the last segment was damaged: two are kept.
    assert_eq!(stats.kept_records, 2, "{stats:?}");
    assert_eq!(stats.deleted_segments, vec![last.index + 1]);
    assert_eq!(w.current_segment(), last.index + 1);
    w.log_record(b"after").unwrap();
    w.close().unwrap();
    let got = read_dir(dir.path()).unwrap();
    let mut want = recs[..before_last + 2].to_vec();
    want.push(b"after".to_vec());
    assert_eq!(got, want);
}

#[test]
fn repair_flipped_byte() {
    check_repair(
        |b, starts| b[starts[2] as usize + HEADER_SIZE + 10] ^= 0x40,
        |r| matches!(r, CorruptionReason::Checksum { .. }),
    );
}

#[test]
fn repair_chopped_tail() {
    // Cut inside the third record's data.
    check_repair(
        |b, starts| b.truncate(starts[2] as usize + 100),
        |r| matches!(r, CorruptionReason::TruncatedFragment),
    );
}

#[test]
fn repair_torn_between_fragments() {
    // The third record spans pages: keep only its first fragment.
    check_repair(
        |b, starts| {
            let s = starts[2] as usize;
            let len = u16::from_be_bytes([b[s + 1], b[s + 2]]) as usize;
            assert_eq!(b[s], 2, "first fragment");
            b.truncate(s + HEADER_SIZE + len);
        },
        |r| matches!(r, CorruptionReason::TornRecord { .. }),
    );
}

#[test]
fn repair_bad_fragment_type() {
    check_repair(
        |b, starts| b[starts[2] as usize] = 6,
        |r| matches!(r, CorruptionReason::FragmentType(6)),
    );
}

#[test]
fn repair_middle_segment_drops_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..40).map(|i| rec(i, 10_000)).collect();
    write(dir.path(), SMALL, &recs);
    let segs = list_segments(dir.path()).unwrap();
    assert!(segs.len() >= 4);
    let mut b = fs::read(&segs[1].path).unwrap();
    b[PAGE_SIZE + 3] ^= 1; // the header CRC of a fragment, or its data
    fs::write(&segs[1].path, &b).unwrap();
    let err = read_dir(dir.path()).unwrap_err();
    let c = corruption(&err).clone();
    assert_eq!(c.location.segment, 1);
    let stats = repair(dir.path(), &c).unwrap();
    assert_eq!(
        stats.deleted_segments,
        (2..segs.len() as u64).collect::<Vec<_>>()
    );
    let got = read_dir(dir.path()).unwrap();
    assert!(!got.is_empty() && got.len() < recs.len());
    assert_eq!(&recs[..got.len()], &got[..]);
    // The repaired segment ends on a page boundary.
    assert_eq!(
        fs::metadata(&segs[1].path).unwrap().len() % PAGE_SIZE as u64,
        0
    );
}

#[test]
fn repair_refuses_foreign_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let c = CorruptionError {
        location: SegmentLocation {
            dir: None,
            segment: 0,
        },
        offset: 0,
        reason: CorruptionReason::NonZeroPadding,
    };
    assert!(matches!(
        repair(dir.path(), &c),
        Err(WalError::NotRepairable { .. })
    ));
    let other = tempfile::tempdir().unwrap();
    let c = CorruptionError {
        location: SegmentLocation {
            dir: Some(other.path().into()),
            segment: 0,
        },
        ..c
    };
    assert!(matches!(
        repair(dir.path(), &c),
        Err(WalError::NotRepairable { .. })
    ));
}

/// A segment from hand-made fragments.
fn frag(typ: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![typ];
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn reader_cases() {
    type Want = fn(&Result<Vec<Vec<u8>>, WalError>) -> bool;
    let pad = |mut v: Vec<u8>| {
        v.resize(PAGE_SIZE, 0);
        v
    };
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("empty", vec![], |r| r.as_ref().is_ok_and(|v| v.is_empty())),
        ("zero page", vec![0; PAGE_SIZE], |r| {
            r.as_ref().is_ok_and(|v| v.is_empty())
        }),
        ("partial zeros", vec![0; 100], |r| {
            r.as_ref().is_ok_and(|v| v.is_empty())
        }),
        ("full", frag(1, b"abc"), |r| {
            r.as_ref().is_ok_and(|v| v == &[b"abc".to_vec()])
        }),
        (
            "first+last",
            [frag(2, b"ab"), frag(4, b"c")].concat(),
            |r| r.as_ref().is_ok_and(|v| v == &[b"abc".to_vec()]),
        ),
        (
            "padded then record",
            [pad(frag(1, b"a")), frag(1, b"b")].concat(),
            |r| r.as_ref().is_ok_and(|v| v.len() == 2),
        ),
        (
            "middle first",
            frag(3, b"a"),
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::FragmentSequence { .. })),
        ),
        (
            "last first",
            frag(4, b"a"),
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::FragmentSequence { .. })),
        ),
        (
            "first then full",
            [frag(2, b"a"), frag(1, b"b")].concat(),
            |r| matches!(r, Err(WalError::Corruption(c)) if c.offset == 8),
        ),
        (
            "torn",
            frag(2, b"a"),
            |r| matches!(r, Err(WalError::Corruption(c)) if c.reason == CorruptionReason::TornRecord { record_start: 0 }),
        ),
        (
            "short header",
            vec![1, 0],
            |r| matches!(r, Err(WalError::Corruption(c)) if c.reason == CorruptionReason::TruncatedFragment),
        ),
        (
            "bad padding",
            [frag(1, b"a"), vec![0, 0, 5]].concat(),
            |r| matches!(r, Err(WalError::Corruption(c)) if c.reason == CorruptionReason::NonZeroPadding && c.offset == 10),
        ),
        (
            "too long",
            {
                let mut v = frag(1, b"a");
                v[1..3].copy_from_slice(&(PAGE_SIZE as u16).to_be_bytes());
                pad(v)
            },
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::FragmentCrossesPage { .. })),
        ),
        (
            "header across page",
            {
                // A record leaving 3 bytes in the page, then a non-zero byte there.
                let mut v = frag(1, &vec![7u8; PAGE_SIZE - 3 - HEADER_SIZE]);
                v.extend([1, 0, 0]);
                v.extend(frag(1, b"x"));
                v
            },
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::HeaderCrossesPage(3))),
        ),
        (
            "reserved bits",
            frag(0x21, b"a"),
            |r| matches!(r, Err(e @ WalError::ReservedBits { .. }) if e.kind() == WalErrorKind::Unsupported),
        ),
        (
            "snappy flag on bytes that are not snappy",
            frag(0x09, b"a"),
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::Snappy(_) | CorruptionReason::DecompressedTooLarge { .. })),
        ),
        (
            "snappy record claiming a huge size",
            // uvarint 0xFFFFFFFF as the decompressed length.
            frag(0x09, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0]),
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::DecompressedTooLarge { .. } | CorruptionReason::Snappy(_))),
        ),
        (
            "snappy record",
            frag(0x09, &[1, 0, 0]),
            |r| matches!(r, Ok(recs) if recs == &vec![vec![0u8]]),
        ),
        (
            "zstd record that is no zstd frame",
            frag(0x11, b"a"),
            |r| matches!(r, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::Zstd(_))),
        ),
        (
            "mixed compression",
            [frag(0x0a, b"a"), frag(0x04, b"b")].concat(),
            |r| matches!(r, Err(WalError::Corruption(c)) if c.reason == CorruptionReason::MixedCompression),
        ),
    ];
    for (name, seg, want) in cases {
        let got = read_all(&mut WalReader::from_bytes(seg));
        assert!(want(&got), "{name}: {got:?}");
    }
}

#[test]
fn zstd_frames_with_and_without_a_stated_size() {
    let data: Vec<u8> = (0..3000u32).flat_map(|i| (i % 17).to_be_bytes()).collect();
    // The bulk encoder states the size (as Prometheus's does); the streaming one does not.
    let sized = zstd::bulk::compress(&data, 3).unwrap();
    let unsized_ = zstd::stream::encode_all(&data[..], 3).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&unsized_).unwrap(),
        None
    );
    let seg = [frag(0x11, &sized), frag(0x11, &unsized_)].concat();
    let got = read_all(&mut WalReader::from_bytes(seg)).unwrap();
    assert_eq!(got, vec![data.clone(), data]);
}

#[test]
fn raw_records_show_compression() {
    let seg = [frag(0x0a, b"ab"), frag(0x0c, b"c"), frag(1, b"d")].concat();
    let mut r = WalReader::from_bytes(seg);
    let raw = r.next_raw().unwrap().unwrap();
    assert_eq!(
        (raw.data, raw.compression),
        (&b"abc"[..], Compression::Snappy)
    );
    let raw = r.next_raw().unwrap().unwrap();
    assert_eq!((raw.data, raw.compression), (&b"d"[..], Compression::None));
    assert!(r.next_raw().unwrap().is_none());
}

#[test]
fn segment_ending_inside_a_record_is_corrupt_even_with_a_next_segment() {
    let mut r = WalReader::from_memory_segments(vec![frag(2, b"a"), frag(4, b"b")]);
    let e = read_all(&mut r).unwrap_err();
    assert_eq!(corruption(&e).location.segment, 0);
    // After an error the reader is finished.
    assert!(r.next_record().unwrap().is_none());
}

fn keep_even(id: u64) -> bool {
    id.is_multiple_of(2)
}

/// Writes series 1..=6, samples at t = 0..100 step 10 for each, and tombstones.
fn write_history(w: &mut Wal, ids: std::ops::RangeInclusive<u64>, t0: i64) {
    let mut buf = Vec::new();
    let series: Vec<RefSeries> = ids
        .clone()
        .map(|id| RefSeries {
            id,
            labels: Labels::from_pairs(&[("__name__", "m"), ("id", &id.to_string())]),
        })
        .collect();
    encode_series(&series, &mut buf);
    w.log_record(&buf).unwrap();
    for t in (t0..t0 + 100).step_by(10) {
        buf.clear();
        let samples: Vec<RefSample> = ids
            .clone()
            .map(|id| RefSample { id, t, v: t as f64 })
            .collect();
        encode_samples(&samples, &mut buf);
        w.log_record(&buf).unwrap();
    }
    buf.clear();
    let stones: Vec<Stone> = ids
        .map(|id| Stone {
            id,
            mint: t0,
            maxt: t0 + 5 + id as i64 * 10,
        })
        .collect();
    encode_tombstones(&stones, &mut buf);
    w.log_record(&buf).unwrap();
    // An exemplar record, skipped by the checkpoint.
    w.log_record(&[4, 0, 0]).unwrap();
}

fn decode_dir(dir: &Path) -> (Vec<RefSeries>, Vec<RefSample>, Vec<Stone>) {
    let mut r = WalReader::open(dir).unwrap();
    let mut dec = RecordDecoder::new();
    let mut d = DecodedRecord::default();
    let (mut se, mut sa, mut st) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(rec) = r.next_record().unwrap() {
        dec.decode(rec, &mut d).unwrap();
        se.append(&mut d.series);
        sa.append(&mut d.samples);
        st.append(&mut d.tombstones);
    }
    (se, sa, st)
}

#[test]
fn checkpoint_keeps_only_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    write_history(&mut w, 1..=6, 0);
    w.next_segment().unwrap();
    write_history(&mut w, 7..=8, 100);
    w.next_segment().unwrap();
    w.log_record(b"\x02").unwrap(); // segment 2: not checkpointed
    assert_eq!(last_checkpoint(dir.path()).unwrap(), None);

    let stats = checkpoint(dir.path(), 0, 1, keep_even, 50, Compression::Zstd).unwrap();
    assert_eq!(
        stats,
        CheckpointStats {
            total_series: 8,
            dropped_series: 4,
            total_samples: 80,
            dropped_samples: 80 - 5 * 3 - 10,
            total_tombstones: 8,
            dropped_tombstones: 4 + 2, // odd ids; ids 2 and 4 end before 50
            skipped_records: 2,
        }
    );
    let (cp, idx) = last_checkpoint(dir.path()).unwrap().unwrap();
    assert_eq!(
        (cp.file_name().unwrap().to_str().unwrap(), idx),
        ("checkpoint.00000001", 1)
    );
    assert!(cp.join("00000000").is_file());
    let (series, samples, stones) = decode_dir(&cp);
    assert_eq!(
        series.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![2, 4, 6, 8]
    );
    assert_eq!(
        series[3].labels,
        Labels::from_pairs(&[("__name__", "m"), ("id", "8")])
    );
    assert!(samples.iter().all(|s| s.t >= 50 && s.id.is_multiple_of(2)));
    assert_eq!(samples.len(), 25);
    assert_eq!(stones.iter().map(|s| s.id).collect::<Vec<_>>(), vec![6, 8]);

    // The caller truncates; a second checkpoint folds in the first one.
    w.truncate(2).unwrap();
    w.next_segment().unwrap();
    assert!(matches!(
        checkpoint(dir.path(), 3, 3, keep_even, 0, Compression::Snappy),
        Err(WalError::CheckpointGap { .. })
    ));
    assert!(matches!(
        checkpoint(dir.path(), 0, 0, keep_even, 0, Compression::Snappy),
        Err(WalError::CheckpointStale { .. })
    ));
    assert_eq!(
        checkpoint(dir.path(), 0, 1, keep_even, 0, Compression::Snappy).unwrap(),
        CheckpointStats::default()
    );
    fs::create_dir(dir.path().join("checkpoint.00000002.tmp")).unwrap(); // a crash leftover
    let stats = checkpoint(dir.path(), 0, 2, |id| id == 8, 95, Compression::None).unwrap();
    assert_eq!(stats.total_series, 4);
    assert_eq!(stats.dropped_series, 3);
    let cps = list_checkpoints(dir.path()).unwrap();
    assert_eq!(cps.iter().map(|c| c.1).collect::<Vec<_>>(), vec![2]);
    assert!(!dir.path().join("checkpoint.00000002.tmp").exists());
    let (series, samples, _) = decode_dir(&cps[0].0);
    assert_eq!(series.len(), 1);
    assert_eq!(
        samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![100, 110, 120, 130, 140, 150, 160, 170, 180, 190]
    );
    // The empty samples record of segment 2 decoded to nothing and was dropped.
    w.close().unwrap();

    // Replay: checkpoint segments, then WAL segments after it, with one reader.
    let mut files = list_segments(&cps[0].0).unwrap();
    files.extend(
        list_segments(dir.path())
            .unwrap()
            .into_iter()
            .filter(|s| s.index > 2),
    );
    let mut r = WalReader::from_files(files);
    let n = read_all(&mut r).unwrap().len();
    assert_eq!(n, 12); // 1 series, 10 samples, 1 tombstones record; segment 3 is empty
    delete_checkpoints(dir.path(), 3).unwrap();
    assert_eq!(last_checkpoint(dir.path()).unwrap(), None);
    assert_eq!(checkpoint_name(7), "checkpoint.00000007");
}

#[test]
fn checkpoint_fails_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Wal::open(dir.path(), SMALL).unwrap();
    write_history(&mut w, 1..=2, 0);
    w.next_segment().unwrap();
    drop(w);
    let p = segment_path(dir.path(), 0);
    let mut b = fs::read(&p).unwrap();
    b[HEADER_SIZE + 2] ^= 0xff;
    fs::write(&p, &b).unwrap();
    let e = checkpoint(dir.path(), 0, 0, |_| true, 0, Compression::Snappy).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    assert!(list_checkpoints(dir.path()).unwrap().is_empty());
    assert!(!dir.path().join("checkpoint.00000000.tmp").exists());
}

#[test]
fn undecodable_record_is_repairable_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        SMALL,
        &[b"\x01".to_vec(), b"\x02\x00".to_vec(), b"\x01".to_vec()],
    );
    let mut r = WalReader::open(dir.path()).unwrap();
    let mut out = Vec::new();
    r.next_record().unwrap();
    let rec = r.next_record().unwrap().unwrap().to_vec();
    let e = r.record_corruption(decode_samples(&rec, &mut out).unwrap_err());
    let c = corruption(&e).clone();
    assert_eq!(c.offset, 8);
    let stats = repair(dir.path(), &c).unwrap();
    assert_eq!((stats.kept_records, stats.truncated_at), (1, 8));
    assert_eq!(read_dir(dir.path()).unwrap(), vec![b"\x01".to_vec()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn prop_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_all(&mut WalReader::from_bytes(bytes.clone()));
        let mut r = WalReader::from_bytes(bytes);
        while let Ok(Some(_)) = r.next_raw() {}
    }

    /// Any records, any batching, any segment size: read back in order, every segment
    /// whole pages and readable alone.
    #[test]
    fn prop_write_read_round_trip(
        lens in proptest::collection::vec(0usize..70_000, 0..12),
        pages in 1u64..4,
        batch in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions { segment_size: pages * PAGE_SIZE as u64, ..PLAIN };
        let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
        let mut w = Wal::open(dir.path(), opts).unwrap();
        for chunk in recs.chunks(batch) {
            let refs: Vec<&[u8]> = chunk.iter().map(|r| r.as_slice()).collect();
            w.log(&refs).unwrap();
        }
        w.close().unwrap();
        prop_assert_eq!(read_dir(dir.path()).unwrap(), recs);
        for s in list_segments(dir.path()).unwrap() {
            let len = fs::metadata(&s.path).unwrap().len();
            prop_assert_eq!(len % PAGE_SIZE as u64, 0);
            read_all(&mut WalReader::open_range(dir.path(), Some(s.index), Some(s.index)).unwrap()).unwrap();
        }
    }

    /// Valid segments with a few bytes changed: never a panic, and every record read
    /// before an error is one that was written (CRCs catch the rest).
    #[test]
    fn prop_mutated_segments(
        lens in proptest::collection::vec(0usize..40_000, 1..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| rec(i, l)).collect();
        write(dir.path(), PLAIN, &recs);
        let mut seg = fs::read(segment_path(dir.path(), 0)).unwrap();
        let no_flips = flips.is_empty();
        for (at, x) in flips {
            let n = seg.len();
            seg[at % n] ^= x;
        }
        if let Some(c) = cut {
            let n = seg.len();
            seg.truncate(c % n);
        }
        // Only a cut keeps the records read exact: a flipped type byte is not covered by
        // the CRC (as in Prometheus), so a first fragment can pass as a full record.
        let exact = no_flips;
        let mut r = WalReader::from_bytes(seg);
        let mut i = 0;
        while let Ok(Some(got)) = r.next_raw() {
            if exact {
                prop_assert!(i < recs.len());
                prop_assert_eq!(got.data, &recs[i][..]);
            }
            i += 1;
        }
    }
}

/// Found by the `wal_reader` fuzz target: a 13-byte segment whose snappy record claims
/// hundreds of MiB must be rejected before anything is allocated.
#[test]
fn snappy_claim_beyond_max_expansion_is_corrupt() {
    let seg = vec![
        0x09, 0x00, 0x06, 0xef, 0xa5, 0x38, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00,
    ];
    let got = read_all(&mut WalReader::from_bytes(seg));
    assert!(
        matches!(&got, Err(WalError::Corruption(c)) if matches!(c.reason, CorruptionReason::DecompressedTooLarge { .. })),
        "{got:?}"
    );
}
