//! The generation engine: continuous batching over a slot-based KV cache.
//!
//! One `generate` call turns prompts into groups of `n` completions. Work items are the samples
//! (prompt p, sample j) in order. Live sequences occupy slots 0..rows of the cache; each step:
//!
//! 1. finished sequences leave (the last live sequence moves into the freed slot, one copy of
//!    its cache), tool outputs that came back are fed (one extend forward each);
//! 2. free slots take the next samples: a prompt not yet seen is prefilled (several at once,
//!    right-padded, up to `max_prefill_tokens`); its other samples copy the prompt's cache from
//!    the first one's slot (or from a held copy when they wait for a later slot), so a prompt is
//!    prefilled exactly once; each new sample draws its first token from the prompt's logits;
//! 3. one decode step feeds every decoding sequence its newest token and samples the next.
//!
//! A sequence waiting for a tool keeps its slot and rides along in decode steps as a dummy row
//! (its result is discarded and its position rewritten later), so the batch never stalls on it.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::device_sampler;
use super::forward::{self, Logits};
use super::kv_cache::{PrefixKv, SlotKvCache};
use super::sampler::{SampledToken, Sampler};
use super::sequence::{sequence_rng, Next, Phase, Rules, Sequence};
use super::tool::{is_execution_success, output_block_rest, python_strip, ToolExecutor};
use super::SamplingParams;
use crate::model::Qwen2ForCausalLM;
use crate::types::{Completion, FinishReason, Group};
use crate::{Error, Policy, Result, Tokenizer};

/// Limits of the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Most sequences decoded together (slots of the KV cache). Default 64.
    pub max_live_sequences: usize,
    /// Bytes of KV cache; fewer slots are used when `max_live_sequences` slots of the longest
    /// prompt + `max_new_tokens` would not fit. Default 2 GiB.
    pub kv_cache_bytes: usize,
    /// Most tokens (rows × longest prompt) per prefill forward, bounding its activations. A
    /// longer prompt is prefilled alone. Default 4096.
    pub max_prefill_tokens: usize,
    /// Draw a decode step's tokens on the model's device, so only token ids and log-probs cross
    /// to the host (`generation::device_sampler`). Default: on a GPU yes, on the CPU no (the
    /// CPU sampler reproduces each sequence's stream exactly).
    pub sample_on_device: Option<bool>,
    /// Sample with the projection and LM-head weights of an f32 model stored in bf16: half the
    /// bytes each decode step reads (BENCHMARKS.md, "Panel weights"). The behaviour
    /// log-probs are then the bf16 weights' and differ from the learner's f32 ones by their
    /// rounding (`train/logprob_drift_*` shows how much); `grpo.old_logprobs = "behaviour"`
    /// corrects the sampling for it by the importance ratio. A bf16 model is unaffected.
    /// Default false.
    pub bf16_weights: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_live_sequences: 64,
            kv_cache_bytes: 2 << 30,
            max_prefill_tokens: 4096,
            sample_on_device: None,
            bf16_weights: false,
        }
    }
}

/// Counters and timers of one `generate` call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Prompts run through the model (each once, whatever `n`).
    pub prefills: usize,
    /// Prompt tokens run through the model.
    pub prefill_tokens: usize,
    /// Prefill forward passes (batches of prompts).
    pub prefill_batches: usize,
    /// Samples that started from a copy of their prompt's cache.
    pub prefix_copies: usize,
    /// Decode forward passes.
    pub decode_steps: usize,
    /// Tokens sampled (tool tokens excluded).
    pub sampled_tokens: usize,
    /// Tool calls executed.
    pub tool_calls: usize,
    /// Tokens appended from tool outputs.
    pub tool_tokens: usize,
    /// Most sequences live at once.
    pub peak_live_sequences: usize,
    /// Slots of the KV cache used by this call.
    pub slots: usize,
    /// Bytes of the KV cache.
    pub kv_cache_bytes: usize,
    /// Milliseconds in prefill forwards.
    pub prefill_ms: f64,
    /// Milliseconds in decode and extend forwards.
    pub decode_ms: f64,
    /// Milliseconds sampling and checking stop conditions.
    pub sample_ms: f64,
    /// Milliseconds of the whole call.
    pub total_ms: f64,
}

/// The groups of one `generate` call, in prompt order, and its statistics.
#[derive(Debug, Clone)]
pub struct GenerateOutput {
    /// One group per prompt.
    pub groups: Vec<Group>,
    /// Counters and timers.
    pub stats: EngineStats,
}

/// A finished tool call: prompt index, sample index, the output block's text, milliseconds.
type ToolResult = (usize, usize, String, f64);

/// Samples completions from a Qwen2 policy.
pub struct Engine {
    model: Qwen2ForCausalLM,
    policy_version: u64,
    tokenizer: Option<Tokenizer>,
    tool: Option<Arc<dyn ToolExecutor>>,
    config: EngineConfig,
    cache: Option<SlotKvCache>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policy_version", &self.policy_version)
            .field("tokenizer", &self.tokenizer.is_some())
            .field("tool", &self.tool.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl Engine {
    /// An engine over `model` (load it with `Trainable::No`: generation needs no gradient).
    pub fn new(model: Qwen2ForCausalLM, config: EngineConfig) -> Self {
        Self {
            model,
            policy_version: 0,
            tokenizer: None,
            tool: None,
            config,
            cache: None,
        }
    }

    /// An engine over a policy's model.
    pub fn from_policy(policy: &Policy, config: EngineConfig) -> Self {
        Self::new(policy.model().clone(), config)
    }

    /// Adds a tokenizer: completions get their text, stop strings and tool calls become possible,
    /// and its `eos_token` becomes a default stop token.
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer) -> Self {
        self.tokenizer = Some(tokenizer);
        self
    }

    /// Adds a tool executor: completions may call it (tool-integrated reasoning).
    pub fn with_tool(mut self, tool: Arc<dyn ToolExecutor>) -> Self {
        self.tool = Some(tool);
        self
    }

    /// Replaces the weights (e.g. published by the learner) and their version.
    pub fn set_weights(&mut self, model: Qwen2ForCausalLM, policy_version: u64) {
        self.model = model;
        self.policy_version = policy_version;
    }

    /// Lays out a CPU f32 model's projection and LM-head weights in the panel kernel's column
    /// panels, in bf16 when the config asks for it (once per set of weights, unless the model
    /// came in that layout: the learner publishes the local actors' shared copy so). The engine
    /// then holds its own copy of those weights: as large as the model's in f32, half in bf16.
    fn prepare_decode_weights(&mut self) -> Result<()> {
        if !self.model.has_panel_weights() {
            self.model = self.model.for_cpu_decoding(self.config.bf16_weights)?;
        }
        Ok(())
    }

    /// Sets the version stamped on the groups.
    pub fn set_policy_version(&mut self, policy_version: u64) {
        self.policy_version = policy_version;
    }

    /// The version stamped on the groups.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// The tokenizer, if any.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The limits.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Samples `params.n` completions for each prompt (token ids, without padding).
    pub fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
    ) -> Result<GenerateOutput> {
        let start = Instant::now();
        params.validate()?;
        self.check_prompts(prompts)?;
        let rules = Rules::new(
            params,
            self.tokenizer.as_ref(),
            self.model.config(),
            self.tool.is_some(),
        )?;
        if prompts.is_empty() {
            return Ok(GenerateOutput {
                groups: Vec::new(),
                stats: EngineStats::default(),
            });
        }
        self.prepare_decode_weights()?;
        let (slots, capacity) = self.plan_slots(prompts, params)?;
        self.ensure_cache(slots, capacity)?;
        let cache = self
            .cache
            .as_ref()
            .expect("ensure_cache allocated the cache");
        let (tool_sender, tool_results) = mpsc::channel();
        let device = self.model.backbone().device();
        let sample_on_device = self.config.sample_on_device.unwrap_or(device.is_cuda());
        if sample_on_device && !device.is_cpu() {
            device.set_seed(params.seed)?;
        }
        let mut run = Run {
            model: &self.model,
            cache,
            tokenizer: self.tokenizer.as_ref(),
            tool: self.tool.clone(),
            rules,
            prompts,
            seed: params.seed,
            n: params.n,
            slots,
            max_prefill_tokens: self.config.max_prefill_tokens.max(1),
            queue: (0..prompts.len())
                .flat_map(|p| (0..params.n).map(move |j| (p, j)))
                .collect(),
            live: Vec::with_capacity(slots),
            held: None,
            done: (0..prompts.len() * params.n).map(|_| None).collect(),
            sampler: Sampler::new(),
            samplers: Vec::new(),
            device_rng: sample_on_device.then(|| sequence_rng(params.seed, usize::MAX, usize::MAX)),
            tool_sender,
            tool_results,
            tools_in_flight: 0,
            stats: EngineStats {
                slots,
                kv_cache_bytes: cache.bytes(),
                ..EngineStats::default()
            },
            start,
        };
        // On a worker of rayon's pool, each of a decode step's few dozen parallel kernels starts
        // from a pool thread; called from outside, each hands its work to the pool and sleeps
        // until woken (BENCHMARKS.md, "Panel weights").
        rayon::scope(|_| run.run())?;
        let Run {
            done, mut stats, ..
        } = run;
        let mut completions = done.into_iter();
        let groups = prompts
            .iter()
            .enumerate()
            .map(|(p, ids)| {
                let completions = completions
                    .by_ref()
                    .take(params.n)
                    .map(|c| {
                        c.ok_or_else(|| {
                            Error::Generation(format!("prompt {p}: a sample never finished"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Group {
                    prompt_index: p,
                    prompt_ids: ids.clone(),
                    completions,
                    policy_version: self.policy_version,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        stats.total_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(GenerateOutput { groups, stats })
    }

    fn check_prompts(&self, prompts: &[Vec<u32>]) -> Result<()> {
        let vocab = self.model.config().vocab_size;
        for (p, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(Error::Input(format!("prompt {p} is empty")));
            }
            if let Some((t, id)) = prompt
                .iter()
                .enumerate()
                .find(|(_, &id)| id as usize >= vocab)
            {
                return Err(Error::Input(format!(
                    "prompt {p}, position {t}: token id {id} is outside the vocabulary (size {vocab})"
                )));
            }
        }
        Ok(())
    }

    /// Slots and positions per slot that fit the byte budget; an error when not even one does.
    fn plan_slots(&self, prompts: &[Vec<u32>], params: &SamplingParams) -> Result<(usize, usize)> {
        let (longest, longest_len) = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.len()))
            .max_by_key(|&(i, len)| (len, std::cmp::Reverse(i)))
            .expect("prompts is not empty");
        // One spare position: a sequence waiting for a tool writes a dummy position there.
        let capacity = longest_len + params.max_new_tokens + 1;
        let per_position =
            SlotKvCache::bytes_per_position(self.model.config(), self.model.backbone().dtype());
        let per_slot = capacity * per_position;
        // A prompt whose samples wait for slots keeps a copy of its cache.
        let held = if params.n > 1 {
            longest_len * per_position
        } else {
            0
        };
        let budget = self.config.kv_cache_bytes;
        if per_slot + held > budget {
            return Err(Error::Generation(format!(
                "prompt {longest} ({longest_len} tokens) + max_new_tokens {} needs {} bytes of KV cache \
                 ({per_position} bytes per position{}), more than kv_cache_bytes = {budget}",
                params.max_new_tokens,
                per_slot + held,
                if held > 0 { ", plus a held copy of the prompt for n > 1" } else { "" },
            )));
        }
        let samples = prompts.len() * params.n;
        let slots = ((budget - held) / per_slot)
            .min(self.config.max_live_sequences.max(1))
            .min(samples);
        Ok((slots, capacity))
    }

    fn ensure_cache(&mut self, slots: usize, capacity: usize) -> Result<()> {
        let fits = self
            .cache
            .as_ref()
            .is_some_and(|c| c.slots() >= slots && c.capacity() >= capacity);
        if !fits {
            self.cache = None; // free the old one before allocating
            let dtype = self.model.backbone().dtype();
            let device = self.model.backbone().device().clone();
            self.cache = Some(SlotKvCache::new(
                self.model.config(),
                slots,
                capacity,
                dtype,
                &device,
            )?);
        }
        Ok(())
    }
}

/// A prompt's cache and first-token logits, kept while its later samples wait for a slot.
struct HeldPrefix {
    prompt_index: usize,
    kv: PrefixKv,
    logits: Vec<f32>,
}

/// Where an admitted sample's prompt cache comes from.
enum Source {
    /// Prefilled now; row of the prefill batch.
    Prefill(usize),
    /// Copied from the slot of a sibling prefilled now.
    Sibling(usize),
    /// Written from the held prefix.
    Held,
}

/// The state of one `generate` call.
struct Run<'a> {
    model: &'a Qwen2ForCausalLM,
    cache: &'a SlotKvCache,
    tokenizer: Option<&'a Tokenizer>,
    tool: Option<Arc<dyn ToolExecutor>>,
    rules: Rules,
    prompts: &'a [Vec<u32>],
    seed: u64,
    n: usize,
    slots: usize,
    max_prefill_tokens: usize,
    queue: VecDeque<(usize, usize)>,
    live: Vec<Sequence>,
    held: Option<HeldPrefix>,
    done: Vec<Option<Completion>>,
    sampler: Sampler,
    /// Scratch of a decode step's draws, one per live row.
    samplers: Vec<Sampler>,
    /// Set when decode steps draw on the device: the noise stream of those draws on the CPU
    /// (a GPU draws its noise from its own seeded RNG).
    device_rng: Option<ChaCha8Rng>,
    tool_sender: mpsc::Sender<ToolResult>,
    tool_results: mpsc::Receiver<ToolResult>,
    tools_in_flight: usize,
    stats: EngineStats,
    start: Instant,
}

impl Run<'_> {
    fn run(&mut self) -> Result<()> {
        loop {
            self.feed_tool_results(false)?;
            while self.retire_finished()? + self.admit()? > 0 {}
            if self.live.is_empty() {
                return Ok(());
            }
            if self.live.iter().all(|s| s.phase == Phase::AwaitingTool) {
                self.feed_tool_results(true)?;
                continue;
            }
            self.decode_step()?;
        }
    }

    /// Moves finished sequences to `done`, keeping the live ones in slots 0..rows.
    fn retire_finished(&mut self) -> Result<usize> {
        let mut retired = 0;
        let mut i = 0;
        while i < self.live.len() {
            if !self.live[i].is_finished() {
                i += 1;
                continue;
            }
            let seq = self.live.swap_remove(i);
            if i < self.live.len() {
                // The former last sequence now lives in slot i.
                self.cache
                    .copy_slot(self.live.len(), i, self.live[i].cache_len)?;
            }
            let index = seq.prompt_index * self.n + seq.sample_index;
            self.done[index] = Some(seq.into_completion(self.tokenizer)?);
            retired += 1;
        }
        Ok(retired)
    }

    /// Fills free slots from the queue with one prefill forward; returns how many samples started.
    fn admit(&mut self) -> Result<usize> {
        let mut admitted: Vec<(usize, usize, Source)> = Vec::new();
        let mut prefill: Vec<usize> = Vec::new();
        let mut prefill_len = 0;
        let held = self.held.take();
        while self.live.len() + admitted.len() < self.slots {
            let Some(&(p, j)) = self.queue.front() else {
                break;
            };
            let source = if held.as_ref().is_some_and(|h| h.prompt_index == p) {
                Source::Held
            } else if let Some(row) = prefill.iter().position(|&q| q == p) {
                Source::Sibling(row)
            } else {
                let len = prefill_len.max(self.prompts[p].len());
                if !prefill.is_empty() && (prefill.len() + 1) * len > self.max_prefill_tokens {
                    break;
                }
                prefill_len = len;
                prefill.push(p);
                Source::Prefill(prefill.len() - 1)
            };
            self.queue.pop_front();
            admitted.push((p, j, source));
        }
        if admitted.is_empty() {
            self.held = held;
            return Ok(0);
        }
        let first_slot = self.live.len();
        // Slot of each prefill row: the slot of the first sample admitted for it.
        let prefill_slots: Vec<usize> = (0..prefill.len())
            .map(|row| {
                let k = admitted
                    .iter()
                    .position(|a| matches!(a.2, Source::Prefill(r) if r == row));
                first_slot + k.expect("every prefill row has its first sample")
            })
            .collect();
        let prefill_logits = self.run_prefill(&prefill, &prefill_slots)?;
        for (k, (p, _, source)) in admitted.iter().enumerate() {
            let len = self.prompts[*p].len();
            match source {
                Source::Prefill(_) => {}
                Source::Sibling(row) => {
                    self.cache
                        .copy_slot(prefill_slots[*row], first_slot + k, len)?
                }
                Source::Held => {
                    let held = held.as_ref().expect("a held source has a held prefix");
                    self.cache.write_prefix(first_slot + k, &held.kv)?;
                }
            }
            if !matches!(source, Source::Prefill(_)) {
                self.stats.prefix_copies += 1;
            }
        }
        let queued_ms = self.start.elapsed().as_secs_f64() * 1e3;
        let sampling = Instant::now();
        let count = admitted.len();
        for (p, j, source) in admitted {
            let mut seq = Sequence::new(p, j, self.prompts[p].len(), self.seed, queued_ms);
            let logits = match source {
                Source::Prefill(row) | Source::Sibling(row) => prefill_logits.row(row),
                Source::Held => {
                    &held
                        .as_ref()
                        .expect("a held source has a held prefix")
                        .logits
                }
            };
            let sampled = self
                .sampler
                .sample(logits, &self.rules.sampler, &mut seq.rng);
            let next = self.rules.after_sample(&mut seq, sampled, self.tokenizer)?;
            self.stats.sampled_tokens += 1;
            self.live.push(seq);
            self.start_tool(next)?;
        }
        self.stats.sample_ms += sampling.elapsed().as_secs_f64() * 1e3;
        self.stats.peak_live_sequences = self.stats.peak_live_sequences.max(self.live.len());
        // Keep the cache of the prompt whose samples still wait (only the queue's front can be
        // one): the held copy if it is that prompt's, else a copy of the slot just prefilled.
        let waiting = self.queue.front().map(|&(p, _)| p);
        self.held = match (held, waiting) {
            (Some(h), Some(p)) if h.prompt_index == p => Some(h),
            (_, Some(p)) => match prefill.iter().position(|&q| q == p) {
                Some(row) => Some(HeldPrefix {
                    prompt_index: p,
                    kv: self
                        .cache
                        .read_prefix(prefill_slots[row], self.prompts[p].len())?,
                    logits: prefill_logits.row(row).to_vec(),
                }),
                None => None,
            },
            _ => None,
        };
        Ok(count)
    }

    fn run_prefill(&mut self, prefill: &[usize], slots: &[usize]) -> Result<Logits> {
        if prefill.is_empty() {
            return Ok(Logits::empty());
        }
        let timer = Instant::now();
        let prompts: Vec<&[u32]> = prefill
            .iter()
            .map(|&p| self.prompts[p].as_slice())
            .collect();
        let logits = forward::prefill(self.model, self.cache, &prompts, slots)?;
        self.stats.prefills += prefill.len();
        self.stats.prefill_batches += 1;
        self.stats.prefill_tokens += prompts.iter().map(|p| p.len()).sum::<usize>();
        self.stats.prefill_ms += timer.elapsed().as_secs_f64() * 1e3;
        Ok(logits)
    }

    /// Feeds every live sequence's newest token and samples the next one.
    fn decode_step(&mut self) -> Result<()> {
        let timer = Instant::now();
        let tokens: Vec<u32> = self.live.iter().map(Sequence::last_token).collect();
        let positions: Vec<usize> = self.live.iter().map(|s| s.cache_len).collect();
        let logits = forward::decode(self.model, self.cache, &tokens, &positions)?;
        self.stats.decode_steps += 1;
        self.stats.decode_ms += timer.elapsed().as_secs_f64() * 1e3;
        let sampling = Instant::now();
        let settings = self.rules.sampler;
        let draws: Vec<Option<SampledToken>> = if let Some(rng) = self.device_rng.as_mut() {
            device_sampler::sample_rows(&logits, &settings, rng)?
                .into_iter()
                .zip(&self.live)
                .map(|(draw, seq)| (seq.phase == Phase::Decoding).then_some(draw))
                .collect()
        } else {
            let logits = Logits::from_tensor(&logits)?;
            // Each row draws from its own stream, so drawing the rows in parallel changes nothing.
            self.samplers.resize_with(self.live.len(), Sampler::new);
            self.live
                .par_iter_mut()
                .zip(&mut self.samplers[..])
                .enumerate()
                .map(|(r, (seq, sampler))| {
                    // A row not decoding is a dummy: the tool output will rewrite this position.
                    (seq.phase == Phase::Decoding)
                        .then(|| sampler.sample(logits.row(r), &settings, &mut seq.rng))
                })
                .collect()
        };
        for (r, sampled) in draws.into_iter().enumerate() {
            let Some(sampled) = sampled else { continue };
            let seq = &mut self.live[r];
            seq.cache_len += 1;
            let next = self.rules.after_sample(seq, sampled, self.tokenizer)?;
            self.stats.sampled_tokens += 1;
            self.start_tool_for(r, next)?;
        }
        self.stats.sample_ms += sampling.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    /// Starts the tool call `next` asks for, for the sequence just pushed.
    fn start_tool(&mut self, next: Next) -> Result<()> {
        self.start_tool_for(self.live.len() - 1, next)
    }

    fn start_tool_for(&mut self, row: usize, next: Next) -> Result<()> {
        let Next::ToolCall(program) = next else {
            return Ok(());
        };
        let tool = self
            .tool
            .clone()
            .ok_or_else(|| Error::Generation("a tool call without a tool executor".into()))?;
        let (p, j) = (self.live[row].prompt_index, self.live[row].sample_index);
        let sender = self.tool_sender.clone();
        self.tools_in_flight += 1;
        self.stats.tool_calls += 1;
        std::thread::Builder::new()
            .name(format!("tool-p{p}-s{j}"))
            .spawn(move || {
                let started = Instant::now();
                let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tool.execute(&program)
                }))
                .unwrap_or_else(|_| "ToolError: the tool executor panicked".to_string());
                let ms = started.elapsed().as_secs_f64() * 1e3;
                // The receiver outlives every call it waits for; a send after an error is moot.
                let _ = sender.send((p, j, output, ms));
            })
            .map_err(|e| {
                Error::Generation(format!(
                    "starting the tool thread of prompt {p} sample {j}: {e}"
                ))
            })?;
        Ok(())
    }

    /// Appends the outputs of finished tool calls and resumes those sequences; with `block`,
    /// waits for at least one.
    fn feed_tool_results(&mut self, block: bool) -> Result<()> {
        if self.tools_in_flight == 0 {
            return Ok(());
        }
        let mut results = Vec::new();
        if block {
            let first = self
                .tool_results
                .recv()
                .map_err(|_| Error::Generation("tool threads ended without a result".into()))?;
            results.push(first);
        }
        results.extend(self.tool_results.try_iter());
        for (p, j, output, ms) in results {
            self.tools_in_flight -= 1;
            let row = self
                .live
                .iter()
                .position(|s| s.prompt_index == p && s.sample_index == j)
                .ok_or_else(|| {
                    Error::Generation(format!(
                        "tool result for prompt {p} sample {j}, which is not live"
                    ))
                })?;
            let seq = &mut self.live[row];
            seq.tool_ms += ms;
            seq.tool_errors += usize::from(!is_execution_success(python_strip(&output)));
            self.resume_after_tool(row, &output)?;
        }
        Ok(())
    }

    fn resume_after_tool(&mut self, row: usize, output: &str) -> Result<()> {
        let tokenizer = self
            .tokenizer
            .ok_or_else(|| Error::Generation("tool calls need a tokenizer".into()))?;
        let seq = &mut self.live[row];
        let text = output_block_rest(&Rules::trigger_tail(seq, tokenizer)?, output);
        let mut tool_tokens = tokenizer.encode(&text)?;
        let room = self.rules.max_new_tokens - seq.token_ids.len();
        if tool_tokens.len() >= room {
            tool_tokens.truncate(room);
            seq.push_tool_tokens(&tool_tokens);
            seq.phase = Phase::Finished(FinishReason::Length);
            self.stats.tool_tokens += tool_tokens.len();
            return Ok(());
        }
        let mut feed = vec![seq.last_token()];
        feed.extend_from_slice(&tool_tokens);
        seq.push_tool_tokens(&tool_tokens);
        self.stats.tool_tokens += tool_tokens.len();
        let timer = Instant::now();
        let logits = forward::extend(self.model, self.cache, row, seq.cache_len, &feed)?;
        self.stats.decode_ms += timer.elapsed().as_secs_f64() * 1e3;
        seq.cache_len += feed.len();
        seq.phase = Phase::Decoding;
        let sampled = self
            .sampler
            .sample(logits.row(0), &self.rules.sampler, &mut seq.rng);
        let next = self.rules.after_sample(seq, sampled, self.tokenizer)?;
        self.stats.sampled_tokens += 1;
        self.start_tool_for(row, next)
    }
}
