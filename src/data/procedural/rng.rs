//! SplitMix64: the task's random numbers, and the mixing function of its split hash.
//!
//! A hand-written generator rather than `rand`'s `StdRng`, whose algorithm may change between
//! releases: the embedded default ships a model trained on these problems, so the same seed must
//! give the same problems in every build.

pub(crate) use crate::rng::mix64;
use crate::rng::splitmix64_next;

/// 64-bit FNV-1a of `bytes`, then mixed: a hash that is the same on every platform and release.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h)
}

/// Steele, Lea and Flood's SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose stream is fixed by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        splitmix64_next(&mut self.state)
    }

    /// A number in `low..=high` (the two swapped if `high < low`), by Lemire's multiply-shift
    /// (bias below 2^-50 for the small ranges used here).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        let (low, high) = if high < low { (high, low) } else { (low, high) };
        let span = u128::from(high - low) + 1;
        low + ((u128::from(self.next_u64()) * span) >> 64) as u64
    }

    /// A uniformly chosen element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "pick from an empty list");
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    /// Two different elements of a slice with at least two.
    pub(crate) fn pick_two<'a, T>(&mut self, items: &'a [T]) -> (&'a T, &'a T) {
        assert!(items.len() >= 2, "pick_two needs two items");
        let first = self.range(0, items.len() as u64 - 1) as usize;
        let offset = self.range(1, items.len() as u64 - 1) as usize;
        (&items[first], &items[(first + offset) % items.len()])
    }

    /// A fair coin.
    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_stream() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn range_covers_its_bounds_and_nothing_else() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = rng.range(3, 7);
            assert!((3..=7).contains(&x));
            seen[(x - 3) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.range(4, 4), 4);
    }

    #[test]
    fn pick_two_never_repeats() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..200 {
            let (a, b) = rng.pick_two(&[1, 2, 3]);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn stable_hash_is_fnv1a_then_mixed() {
        // FNV-1a("a") = 0xaf63dc4c8601ec8c (published test vector).
        assert_eq!(stable_hash(b"a"), mix64(0xAF63_DC4C_8601_EC8C));
    }
}
