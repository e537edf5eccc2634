//! Arbitrary bytes as one WAL segment: reading records (framing, CRCs, snappy) and
//! decoding them (series, samples, tombstones) must give data or `Err`, never panic.
//! `RecordDecoder::decode` must agree with the per-type decode functions.
//! Each input runs as is and with its checksums recomputed (see `common.rs`).
#![no_main]

use kiln_tsdb::wal::WalReader;
use kiln_tsdb::wal::record::{self, DecodedRecord, RecordDecoder, RecordType};
use libfuzzer_sys::fuzz_target;

mod common;

use common::LIMIT;

fuzz_target!(|data: &[u8]| {
    for input in common::variants(data, common::fix_wal_segment) {
        run(&input);
    }
});

fn run(data: &[u8]) {
    let mut reader = WalReader::from_bytes(data.to_vec());
    let mut dec = RecordDecoder::new();
    let mut out = DecodedRecord::default();
    let (mut series, mut samples, mut stones) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LIMIT {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec.to_vec(),
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        };
        let _ = reader.last_position();
        let typed = dec.decode(&rec, &mut out);
        if let Err(e) = &typed {
            let _ = reader.record_corruption(e.clone()).to_string();
        }
        match record::record_type(&rec) {
            RecordType::Series => {
                let r = record::decode_series(&rec, &mut series);
                assert_eq!(r.is_ok(), typed.is_ok());
                assert_eq!(series, out.series);
            }
            RecordType::Samples => {
                let r = record::decode_samples(&rec, &mut samples);
                assert_eq!(r.is_ok(), typed.is_ok());
                let bits = |v: &[record::RefSample]| -> Vec<(u64, i64, u64)> {
                    v.iter().map(|s| (s.id, s.t, s.v.to_bits())).collect()
                };
                assert_eq!(bits(&samples), bits(&out.samples));
            }
            RecordType::Tombstones => {
                let r = record::decode_tombstones(&rec, &mut stones);
                assert_eq!(r.is_ok(), typed.is_ok());
                assert_eq!(stones, out.tombstones);
            }
            other => {
                assert_eq!(typed, Ok(other));
                assert!(
                    out.series.is_empty() && out.samples.is_empty() && out.tombstones.is_empty()
                );
                // The typed decoders must reject a record of another type.
                assert!(record::decode_series(&rec, &mut series).is_err());
                assert!(record::decode_samples(&rec, &mut samples).is_err());
                assert!(record::decode_tombstones(&rec, &mut stones).is_err());
            }
        }
    }

    // The raw view of the same bytes: same framing, no decompression.
    let mut raw = WalReader::from_bytes(data.to_vec());
    for _ in 0..LIMIT {
        match raw.next_raw() {
            Ok(Some(r)) => {
                let _ = r.data.len();
            }
            _ => break,
        }
    }
}
