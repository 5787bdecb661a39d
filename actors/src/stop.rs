//! Stopping a run: a counter of stop requests the coordinator polls. The first request finishes
//! the current step and writes a checkpoint; the second abandons the run at once. SIGINT and
//! SIGTERM are requests too (the second one exits the process, since a blocked step cannot be
//! interrupted from inside).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A cloneable handle that requests a stop.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicUsize>);

impl StopHandle {
    /// A handle with no request yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a stop; returns how many requests there have been.
    pub fn request(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// How many stops were requested.
    pub fn requests(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Exit status after a second signal (128 + SIGINT, as shells report it).
const EXIT_ON_SECOND_SIGNAL: i32 = 130;

/// Turns SIGINT and SIGTERM into stop requests on `runtime`; the second signal exits at once.
/// The handlers are registered before this returns, so no signal sent afterwards is missed.
pub fn install_signal_handlers(runtime: &tokio::runtime::Runtime, stop: StopHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let _context = runtime.enter();
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("could not install SIGINT/SIGTERM handlers");
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if stop.request() >= 2 {
                    eprintln!("second stop signal: exiting without finishing the step");
                    std::process::exit(EXIT_ON_SECOND_SIGNAL);
                }
                eprintln!(
                    "stop signal: finishing the current step and writing a checkpoint \
                     (again to exit at once)"
                );
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (runtime, stop);
}
