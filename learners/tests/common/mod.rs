//! Shared by the learner tests: the tiny fixture policy and a small seeded sampler that draws
//! completions from a policy with their behaviour log-probs (a stand-in for the generation engine).
#![allow(dead_code)] // each test file uses a different subset

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use mathrl::model::Trainable;
use mathrl::types::{Completion, CompletionTiming, FinishReason, Group};
use mathrl::Policy;
use mathrl_learners::{RolloutBatch, ScoredGroup, SeededRng};

/// The tiny Qwen2 fixture (vocab 1024, hidden 64, 2 layers).
pub const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2");

/// The tiny fixture policy on the CPU in f32.
pub fn tiny_policy(trainable: Trainable) -> Result<Policy> {
    Ok(Policy::load(
        TINY,
        &Device::Cpu,
        Some(DType::F32),
        trainable,
    )?)
}

/// Samples `group_size` completions of `length` tokens for each prompt from `policy` at
/// `temperature`, with the exact log_softmax(logits / T) of each sampled token.
pub fn sample_groups(
    policy: &Policy,
    prompts: &[Vec<u32>],
    group_size: usize,
    length: usize,
    temperature: f64,
    rng: &mut SeededRng,
) -> Result<Vec<Group>> {
    let device = policy.device();
    let rows: Vec<usize> = (0..prompts.len())
        .flat_map(|p| std::iter::repeat_n(p, group_size))
        .collect();
    let prompt_width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // Left-padded prompts, as the learner pads them.
    let mut sequences: Vec<Vec<u32>> = rows
        .iter()
        .map(|&p| {
            let mut s = vec![0u32; prompt_width - prompts[p].len()];
            s.extend(&prompts[p]);
            s
        })
        .collect();
    let masks: Vec<Vec<u32>> = rows
        .iter()
        .map(|&p| {
            let pad = prompt_width - prompts[p].len();
            (0..prompt_width).map(|i| u32::from(i >= pad)).collect()
        })
        .collect();
    let mut masks = masks;
    let mut logprobs = vec![Vec::with_capacity(length); rows.len()];
    for _ in 0..length {
        let width = sequences[0].len();
        let ids = Tensor::new(sequences.clone(), device)?;
        let mask = Tensor::new(masks.clone(), device)?;
        let hidden = policy.model().backbone().forward(&ids, &mask)?;
        let last = hidden.narrow(1, width - 1, 1)?.squeeze(1)?;
        let logits = policy
            .model()
            .logits(&last)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?;
        for (r, row) in logits.iter().enumerate() {
            let z: Vec<f64> = row.iter().map(|&x| x as f64 / temperature).collect();
            let max = z.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = z.iter().map(|x| (x - max).exp()).sum();
            let u = rng.next_f32() as f64 * sum;
            let mut acc = 0.0;
            let mut token = z.len() - 1;
            for (k, x) in z.iter().enumerate() {
                acc += (x - max).exp();
                if acc > u {
                    token = k;
                    break;
                }
            }
            logprobs[r].push((z[token] - max - sum.ln()) as f32);
            sequences[r].push(token as u32);
            masks[r].push(1);
        }
    }
    let mut groups = Vec::with_capacity(prompts.len());
    for (p, prompt) in prompts.iter().enumerate() {
        let completions = (0..group_size)
            .map(|i| {
                let r = p * group_size + i;
                Completion {
                    sample_index: i,
                    token_ids: sequences[r][prompt_width..].to_vec(),
                    logprobs: logprobs[r].iter().map(|&lp| Some(lp)).collect(),
                    tool_mask: vec![false; length],
                    finish_reason: FinishReason::Length,
                    tool_calls: 0,
                    tool_errors: 0,
                    tool_ms: 0.0,
                    text: None,
                    timing: CompletionTiming::default(),
                }
            })
            .collect();
        groups.push(Group {
            prompt_index: p,
            prompt_ids: prompt.clone(),
            completions,
            policy_version: 0,
        });
    }
    Ok(groups)
}

/// Scores every completion with `reward` and wraps the groups into a batch.
pub fn score(groups: Vec<Group>, reward: impl Fn(&[u32]) -> f32) -> RolloutBatch {
    RolloutBatch {
        groups: groups
            .into_iter()
            .map(|group| {
                let rewards = group
                    .completions
                    .iter()
                    .map(|c| reward(&c.token_ids))
                    .collect();
                ScoredGroup {
                    group,
                    rewards,
                    verdicts: None,
                }
            })
            .collect(),
    }
}

/// Probability of `token` at the first completion position of each prompt, averaged.
pub fn first_token_probability(policy: &Policy, prompts: &[Vec<u32>], token: u32) -> Result<f64> {
    let mut total = 0.0;
    for prompt in prompts {
        let ids = Tensor::new(prompt.as_slice(), policy.device())?.unsqueeze(0)?;
        let mask = Tensor::ones(ids.dims(), DType::U32, policy.device())?;
        let hidden = policy.model().backbone().forward(&ids, &mask)?;
        let last = hidden.narrow(1, prompt.len() - 1, 1)?.squeeze(1)?;
        let logits = policy.model().logits(&last)?.squeeze(0)?.to_vec1::<f32>()?;
        let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
        total += (logits[token as usize] as f64 - max).exp() / sum;
    }
    Ok(total / prompts.len() as f64)
}

/// Exact KL(π ‖ π_ref) of the next-token distributions at the first completion position,
/// averaged over the prompts.
pub fn first_token_kl(policy: &Policy, reference: &Policy, prompts: &[Vec<u32>]) -> Result<f64> {
    let log_softmax = |p: &Policy, prompt: &[u32]| -> Result<Vec<f64>> {
        let ids = Tensor::new(prompt, p.device())?.unsqueeze(0)?;
        let mask = Tensor::ones(ids.dims(), DType::U32, p.device())?;
        let hidden = p.model().backbone().forward(&ids, &mask)?;
        let last = hidden.narrow(1, prompt.len() - 1, 1)?.squeeze(1)?;
        let logits = p.model().logits(&last)?.squeeze(0)?.to_vec1::<f32>()?;
        let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = max
            + logits
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        Ok(logits.iter().map(|&x| x as f64 - lse).collect())
    };
    let mut total = 0.0;
    for prompt in prompts {
        let lp = log_softmax(policy, prompt)?;
        let lr = log_softmax(reference, prompt)?;
        total += lp
            .iter()
            .zip(&lr)
            .map(|(a, b)| a.exp() * (a - b))
            .sum::<f64>();
    }
    Ok(total / prompts.len() as f64)
}
