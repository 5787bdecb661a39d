//! The optimiser: a small [`Optimizer`] trait in the manner of candle-nn's, and AdamW computed
//! operation by operation as `torch.optim.AdamW` does (single-tensor path), so that trajectories
//! match PyTorch's to float32 rounding. Its state exports to named tensors and restores exactly.
//!
//! Mixed precision works as FSDP's and apex O2's do: a parameter computed in bf16 or f16 keeps an
//! f32 **master copy** here; the update is applied to the master and the model's variable gets the
//! master cast to its dtype. Without it an update at the usual fine-tuning rates (1e-5) is below
//! half a bf16 ulp for any |w| above ~4e-3 and is rounded away: most weights would never move.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A gradient-based optimiser over named parameters.
pub trait Optimizer {
    /// The parameters it updates, by name.
    fn params(&self) -> &[(String, Var)];
    /// Applies one update; parameters without a gradient in `grads` are left alone (as torch
    /// leaves parameters whose `.grad` is `None`).
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The learning rate the next step uses.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (the schedule calls this before each step).
    fn set_learning_rate(&mut self, lr: f64);
    /// Number of updates applied so far.
    fn step_count(&self) -> u64;
    /// The optimiser's state as named tensors, for a checkpoint.
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores state written by [`Optimizer::state_tensors`]; every entry must be present and
    /// none may be left over.
    fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// AdamW hyper-parameters; the defaults are torch's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Learning rate (the schedule overrides it step by step).
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to √v̂ in the denominator.
    pub eps: f64,
    /// Decoupled weight decay: θ ← θ·(1 − lr·weight_decay) before the Adam update.
    pub weight_decay: f64,
    /// Keep an f32 master copy of parameters computed in bf16/f16 and update that (mixed
    /// precision). `false` updates the low-precision weights directly, losing small updates;
    /// it exists to measure what the master copy buys, and saves 4 bytes per parameter.
    pub master_weights: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            master_weights: true,
        }
    }
}

impl AdamWConfig {
    /// Checks that the hyper-parameters are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: &str| {
            Err(Error::Config {
                field,
                message: message.to_string(),
            })
        };
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be finite and >= 0");
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return bad("beta1", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.beta2) {
            return bad("beta2", "must be in [0, 1)");
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return bad("eps", "must be finite and >= 0");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", "must be finite and >= 0");
        }
        Ok(())
    }
}

/// Per-parameter AdamW state. Moments are f32 whatever the parameter's dtype (bf16 moments lose
/// the small updates); the step is per parameter, as in torch, so a parameter that missed a
/// gradient keeps its own bias correction.
#[derive(Debug, Clone)]
struct Moments {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
    decay: bool,
    /// The f32 master of a bf16/f16 parameter; `None` for f32 parameters (the variable is its
    /// own master) and when master weights are off.
    master: Option<Tensor>,
}

/// AdamW matching `torch.optim.AdamW` (decoupled weight decay, bias corrections, ε outside √).
#[derive(Debug)]
pub struct AdamW {
    params: Vec<(String, Var)>,
    moments: Vec<Moments>,
    config: AdamWConfig,
    step_count: u64,
}

/// Names of the exported state tensors.
const STEP_COUNT: &str = "optimizer_step";
fn exp_avg_name(param: &str) -> String {
    format!("exp_avg.{param}")
}
fn exp_avg_sq_name(param: &str) -> String {
    format!("exp_avg_sq.{param}")
}
fn step_name(param: &str) -> String {
    format!("step.{param}")
}
fn master_name(param: &str) -> String {
    format!("{MASTER_PREFIX}{param}")
}
/// Prefix of the f32 master weights in the exported state.
const MASTER_PREFIX: &str = "master.";

/// Whether an exported optimiser state holds master weights (states written before mixed
/// precision do not; the weights then come from the checkpoint's model files).
pub fn state_has_master_weights(state: &HashMap<String, Tensor>) -> bool {
    state.keys().any(|k| k.starts_with(MASTER_PREFIX))
}

impl AdamW {
    /// An optimiser over `params` (e.g. `policy.vars()`), all float and uniquely named.
    pub fn new(params: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        let mut seen = HashSet::new();
        let mut moments = Vec::with_capacity(params.len());
        for (name, var) in &params {
            if !seen.insert(name.as_str()) {
                return Err(Error::Input(format!(
                    "AdamW: parameter {name} is given twice"
                )));
            }
            if !var.dtype().is_float() {
                return Err(Error::Input(format!(
                    "AdamW: parameter {name} has non-float dtype {:?}",
                    var.dtype()
                )));
            }
            let zeros = Tensor::zeros(var.shape(), DType::F32, var.device())?;
            let master = (config.master_weights && var.dtype() != DType::F32)
                .then(|| var.as_tensor().detach().to_dtype(DType::F32))
                .transpose()?;
            moments.push(Moments {
                exp_avg: zeros.clone(),
                exp_avg_sq: zeros,
                step: 0,
                decay: true,
                master,
            });
        }
        Ok(Self {
            params,
            moments,
            config,
            step_count: 0,
        })
    }

    /// Turns weight decay off for the parameters whose name matches (commonly biases and norm
    /// gains, as Hugging Face's Trainer does).
    pub fn exclude_from_weight_decay(mut self, matches: impl Fn(&str) -> bool) -> Self {
        for ((name, _), m) in self.params.iter().zip(&mut self.moments) {
            m.decay = !matches(name);
        }
        self
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Every parameter in f32 by name: the master copy where there is one, else the variable
    /// (exact for f32 parameters). These are the weights the optimiser updates. An f32
    /// parameter's tensor shares the variable's storage: `copy()` it to keep it across a step.
    pub fn master_weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.params
            .iter()
            .zip(&self.moments)
            .map(|((name, var), m)| Ok((name.clone(), Self::master_of(var, m)?)))
            .collect()
    }

    /// The f32 weights of one parameter (see [`AdamW::master_weights`]).
    fn master_of(var: &Var, m: &Moments) -> Result<Tensor> {
        Ok(match &m.master {
            Some(master) => master.clone(),
            None => var.as_tensor().detach().to_dtype(DType::F32)?,
        })
    }

    /// One parameter's update, in torch's order of operations (`_single_tensor_adam`).
    fn update(config: &AdamWConfig, var: &Var, grad: &Tensor, m: &mut Moments) -> Result<()> {
        let AdamWConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = *config;
        let grad = grad.detach().to_dtype(DType::F32)?;
        let mut param = Self::master_of(var, m)?;
        m.step += 1;
        if m.decay && weight_decay != 0.0 {
            param = (param * (1.0 - lr * weight_decay))?;
        }
        // exp_avg.lerp_(grad, 1 − β1) and exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 − β2).
        m.exp_avg = (((&grad - &m.exp_avg)? * (1.0 - beta1))? + &m.exp_avg)?;
        m.exp_avg_sq = ((&m.exp_avg_sq * beta2)? + ((&grad * (1.0 - beta2))? * &grad)?)?;
        let step = m.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - beta2.powf(step)).sqrt();
        let step_size = lr / bias_correction1;
        // A true division, as torch does; `tensor / f64` would multiply by the reciprocal.
        let divisor = Tensor::new(bias_correction2_sqrt as f32, param.device())?;
        let denom = (m.exp_avg_sq.sqrt()?.broadcast_div(&divisor)? + eps)?;
        let param = (param + ((&m.exp_avg * -step_size)? / denom)?)?;
        var.set(&param.to_dtype(var.dtype())?)?;
        if m.master.is_some() {
            m.master = Some(param);
        }
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        for ((name, var), m) in self.params.iter().zip(&mut self.moments) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            if grad.dims() != var.dims() {
                return Err(Error::Shape {
                    tensor: format!("gradient of {name}"),
                    expected: var.dims().to_vec(),
                    got: grad.dims().to_vec(),
                });
            }
            Self::update(&self.config, var, grad, m)?;
        }
        self.step_count += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn step_count(&self) -> u64 {
        self.step_count
    }

    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let count = |n: u64| Tensor::new(&[n as i64], &Device::Cpu);
        let mut out = vec![(STEP_COUNT.to_string(), count(self.step_count)?)];
        for ((name, var), m) in self.params.iter().zip(&self.moments) {
            out.push((exp_avg_name(name), m.exp_avg.clone()));
            out.push((exp_avg_sq_name(name), m.exp_avg_sq.clone()));
            out.push((step_name(name), count(m.step)?));
            // Always written, f32 parameters included: a checkpoint's model files are in the
            // dtype the model was loaded from (often bf16), which would round an f32 run's weights.
            out.push((master_name(name), Self::master_of(var, m)?));
        }
        Ok(out)
    }

    fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let with_masters = state_has_master_weights(state);
        let per_param = if with_masters { 4 } else { 3 };
        let expected = 1 + per_param * self.params.len();
        if state.len() != expected {
            let known: HashSet<String> = self
                .params
                .iter()
                .flat_map(|(n, _)| {
                    [
                        exp_avg_name(n),
                        exp_avg_sq_name(n),
                        step_name(n),
                        master_name(n),
                    ]
                })
                .chain([STEP_COUNT.to_string()])
                .collect();
            let extra: Vec<&String> = state
                .keys()
                .filter(|k| !known.contains(*k))
                .take(5)
                .collect();
            return Err(Error::State(format!(
                "expected {expected} tensors for {} parameters, got {} (unknown entries: {extra:?})",
                self.params.len(),
                state.len()
            )));
        }
        let get = |key: &str| {
            state
                .get(key)
                .ok_or_else(|| Error::State(format!("missing entry {key}")))
        };
        let count = |key: &str| -> Result<u64> {
            let t = get(key)?;
            let v = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            match v.as_slice() {
                [n] if *n >= 0 => Ok(*n as u64),
                _ => Err(Error::State(format!(
                    "{key}: expected one non-negative count, got {:?} of shape {:?}",
                    v,
                    t.dims()
                ))),
            }
        };
        // Everything is checked before anything is replaced, so a failed load changes nothing.
        let mut restored = Vec::with_capacity(self.params.len());
        for ((name, var), m) in self.params.iter().zip(&self.moments) {
            let moment = |key: String| -> Result<Tensor> {
                let t = get(&key)?;
                if t.dims() != var.dims() {
                    return Err(Error::Shape {
                        tensor: key,
                        expected: var.dims().to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
                Ok(t.to_dtype(DType::F32)?.to_device(var.device())?)
            };
            let saved_master = if with_masters {
                Some(moment(master_name(name))?)
            } else {
                None
            };
            restored.push((
                Moments {
                    exp_avg: moment(exp_avg_name(name))?,
                    exp_avg_sq: moment(exp_avg_sq_name(name))?,
                    step: count(&step_name(name))?,
                    decay: m.decay,
                    master: m.master.clone(),
                },
                saved_master,
            ));
        }
        self.step_count = count(STEP_COUNT)?;
        // The saved masters become the weights; the variables get them cast to their dtype.
        self.moments = Vec::with_capacity(restored.len());
        for ((_, var), (mut m, saved_master)) in self.params.iter().zip(restored) {
            if let Some(master) = saved_master {
                var.set(&master.to_dtype(var.dtype())?)?;
                if m.master.is_some() {
                    m.master = Some(master);
                }
            } else if m.master.is_some() {
                // An older state without masters: start them from the weights as loaded.
                m.master = Some(var.as_tensor().detach().to_dtype(DType::F32)?);
            }
            self.moments.push(m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Var, AdamW) {
        let w = Var::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap();
        let opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default()).unwrap();
        (w, opt)
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // After one step m̂ = g and v̂ = g², so the update is −lr·g/(|g| + ε) plus decay.
        let (w, mut opt) = setup();
        let mut grads = GradStore::default();
        grads.insert(
            w.as_tensor(),
            Tensor::new(&[0.3f32, -4.0, 0.0], &Device::Cpu).unwrap(),
        );
        opt.step(&grads).unwrap();
        let v = w.as_tensor().to_vec1::<f32>().unwrap();
        let decay = 1.0 - 1e-3 * 1e-2;
        let expected = [
            1.0 * decay - 1e-3 * 0.3 / (0.3 + 1e-8),
            -2.0 * decay + 1e-3,
            0.5 * decay,
        ];
        for (a, b) in v.iter().zip(expected) {
            assert!((*a as f64 - b).abs() < 1e-7, "{v:?}");
        }
        assert_eq!(opt.step_count(), 1);
    }

    #[test]
    fn state_round_trip_and_bad_state_rejected() {
        let (w, mut opt) = setup();
        let mut grads = GradStore::default();
        grads.insert(
            w.as_tensor(),
            Tensor::new(&[0.3f32, -4.0, 1.0], &Device::Cpu).unwrap(),
        );
        opt.step(&grads).unwrap();
        let state: HashMap<String, Tensor> = opt.state_tensors().unwrap().into_iter().collect();
        let mut names: Vec<&String> = state.keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "exp_avg.w",
                "exp_avg_sq.w",
                "master.w",
                "optimizer_step",
                "step.w"
            ]
        );

        let (_, mut fresh) = setup();
        let mut wrong = state.clone();
        wrong.insert(
            "exp_avg.w".into(),
            Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
        );
        let err = fresh.load_state_tensors(&wrong).unwrap_err().to_string();
        assert!(
            err.contains("exp_avg.w") && err.contains("[3]") && err.contains("[2]"),
            "{err}"
        );
        assert_eq!(fresh.step_count(), 0, "a failed load changes nothing");
        let mut extra = state.clone();
        extra.insert(
            "exp_avg.v".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(fresh
            .load_state_tensors(&extra)
            .unwrap_err()
            .to_string()
            .contains("exp_avg.v"));

        fresh.load_state_tensors(&state).unwrap();
        assert_eq!(fresh.step_count(), 1);
        assert_eq!(fresh.moments[0].step, 1);
        assert_eq!(
            fresh.moments[0].exp_avg_sq.to_vec1::<f32>().unwrap(),
            opt.moments[0].exp_avg_sq.to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn invalid_config_and_params_are_errors() {
        let w = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            beta2: 1.0,
            ..Default::default()
        };
        assert!(AdamW::new(vec![("w".into(), w.clone())], cfg)
            .unwrap_err()
            .to_string()
            .contains("beta2"));
        let twice = vec![("w".into(), w.clone()), ("w".into(), w)];
        assert!(AdamW::new(twice, AdamWConfig::default()).is_err());
    }

    #[test]
    fn excluded_parameters_are_not_decayed() {
        let w = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let b = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.5,
            lr: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(
            vec![("w".into(), w.clone()), ("x.bias".into(), b.clone())],
            cfg,
        )
        .unwrap()
        .exclude_from_weight_decay(|n| n.ends_with(".bias"));
        let mut grads = GradStore::default();
        grads.insert(w.as_tensor(), Tensor::new(&[0.0f32], &Device::Cpu).unwrap());
        grads.insert(b.as_tensor(), Tensor::new(&[0.0f32], &Device::Cpu).unwrap());
        opt.step(&grads).unwrap();
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] - 0.95).abs() < 1e-7);
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap()[0], 1.0);
    }

    /// `steps` updates of a bf16 parameter at lr 1e-5 with a constant gradient; returns the
    /// parameter and the optimiser.
    fn bf16_run(master_weights: bool, steps: usize) -> (Var, AdamW) {
        let init = Tensor::new(&[1.0f32, -0.5, 0.25], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let w = Var::from_tensor(&init).unwrap();
        let cfg = AdamWConfig {
            lr: 1e-5,
            weight_decay: 0.0,
            master_weights,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], cfg).unwrap();
        for _ in 0..steps {
            let mut grads = GradStore::default();
            let g = Tensor::new(&[1.0f32, 1.0, 1.0], &Device::Cpu).unwrap();
            grads.insert(w.as_tensor(), g.to_dtype(DType::BF16).unwrap());
            opt.step(&grads).unwrap();
        }
        (w, opt)
    }

    fn f32_values(t: &Tensor) -> Vec<f32> {
        t.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn bf16_parameters_move_through_their_f32_master_and_not_without_it() {
        // Each update is −1e-5 (a constant gradient moves Adam by lr·sign(g)): far below half the
        // bf16 spacing near these weights (2^-9 ≈ 2e-3), so a bf16 weight updated in place
        // never moves.
        let (w, _) = bf16_run(false, 300);
        assert_eq!(f32_values(w.as_tensor()), [1.0, -0.5, 0.25]);

        let (w, opt) = bf16_run(true, 300);
        let master = f32_values(&opt.master_weights().unwrap()[0].1);
        for (m, start) in master.iter().zip([1.0f32, -0.5, 0.25]) {
            assert!(
                ((start - m) - 300.0 * 1e-5).abs() < 1e-5,
                "master moved by {} from {start}",
                start - m
            );
        }
        // The variable is the master rounded to bf16; 3e-3 is more than half a bf16 step, so
        // it has moved too.
        let weights = f32_values(w.as_tensor());
        let rounded = f32_values(
            &Tensor::new(master.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap(),
        );
        assert_eq!(weights, rounded);
        assert_ne!(weights[0], 1.0);
    }

    #[test]
    fn master_weights_round_trip_through_the_state_and_set_the_variables() {
        let (w, opt) = bf16_run(true, 7);
        let state: HashMap<String, Tensor> = opt.state_tensors().unwrap().into_iter().collect();
        assert_eq!(state["master.w"].dtype(), DType::F32);

        let (w2, mut resumed) = bf16_run(true, 0);
        resumed.load_state_tensors(&state).unwrap();
        assert_eq!(
            f32_values(&resumed.master_weights().unwrap()[0].1),
            f32_values(&opt.master_weights().unwrap()[0].1)
        );
        assert_eq!(f32_values(w2.as_tensor()), f32_values(w.as_tensor()));

        // An f32 parameter restores its full-precision weights from the state, whatever the
        // model files hold.
        let (v, mut plain) = setup();
        let mut grads = GradStore::default();
        grads.insert(
            v.as_tensor(),
            Tensor::new(&[0.3f32, -4.0, 1.0], &Device::Cpu).unwrap(),
        );
        plain.step(&grads).unwrap();
        let state: HashMap<String, Tensor> = plain.state_tensors().unwrap().into_iter().collect();
        let (v2, mut fresh) = setup();
        fresh.load_state_tensors(&state).unwrap();
        assert_eq!(f32_values(v2.as_tensor()), f32_values(v.as_tensor()));

        // A state written before master weights (no `master.*`) still loads.
        let old: HashMap<String, Tensor> = state
            .into_iter()
            .filter(|(k, _)| !k.starts_with("master."))
            .collect();
        assert!(!state_has_master_weights(&old));
        setup().1.load_state_tensors(&old).unwrap();
    }
}
