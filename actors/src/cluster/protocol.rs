//! What the coordinator and a remote worker say to each other.
//!
//! There is one remote message type, [`WorkerMsg`]: every request is a ractor_cluster RPC from
//! the coordinator to the worker's actor, and its reply is the result. A lost connection fails
//! every pending RPC at once, which is how the coordinator learns that a job is lost.
//!
//! Every field on the wire is `Vec<u8>`: ractor's `BytesConvertable` decoders panic on bad
//! input (for numbers and strings), so the payloads are CBOR that the receiver decodes itself,
//! and a malformed message becomes an error reply, never a panic. CBOR keeps f32 log-probs
//! bit-exact, and the types are the runtime's own serde types (`Group`, `SamplingParams`,
//! `RewardOutput`), so nothing here duplicates their fields.

use mathrl::generation::EngineConfig;
use mathrl::model::Qwen2Config;
use mathrl::types::Group;
use mathrl_rewards::RewardOutput;
use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::event::Role;
use crate::reward::RewardItem;
use crate::rollout::RolloutJob;

/// The process group remote rollout workers join; the coordinator watches it.
pub const ROLLOUT_GROUP: &str = "mathrl.workers.rollout";
/// The process group remote reward workers join.
pub const REWARD_GROUP: &str = "mathrl.workers.reward";

/// The group a worker of `role` joins.
pub fn group_of(role: Role) -> &'static str {
    match role {
        Role::Rollout => ROLLOUT_GROUP,
        Role::Reward => REWARD_GROUP,
    }
}

/// The role whose workers join `group`.
pub fn role_of(group: &str) -> Option<Role> {
    match group {
        ROLLOUT_GROUP => Some(Role::Rollout),
        REWARD_GROUP => Some(Role::Reward),
        _ => None,
    }
}

/// Requests to a remote worker. Each carries CBOR bytes (see the module docs) and is an RPC
/// whose reply is a CBOR [`Reply`].
#[derive(RactorClusterMessage)]
pub enum WorkerMsg {
    /// [`Setup`]: what the worker builds its engine or reward from. Reply: `Reply<()>`.
    #[rpc]
    Setup(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A [`WeightsChunk`] header and that chunk of a weights version's safetensors bytes; the
    /// last chunk makes the worker verify the checksum and load the version. Reply: `Reply<()>`.
    #[rpc]
    LoadWeights(Vec<u8>, Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A [`RolloutJob`]. Reply: `Reply<GenerateReply>`.
    #[rpc]
    Generate(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// A [`ScoreRequest`]. Reply: `Reply<ScoreReply>`.
    #[rpc]
    Score(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// The run is over: the worker replies and exits. Reply: `Reply<()>`.
    #[rpc]
    Finish(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

/// A request's outcome, or why it failed, as the worker reports it.
pub type Reply<T> = Result<T, String>;

/// What a worker needs before its first job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Setup {
    /// A rollout worker: everything but the weights, which come with [`WorkerMsg::LoadWeights`].
    Rollout {
        /// The policy's architecture (boxed: it dwarfs the other variant).
        model_config: Box<Qwen2Config>,
        /// The rollout copy's dtype (`f32`, `bf16`, ...).
        dtype: String,
        /// Engine limits.
        engine: EngineConfig,
        /// The tokenizer's `tokenizer.json` text.
        tokenizer_json: String,
        /// Its `tokenizer_config.json` (special tokens, chat template).
        tokenizer_config: serde_json::Value,
        /// Tool-integrated reasoning: the run's tool settings (the recipe's TIR sandbox table),
        /// from which the worker builds its own executor with its [`super::ToolBuilder`];
        /// `None`: no tool.
        #[serde(default)]
        tool: Option<serde_json::Value>,
    },
    /// A reward worker: the run's reward as data (the worker builds it with its own RM copy).
    Reward {
        /// E.g. `{"kind": "checker"}`.
        spec: mathrl_rewards::RewardSpec,
    },
}

/// The header of one chunk of a weights version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsChunk {
    /// Learner steps behind these weights.
    pub version: u64,
    /// XXH3-64 of the whole safetensors buffer.
    pub checksum: u64,
    /// Length of the whole buffer.
    pub total_bytes: u64,
    /// Where this chunk starts in it.
    pub offset: u64,
}

/// A generated group, as a rollout worker reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateReply {
    /// The group, stamped with the version that generated it.
    pub group: Group,
    /// Checksum of the weights the engine held.
    pub weights_checksum: u64,
    /// Generation wall time in seconds.
    pub busy_seconds: f64,
}

/// A batch of completions to score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// The coordinator's job id (for the worker's log).
    pub job_id: u64,
    /// The completions.
    pub items: Vec<RewardItem>,
}

/// A scored batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreReply {
    /// One output per item.
    pub outputs: Vec<RewardOutput>,
    /// Scoring wall time in seconds.
    pub busy_seconds: f64,
}

/// CBOR bytes of `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).map_err(|e| ClusterError::Encode(e.to_string()))?;
    Ok(bytes)
}

/// Decodes `what` (named in the error) from CBOR bytes.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, ClusterError> {
    ciborium::from_reader(bytes).map_err(|e| ClusterError::Decode {
        what,
        message: e.to_string(),
    })
}

/// A rollout job as a [`WorkerMsg::Generate`] payload.
pub fn encode_job(job: &RolloutJob) -> Result<Vec<u8>, ClusterError> {
    encode(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl::generation::SamplingParams;
    use mathrl::types::{Completion, CompletionTiming, FinishReason};

    fn group() -> Group {
        Group {
            prompt_index: 0,
            prompt_ids: vec![1, 2, 3],
            completions: vec![Completion {
                sample_index: 0,
                token_ids: vec![7, 8],
                // Values whose decimal forms are long: a text format could round them.
                logprobs: vec![Some(-1.0f32 / 3.0), Some(f32::MIN_POSITIVE), None],
                tool_mask: vec![false, false, true],
                finish_reason: FinishReason::Length,
                tool_calls: 0,
                tool_errors: 0,
                tool_ms: 0.0,
                text: Some("x".into()),
                timing: CompletionTiming::default(),
            }],
            policy_version: 4,
        }
    }

    #[test]
    fn groups_round_trip_with_bit_exact_log_probs() {
        let reply = GenerateReply {
            group: group(),
            weights_checksum: 0xdead_beef,
            busy_seconds: 0.25,
        };
        let back: Reply<GenerateReply> =
            decode("reply", &encode(&Ok::<_, String>(reply.clone())).unwrap()).unwrap();
        let back = back.unwrap();
        assert_eq!(back.group, reply.group);
        let bits = |g: &Group| -> Vec<Option<u32>> {
            g.completions[0]
                .logprobs
                .iter()
                .map(|l| l.map(f32::to_bits))
                .collect()
        };
        assert_eq!(bits(&back.group), bits(&reply.group));
        assert_eq!(back.weights_checksum, 0xdead_beef);
    }

    #[test]
    fn jobs_keep_their_sampling_settings() {
        let job = RolloutJob {
            job_id: 9,
            prompt_ids: vec![4, 5],
            params: SamplingParams {
                seed: 123,
                n: 3,
                ..SamplingParams::default()
            },
        };
        let back: RolloutJob = decode("job", &encode_job(&job).unwrap()).unwrap();
        assert_eq!(back.job_id, 9);
        assert_eq!(back.prompt_ids, vec![4, 5]);
        assert_eq!(back.params, job.params);
    }

    #[test]
    fn reward_setups_carry_the_typed_spec() {
        for spec in [
            mathrl_rewards::RewardSpec::Checker,
            mathrl_rewards::RewardSpec::Shaped {
                alpha: 0.3,
                rm_batch_size: 5,
            },
        ] {
            match decode("setup", &encode(&Setup::Reward { spec }).unwrap()).unwrap() {
                Setup::Reward { spec: back } => assert_eq!(back, spec),
                other => panic!("a reward setup decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_bytes_are_an_error_naming_what_was_decoded() {
        for bytes in [
            &b""[..],
            &[0xff, 0x00, 0x13][..],
            &encode(&"a string").unwrap()[..],
        ] {
            let err = decode::<WeightsChunk>("weights chunk header", bytes).unwrap_err();
            assert!(err.to_string().contains("weights chunk header"), "{err}");
        }
    }

    #[test]
    fn groups_map_to_roles_and_back() {
        for role in [Role::Rollout, Role::Reward] {
            assert_eq!(role_of(group_of(role)), Some(role));
        }
        assert_eq!(role_of("something else"), None);
    }
}
