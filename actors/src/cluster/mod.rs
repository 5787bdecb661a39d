//! Across machines: `mathrl worker` processes that join a training run over `ractor_cluster`.
//!
//! The coordinator (the process that runs the recipe and the learner) listens with a
//! ractor_cluster `NodeServer`; a worker connects to it, and the two authenticate each other
//! with the shared cookie (a challenge–response over SHA-256: the cookie never crosses the wire,
//! but nothing is encrypted). The worker's one actor then joins the process group of its role,
//! [`protocol::ROLLOUT_GROUP`] or [`protocol::REWARD_GROUP`]; the coordinator watches both
//! groups, sends the newcomer its [`protocol::Setup`], and from then on treats it as one more
//! worker of the pool: the same dispatch, deadlines and re-issue as the local actors
//! ([`crate::coordinator`]).
//!
//! - [`host`]: the coordinator's side (listening); its membership actor sets up joining workers
//!   and reports leaving ones.
//! - [`RemoteWorkers`] (`remote.rs`): the table of joined workers and the tasks that send them
//!   jobs and weights.
//! - [`worker`]: the worker process.
//! - [`protocol`]: the messages and their CBOR payloads.
//! - [`validate`]: the coordinator's checks on a remote worker's results; a worker whose results
//!   fail them `max_attempts` times is dropped, never the run.
//! - `handshake.rs`: closes connections that do not authenticate within the handshake timeout.
//!
//! Weights travel as the learner's safetensors bytes with their version and XXH3 checksum
//! ([`crate::WeightsSnapshot`]), in chunks, right before the first job that needs them: a
//! worker that joins mid-run gets the current version before its first group, and a worker
//! only ever loads between groups. A worker that disconnects fails its pending RPC at once,
//! and its job is re-issued like a crashed actor's.

mod chunks;
mod handshake;
pub mod host;
mod membership;
pub mod protocol;
mod remote;
pub mod validate;
pub mod worker;

use std::net::SocketAddr;
use std::time::Duration;

pub use protocol::WorkerMsg;
pub use remote::RemoteWorkers;
pub use worker::{run_worker, RewardBuilder, ToolBuilder, WorkerOptions, WorkerReport};

/// Largest frame a node accepts (ractor_cluster's default is 16 MiB); weights chunks are far
/// below it, so a frame this size is a peer's mistake.
pub const MAX_FRAME_BYTES: u64 = 64 * 1024 * 1024;

/// Default size of one weights chunk.
pub const DEFAULT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Shortest cookie accepted: the handshake's SHA-256 answers let an eavesdropper test guesses
/// offline, so the cookie must be too long to guess (16 random bytes, or a long passphrase).
pub const MIN_COOKIE_BYTES: usize = 16;

/// Default for [`ClusterConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses a cookie shorter than [`MIN_COOKIE_BYTES`]; `source` (`--cookie-file PATH`,
/// `MATHRL_COOKIE`, ...) is named in the error.
pub fn check_cookie(cookie: &str, source: &str) -> Result<(), ClusterError> {
    if cookie.len() < MIN_COOKIE_BYTES {
        return Err(ClusterError::Config {
            field: "cookie",
            message: format!(
                "the cookie from {source} is {} bytes; at least {MIN_COOKIE_BYTES} are needed \
                 (e.g. `openssl rand -hex 32`)",
                cookie.len()
            ),
        });
    }
    Ok(())
}

/// The coordinator's side of a cluster run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where workers connect (`--listen ADDR:PORT`; port 0 picks a free one, logged at start).
    pub listen: SocketAddr,
    /// The shared secret every worker must present (`--cookie-file`, `MATHRL_COOKIE` or
    /// `--cookie`); at least [`MIN_COOKIE_BYTES`] bytes.
    pub cookie: String,
    /// What a remote reward worker builds its reward from (handed to the worker binary's
    /// [`RewardBuilder`]); `None` refuses remote reward workers.
    pub reward_spec: Option<mathrl_rewards::RewardSpec>,
    /// Remote workers that must have joined before the first step opens (0 = start at once).
    pub wait_for_workers: usize,
    /// How long to wait for them before the run fails.
    pub join_timeout: Duration,
    /// Bytes per weights chunk.
    pub chunk_bytes: usize,
    /// A connection that has not authenticated within this long is closed
    /// (`--handshake-timeout`; default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

impl ClusterConfig {
    /// Listening on `listen` with `cookie`, no remote reward workers, starting at once.
    pub fn new(listen: SocketAddr, cookie: impl Into<String>) -> Self {
        Self {
            listen,
            cookie: cookie.into(),
            reward_spec: None,
            wait_for_workers: 0,
            join_timeout: Duration::from_secs(600),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Errors of the cluster layer; each names the peer, address or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting cannot be used.
    #[error("cluster setting `{field}`: {message}")]
    Config {
        /// The setting (`--listen`, `--cookie`, ...).
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The node server could not start (the address is taken, not local, ...).
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The coordinator could not be reached.
    #[error("cannot connect to the coordinator at {addr}: {message}")]
    Connect {
        /// The coordinator's address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The coordinator closed the connection before authentication completed.
    #[error(
        "the coordinator at {addr} refused this worker: the connection closed during \
         authentication, so the cookie does not match the coordinator's (or it refused the peer)"
    )]
    Refused {
        /// The coordinator's address.
        addr: String,
    },
    /// No authenticated session within the timeout.
    #[error("no answer from the coordinator at {addr} within {seconds} s")]
    Timeout {
        /// The coordinator's address.
        addr: String,
        /// The timeout.
        seconds: u64,
    },
    /// The connection dropped mid-run (the coordinator crashed or the network failed).
    #[error("lost the connection to the coordinator at {addr} before the run finished")]
    Disconnected {
        /// The coordinator's address.
        addr: String,
    },
    /// The worker could not do what the coordinator asked (setup, weights).
    #[error("worker `{worker}`: {message}")]
    Worker {
        /// The worker's name.
        worker: String,
        /// What failed.
        message: String,
    },
    /// A payload could not be encoded.
    #[error("encoding a cluster message: {0}")]
    Encode(String),
    /// A payload from a peer could not be decoded.
    #[error("decoding a {what} from a peer: {message}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why.
        message: String,
    },
}
