//! GRPO loss and gradient parity with TRL 1.16 on `tests/fixtures/grpo-loss/cases.json`
//! (every loss type × on/off-policy × β), within 1e-5.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use mathrl_learners::{
    grpo_loss, AdvantageEstimator, GrpoLossConfig, LossAggregation, PolicyLossInputs,
    StepNormaliser,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn fixture() -> Result<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/grpo-loss/cases.json"
    );
    let text = std::fs::read_to_string(path).with_context(|| path.to_string())?;
    Ok(serde_json::from_str(&text)?)
}

fn matrix(v: &Value) -> Result<Vec<Vec<f32>>> {
    v.as_array()
        .context("matrix")?
        .iter()
        .map(|row| {
            row.as_array()
                .context("row")?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32).context("number"))
                .collect()
        })
        .collect()
}

fn vector(v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .context("vector")?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32).context("number"))
        .collect()
}

fn tensor2(rows: &[Vec<f32>]) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        rows.concat(),
        (rows.len(), rows[0].len()),
        &Device::Cpu,
    )?)
}

#[test]
fn advantages_match_trl() -> Result<()> {
    let f = fixture()?;
    let rewards = vector(&f["inputs"]["rewards"])?;
    let expected = vector(&f["inputs"]["advantages"])?;
    let group = f["setup"]["num_generations"]
        .as_u64()
        .context("num_generations")? as usize;
    let mut advantages = Vec::with_capacity(rewards.len());
    for chunk in rewards.chunks(group) {
        let (adv, zero_variance) = AdvantageEstimator::Grpo.group(chunk)?;
        assert!(!zero_variance, "{chunk:?}");
        advantages.extend(adv);
    }
    assert_eq!(advantages.len(), expected.len());
    for (a, e) in advantages.iter().zip(&expected) {
        assert!(
            (a - e).abs() < 1e-6,
            "advantages {advantages:?} vs {expected:?}"
        );
    }
    Ok(())
}

#[test]
fn every_case_matches_trl_loss_and_gradient() -> Result<()> {
    let f = fixture()?;
    let inputs = &f["inputs"];
    let setup = &f["setup"];
    let logp = Var::from_tensor(&tensor2(&matrix(&inputs["per_token_logps"])?)?)?;
    let old = tensor2(&matrix(&inputs["old_per_token_logps"])?)?;
    let reference = tensor2(&matrix(&inputs["ref_per_token_logps"])?)?;
    let mask = tensor2(&matrix(&inputs["completion_mask"])?)?;
    let advantages = Tensor::new(vector(&inputs["advantages"])?.as_slice(), &Device::Cpu)?;
    let normaliser = StepNormaliser::from_masks(&[&mask])?;
    assert_eq!(
        normaliser.accumulation_steps,
        setup["gradient_accumulation_steps"].as_u64().unwrap() as usize
    );

    let cases = f["cases"].as_array().context("cases")?;
    assert_eq!(cases.len(), 16);
    let (mut worst_loss, mut worst_grad) = (0.0f64, 0.0f32);
    for case in cases {
        let name = format!(
            "{}/on_policy={}/beta={}",
            case["loss_type"], case["on_policy"], case["beta"]
        );
        let aggregation: LossAggregation = serde_json::from_value(case["loss_type"].clone())?;
        let beta = case["beta"].as_f64().context("beta")?;
        let config = GrpoLossConfig {
            epsilon_low: setup["epsilon_low"].as_f64().context("epsilon_low")?,
            epsilon_high: setup["epsilon_high"].as_f64().context("epsilon_high")?,
            beta,
            aggregation,
            max_completion_length: setup["max_completion_length"].as_u64().context("max_len")?
                as usize,
        };
        let on_policy = case["on_policy"].as_bool().context("on_policy")?;
        let out = grpo_loss(
            &config,
            &PolicyLossInputs {
                logprobs: logp.as_tensor(),
                old_logprobs: if on_policy { None } else { Some(&old) },
                // β = 0 must not need a reference model.
                ref_logprobs: if beta > 0.0 { Some(&reference) } else { None },
                advantages: &advantages,
                completion_mask: &mask,
            },
            &normaliser,
        )?;
        let loss = out.loss.to_scalar::<f32>()? as f64;
        let expected = case["loss"].as_f64().context("loss")?;
        assert!(
            (loss - expected).abs() < TOLERANCE,
            "{name}: loss {loss} vs {expected}"
        );
        worst_loss = worst_loss.max((loss - expected).abs());

        let grads = out.loss.backward()?;
        let grad = grads
            .get(logp.as_tensor())
            .context("no gradient")?
            .to_vec2::<f32>()?;
        let expected = matrix(&case["grad_per_token_logps"])?;
        for (i, (g, e)) in grad.iter().zip(&expected).enumerate() {
            for (t, (a, b)) in g.iter().zip(e).enumerate() {
                assert!(
                    (a - b).abs() < TOLERANCE as f32,
                    "{name}: grad[{i}][{t}] {a} vs {b}"
                );
                worst_grad = worst_grad.max((a - b).abs());
            }
        }

        if on_policy {
            assert_eq!(out.metrics.ratio_mean, 1.0, "{name}");
            assert_eq!(out.metrics.ratio_max, 1.0, "{name}");
            assert_eq!(
                out.metrics.clip_fraction_low + out.metrics.clip_fraction_high,
                0.0,
                "{name}"
            );
        }
        assert_eq!(out.metrics.active_tokens, 33);
        assert_eq!(out.metrics.kl_mean.is_some(), beta > 0.0);
        if beta == 0.0 {
            assert!(
                (out.metrics.pg_loss - loss).abs() < 1e-6,
                "{name}: pg_loss is the whole loss at beta 0"
            );
        }
    }
    eprintln!("largest differences over all cases: loss {worst_loss:e}, gradient {worst_grad:e}");
    Ok(())
}

#[test]
fn off_policy_metrics_match_a_direct_computation() -> Result<()> {
    let f = fixture()?;
    let inputs = &f["inputs"];
    let (l, o, m) = (
        matrix(&inputs["per_token_logps"])?,
        matrix(&inputs["old_per_token_logps"])?,
        matrix(&inputs["completion_mask"])?,
    );
    let r = matrix(&inputs["ref_per_token_logps"])?;
    let adv = vector(&inputs["advantages"])?;
    let (mut n, mut low, mut high, mut sum, mut max, mut kl) = (0.0, 0.0, 0.0, 0.0, 0.0f64, 0.0);
    for i in 0..l.len() {
        for t in 0..l[i].len() {
            if m[i][t] == 0.0 {
                continue;
            }
            let rho = ((l[i][t] - o[i][t]) as f64).exp();
            let d = (r[i][t] - l[i][t]) as f64;
            n += 1.0;
            low += f64::from(rho < 0.8 && adv[i] < 0.0);
            high += f64::from(rho > 1.2 && adv[i] > 0.0);
            sum += rho;
            max = max.max(rho);
            kl += d.exp() - d - 1.0;
        }
    }
    let mask = tensor2(&m)?;
    let out = grpo_loss(
        &GrpoLossConfig {
            beta: 0.04,
            ..Default::default()
        },
        &PolicyLossInputs {
            logprobs: &tensor2(&l)?,
            old_logprobs: Some(&tensor2(&o)?),
            ref_logprobs: Some(&tensor2(&r)?),
            advantages: &Tensor::new(adv.as_slice(), &Device::Cpu)?,
            completion_mask: &mask,
        },
        &StepNormaliser::from_masks(&[&mask])?,
    )?;
    let metrics = out.metrics;
    assert!(low + high > 0.0, "the fixture exercises clipping");
    assert!((metrics.clip_fraction_low - low / n).abs() < 1e-9);
    assert!((metrics.clip_fraction_high - high / n).abs() < 1e-9);
    assert!((metrics.ratio_mean - sum / n).abs() < 1e-6);
    assert!((metrics.ratio_max - max).abs() < 1e-6);
    assert!((metrics.kl_mean.context("kl")? - kl / n).abs() < 1e-6);
    Ok(())
}
