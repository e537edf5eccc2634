//! An order-independent fingerprint of a set: what a head snapshot restore uses to check
//! that two descriptions of the same set (the snapshot's and the files' or the series')
//! agree, without sorting or storing either.

/// The wrapping sum of a strong 64-bit mix of each member (a member is a few `u64`s).
/// A member missing, added, or differing in one part changes it, up to a 2^-64 chance.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SetFingerprint(u64);

impl SetFingerprint {
    pub(crate) fn add(&mut self, member: &[u64]) {
        let mut h = 0u64;
        for &part in member {
            h = mix(h ^ part.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        self.0 = self.0.wrapping_add(h);
    }
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
