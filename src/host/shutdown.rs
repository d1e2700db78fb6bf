//! Shutdown (invariant 5): SIGTERM/SIGINT are armed through signal-hook before the runtime
//! starts; the first signal cancels a token that `host::run` awaits. The ordered steps
//! (stop accepting → stop reading → flush → close sockets → release leases → exit) live in
//! [`Host::shutdown`](super::Host::shutdown); this module owns the signal side and the summary.
//!
//! Closing each socket before releasing its lease (rather than the other way round) means a
//! process that takes the lease over can never find our connection still live (no 440).

use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio_util::sync::CancellationToken;

/// What a shutdown did (logged as one line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSummary {
    /// Tenant actors that finished (flushed, socket closed, lease released).
    pub tenants_flushed: usize,
    /// Deltas committed by this process.
    pub deltas_committed: u64,
    /// Time from the shutdown trigger to the end.
    pub elapsed: Duration,
    /// False when the deadline passed with tasks still running.
    pub clean: bool,
}

/// Arms SIGTERM and SIGINT. Call before the runtime starts (before the first await): a
/// signal that arrives at any later moment cancels the returned token. A second signal exits
/// at once with status 130.
///
/// # Errors
/// The OS refused to install the handlers.
pub fn arm_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let t = token.clone();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0;
        for sig in signals.forever() {
            seen += 1;
            if seen == 1 {
                tracing::info!(signal = sig, "shutdown signal received");
                t.cancel();
            } else {
                tracing::warn!(signal = sig, "second signal: exiting without waiting");
                std::process::exit(130);
            }
        }
    })?;
    Ok(token)
}
