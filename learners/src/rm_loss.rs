//! The Qwen2.5-Math reward model's listwise ranking loss: for a query with k positive (correct) and
//! n−k negative responses, the mean over all k·(n−k) (pos, neg) pairs of −log σ(r_pos − r_neg);
//! a batch averages its queries' losses, so every query weighs the same whatever its pair count.

use candle_core::{DType, Device, Tensor};

use crate::error::expect_shape;
use crate::{Error, Result};

/// The ranking loss of a batch of queries and its metrics.
#[derive(Debug, Clone)]
pub struct RankingLoss {
    /// Scalar loss (f32), differentiable with respect to the rewards; `None` when every query
    /// was skipped (nothing to learn from this batch).
    pub loss: Option<Tensor>,
    /// Fraction of all (pos, neg) pairs of the batch with r_pos > r_neg; `None` without pairs.
    pub pairwise_accuracy: Option<f64>,
    /// Number of (pos, neg) pairs over the used queries.
    pub num_pairs: usize,
    /// Queries that had both a positive and a negative response.
    pub used_queries: usize,
    /// Queries skipped because all their responses were positive or all negative.
    pub skipped_queries: usize,
}

/// −log σ(x) = softplus(−x) = max(−x, 0) + log(1 + exp(−|x|)), which never overflows.
pub fn neg_log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.neg()?.relu()? + tail)?)
}

/// Listwise ranking loss of `rewards` `[n]`, whose responses are laid out query after query:
/// `responses_per_query[q]` consecutive responses belong to query q; `is_positive[i]` says whether
/// response i is correct.
pub fn ranking_loss(
    rewards: &Tensor,
    is_positive: &[bool],
    responses_per_query: &[usize],
) -> Result<RankingLoss> {
    let total: usize = responses_per_query.iter().sum();
    if total != is_positive.len() {
        return Err(Error::Input(format!(
            "ranking_loss: responses_per_query sums to {total} but there are {} labels",
            is_positive.len()
        )));
    }
    expect_shape(rewards, "rewards", &[total])?;
    let values = rewards.to_dtype(DType::F32)?.to_vec1::<f32>()?;

    let (mut pos_index, mut neg_index, mut weight) = (Vec::new(), Vec::new(), Vec::new());
    let (mut used, mut skipped, mut correct) = (0usize, 0usize, 0usize);
    let mut start = 0;
    let mut query_pairs = Vec::with_capacity(responses_per_query.len());
    for &len in responses_per_query {
        let range = start..start + len;
        start += len;
        let pos: Vec<usize> = range.clone().filter(|&i| is_positive[i]).collect();
        let neg: Vec<usize> = range.filter(|&i| !is_positive[i]).collect();
        if pos.is_empty() || neg.is_empty() {
            skipped += 1;
            continue;
        }
        used += 1;
        query_pairs.push(pos.len() * neg.len());
        for &p in &pos {
            for &q in &neg {
                pos_index.push(p as u32);
                neg_index.push(q as u32);
                correct += usize::from(values[p] > values[q]);
            }
        }
    }
    for pairs in query_pairs {
        weight.extend(std::iter::repeat_n(
            1.0 / (pairs as f32 * used as f32),
            pairs,
        ));
    }
    let num_pairs = pos_index.len();
    if num_pairs == 0 {
        return Ok(RankingLoss {
            loss: None,
            pairwise_accuracy: None,
            num_pairs,
            used_queries: 0,
            skipped_queries: skipped,
        });
    }
    let device = rewards.device();
    let index = |v: Vec<u32>| Tensor::from_vec(v, num_pairs, device);
    let rewards = rewards.to_dtype(DType::F32)?;
    let margin = (rewards.index_select(&index(pos_index)?, 0)?
        - rewards.index_select(&index(neg_index)?, 0)?)?;
    let weight = Tensor::from_vec(weight, num_pairs, &Device::Cpu)?.to_device(device)?;
    let loss = (neg_log_sigmoid(&margin)? * weight)?.sum_all()?;
    Ok(RankingLoss {
        loss: Some(loss),
        pairwise_accuracy: Some(correct as f64 / num_pairs as f64),
        num_pairs,
        used_queries: used,
        skipped_queries: skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn nls(x: f64) -> f64 {
        (1.0 + (-x).exp()).ln()
    }

    #[test]
    fn neg_log_sigmoid_is_stable_and_exact() {
        let x = Tensor::new(&[-200.0f32, -3.0, 0.0, 3.0, 200.0], &Device::Cpu).unwrap();
        let y = neg_log_sigmoid(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y[0], 200.0);
        assert!((y[1] as f64 - nls(-3.0)).abs() < 1e-6);
        assert!((y[2] as f64 - 2f64.ln()).abs() < 1e-7);
        assert!((y[3] as f64 - nls(3.0)).abs() < 1e-7);
        assert_eq!(y[4], 0.0);
    }

    #[test]
    fn queries_are_averaged_and_one_sided_queries_skipped() {
        // Query 0: rewards [2, 0 | 1] with 2 positives, 1 negative → pairs (2-1), (0-1).
        // Query 1: all positive → skipped. Query 2: [0.5 | -0.5] → one pair.
        // Query 3: all negative → skipped.
        let r = Var::new(&[2.0f32, 0.0, 1.0, 3.0, 4.0, 0.5, -0.5, 1.0], &Device::Cpu).unwrap();
        let labels = [true, true, false, true, true, true, false, false];
        let out = ranking_loss(r.as_tensor(), &labels, &[3, 2, 2, 1]).unwrap();
        let q0 = (nls(1.0) + nls(-1.0)) / 2.0;
        let q2 = nls(1.0);
        let loss = out.loss.unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - (q0 + q2) / 2.0).abs() < 1e-6);
        assert_eq!(
            (out.used_queries, out.skipped_queries, out.num_pairs),
            (2, 2, 3)
        );
        assert_eq!(out.pairwise_accuracy, Some(2.0 / 3.0));
        // Skipped queries get no gradient.
        let grad = loss
            .backward()
            .unwrap()
            .get(r.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(&grad[3..5], &[0.0, 0.0]);
        assert_eq!(grad[7], 0.0);
    }

    #[test]
    fn all_skipped_gives_no_loss() {
        let r = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let out = ranking_loss(&r, &[true, true], &[2]).unwrap();
        assert!(out.loss.is_none() && out.pairwise_accuracy.is_none());
        assert_eq!(out.skipped_queries, 1);
    }

    #[test]
    fn inconsistent_layout_is_an_error() {
        let r = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        assert!(ranking_loss(&r, &[true, false], &[3]).is_err());
        let err = ranking_loss(&r, &[true, false, true], &[3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rewards"), "{err}");
    }
}
