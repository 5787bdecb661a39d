//! SplitMix64 (Steele, Lea and Flood, 2014), the one mixing function of the workspace: the
//! procedural task's generator, the learners' checkpointable generator, MinHash and the
//! coordinator's sampling seeds all draw on it, so a seed means the same numbers everywhere.
//!
//! Hand-written rather than taken from `rand`, whose algorithms may change between releases: the
//! embedded default ships a model trained on problems drawn from these numbers.

/// The golden-ratio increment of the SplitMix64 counter.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijective mix of the bits of `z` (nearby inputs, unrelated
/// outputs).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Advances a SplitMix64 counter `state` and returns its next 64 random bits.
pub fn splitmix64_next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    mix64(*state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_stream() {
        // The first outputs of the reference C implementation (prng.di.unimi.it) from seed 0.
        let mut state = 0;
        assert_eq!(splitmix64_next(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64_next(&mut state), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(state, GOLDEN_GAMMA.wrapping_mul(2));
        assert_eq!(mix64(0), 0);
    }
}
