//! Which blocks to merge next: the planning half of compaction, over time ranges only,
//! so that the local compactor and a bucket compactor (with Thanos's ranges) plan alike.

use kiln_model::Timestamp;

/// A block as the planner sees it: its time range `[min_time, max_time)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedBlock {
    pub min_time: Timestamp,
    pub max_time: Timestamp,
}

/// Prometheus's compaction ranges: `base` times 3, 9, 27, ... up to `max`.
pub fn prometheus_ranges(base: i64, max: i64) -> Vec<i64> {
    let mut ranges = vec![base];
    loop {
        let next = ranges[ranges.len() - 1].saturating_mul(3);
        if next > max {
            break ranges;
        }
        ranges.push(next);
    }
}

/// Thanos's compaction ranges: 2h, 8h, 2d, 14d.
pub const THANOS_RANGES: [i64; 4] = [
    2 * 3_600_000,
    8 * 3_600_000,
    48 * 3_600_000,
    14 * 24 * 3_600_000,
];

/// The next group to merge among `blocks` (sorted by min time), as indexes into it:
/// overlapping blocks first (unless `allow_overlaps` is false), then, for each range
/// after the first, two or more blocks inside one aligned window of that range which
/// newer data has already passed (the window ends at or before the newest block's end).
/// With `allow_overlaps` false, a window whose blocks overlap is left alone too.
pub fn plan(blocks: &[PlannedBlock], ranges: &[i64], allow_overlaps: bool) -> Option<Vec<usize>> {
    if allow_overlaps {
        for pair in blocks.windows(2) {
            if pair[1].min_time < pair[0].max_time {
                let lo = pair[0].min_time;
                let mut hi = pair[0].max_time;
                let mut group = Vec::new();
                for (j, b) in blocks.iter().enumerate() {
                    if b.min_time >= lo && (b.min_time < hi || group.is_empty()) {
                        hi = hi.max(b.max_time);
                        group.push(j);
                    }
                }
                return Some(group);
            }
        }
    }
    let newest = blocks.iter().map(|b| b.max_time).max()?;
    for &r in ranges.iter().skip(1) {
        let mut i = 0;
        while i < blocks.len() {
            let window = blocks[i].min_time.div_euclid(r).saturating_mul(r);
            let end = window.saturating_add(r);
            let n = blocks[i..]
                .iter()
                .take_while(|b| b.min_time >= window && b.max_time <= end)
                .count();
            if n >= 2 && end <= newest && (allow_overlaps || !overlapping(&blocks[i..i + n])) {
                return Some((i..i + n).collect());
            }
            i += n.max(1);
        }
    }
    None
}

/// Whether any two of `blocks` overlap in time.
pub fn overlapping(blocks: &[PlannedBlock]) -> bool {
    let mut ranges: Vec<(Timestamp, Timestamp)> =
        blocks.iter().map(|b| (b.min_time, b.max_time)).collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn blocks(ranges: &[(i64, i64)]) -> Vec<PlannedBlock> {
        ranges
            .iter()
            .map(|&(a, b)| PlannedBlock {
                min_time: a * H,
                max_time: b * H,
            })
            .collect()
    }

    #[test]
    fn thanos_ranges_merge_four_2h_blocks_into_8h() {
        let b = blocks(&[(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]);
        assert_eq!(plan(&b, &THANOS_RANGES, true), Some(vec![0, 1, 2, 3]));
        // Not before newer data has passed the window's end.
        let b = blocks(&[(0, 2), (2, 4), (4, 6)]);
        assert_eq!(plan(&b, &THANOS_RANGES, true), None);
        // 8h blocks into 2d once the 2d window is passed.
        let b = blocks(&[(0, 8), (8, 16), (16, 24), (48, 50)]);
        assert_eq!(plan(&b, &THANOS_RANGES, true), Some(vec![0, 1, 2]));
    }

    #[test]
    fn overlaps_come_first_unless_turned_off() {
        let b = blocks(&[(0, 2), (1, 3), (2, 4), (10, 12)]);
        assert_eq!(plan(&b, &THANOS_RANGES, true), Some(vec![0, 1, 2]));
        assert!(overlapping(&b));
        assert_eq!(plan(&b, &THANOS_RANGES, false), None);
    }

    #[test]
    fn prometheus_ranges_grow_by_three() {
        assert_eq!(
            prometheus_ranges(2 * H, 54 * H),
            vec![2 * H, 6 * H, 18 * H, 54 * H]
        );
        assert_eq!(prometheus_ranges(2 * H, 2 * H), vec![2 * H]);
    }
}
