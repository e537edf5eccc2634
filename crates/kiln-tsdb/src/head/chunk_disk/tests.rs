//! Tests of the head chunk store.

#![allow(clippy::unwrap_used)]

use super::*;

fn opts(max_file_size: usize, write_buffer_size: usize) -> ChunkDiskMapperOptions {
    ChunkDiskMapperOptions {
        max_file_size,
        write_buffer_size,
    }
}

/// Chunk data for test chunk `i`: a 2-byte sample count, then a pattern, 4..=300 bytes.
fn data_for(i: u64) -> Vec<u8> {
    let len = 4 + (i * 37 % 297) as usize;
    let mut d = vec![0u8; len];
    d[..2].copy_from_slice(&((i % 121) as u16).to_be_bytes());
    for (j, b) in d.iter_mut().enumerate().skip(2) {
        *b = (i as usize * 31 + j * 7) as u8;
    }
    d
}

struct Written {
    chunk_ref: u64,
    series_ref: u64,
    mint: i64,
    maxt: i64,
    encoding: u8,
    data: Vec<u8>,
}

fn write_n(m: &ChunkDiskMapper, n: u64, start: u64) -> Vec<Written> {
    (start..start + n)
        .map(|i| {
            let data = data_for(i);
            let (series_ref, mint, maxt) =
                (i % 13 + 1, i as i64 * 1000 - 5000, i as i64 * 1000 + 999);
            let encoding = if i % 5 == 0 { 1 | OUT_OF_ORDER_MASK } else { 1 };
            let chunk_ref = m
                .write_chunk(series_ref, mint, maxt, encoding, &data)
                .expect("write");
            Written {
                chunk_ref,
                series_ref,
                mint,
                maxt,
                encoding,
                data,
            }
        })
        .collect()
}

fn check_reads(m: &ChunkDiskMapper, written: &[Written]) {
    for w in written {
        let got = m.chunk(w.chunk_ref).expect("read");
        assert_eq!(&*got, &w.data[..], "ref {:#x}", w.chunk_ref);
    }
}

fn check_iterate(m: &ChunkDiskMapper, written: &[Written]) {
    let mut seen = Vec::new();
    m.iterate(|meta| {
        seen.push(meta);
        Ok::<_, HeadChunksError>(())
    })
    .expect("iterate");
    assert_eq!(seen.len(), written.len());
    for (meta, w) in seen.iter().zip(written) {
        let want = ChunkMetaOnDisk {
            series_ref: w.series_ref,
            chunk_ref: w.chunk_ref,
            mint: w.mint,
            maxt: w.maxt,
            encoding: w.encoding,
            num_samples: u16::from_be_bytes([w.data[0], w.data[1]]),
        };
        assert_eq!(*meta, want);
    }
}

fn files_in(dir: &Path) -> Vec<(u64, PathBuf)> {
    list_files(dir).expect("list")
}

/// CRC32-Castagnoli written out bit by bit (reflected polynomial 0x82F63B78), to
/// derive golden bytes without the crate under test.
fn crc32c_by_hand(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn golden_file_bytes() {
    assert_eq!(
        crc32c_by_hand(b"123456789"),
        0xE306_9283,
        "CRC-32C check value"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open(dir.path()).expect("open");
    let data = [0x00, 0x02, 0xAA, 0xBB, 0xCC];
    let r = m.write_chunk(1, -1, 2000, 1, &data).expect("write");
    assert_eq!(r, (1 << 32) | 8, "file 1, right after the 8-byte header");
    m.close().expect("close");

    #[rustfmt::skip]
    let mut want = vec![
        0x01, 0x30, 0xBC, 0x91,                         // magic
        0x01,                                           // version
        0x00, 0x00, 0x00,                               // padding
        0, 0, 0, 0, 0, 0, 0, 1,                         // series ref 1
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // mint -1
        0, 0, 0, 0, 0, 0, 0x07, 0xD0,                   // maxt 2000
        0x01,                                           // encoding XOR
        0x05,                                           // len uvarint
        0x00, 0x02, 0xAA, 0xBB, 0xCC,                   // data
    ];
    // The CRC covers series ref through data (bytes 8..), stored big-endian.
    let crc = crc32c_by_hand(&want[8..]);
    assert_eq!(crc, 0x3057_2B72);
    want.extend_from_slice(&crc.to_be_bytes());
    let got = fs::read(dir.path().join("000001")).expect("read file");
    assert_eq!(got, want);
}

#[test]
fn refs_and_names() {
    assert_eq!(chunk_ref(3, 8), 0x0000_0003_0000_0008);
    assert_eq!(unpack_ref(0x0000_0003_0000_0008), (3, 8));
    assert_eq!(file_name(1), "000001");
    assert_eq!(file_name(1_234_567), "1234567");
}

#[test]
fn round_trip_across_files_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(4096, 1000);
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open");
    let written = write_n(&m, 400, 0);
    // Readable at once, whether buffered or flushed, and twice (no leaked state).
    check_reads(&m, &written);
    check_reads(&m, &written);
    let files = files_in(dir.path());
    assert!(files.len() > 10, "{} files", files.len());
    for (_, p) in &files {
        assert!(fs::metadata(p).expect("stat").len() <= 4096);
    }
    // Refs name consecutive files, offsets grow within a file.
    for pair in written.windows(2) {
        let ((s0, o0), (s1, o1)) = (unpack_ref(pair[0].chunk_ref), unpack_ref(pair[1].chunk_ref));
        assert!((s1 == s0 && o1 > o0) || (s1 == s0 + 1 && o1 == 8));
    }
    check_iterate(&m, &written);
    let size = m.size_bytes();
    m.close().expect("close");
    let disk: u64 = files_in(dir.path())
        .iter()
        .map(|(_, p)| fs::metadata(p).expect("stat").len())
        .sum();
    assert_eq!(size, disk);

    let m = ChunkDiskMapper::open_with_options(dir.path(), o).expect("reopen");
    check_iterate(&m, &written);
    check_reads(&m, &written);
    // A reopened store never appends to an old file.
    let last_seq = files.last().map(|(s, _)| *s).expect("files");
    let more = write_n(&m, 5, 400);
    assert_eq!(unpack_ref(more[0].chunk_ref), (last_seq + 1, 8));
    check_reads(&m, &more);
    drop(m); // Drop writes the buffer out.
    let m = ChunkDiskMapper::open(dir.path()).expect("reopen after drop");
    let all: Vec<Written> = written.into_iter().chain(more).collect();
    check_iterate(&m, &all);
}

/// Chunks encoded apart and stored in batches (a shutdown's open chunks) make the same
/// files as chunks written one by one: same bytes, refs across file cuts, readable and
/// iterated back; a chunk that cannot be stored is refused when encoded.
#[test]
fn encoded_batches_make_the_same_files_as_single_writes() {
    let one_by_one = tempfile::tempdir().expect("tempdir");
    let batched = tempfile::tempdir().expect("tempdir");
    let o = opts(4096, 1000);
    let m = ChunkDiskMapper::open_with_options(one_by_one.path(), o.clone()).expect("open");
    let written = write_n(&m, 300, 0);
    m.close().expect("close");

    let m = ChunkDiskMapper::open_with_options(batched.path(), o).expect("open");
    let mut encoded = EncodedChunks::default();
    let mut refs = Vec::new();
    for piece in written.chunks(37) {
        encoded.clear();
        for w in piece {
            m.encode_chunk(
                &mut encoded,
                w.series_ref,
                w.mint,
                w.maxt,
                w.encoding,
                &w.data,
            )
            .expect("encode");
        }
        refs.extend(m.write_encoded(&encoded).expect("write batch"));
    }
    let want: Vec<u64> = written.iter().map(|w| w.chunk_ref).collect();
    assert_eq!(refs, want);
    check_reads(&m, &written);
    check_iterate(&m, &written);
    m.close().expect("close");
    let (a, b) = (files_in(one_by_one.path()), files_in(batched.path()));
    assert_eq!(a.len(), b.len());
    for ((_, pa), (_, pb)) in a.iter().zip(&b) {
        assert_eq!(fs::read(pa).expect("read"), fs::read(pb).expect("read"));
    }

    let m = ChunkDiskMapper::open_with_options(batched.path(), opts(4096, 1000)).expect("open");
    let mut encoded = EncodedChunks::default();
    for (series_ref, data) in [(0, vec![0; 8]), (1, vec![0; 2]), (1, vec![0; 5000])] {
        let e = m
            .encode_chunk(&mut encoded, series_ref, 0, 1, 1, &data)
            .expect_err("refused");
        assert!(matches!(e, HeadChunksError::InvalidChunk { .. }), "{e:?}");
    }
    assert!(
        m.write_encoded(&encoded)
            .expect("nothing to write")
            .is_empty()
    );
}

#[test]
fn buffered_chunks_and_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open(dir.path()).expect("open");
    let written = write_n(&m, 50, 0);
    // Everything is still buffered: only the header is on disk.
    assert_eq!(
        fs::metadata(dir.path().join("000001")).expect("stat").len(),
        8
    );
    let got = m.chunk(written[7].chunk_ref).expect("read");
    assert!(format!("{got:?}").contains("owned"));
    assert_eq!(&*got, &written[7].data[..]);
    m.flush().expect("flush");
    let got = m.chunk(written[7].chunk_ref).expect("read");
    assert!(format!("{got:?}").contains("mapped"));
    assert_eq!(got.as_ref(), &written[7].data[..]);
    assert_eq!(
        fs::metadata(dir.path().join("000001")).expect("stat").len(),
        m.size_bytes()
    );
    // Writes after a flush extend the same file; both parts stay readable.
    let more = write_n(&m, 50, 50);
    check_reads(&m, &written);
    check_reads(&m, &more);
}

#[test]
fn torn_tail_of_last_file_is_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(2048, 0);
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open");
    let written = write_n(&m, 60, 0);
    m.close().expect("close");
    let (last_seq, last) = files_in(dir.path()).pop().expect("files");
    let full = fs::read(&last).expect("read");
    let in_last: Vec<&Written> = written
        .iter()
        .filter(|w| unpack_ref(w.chunk_ref).0 == last_seq)
        .collect();
    assert!(in_last.len() >= 2);
    let last_start = unpack_ref(in_last[in_last.len() - 1].chunk_ref).1 as usize;
    // Cut the file at every byte inside its last record.
    for cut in last_start + 1..full.len() {
        fs::write(&last, &full[..cut]).expect("write");
        let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("repairing open");
        assert_eq!(
            fs::metadata(&last).expect("stat").len() as usize,
            last_start,
            "cut at {cut}"
        );
        assert!(m.lost_chunks(), "cut at {cut}");
        check_iterate(&m, &written[..written.len() - 1]);
        check_reads(&m, &written[..written.len() - 1]);
        let lost = m
            .chunk(written[written.len() - 1].chunk_ref)
            .expect_err("torn chunk is gone");
        assert!(matches!(lost, HeadChunksError::BadRef { .. }), "{lost}");
        drop(m);
        fs::write(&last, &full).expect("restore");
    }
    // Garbage appended to the last file goes too.
    let mut garbage = full.clone();
    garbage.extend_from_slice(&[0xAB; 100]);
    fs::write(&last, &garbage).expect("write");
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open");
    assert_eq!(fs::read(&last).expect("read"), full);
    assert!(m.lost_chunks(), "garbage counts as damage");
    check_iterate(&m, &written);
    // New writes go to a new file and everything survives another reopen.
    let more = write_n(&m, 3, 60);
    assert_eq!(unpack_ref(more[0].chunk_ref).0, last_seq + 1);
    m.close().expect("close");
    let m = ChunkDiskMapper::open_with_options(dir.path(), o).expect("open");
    let all: Vec<Written> = written.into_iter().chain(more).collect();
    check_iterate(&m, &all);
}

#[test]
fn last_file_without_header_is_removed() {
    for content in [&b""[..], &[0x01, 0x30, 0xBC][..], &[0u8; 64][..]] {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = ChunkDiskMapper::open(dir.path()).expect("open");
        let written = write_n(&m, 3, 0);
        m.close().expect("close");
        fs::write(dir.path().join("000002"), content).expect("write");
        let m = ChunkDiskMapper::open(dir.path()).expect("open");
        assert!(!dir.path().join("000002").exists());
        assert!(!m.lost_chunks(), "a file without a header held no chunk");
        check_iterate(&m, &written);
        // The freed sequence is reused, keeping files consecutive.
        let r = m.write_chunk(1, 0, 1, 1, &[0, 1, 2, 3]).expect("write");
        assert_eq!(unpack_ref(r).0, 2);
    }
}

#[test]
fn zero_padding_from_prometheus_is_the_end_of_data() {
    // Prometheus pre-allocates files, leaving zeros after the last record.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(4096, 0);
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open");
    let written = write_n(&m, 40, 0);
    m.close().expect("close");
    let files = files_in(dir.path());
    let mut data_lens = Vec::new();
    for (_, p) in &files {
        let mut b = fs::read(p).expect("read");
        data_lens.push(b.len() as u64);
        b.resize(b.len() + 3000, 0);
        fs::write(p, &b).expect("write");
    }
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open padded");
    // Older files keep their padding (it counts as disk use); the newest is trimmed.
    let disk: Vec<u64> = files
        .iter()
        .map(|(_, p)| fs::metadata(p).expect("stat").len())
        .collect();
    assert_eq!(m.size_bytes(), disk.iter().sum::<u64>());
    let n = disk.len();
    assert!(n >= 2);
    assert!(
        disk[..n - 1]
            .iter()
            .zip(&data_lens)
            .all(|(d, l)| *d == l + 3000)
    );
    assert_eq!(disk[n - 1], data_lens[n - 1]);
    check_iterate(&m, &written);
    check_reads(&m, &written);
    assert!(
        m.lost_chunks(),
        "bytes trimmed off the newest file may have been a torn record"
    );
    drop(m);
    // Non-zero bytes after the padding of an older file are damage: the file keeps its
    // records, the padding goes, and so does every later file.
    let (first_seq, first) = &files[0];
    let mut b = fs::read(first).expect("read");
    let n = b.len();
    b[n - 10] = 7;
    fs::write(first, &b).expect("write");
    let m = ChunkDiskMapper::open_with_options(dir.path(), o).expect("open drops the damage");
    assert!(m.lost_chunks());
    assert_eq!(files_in(dir.path()), vec![(*first_seq, first.clone())]);
    assert_eq!(fs::metadata(first).expect("stat").len(), data_lens[0]);
    let in_first = written
        .iter()
        .take_while(|w| unpack_ref(w.chunk_ref).0 == *first_seq)
        .count();
    check_iterate(&m, &written[..in_first]);
}

#[test]
fn damage_in_an_older_file_drops_it_from_there_and_every_later_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = opts(1024, 0);
    let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone()).expect("open");
    let written = write_n(&m, 30, 0);
    m.close().expect("close");
    let files = files_in(dir.path());
    assert!(files.len() >= 3);
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|(_, p)| fs::read(p).expect("read"))
        .collect();
    let restore = || {
        for ((_, p), bytes) in files.iter().zip(&originals) {
            fs::write(p, bytes).expect("restore");
        }
    };
    let (seq, path) = &files[0];
    let starts: Vec<u64> = written
        .iter()
        .filter(|w| unpack_ref(w.chunk_ref).0 == *seq)
        .map(|w| unpack_ref(w.chunk_ref).1)
        .collect();
    // Flip every byte of the oldest file in turn: the file keeps the records before the
    // flipped one (none for a flip in the header, which removes the file), and every
    // later file goes.
    for at in 0..originals[0].len() {
        restore();
        let mut b = originals[0].clone();
        b[at] ^= 0x40;
        fs::write(path, &b).expect("write");
        let m = ChunkDiskMapper::open_with_options(dir.path(), o.clone())
            .unwrap_or_else(|e| panic!("flip at {at}: {e}"));
        if (5..=7).contains(&at) {
            // The 3 padding bytes of the header are not checked (as in Prometheus).
            assert!(!m.lost_chunks());
            check_iterate(&m, &written);
            continue;
        }
        assert!(m.lost_chunks(), "flip at {at} not detected");
        let kept = if at < HEADER_SIZE {
            assert!(files_in(dir.path()).is_empty(), "flip at {at}");
            0
        } else {
            assert_eq!(files_in(dir.path()), vec![(*seq, path.clone())]);
            let damaged = starts
                .iter()
                .rposition(|s| *s as usize <= at)
                .expect("a record");
            assert_eq!(
                fs::metadata(path).expect("stat").len(),
                starts[damaged],
                "flip at {at}: cut where the damaged record starts"
            );
            damaged
        };
        check_iterate(&m, &written[..kept]);
        check_reads(&m, &written[..kept]);
        // New chunks go to the file after the last one kept.
        let r = m.write_chunk(1, 0, 1, 1, &[0, 1, 2, 3]).expect("write");
        assert_eq!(unpack_ref(r).0, if at < HEADER_SIZE { 1 } else { seq + 1 });
    }
    restore();
    let m = ChunkDiskMapper::open_with_options(dir.path(), o).expect("open");
    assert!(!m.lost_chunks());
    check_iterate(&m, &written);
}

#[test]
fn a_gap_in_the_sequence_drops_the_files_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open_with_options(dir.path(), opts(512, 0)).expect("open");
    let written = write_n(&m, 20, 0);
    m.close().expect("close");
    assert!(files_in(dir.path()).len() >= 4);
    fs::remove_file(dir.path().join("000002")).expect("remove");
    let m = ChunkDiskMapper::open(dir.path()).expect("open drops the files after the gap");
    assert!(m.lost_chunks());
    assert_eq!(
        files_in(dir.path()),
        vec![(1, dir.path().join("000001"))],
        "only the files before the gap stay"
    );
    let in_first = written
        .iter()
        .take_while(|w| unpack_ref(w.chunk_ref).0 == 1)
        .count();
    check_iterate(&m, &written[..in_first]);
}

#[test]
fn truncate_deletes_old_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open_with_options(dir.path(), opts(1024, 300)).expect("open");
    let written = write_n(&m, 100, 0);
    let nfiles = files_in(dir.path()).len();
    assert!(nfiles >= 5);
    // A reader holding a chunk of a file about to go keeps its bytes.
    let held = m.chunk(written[0].chunk_ref).expect("read");
    let before = m.size_bytes();
    let cutoff = written[50].maxt + 1; // chunks 0..=50 end before it
    let deleted = m.truncate(cutoff).expect("truncate");
    assert!(deleted >= 1);
    assert!(m.size_bytes() < before);
    assert_eq!(&*held, &written[0].data[..]);
    let remaining = files_in(dir.path());
    assert_eq!(remaining.len(), nfiles - deleted);
    for w in &written {
        let (seq, _) = unpack_ref(w.chunk_ref);
        if seq < remaining[0].0 {
            assert!(w.maxt < cutoff);
            let e = m.chunk(w.chunk_ref).expect_err("deleted");
            assert!(matches!(e, HeadChunksError::RefNotFound { .. }), "{e}");
            assert_eq!(e.kind(), ErrorKind::NotFound);
        } else {
            assert_eq!(&*m.chunk(w.chunk_ref).expect("kept"), &w.data[..]);
        }
    }
    // Everything kept holds a chunk reaching the cutoff or later.
    let first_kept = written
        .iter()
        .position(|w| unpack_ref(w.chunk_ref).0 == remaining[0].0)
        .expect("kept");
    assert!(written[first_kept..].iter().any(|w| w.maxt >= cutoff));
    // Truncating past everything finishes the active file and deletes it too.
    let last_seq = remaining.last().map(|(s, _)| *s).expect("files");
    assert_eq!(m.truncate(i64::MAX).expect("truncate all"), remaining.len());
    assert!(files_in(dir.path()).is_empty());
    assert_eq!(m.size_bytes(), 0);
    let more = write_n(&m, 3, 100);
    assert_eq!(unpack_ref(more[0].chunk_ref).0, last_seq + 1);
    check_reads(&m, &more);
    m.close().expect("close");
    let m = ChunkDiskMapper::open(dir.path()).expect("reopen");
    check_iterate(&m, &more);
}

#[test]
fn bad_input_and_bad_refs_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open_with_options(dir.path(), opts(1024, 0)).expect("open");
    for (series, data) in [
        (0u64, vec![0u8; 10]),
        (1, vec![0u8; 3]),
        (1, vec![0u8; 1024]),
    ] {
        let e = m.write_chunk(series, 0, 1, 1, &data).expect_err("invalid");
        assert!(matches!(e, HeadChunksError::InvalidChunk { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::BadData);
    }
    let written = write_n(&m, 5, 0);
    assert_eq!(
        &*m.chunk(written[2].chunk_ref).expect("read"),
        &written[2].data[..]
    );
    let end_of_data = (1 << 32) | m.size_bytes();
    for bad in [
        end_of_data,
        0,
        1 << 32,
        (1 << 32) | 7,
        (1 << 32) | 0xFFFF_FFFF,
        99 << 32,
    ] {
        let e = m.chunk(bad).expect_err("bad ref");
        assert!(
            matches!(
                e,
                HeadChunksError::BadRef { .. } | HeadChunksError::RefNotFound { .. }
            ),
            "{e}"
        );
    }
    m.flush().expect("flush");
    // Every offset in the file: an error or some bytes inside the file, never a panic.
    let len = fs::metadata(dir.path().join("000001")).expect("stat").len();
    for off in 0..len + 10 {
        if let Ok(b) = m.chunk((1 << 32) | off) {
            assert!(b.len() as u64 <= len);
        }
    }
    assert!(ChunkDiskMapper::open_with_options(dir.path(), opts(10, 0)).is_err());
    assert!(ChunkDiskMapper::open_with_options(dir.path(), opts(1 << 33, 0)).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let header = file_header();
    for case in 0..300 {
        let dir = tempfile::tempdir().expect("tempdir");
        let len = (rand() % 600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        if case % 2 == 0 {
            // Mostly valid: a header and plausible record starts.
            bytes.splice(0..len.min(8), header);
            if case % 4 == 0 && bytes.len() > 40 {
                bytes[8..32].fill(0);
                bytes[8 + 7] = 1;
            }
        }
        // As the only (last) file, and as an older file followed by a good one.
        fs::write(dir.path().join("000001"), &bytes).expect("write");
        for older in [false, true] {
            if older {
                let _ = fs::remove_dir_all(dir.path());
                fs::create_dir_all(dir.path()).expect("mkdir");
                fs::write(dir.path().join("000001"), &bytes).expect("write");
                fs::write(dir.path().join("000002"), header).expect("write");
            }
            if let Ok(m) = ChunkDiskMapper::open(dir.path()) {
                let mut refs = Vec::new();
                m.iterate(|meta| {
                    refs.push(meta.chunk_ref);
                    Ok::<_, HeadChunksError>(())
                })
                .expect("iterate after a successful open");
                for r in refs {
                    m.chunk(r).expect("iterated ref reads");
                }
                for _ in 0..20 {
                    let _ = m.chunk((1 << 32) | (rand() % 700));
                }
            }
        }
    }
}

#[test]
fn concurrent_readers_and_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m =
        Arc::new(ChunkDiskMapper::open_with_options(dir.path(), opts(8192, 2000)).expect("open"));
    let refs = Arc::new(RwLock::new(Vec::<(u64, Vec<u8>)>::new()));
    std::thread::scope(|s| {
        let (mw, rw) = (Arc::clone(&m), Arc::clone(&refs));
        s.spawn(move || {
            for i in 0..2000 {
                let d = data_for(i);
                let r = mw.write_chunk(i + 1, 0, 1, 1, &d).expect("write");
                rw.write().push((r, d));
            }
        });
        for _ in 0..2 {
            let (mr, rr) = (Arc::clone(&m), Arc::clone(&refs));
            s.spawn(move || {
                for i in 0..4000usize {
                    let pick = {
                        let v = rr.read();
                        if v.is_empty() {
                            None
                        } else {
                            Some(v[i * 7919 % v.len()].clone())
                        }
                    };
                    if let Some((r, d)) = pick {
                        assert_eq!(&*mr.chunk(r).expect("read"), &d[..]);
                    }
                }
            });
        }
    });
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ChunkDiskMapper>();
    assert_send_sync::<ChunkBytes>();
}

#[test]
fn a_failed_write_disables_writes_and_the_next_open_discards_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chunks_head");
    let m = ChunkDiskMapper::open_with_options(&dir, opts(4096, 512)).unwrap();
    write_n(&m, 10, 0);
    // Take the directory away: the next file cut or flush cannot create its file.
    fs::rename(&dir, tmp.path().join("gone")).unwrap();
    let mut failed = false;
    for i in 0..200u64 {
        if m.write_chunk(1, i as i64, i as i64, 1, &data_for(i))
            .is_err()
        {
            failed = true;
            break;
        }
    }
    assert!(failed, "a write fails once its file cannot be created");
    fs::rename(tmp.path().join("gone"), &dir).unwrap();
    let e = m.write_chunk(1, 1_000, 1_000, 1, &data_for(1)).unwrap_err();
    assert!(matches!(e, HeadChunksError::WritesDisabled { .. }), "{e}");
    drop(m);

    // A marker from a failed run makes the next open start from empty files.
    fs::write(dir.join(WRITE_FAILED_MARKER), b"").unwrap();
    let m = ChunkDiskMapper::open_with_options(&dir, opts(4096, 512)).unwrap();
    let mut n = 0;
    m.iterate(|_| -> Result<(), HeadChunksError> {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 0, "old chunk files were discarded");
    assert!(!dir.join(WRITE_FAILED_MARKER).exists());
    write_n(&m, 3, 0);
}

#[test]
fn a_trusted_open_fingerprints_the_chunks_from_a_time_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = ChunkDiskMapper::open(dir.path()).expect("open");
    // 3,000 records of 700-odd bytes: one file of about 2 MiB, so records run across the
    // 1 MiB pieces the check reads.
    let written: Vec<(u64, u64, i64, i64)> = (0..3000u64)
        .map(|i| {
            let data = vec![(i % 251) as u8; 700 + (i % 7) as usize];
            let (series, mint) = (i % 13 + 1, i as i64 * 1000);
            let r = m
                .write_chunk(series, mint, mint + 999, 1, &data)
                .expect("write");
            (r, series, mint, mint + 999)
        })
        .collect();
    let extents = m.close().expect("close");
    assert_eq!(extents.len(), 1);
    assert!(extents[0].readable_len > 2 << 20);
    for from in [i64::MIN, 1_500_000, i64::MAX] {
        let mut want = ChunkFingerprint::default();
        for &(r, series, mint, maxt) in written.iter().filter(|w| w.3 >= from) {
            want.add(r, series, mint, maxt);
        }
        let (m, got) = ChunkDiskMapper::open_trusted(dir.path(), &extents, from)
            .expect("open")
            .expect("files as recorded");
        assert_eq!(got, want, "from {from}");
        let (r, ..) = written[2999];
        assert_eq!(
            m.chunk(r).expect("read")[..],
            vec![(2999 % 251) as u8; 700 + 2999 % 7]
        );
    }
    // One chunk fewer, or one more, changes the fingerprint.
    let mut fewer = ChunkFingerprint::default();
    for &(r, series, mint, maxt) in &written[1..] {
        fewer.add(r, series, mint, maxt);
    }
    let (_, all) = ChunkDiskMapper::open_trusted(dir.path(), &extents, i64::MIN)
        .expect("open")
        .expect("files as recorded");
    assert_ne!(fewer, all);

    // A changed byte or a wrong recorded length: not the files recorded.
    let path = &files_in(dir.path())[0].1;
    let mut bytes = fs::read(path).expect("read");
    bytes[1 << 20] ^= 1;
    fs::write(path, &bytes).expect("write");
    assert!(
        ChunkDiskMapper::open_trusted(dir.path(), &extents, i64::MIN)
            .expect("open")
            .is_none()
    );
    bytes[1 << 20] ^= 1;
    fs::write(path, &bytes).expect("write");
    let mut short = extents.clone();
    short[0].readable_len -= 1;
    assert!(
        ChunkDiskMapper::open_trusted(dir.path(), &short, i64::MIN)
            .expect("open")
            .is_none()
    );
}
