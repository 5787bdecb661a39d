//! The coordinator's side of the cluster: a `NodeServer` that authenticates workers by cookie
//! (closing connections that do not authenticate in time: `handshake.rs`), and the
//! membership actor ([`super::membership`]) that watches the workers' process groups and
//! fills the run's [`RemoteWorkers`] ([`super::remote`]).
//!
//! One host per process: ractor's process groups are global to a process, so a second
//! coordinator in the same process would see the first one's workers join too.

use std::net::SocketAddr;

use crossbeam::channel::Sender;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};

use super::handshake::HandshakeWatchdog;
use super::membership::{Membership, MembershipMsg, MembershipState};
use super::protocol::{encode, Setup};
use super::remote::RemoteWorkers;
use super::{check_cookie, ClusterConfig, ClusterError, MAX_FRAME_BYTES};
use crate::event::Event;
use crate::weights::WeightsBoard;
/// The running cluster host of a coordinator.
pub struct Host {
    node: ActorRef<NodeServerMessage>,
    membership: ActorRef<MembershipMsg>,
    workers: RemoteWorkers,
    /// The address workers connect to (port 0 resolved).
    pub address: SocketAddr,
}

impl Host {
    /// Starts listening per `config` on `runtime`; joining workers are set up from `setup`
    /// (rollout) and `config.reward_spec` (reward), and announced on `events`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        config: &ClusterConfig,
        rollout_setup: &Setup,
        board: WeightsBoard,
        events: Sender<Event>,
    ) -> Result<Self, ClusterError> {
        check_cookie(&config.cookie, "the cluster settings")?;
        if config.handshake_timeout.is_zero() {
            return Err(ClusterError::Config {
                field: "handshake_timeout",
                message: "must be positive".into(),
            });
        }
        let Setup::Rollout { model_config, .. } = rollout_setup else {
            return Err(ClusterError::Config {
                field: "rollout setup",
                message: "a rollout worker's setup must be `Setup::Rollout`".into(),
            });
        };
        let vocab_size = model_config.vocab_size;
        let address = resolve_port(config.listen)?;
        let rollout_setup = encode(rollout_setup)?;
        let reward_setup = config
            .reward_spec
            .map(|spec| encode(&Setup::Reward { spec }))
            .transpose()?;
        let workers = RemoteWorkers::new(
            config,
            runtime.handle().clone(),
            events.clone(),
            board,
            vocab_size,
        );
        let listen_error = |message: String| ClusterError::Listen {
            addr: address.to_string(),
            message,
        };
        let (membership, node) = runtime.block_on(async {
            let (membership, _) = Actor::spawn(
                None,
                Membership,
                MembershipState {
                    workers: workers.clone(),
                    events,
                    rollout_setup,
                    reward_setup,
                },
            )
            .await
            .map_err(|e| listen_error(format!("starting the membership actor: {e}")))?;
            let server = NodeServer::new(
                address.port(),
                config.cookie.clone(),
                "mathrl-coordinator".into(),
                address.ip().to_string(),
                None,
                Some(NodeConnectionMode::Isolated),
            )
            .with_listen_addr(address.ip())
            .with_max_inbound_frame_size(MAX_FRAME_BYTES);
            let (node, _) = Actor::spawn(None, server, ())
                .await
                .map_err(|e| listen_error(e.to_string()))?;
            node.cast(NodeServerMessage::SubscribeToEvents {
                id: "mathrl-handshake-watchdog".into(),
                subscription: Box::new(HandshakeWatchdog::new(
                    config.handshake_timeout,
                    runtime.handle().clone(),
                )),
            })
            .map_err(|e| listen_error(format!("watching handshakes: {e}")))?;
            Ok::<_, ClusterError>((membership, node))
        })?;
        tracing::info!("cluster: listening for workers on {address}");
        Ok(Self {
            node,
            membership,
            workers,
            address,
        })
    }

    /// The run's remote workers.
    pub fn workers(&self) -> RemoteWorkers {
        self.workers.clone()
    }

    /// Tells the workers the run is over, then stops listening.
    pub fn shut_down(self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(self.workers.finish_all());
        self.membership.stop(None);
        self.node.stop(None);
    }
}

/// `addr` with port 0 replaced by a free port, so the address can be logged and handed on.
/// The probe socket closes before the node server binds; another process could take the port
/// in between, which the node server then reports.
fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, ClusterError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr).map_err(|e| ClusterError::Listen {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    probe.local_addr().map_err(|e| ClusterError::Listen {
        addr: addr.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_resolved_to_a_free_port() {
        let addr = resolve_port("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
    }
}
