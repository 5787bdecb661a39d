//! The SFT learner end to end: JSONL conversations → the real Qwen2.5 tokenizer and chat template
//! → a small random Qwen2 with the tokenizer's vocabulary → masked loss, packing, training,
//! checkpoint and resume.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use mathrl::model::{Qwen2Config, Trainable};
use mathrl::{Metrics, Policy, Tokenizer};
use mathrl_learners::sft_loss::TokenNormaliser;
use mathrl_learners::{
    load_conversations, tokenize_conversation, CheckpointConfig, LrSchedule, RunState, SftBatch,
    SftConfig, SftExample, SftLearner,
};

const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/qwen2.5-tokenizer"
);

const DATA: &str = r#"{"messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "2+3 = \\boxed{5}"}]}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "7*6?"}, {"role": "assistant", "content": "\\boxed{42}"}, {"role": "user", "content": "Half of it?"}, {"role": "assistant", "content": "\\boxed{21}"}]}

{"messages": [{"role": "user", "content": "Solve x+1=3."}, {"role": "assistant", "content": "x = \\boxed{2}"}]}
"#;

/// A random Qwen2 small enough for tests but with the real tokenizer's 151,665 ids.
fn small_config() -> Qwen2Config {
    Qwen2Config {
        vocab_size: 151_665,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 512,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        torch_dtype: Some("float32".into()),
        bos_token_id: None,
        eos_token_ids: vec![151645],
        pad_token_id: Some(151643),
        architecture: None,
        num_labels: None,
    }
}

fn examples() -> Result<Vec<SftExample>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sft.jsonl");
    std::fs::write(&path, DATA)?;
    let tokenizer = Tokenizer::from_dir(TOKENIZER)?;
    load_conversations(&path)?
        .iter()
        .map(|c| Ok(tokenize_conversation(&tokenizer, &c.messages, 512)?))
        .collect()
}

fn learner(config: SftConfig) -> Result<SftLearner> {
    let policy = Policy::random(&small_config(), 7, &Device::Cpu, DType::F32, Trainable::Yes)?;
    Ok(SftLearner::new(policy, config, Metrics::null())?)
}

fn test_config() -> SftConfig {
    SftConfig {
        train_step: mathrl_learners::TrainStepConfig {
            schedule: LrSchedule::constant(1e-2),
            max_grad_norm: Some(1.0),
            ..Default::default()
        },
        micro_batch_size: 2,
        max_length: 256,
        logprob_chunk_positions: 64,
        ..SftConfig::default()
    }
}

fn loss(learner: &SftLearner, batch: &SftBatch) -> Result<f32> {
    Ok(learner
        .batch_loss(batch, TokenNormaliser::MicroBatch)?
        .loss
        .to_scalar::<f32>()?)
}

#[test]
fn prompt_labels_do_not_change_the_loss_and_assistant_labels_do() -> Result<()> {
    let examples = examples()?;
    let refs: Vec<&SftExample> = examples.iter().collect();
    let learner = learner(test_config())?;
    let batch = SftBatch::collate(&refs, &[vec![1]], &Device::Cpu, DType::F32)?;
    let base = loss(&learner, &batch)?;
    let mask = batch.loss_mask.to_vec2::<f32>()?[0].clone();
    let targets = batch.targets.to_vec2::<u32>()?[0].clone();
    let with_target = |t: usize, id: u32| -> Result<SftBatch> {
        let mut changed = targets.clone();
        changed[t] = id;
        Ok(SftBatch {
            targets: Tensor::new(changed, &Device::Cpu)?.unsqueeze(0)?,
            ..batch.clone()
        })
    };
    // Every prompt (system, user, template) position: a different label, the very same loss.
    let prompt_positions: Vec<usize> = (0..mask.len()).filter(|&t| mask[t] == 0.0).collect();
    assert!(prompt_positions.len() > 20);
    for &t in prompt_positions.iter().step_by(5) {
        assert_eq!(
            loss(&learner, &with_target(t, 12345)?)?,
            base,
            "prompt position {t}"
        );
    }
    // An assistant position's label does matter.
    let answer = mask
        .iter()
        .position(|&m| m == 1.0)
        .expect("assistant tokens");
    assert_ne!(loss(&learner, &with_target(answer, 12345)?)?, base);
    // The trained tokens are exactly the two assistant turns ("\boxed{42}<|im_end|>\n" and
    // "\boxed{21}<|im_end|>\n", whatever their token counts) and nothing else.
    let tokenizer = Tokenizer::from_dir(TOKENIZER)?;
    let trained: Vec<u32> = targets
        .iter()
        .zip(&mask)
        .filter(|(_, &m)| m == 1.0)
        .map(|(&t, _)| t)
        .collect();
    assert_eq!(
        tokenizer.decode(&trained, false)?,
        "\\boxed{42}<|im_end|>\n\\boxed{21}<|im_end|>\n"
    );
    Ok(())
}

#[test]
fn packing_gives_the_unpacked_loss() -> Result<()> {
    let examples = examples()?;
    let refs: Vec<&SftExample> = examples.iter().collect();
    let learner = learner(test_config())?;
    let tokens: usize = refs.iter().map(|e| e.num_assistant_tokens()).sum();
    let normaliser = TokenNormaliser::Tokens(tokens as f64);
    let separate = SftBatch::collate(
        &refs,
        &[vec![0], vec![1], vec![2]],
        &Device::Cpu,
        DType::F32,
    )?;
    let packed = SftBatch::collate(&refs, &[vec![0, 1, 2]], &Device::Cpu, DType::F32)?;
    assert_eq!(packed.input_ids.dim(0)?, 1);
    let a = learner
        .batch_loss(&separate, normaliser)?
        .loss
        .to_scalar::<f32>()?;
    let b = learner
        .batch_loss(&packed, normaliser)?
        .loss
        .to_scalar::<f32>()?;
    assert!((a - b).abs() < 1e-5 * a.abs(), "unpacked {a} vs packed {b}");
    // Without the block-diagonal bias (plain causal over the packed row) the loss differs.
    let t = packed.input_ids.dim(1)?;
    let causal: Vec<f32> = (0..t * t)
        .map(|i| if i % t <= i / t { 0.0 } else { f32::MIN })
        .collect();
    let leaky = SftBatch {
        attention_bias: Tensor::from_vec(causal, (1, 1, t, t), &Device::Cpu)?,
        ..packed.clone()
    };
    let c = learner
        .batch_loss(&leaky, normaliser)?
        .loss
        .to_scalar::<f32>()?;
    assert!(
        (a - c).abs() > 1e-4,
        "attending across conversations must change the loss"
    );
    Ok(())
}

#[test]
fn training_fits_the_assistant_turns_and_resumes_exactly() -> Result<()> {
    let examples = examples()?;
    let refs: Vec<&SftExample> = examples.iter().collect();
    // Packed rows, so the block-diagonal path is the one trained through.
    let mut config = test_config();
    config.packing = true;
    config.train_step.schedule = LrSchedule::constant(3e-2);
    let mut packed = learner(config)?;
    let before = packed.evaluate(&refs)?;
    for _ in 0..6 {
        let report = packed.step(&refs)?;
        assert_eq!(report.rows, 1);
    }
    let after = packed.evaluate(&refs)?;
    assert!(after < 0.5 * before, "{before} -> {after}");

    // Checkpoint after 2 steps, resume in a fresh learner: step 3 is the same.
    let dir = tempfile::tempdir()?;
    let checkpoints = CheckpointConfig::new(dir.path(), 2, 1);
    let mut a = learner(test_config())?;
    for _ in 0..2 {
        a.step(&refs)?;
    }
    let saved = a.save_checkpoint(&checkpoints, &RunState::default())?;
    let policy = Policy::load(&saved, &Device::Cpu, None, Trainable::Yes)?;
    let mut b = SftLearner::new(policy, test_config(), Metrics::null())?;
    b.restore(&saved)?;
    assert_eq!(b.step_count(), 2);
    let (ra, rb) = (a.step(&refs)?, b.step(&refs)?);
    assert_eq!(ra.loss.to_bits(), rb.loss.to_bits());
    assert_eq!(ra.update.grad_norm, rb.update.grad_norm);
    Ok(())
}

#[test]
fn token_micro_batching_does_not_change_the_update() -> Result<()> {
    // Rows of 7, 9, 4 and 12 tokens on the tiny fixture policy.
    let example = |ids: &[u32], prompt: usize| SftExample {
        input_ids: ids.to_vec(),
        assistant_mask: (0..ids.len()).map(|i| i >= prompt).collect(),
    };
    let examples = [
        example(&[5, 17, 42, 7, 8, 9, 10], 3),
        example(&[9, 3, 250, 7, 100, 200, 300, 301, 302], 4),
        example(&[600, 12, 1, 2], 2),
        example(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 5),
    ];
    let refs: Vec<&SftExample> = examples.iter().collect();
    let run = |max_tokens: usize| -> Result<(usize, f64, Vec<f32>)> {
        let config = SftConfig {
            micro_batch_size: 4,
            micro_batch_tokens: max_tokens,
            optimizer: mathrl_learners::AdamWConfig {
                // The first update ≈ lr·g: the comparison is of gradients, not of their signs.
                eps: 1.0,
                ..SftConfig::default().optimizer
            },
            train_step: mathrl_learners::TrainStepConfig {
                schedule: LrSchedule::constant(1e-3),
                max_grad_norm: None,
                ..Default::default()
            },
            ..SftConfig::default()
        };
        let policy = Policy::load(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen2"),
            &Device::Cpu,
            Some(DType::F32),
            Trainable::Yes,
        )?;
        let mut learner = SftLearner::new(policy, config, Metrics::null())?;
        let micro_batches = learner.batches(&refs)?.len();
        let report = learner.step(&refs)?;
        let mut weights = Vec::new();
        for (_, t) in learner.policy().named_tensors() {
            weights.extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((micro_batches, report.loss, weights))
    };
    let (one, loss, whole) = run(16_384)?;
    assert_eq!(one, 1);
    // 20 tokens: [7, 9] (2 × 9), [4] (then 2 × 12 > 20), [12]; 12 tokens: each row alone.
    for (max_tokens, expected) in [(20, 3), (12, 4)] {
        let (micro_batches, split_loss, split) = run(max_tokens)?;
        assert_eq!(micro_batches, expected, "{max_tokens} tokens");
        // Per-micro-batch f32 sums, added in another order: equal to f32 rounding.
        assert!(
            (loss - split_loss).abs() < 1e-6 * loss,
            "{loss} vs {split_loss}"
        );
        let max_diff = whole
            .iter()
            .zip(&split)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            max_diff < 1e-7,
            "{max_tokens} tokens: weights differ by {max_diff}"
        );
    }
    Ok(())
}
