//! The training forward is differentiable with respect to every weight, and optimising it works.

mod common;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::{fixture, padded_batch};
use mathrl::model::{next_token_logprobs, LogprobOptions, Trainable};
use mathrl::Policy;

/// Mean next-token cross-entropy over positions whose target is a real token.
fn loss(policy: &Policy, ids: &Tensor, mask: &Tensor) -> Tensor {
    let lp = next_token_logprobs(policy.model(), ids, mask, LogprobOptions::default()).unwrap();
    let target_mask = mask
        .narrow(1, 1, mask.dim(1).unwrap() - 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let total = (lp * &target_mask)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap();
    (total / target_mask.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64).unwrap()
}

#[test]
fn every_weight_gets_a_finite_nonzero_gradient() {
    for name in ["tiny-qwen2", "tiny-qwen2-untied"] {
        let policy = Policy::load(
            fixture(name),
            &Device::Cpu,
            Some(DType::F32),
            Trainable::Yes,
        )
        .unwrap();
        let (ids, mask) = padded_batch();
        let ids = ids
            .clamp(0u32, policy.config().vocab_size as u32 - 1)
            .unwrap();
        let grads = loss(&policy, &ids, &mask).backward().unwrap();
        let vars = policy.vars();
        assert_eq!(vars.len(), policy.named_tensors().len());
        for (param, var) in vars {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{name}: {param} got no gradient"));
            let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                g.iter().all(|x| x.is_finite()),
                "{name}: {param} has a non-finite gradient"
            );
            assert!(
                g.iter().any(|&x| x != 0.0),
                "{name}: {param} has an all-zero gradient"
            );
        }
    }
}

#[test]
fn thirty_adamw_steps_halve_the_loss_on_a_padded_batch() {
    let policy = Policy::load(
        fixture("tiny-qwen2"),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::Yes,
    )
    .unwrap();
    let (ids, mask) = padded_batch();
    let vars = policy.vars().into_iter().map(|(_, v)| v).collect();
    let params = ParamsAdamW {
        lr: 3e-3,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars, params).unwrap();
    let first = loss(&policy, &ids, &mask).to_scalar::<f32>().unwrap();
    let mut last = first;
    for _ in 0..30 {
        let l = loss(&policy, &ids, &mask);
        last = l.to_scalar::<f32>().unwrap();
        opt.backward_step(&l).unwrap();
    }
    let final_loss = loss(&policy, &ids, &mask).to_scalar::<f32>().unwrap();
    assert!(final_loss.is_finite() && last.is_finite());
    assert!(
        final_loss < first / 2.0,
        "loss went from {first} to {final_loss}"
    );
}

#[test]
fn frozen_copy_does_not_follow_optimiser_updates() {
    let policy = Policy::load(
        fixture("tiny-qwen2"),
        &Device::Cpu,
        Some(DType::F32),
        Trainable::Yes,
    )
    .unwrap();
    let frozen = policy.frozen_copy().unwrap();
    let (ids, mask) = padded_batch();
    let before = frozen.model().forward(&ids, &mask).unwrap().logits;
    let vars = policy.vars().into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    opt.backward_step(&loss(&policy, &ids, &mask)).unwrap();
    let after = frozen.model().forward(&ids, &mask).unwrap().logits;
    let moved = policy.model().forward(&ids, &mask).unwrap().logits;
    let same = (before.clone() - after)
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(D::Minus1)
        .unwrap()
        .max_all()
        .unwrap();
    let diff = (before - moved).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0);
    assert!(diff.to_scalar::<f32>().unwrap() > 0.0);
}
