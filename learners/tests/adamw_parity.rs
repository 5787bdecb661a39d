//! AdamW, the warm-up + cosine schedule and grad-norm clipping against `torch.optim.AdamW`
//! (`learners/tests/fixtures/adamw/`, see its README), plus exact resume and skipped updates.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use mathrl_learners::{
    AdamW, AdamWConfig, Decay, GradAccumulator, LrSchedule, Optimizer, SkipReason, TrainStep,
    TrainStepConfig,
};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

struct Reference {
    json: Value,
    names: Vec<String>,
}

impl Reference {
    fn load() -> Result<Self> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/adamw/reference.json"
        );
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).context(path)?)?;
        let mut names: Vec<String> = json["shapes"]
            .as_object()
            .context("shapes")?
            .keys()
            .cloned()
            .collect();
        names.sort();
        Ok(Self { json, names })
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.json["shapes"][name]
            .as_array()
            .context("shape")?
            .iter()
            .map(|d| Ok(d.as_u64().context("dim")? as usize))
            .collect()
    }

    fn tensor(&self, values: &Value, name: &str) -> Result<Tensor> {
        let v: Vec<f32> = values
            .as_array()
            .context("values")?
            .iter()
            .map(|x| Ok(x.as_f64().context("number")? as f32))
            .collect::<Result<_>>()?;
        Ok(Tensor::from_vec(v, self.shape(name)?, &Device::Cpu)?)
    }

    fn params(&self) -> Result<Vec<(String, Var)>> {
        self.names
            .iter()
            .map(|n| {
                Ok((
                    n.clone(),
                    Var::from_tensor(&self.tensor(&self.json["init"][n], n)?)?,
                ))
            })
            .collect()
    }

    fn optimizer(&self, params: Vec<(String, Var)>) -> Result<AdamW> {
        let h = &self.json["hyper"];
        let f = |k: &str| h[k].as_f64().context(k.to_string());
        Ok(AdamW::new(
            params,
            AdamWConfig {
                lr: f("lr")?,
                beta1: f("beta1")?,
                beta2: f("beta2")?,
                eps: f("eps")?,
                weight_decay: f("weight_decay")?,
                master_weights: true,
            },
        )?)
    }

    fn train_step(&self, clip: bool) -> Result<TrainStep> {
        let s = &self.json["schedule"];
        let schedule = LrSchedule {
            peak_lr: self.json["hyper"]["lr"].as_f64().context("lr")?,
            warmup_steps: s["warmup_steps"].as_u64().context("warmup")?,
            decay: Decay::Cosine {
                total_steps: s["total_steps"].as_u64().context("total")?,
                min_lr_ratio: s["min_lr_ratio"].as_f64().context("min ratio")?,
            },
        };
        let max_grad_norm = if clip {
            Some(self.json["max_grad_norm"].as_f64().context("max norm")?)
        } else {
            None
        };
        Ok(TrainStep::new(TrainStepConfig {
            schedule,
            max_grad_norm,
            ..Default::default()
        })?)
    }

    /// Step `k`'s gradients (parameters whose reference gradient is null get none), times `scale`.
    fn grads(&self, params: &[(String, Var)], k: usize, scale: f64) -> Result<GradStore> {
        let mut store = GradStore::default();
        for (name, var) in params {
            let g = &self.json["grads"][k][name];
            if !g.is_null() {
                store.insert(var.as_tensor(), (self.tensor(g, name)? * scale)?);
            }
        }
        Ok(store)
    }

    fn steps(&self) -> usize {
        self.json["grads"].as_array().map_or(0, |a| a.len())
    }
}

/// Asserts closeness and returns the largest absolute difference.
fn assert_close(got: &Tensor, expected: &[f32], what: &str) -> Result<f32> {
    let got = got.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(got.len(), expected.len(), "{what}");
    let mut worst = 0.0f32;
    for (i, (a, b)) in got.iter().zip(expected).enumerate() {
        assert!(
            ((a - b).abs() as f64) < TOLERANCE,
            "{what}[{i}]: {a} vs torch {b}"
        );
        worst = worst.max((a - b).abs());
    }
    Ok(worst)
}

fn floats(v: &Value) -> Result<Vec<f32>> {
    v.as_array()
        .context("array")?
        .iter()
        .map(|x| Ok(x.as_f64().context("number")? as f32))
        .collect()
}

fn state_map(opt: &AdamW) -> Result<HashMap<String, Tensor>> {
    Ok(opt.state_tensors()?.into_iter().collect())
}

fn run_against_torch(clip: bool) -> Result<()> {
    let r = Reference::load()?;
    let run = &r.json[if clip { "clipped" } else { "unclipped" }];
    let params = r.params()?;
    let mut opt = r.optimizer(params.clone())?;
    let mut step = r.train_step(clip)?;
    let mut any_clipped = false;
    let mut worst = 0.0f32;
    for k in 0..r.steps() {
        let entry = &run["trace"][k];
        let stats = step.apply_micro_batches(&mut opt, [(0.0, r.grads(&params, k, 1.0)?)])?;
        assert_eq!(stats.skipped, None);
        assert!(
            (stats.lr - entry["lr"].as_f64().context("lr")?).abs() < 1e-15,
            "step {k}: lr {}",
            stats.lr
        );
        if clip {
            let norm = entry["grad_norm"].as_f64().context("grad_norm")?;
            let ours = stats.grad_norm.context("norm")?;
            assert!(
                (ours - norm).abs() < 1e-6 * norm,
                "step {k}: grad norm {ours} vs torch {norm}"
            );
            any_clipped |= stats.clipped;
        }
        for (name, var) in &params {
            worst = worst.max(assert_close(
                var.as_tensor(),
                &floats(&entry["params"][name])?,
                &format!("step {k} {name}"),
            )?);
        }
    }
    assert_eq!(any_clipped, clip);
    let state = state_map(&opt)?;
    for (name, _) in &params {
        let s = &run["final_state"][name];
        let m = assert_close(
            &state[&format!("exp_avg.{name}")],
            &floats(&s["exp_avg"])?,
            &format!("exp_avg {name}"),
        )?;
        let v = assert_close(
            &state[&format!("exp_avg_sq.{name}")],
            &floats(&s["exp_avg_sq"])?,
            &format!("exp_avg_sq {name}"),
        )?;
        worst = worst.max(m).max(v);
        let steps = state[&format!("step.{name}")].to_vec1::<i64>()?[0];
        assert_eq!(
            steps as f64,
            s["step"].as_f64().context("step")?,
            "per-parameter step of {name}"
        );
    }
    assert_eq!(opt.step_count(), r.steps() as u64);
    eprintln!("clip={clip}: largest difference from torch over weights and moments {worst:e}");
    Ok(())
}

#[test]
fn adamw_with_schedule_matches_torch() -> Result<()> {
    run_against_torch(false)
}

#[test]
fn adamw_with_clipping_matches_torch() -> Result<()> {
    run_against_torch(true)
}

fn bits(params: &[(String, Var)]) -> Result<Vec<Vec<u32>>> {
    params
        .iter()
        .map(|(_, v)| {
            Ok(v.as_tensor()
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .map(|x| x.to_bits())
                .collect())
        })
        .collect()
}

fn state_bits(opt: &AdamW) -> Result<Vec<(String, Vec<u64>)>> {
    let mut out: Vec<(String, Vec<u64>)> = opt
        .state_tensors()?
        .into_iter()
        .map(|(n, t)| {
            let t = t.flatten_all()?;
            let v = match t.dtype() {
                candle_core::DType::I64 => t.to_vec1::<i64>()?.iter().map(|&x| x as u64).collect(),
                _ => t
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|x| x.to_bits() as u64)
                    .collect(),
            };
            Ok((n, v))
        })
        .collect::<Result<_>>()?;
    out.sort();
    Ok(out)
}

#[test]
fn resume_from_saved_state_is_bit_identical() -> Result<()> {
    let r = Reference::load()?;
    // Uninterrupted run, with clipping so that every part of the step is exercised.
    let straight = r.params()?;
    let mut opt = r.optimizer(straight.clone())?;
    let mut step = r.train_step(true)?;
    for k in 0..r.steps() {
        step.apply_micro_batches(&mut opt, [(0.0, r.grads(&straight, k, 1.0)?)])?;
    }

    // Interrupted after 3 steps: weights and optimiser state go through a safetensors file.
    let first = r.params()?;
    let mut opt1 = r.optimizer(first.clone())?;
    let mut step1 = r.train_step(true)?;
    for k in 0..3 {
        step1.apply_micro_batches(&mut opt1, [(0.0, r.grads(&first, k, 1.0)?)])?;
    }
    let dir = tempfile::tempdir()?;
    let (weights_file, state_file) = (
        dir.path().join("model.safetensors"),
        dir.path().join("optimizer.safetensors"),
    );
    let weights: HashMap<String, Tensor> = first
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    candle_core::safetensors::save(&weights, &weights_file)?;
    candle_core::safetensors::save(&state_map(&opt1)?, &state_file)?;
    drop((first, opt1, step1));

    let loaded = candle_core::safetensors::load(&weights_file, &Device::Cpu)?;
    let resumed: Vec<(String, Var)> = r
        .names
        .iter()
        .map(|n| {
            Ok((
                n.clone(),
                Var::from_tensor(loaded.get(n).context("weight")?)?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut opt2 = r.optimizer(resumed.clone())?;
    opt2.load_state_tensors(&candle_core::safetensors::load(&state_file, &Device::Cpu)?)?;
    assert_eq!(opt2.step_count(), 3);
    let mut step2 = r.train_step(true)?;
    for k in 3..r.steps() {
        step2.apply_micro_batches(&mut opt2, [(0.0, r.grads(&resumed, k, 1.0)?)])?;
    }
    assert_eq!(bits(&resumed)?, bits(&straight)?);
    assert_eq!(state_bits(&opt2)?, state_bits(&opt)?);
    Ok(())
}

#[test]
fn split_micro_batches_accumulate_to_the_same_update() -> Result<()> {
    // Halves add up exactly in binary floating point, so the trajectories agree bit for bit.
    let r = Reference::load()?;
    let whole = r.params()?;
    let mut opt = r.optimizer(whole.clone())?;
    let mut step = r.train_step(true)?;
    let halves = r.params()?;
    let mut opt_h = r.optimizer(halves.clone())?;
    let mut step_h = r.train_step(true)?;
    for k in 0..r.steps() {
        let a = step.apply_micro_batches(&mut opt, [(1.0, r.grads(&whole, k, 1.0)?)])?;
        let mut acc = GradAccumulator::new(opt_h.params());
        acc.add(0.5, r.grads(&halves, k, 0.5)?)?;
        acc.add(0.5, r.grads(&halves, k, 0.5)?)?;
        let b = step_h.apply(&mut opt_h, acc)?;
        assert_eq!((a.loss, a.grad_norm, a.lr), (b.loss, b.grad_norm, b.lr));
    }
    assert_eq!(bits(&halves)?, bits(&whole)?);
    Ok(())
}

#[test]
fn non_finite_steps_are_skipped_without_a_trace() -> Result<()> {
    let r = Reference::load()?;
    // Reference: the plain trajectory.
    let clean = r.params()?;
    let mut opt = r.optimizer(clean.clone())?;
    let mut step = r.train_step(true)?;
    for k in 0..r.steps() {
        step.apply_micro_batches(&mut opt, [(0.0, r.grads(&clean, k, 1.0)?)])?;
    }

    // The same, with a NaN gradient and an infinite loss thrown in after step 2.
    let params = r.params()?;
    let mut opt2 = r.optimizer(params.clone())?;
    let mut step2 = r.train_step(true)?;
    for k in 0..r.steps() {
        if k == 2 {
            let (weights, state) = (bits(&params)?, state_bits(&opt2)?);
            let mut bad = r.grads(&params, k, 1.0)?;
            let (_, b) = &params[1];
            let mut g = b.as_tensor().ones_like()?.to_vec1::<f32>()?;
            g[2] = f32::NAN;
            bad.insert(b.as_tensor(), Tensor::new(g.as_slice(), &Device::Cpu)?);
            let stats = step2.apply_micro_batches(&mut opt2, [(0.0, bad)])?;
            assert_eq!(stats.skipped, Some(SkipReason::NonFiniteGradient));
            assert!(stats.grad_norm.is_some_and(|n| n.is_nan()));
            assert_eq!((stats.skipped_steps, stats.optimizer_step), (1, 2));

            let w = &params[0].1;
            let mut acc = GradAccumulator::new(opt2.params());
            acc.backward(&(w.as_tensor().sum_all()? * f64::INFINITY)?)?;
            acc.add(0.1, r.grads(&params, k, 1.0)?)?;
            let stats = step2.apply(&mut opt2, acc)?;
            assert_eq!(stats.skipped, Some(SkipReason::NonFiniteLoss));
            assert_eq!(
                (stats.skipped_steps, stats.optimizer_step, stats.grad_norm),
                (2, 2, None)
            );

            assert_eq!(bits(&params)?, weights, "weights unchanged");
            assert_eq!(
                state_bits(&opt2)?,
                state,
                "moments and step counters unchanged"
            );
        }
        let stats = step2.apply_micro_batches(&mut opt2, [(0.0, r.grads(&params, k, 1.0)?)])?;
        assert_eq!(stats.skipped, None);
    }
    assert_eq!(step2.skipped_steps(), 2);
    assert_eq!(
        bits(&params)?,
        bits(&clean)?,
        "the skipped batches left no trace"
    );
    Ok(())
}
