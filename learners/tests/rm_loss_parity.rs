//! Ranking-loss parity with the `pairs` case of the two reward-model fixtures (`tests/fixtures/
//! tiny-rm/` and `tiny-rm-seqcls/`): value and dL/dr from the stored rewards, within 1e-6.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use mathrl_learners::ranking_loss;
use serde_json::Value;

fn check(fixture: &str) -> Result<()> {
    let path = format!(
        "{}/../tests/fixtures/{fixture}/expected.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).context(path.clone())?)?;
    let pairs = &json["pairs"];
    let numbers = |key: &str| -> Result<Vec<f64>> {
        pairs[key]
            .as_array()
            .context(key.to_string())?
            .iter()
            .map(|x| x.as_f64().context("number"))
            .collect()
    };
    let rewards: Vec<f32> = numbers("rewards")?.into_iter().map(|x| x as f32).collect();
    let labels: Vec<bool> = numbers("labels")?.into_iter().map(|x| x == 1.0).collect();
    let r = Var::from_tensor(&Tensor::new(rewards.as_slice(), &Device::Cpu)?)?;

    // One query holding all six responses.
    let out = ranking_loss(r.as_tensor(), &labels, &[rewards.len()])?;
    assert_eq!(
        (out.num_pairs, out.used_queries, out.skipped_queries),
        (9, 1, 0)
    );
    let loss = out.loss.context("loss")?;
    let value = loss.to_scalar::<f32>()? as f64;
    for key in ["loss", "loss_float64"] {
        let expected = pairs[key].as_f64().context(key)?;
        assert!(
            (value - expected).abs() < 1e-6,
            "{fixture}: {key} {value} vs {expected}"
        );
    }
    let grad = loss
        .backward()?
        .get(r.as_tensor())
        .context("no gradient")?
        .to_vec1::<f32>()?;
    for key in ["grad", "grad_float64"] {
        for (i, (g, e)) in grad.iter().zip(numbers(key)?).enumerate() {
            assert!(
                (*g as f64 - e).abs() < 1e-6,
                "{fixture}: {key}[{i}] {g} vs {e}"
            );
        }
    }
    let (mut correct, mut total) = (0, 0);
    for (i, &p) in labels.iter().enumerate() {
        for (j, &n) in labels.iter().enumerate() {
            if p && !n {
                total += 1;
                correct += usize::from(rewards[i] > rewards[j]);
            }
        }
    }
    assert_eq!(out.pairwise_accuracy, Some(correct as f64 / total as f64));

    // Adding two one-sided queries changes nothing but the skip count; a second copy of the
    // query halves each gradient entry (queries are averaged).
    let mut more = rewards.clone();
    more.extend([1.0, 2.0, -1.0]);
    more.extend(&rewards);
    let mut more_labels = labels.clone();
    more_labels.extend([true, true, false]);
    more_labels.extend(&labels);
    let r2 = Var::from_tensor(&Tensor::new(more.as_slice(), &Device::Cpu)?)?;
    let out2 = ranking_loss(r2.as_tensor(), &more_labels, &[6, 2, 1, 6])?;
    assert_eq!(
        (out2.used_queries, out2.skipped_queries, out2.num_pairs),
        (2, 2, 18)
    );
    let loss2 = out2.loss.context("loss")?;
    assert!((loss2.to_scalar::<f32>()? as f64 - value).abs() < 1e-6);
    let grad2 = loss2
        .backward()?
        .get(r2.as_tensor())
        .context("no gradient")?
        .to_vec1::<f32>()?;
    for i in 0..6 {
        assert!(
            (grad2[i] - grad[i] / 2.0).abs() < 1e-7 && (grad2[9 + i] - grad[i] / 2.0).abs() < 1e-7
        );
    }
    assert_eq!(&grad2[6..9], &[0.0, 0.0, 0.0]);
    Ok(())
}

#[test]
fn tiny_rm_pairs_case() -> Result<()> {
    check("tiny-rm")
}

#[test]
fn tiny_rm_seqcls_pairs_case() -> Result<()> {
    check("tiny-rm-seqcls")
}
