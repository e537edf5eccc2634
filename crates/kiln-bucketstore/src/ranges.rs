//! Coalescing byte ranges into fewer reads.
//!
//! Object stores charge per request and answer each after tens of milliseconds, so
//! nearby ranges of one object are read together: ranges closer than a gap are merged
//! into one read, as Thanos's store does (its default gap is 512 KiB). A merged read
//! never grows past [`MAX_READ`] unless a single range is larger.

use std::ops::Range;

/// Ranges closer than this are read together.
pub(crate) const MAX_GAP: u64 = 512 << 10;
/// A merged read stops growing at this size.
pub(crate) const MAX_READ: u64 = 32 << 20;

/// One read: the byte range, and the indexes (into the input) of the ranges it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    pub(crate) range: Range<u64>,
    pub(crate) parts: Vec<usize>,
}

/// Groups `ranges` (any order, may overlap) into reads.
pub(crate) fn coalesce(ranges: &[Range<u64>]) -> Vec<Read> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| (ranges[i].start, ranges[i].end));
    let mut out: Vec<Read> = Vec::new();
    for i in order {
        let r = &ranges[i];
        if let Some(last) = out.last_mut()
            && r.start <= last.range.end.saturating_add(MAX_GAP)
            && r.end.max(last.range.end) - last.range.start <= MAX_READ
        {
            last.range.end = last.range.end.max(r.end);
            last.parts.push(i);
            continue;
        }
        out.push(Read {
            range: r.clone(),
            parts: vec![i],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_ranges_merge_and_far_ones_do_not() {
        let ranges = vec![
            100..200,
            0..50,
            50..60,
            200 + MAX_GAP + 1..200 + MAX_GAP + 10,
        ];
        let reads = coalesce(&ranges);
        assert_eq!(
            reads,
            vec![
                Read {
                    range: 0..200,
                    parts: vec![1, 2, 0]
                },
                Read {
                    range: 200 + MAX_GAP + 1..200 + MAX_GAP + 10,
                    parts: vec![3]
                },
            ]
        );
    }

    #[test]
    fn reads_stop_growing_at_the_limit() {
        let ranges: Vec<Range<u64>> = (0..5)
            .map(|i| i * (MAX_READ / 2)..(i + 1) * (MAX_READ / 2))
            .collect();
        let reads = coalesce(&ranges);
        assert!(
            reads
                .iter()
                .all(|r| r.range.end - r.range.start <= MAX_READ)
        );
        assert_eq!(reads.iter().map(|r| r.parts.len()).sum::<usize>(), 5);
        // One range larger than the limit is still one read.
        let one = vec![Range {
            start: 0,
            end: MAX_READ * 3,
        }];
        let big = coalesce(&one);
        assert_eq!(big.len(), 1);
        assert!(coalesce(&[]).is_empty());
    }
}
