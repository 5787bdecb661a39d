//! A training forward and backward of the backbone, with the decoder layers' activations either
//! kept for the backward pass or recomputed in it (activation recomputation, a.k.a. gradient
//! checkpointing).
//!
//! A stored-activation forward keeps what every op of every layer saves for its backward pass
//! (attention probabilities `[B, heads, T, T]`, the MLP's `[B, T, intermediate]` activations, ...)
//! until the backward pass has run. With [`Activations::Recomputed`] only each decoder layer's
//! input `[B, T, hidden]` is kept: the backward pass runs each layer's forward again, last layer
//! first, and back-propagates through that one layer alone. The price is one more forward pass
//! of the decoder layers.
//!
//! candle has no checkpoint op, so the recomputed backward pass is assembled here:
//! 1. the forward, layer by layer, each layer's input a leaf variable (no graph between layers);
//! 2. the head (final norm and the caller's loss) back-propagated to the last layer's output;
//! 3. for each layer, last to first: its forward again on its kept input, then the backward pass
//!    of `sum(output · d_output)`, whose gradient with respect to the output is `d_output`: it
//!    gives the layer's weight gradients and the gradient of its input, the previous layer's
//!    `d_output`;
//! 4. the embedding lookup back-propagated from the first layer's input gradient.
//!
//! The same kernels run on the same values as in the stored-activation pass, so the gradients are
//! the same (`tests/recompute.rs`); only a weight used in two places (tied embeddings: the lookup
//! and the LM head) sums its two contributions in another order.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId, Var};

use super::{AttentionMask, Qwen2Model};
use crate::Error;

/// Whether a training forward keeps the decoder layers' activations for the backward pass or
/// recomputes them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activations {
    /// Kept: the fastest, and the most memory.
    #[default]
    Stored,
    /// Recomputed layer by layer in the backward pass: only each layer's input is kept.
    Recomputed,
}

impl Activations {
    /// [`Activations::Recomputed`] when `gradient_checkpointing` is set (the learners' config key).
    pub fn recomputed_if(gradient_checkpointing: bool) -> Self {
        if gradient_checkpointing {
            Self::Recomputed
        } else {
            Self::Stored
        }
    }
}

/// The loss of one training forward and the gradients of the variables it depends on.
#[derive(Debug)]
pub struct LossAndGradients {
    /// The loss value.
    pub loss: f64,
    /// Gradients of the variables (the trainable weights), by tensor id; empty when the loss is
    /// not finite (nothing is back-propagated: the caller skips the update anyway).
    pub grads: GradStore,
}

/// The scalar loss `loss_of_hidden(final-norm hidden states [B, T, hidden])` of a training
/// forward of `backbone` on `input_ids` `[B, T]` at `positions` under the attention `mask` (as
/// [`Qwen2Model::forward_with`], without a cache), and its gradients with respect to the
/// backbone's variables and whatever else the loss uses (the LM head).
pub fn loss_and_gradients<E: From<Error>>(
    backbone: &Qwen2Model,
    input_ids: &Tensor,
    positions: &Tensor,
    mask: &AttentionMask,
    activations: Activations,
    loss_of_hidden: impl FnOnce(&Tensor) -> Result<Tensor, E>,
) -> Result<LossAndGradients, E> {
    match activations {
        Activations::Stored => {
            let hidden = backbone.forward_with(input_ids, positions, mask, None)?;
            let loss = loss_of_hidden(&hidden)?;
            Ok(finish(&loss, |_| Ok(()))?)
        }
        Activations::Recomputed => recomputed(backbone, input_ids, positions, mask, loss_of_hidden),
    }
}

fn recomputed<E: From<Error>>(
    backbone: &Qwen2Model,
    input_ids: &Tensor,
    positions: &Tensor,
    mask: &AttentionMask,
    loss_of_hidden: impl FnOnce(&Tensor) -> Result<Tensor, E>,
) -> Result<LossAndGradients, E> {
    let attention = backbone.attention_inputs(positions, mask)?;

    // 1. The forward; each layer's graph is dropped with its output once the output is copied
    //    into the next layer's input leaf.
    let mut inputs: Vec<Var> = Vec::with_capacity(backbone.num_layers());
    let mut x = leaf(&backbone.embed(input_ids)?)?;
    for layer in backbone.layers() {
        let output = layer.forward(x.as_tensor(), &attention, None)?;
        inputs.push(x);
        x = leaf(&output)?;
    }

    // 2. The head, back-propagated to the last layer's output.
    let loss = loss_of_hidden(&backbone.final_norm(x.as_tensor())?)?;
    let mut d_output = None;
    let mut out = finish(&loss, |grads| {
        d_output = grads.remove(x.as_tensor());
        Ok(())
    })?;
    drop((loss, x));

    // 3. The layers, last to first. A layer whose output gets no gradient passes none on.
    for (layer, input) in backbone.layers().iter().zip(inputs).rev() {
        let Some(d_out) = d_output.take() else {
            break;
        };
        let output = layer.forward(input.as_tensor(), &attention, None)?;
        let probe = (output * d_out).and_then(|p| p.sum_all());
        let mut grads = variable_gradients(&probe.map_err(Error::from)?)?;
        d_output = grads.remove(input.as_tensor());
        out.grads.extend(grads).map_err(Error::from)?;
    }

    // 4. The embedding lookup.
    if let Some(d_input) = d_output {
        let probe = (backbone.embed(input_ids)? * d_input).and_then(|p| p.sum_all());
        let grads = variable_gradients(&probe.map_err(Error::from)?)?;
        out.grads.extend(grads).map_err(Error::from)?;
    }
    Ok(out)
}

/// A copy of `t` as a leaf variable: gradients stop at it and are recorded for it.
fn leaf(t: &Tensor) -> Result<Var, Error> {
    Ok(Var::from_tensor(&t.detach())?)
}

/// The loss value and, when it is finite, the variables' gradients, which `inspect` sees (and may
/// take from) first.
fn finish(
    loss: &Tensor,
    inspect: impl FnOnce(&mut GradStore) -> Result<(), Error>,
) -> Result<LossAndGradients, Error> {
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let mut grads = GradStore::default();
    if value.is_finite() {
        grads = variable_gradients(loss)?;
        inspect(&mut grads)?;
    }
    Ok(LossAndGradients { loss: value, grads })
}

/// The gradients of the variables under `root`. candle's backward pass also leaves gradients of
/// constant inputs (attention bias, rotary tables) in its store; they are dropped here.
fn variable_gradients(root: &Tensor) -> Result<GradStore, Error> {
    let variables: Vec<TensorId> = root
        .sorted_nodes()
        .into_iter()
        .filter(|node| node.is_variable())
        .map(Tensor::id)
        .collect();
    let all = root.backward()?;
    let mut kept = GradStore::default();
    for id in variables {
        if let Some(grad) = all.get_id(id) {
            kept.insert_id(id, grad.clone());
        }
    }
    Ok(kept)
}
