//! The handshake timeout: an incoming connection that has not authenticated within
//! [`super::ClusterConfig::handshake_timeout`] is closed.
//!
//! ractor_cluster (0.16) has no such timeout: its `NodeServer` spawns a `NodeSession` per
//! accepted connection and keeps it until the peer disconnects, so a peer that connects and
//! says nothing holds a socket and an actor forever. Its API does tell a subscriber when a
//! session opens, authenticates and closes, with the session's actor; the watchdog here
//! subscribes, and stops a session that is still unauthenticated when its time is up. Stopping
//! the `NodeSession` actor stops its TCP session child, which closes the socket.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorId;
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::NodeEventSubscription;

/// Closes incoming sessions that are not authenticated in time.
pub(super) struct HandshakeWatchdog {
    timeout: Duration,
    runtime: tokio::runtime::Handle,
    /// Incoming sessions opened and neither authenticated nor closed yet.
    pending: Arc<Mutex<HashSet<ActorId>>>,
}

impl HandshakeWatchdog {
    /// A watchdog closing sessions after `timeout`, its timers on `runtime`.
    pub(super) fn new(timeout: Duration, runtime: tokio::runtime::Handle) -> Self {
        Self {
            timeout,
            runtime,
            pending: Arc::default(),
        }
    }

    fn settle(&self, session: &NodeServerSessionInformation) {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&session.actor.get_id());
    }
}

impl NodeEventSubscription for HandshakeWatchdog {
    fn node_session_opened(&self, session: NodeServerSessionInformation) {
        // The coordinator only accepts connections; an outgoing one is not a stranger's.
        if !session.is_server {
            return;
        }
        let id = session.actor.get_id();
        let pending = self.pending.clone();
        pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id);
        let timeout = self.timeout;
        self.runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            let unauthenticated = pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&id);
            if unauthenticated {
                tracing::warn!(
                    "closing the connection from {}: not authenticated within {} ms",
                    session.peer_addr,
                    timeout.as_millis()
                );
                session
                    .actor
                    .stop(Some("handshake timeout: not authenticated".into()));
            }
        });
    }

    fn node_session_disconnected(&self, session: NodeServerSessionInformation) {
        self.settle(&session);
    }

    fn node_session_authenticated(&self, session: NodeServerSessionInformation) {
        self.settle(&session);
    }
}
