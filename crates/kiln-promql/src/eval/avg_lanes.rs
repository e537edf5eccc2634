//! `avg_over_time` over four windows at once, bit for bit what [`avg`] gives each.
//!
//! A range query's `avg_over_time(x[1h])` at a 60 s step over 15 s data sums the same
//! 240 samples again at every step, shifted by four: the compensated sums are most of
//! such a query's time. The four windows' sums run interleaved, so the processor
//! overlaps their dependency chains (one sum alone waits on each addition), and each
//! addition's rounding error is found with Knuth's branch-free TwoSum instead of
//! [`avg`]'s comparison of magnitudes. Both yield the exact error of a finite addition,
//! so the compensations are the same numbers. On x86-64 processors with AVX the four
//! lanes are one vector register each for the sums and the compensations; IEEE
//! addition and subtraction round the same in a vector lane as in a scalar register,
//! and no operation is fused, so both paths give the same bits (tested below against
//! [`avg`] on random and adversarial windows). A window whose sum or compensation does
//! not end finite is done again by [`avg`], which handles overflow.

use super::avg;

/// [`avg`] of four slices at once, bit for bit.
pub(crate) fn avg4(w: [&[f64]; 4]) -> [f64; 4] {
    if w.iter().any(|x| x.is_empty()) {
        return w.map(avg);
    }
    // The lanes advance together over the indexes all four windows have.
    let common = w.iter().map(|x| x.len()).min().unwrap_or(0);
    let (mut sum, mut c) = interleaved_sums(w, common);
    for j in 0..4 {
        for &v in &w[j][common..] {
            two_sum_step(&mut sum[j], &mut c[j], v);
        }
    }
    std::array::from_fn(|j| {
        if sum[j].is_finite() && c[j].is_finite() {
            let n = w[j].len() as f64;
            sum[j] / n + c[j] / n
        } else {
            avg(w[j])
        }
    })
}

/// Adds `v` to the compensated sum `(sum, c)`: TwoSum finds the addition's exact
/// rounding error, which goes into the compensation.
#[inline(always)]
fn two_sum_step(sum: &mut f64, c: &mut f64, v: f64) {
    let t = *sum + v;
    let bp = t - *sum;
    let ap = t - bp;
    *c += (*sum - ap) + (v - bp);
    *sum = t;
}

/// The compensated sums of each window's first `common` values (`common >= 1`).
fn interleaved_sums(w: [&[f64]; 4], common: usize) -> ([f64; 4], [f64; 4]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: `sums_avx` needs AVX, and the processor was just found to have it.
        #[allow(unsafe_code)]
        return unsafe { x86::sums_avx(w, common) };
    }
    sums_portable(w, common)
}

fn sums_portable(w: [&[f64]; 4], common: usize) -> ([f64; 4], [f64; 4]) {
    let mut sum = w.map(|x| x[0]);
    let mut c = [0.0f64; 4];
    // Index by index across the four lanes: the interleaving is the point.
    #[allow(clippy::needless_range_loop)]
    for i in 1..common {
        for j in 0..4 {
            two_sum_step(&mut sum[j], &mut c[j], w[j][i]);
        }
    }
    (sum, c)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256d, _mm_cvtsd_f64, _mm_unpackhi_pd, _mm256_add_pd, _mm256_castpd256_pd128,
        _mm256_extractf128_pd, _mm256_set_pd, _mm256_setzero_pd, _mm256_sub_pd,
    };

    /// [`super::sums_portable`] with each lane in a vector lane: the same operations in
    /// the same order per lane.
    #[target_feature(enable = "avx")]
    pub(super) fn sums_avx(w: [&[f64]; 4], common: usize) -> ([f64; 4], [f64; 4]) {
        let mut sum = _mm256_set_pd(w[3][0], w[2][0], w[1][0], w[0][0]);
        let mut c = _mm256_setzero_pd();
        let lanes = w[0][1..common]
            .iter()
            .zip(&w[1][1..common])
            .zip(&w[2][1..common])
            .zip(&w[3][1..common]);
        for (((&v0, &v1), &v2), &v3) in lanes {
            let v = _mm256_set_pd(v3, v2, v1, v0);
            let t = _mm256_add_pd(sum, v);
            let bp = _mm256_sub_pd(t, sum);
            let ap = _mm256_sub_pd(t, bp);
            c = _mm256_add_pd(
                c,
                _mm256_add_pd(_mm256_sub_pd(sum, ap), _mm256_sub_pd(v, bp)),
            );
            sum = t;
        }
        (unpack(sum), unpack(c))
    }

    #[target_feature(enable = "avx")]
    fn unpack(x: __m256d) -> [f64; 4] {
        let lo = _mm256_castpd256_pd128(x);
        let hi = _mm256_extractf128_pd::<1>(x);
        [
            _mm_cvtsd_f64(lo),
            _mm_cvtsd_f64(_mm_unpackhi_pd(lo, lo)),
            _mm_cvtsd_f64(hi),
            _mm_cvtsd_f64(_mm_unpackhi_pd(hi, hi)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avg4_is_avg_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pools: [&[f64]; 5] = [
            &[0.01, 0.73, 0.5, 1e-9, 0.99],
            &[1e16, 1.0, -1e16, 3.5, 1e-3],
            &[f64::MAX, f64::MAX, -f64::MAX, 1.0],
            &[f64::NAN, 1.0, f64::INFINITY, -2.5],
            &[-0.0, 0.0, -0.0],
        ];
        for round in 0..3000 {
            let pool = pools[round % pools.len()];
            let windows: Vec<Vec<f64>> = (0..4)
                .map(|_| {
                    let len = (next() % 300) as usize + usize::from(round % 7 != 0);
                    (0..len)
                        .map(|_| {
                            if round % 3 == 0 {
                                // Any sign and mantissa, exponents 2^-40..2^40.
                                let exp = 1023 - 40 + next() % 81;
                                f64::from_bits((next() & 0x800f_ffff_ffff_ffff) | (exp << 52))
                            } else {
                                pool[(next() % pool.len() as u64) as usize] * (next() % 5) as f64
                            }
                        })
                        .collect()
                })
                .collect();
            let lanes: [&[f64]; 4] = std::array::from_fn(|j| windows[j].as_slice());
            let got = avg4(lanes);
            if lanes.iter().all(|w| !w.is_empty()) {
                // The vector path (where the processor has one) against the scalar one.
                let common = lanes.iter().map(|w| w.len()).min().unwrap_or(0);
                // NaN payloads and signs may differ; a NaN lane is redone by `avg`.
                let bit = |x: f64| if x.is_nan() { u64::MAX } else { x.to_bits() };
                let bits = |(s, c): ([f64; 4], [f64; 4])| (s.map(bit), c.map(bit));
                assert_eq!(
                    bits(interleaved_sums(lanes, common)),
                    bits(sums_portable(lanes, common)),
                    "round {round}"
                );
            }
            for (w, g) in windows.iter().zip(got) {
                let want = avg(w);
                assert!(
                    want.to_bits() == g.to_bits() || (want.is_nan() && g.is_nan()),
                    "round {round}: {want} != {g} over {w:?}"
                );
            }
        }
    }
}
