//! Seeds of chunked sampling: a recipe that samples its questions in chunks gives each chunk its
//! own seed, so a chunk's completions do not depend on how many chunks came before it.

use mathrl::generation::SamplingParams;

/// `params` with the seed of chunk `chunk_index`.
pub fn chunk_sampling_params(params: &SamplingParams, chunk_index: usize) -> SamplingParams {
    SamplingParams {
        seed: params
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(chunk_index as u64),
        ..params.clone()
    }
}
