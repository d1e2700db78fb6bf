//! Sleep/wake chaos (`staylinked chaos`, `scripts/chaos.sh`, the `chaos` integration test):
//! links T tenants through the simulator, then runs C seeded cycles that stop the real gateway
//! binary (SIGTERM, SIGKILL, or an overlapping start of the next process, as on a deploy) and
//! start the next one against the same store. After every cycle and at the end it checks the
//! product's promises: no re-pair, exactly one linked device per phone, no `replaced` (440),
//! every tenant `connected` again without a QR, lease epochs only increase; at the end the store
//! holds each tenant's creds for the phone's one device with the lease released. Optional
//! message traffic both ways (`messages`) adds "0 lost / 0 duplicated / 0 decrypt failures".
//!
//! Owns only the driving and checking: it talks to the gateway's HTTP API and the simulator's
//! `/admin` over 127.0.0.1, and reads the store once every gateway has exited. Every wait has a
//! deadline; nothing here is timed as a pass/fail criterion except those deadlines.

mod driver;
mod gateway;
pub mod http;
pub mod plan;
pub mod report;
mod traffic;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use plan::{Cycle, Disruption};
pub use report::{ChaosReport, markdown};

/// Which store the gateways share.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChaosStore {
    /// One redb file in the work dir (deploy overlap waits on its file lock).
    Embedded,
    /// A Firestore emulator (`FIRESTORE_EMULATOR_HOST` must be set for the driver too); each run
    /// uses its own project id so runs never see each other's data.
    Firestore {
        /// `host:port` of the emulator.
        emulator_host: String,
        /// Project id for this run.
        project: String,
    },
}

impl ChaosStore {
    /// `embedded` or `firestore`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Firestore { .. } => "firestore",
        }
    }
}

/// A simulator that is already running (the integration test runs it in-process).
#[derive(Debug, Clone)]
pub struct SimTarget {
    /// Address of its HTTP server (`/admin` and `/ws/chat`).
    pub addr: SocketAddr,
    /// `ws://ADDR/ws/chat`.
    pub ws_url: String,
    /// Root key of its certificate chain.
    pub root_public_key: [u8; 32],
}

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The `staylinked` binary started for every gateway (and the simulator when `sim` is None).
    pub bin: PathBuf,
    /// Tenants to link.
    pub tenants: usize,
    /// Disruption cycles.
    pub cycles: usize,
    /// Seed of the cycle plan and the traffic picker.
    pub seed: u64,
    /// The shared store.
    pub store: ChaosStore,
    /// A running simulator; `None` starts `staylinked sim` as a child process.
    pub sim: Option<SimTarget>,
    /// Send messages both ways during the chaos and check none is lost or duplicated.
    pub messages: bool,
    /// Tenants picked per cycle for one message in each direction.
    pub messages_per_cycle: usize,
    /// Work directory: the embedded store file and one log per process (`logs/`).
    pub work_dir: PathBuf,
    /// Lease TTL of the gateways (a SIGKILLed holder's tenants wait this long).
    pub lease_ttl: Duration,
    /// Deadline of each wait, on top of the lease TTL where a wait includes a lease expiry.
    pub wait: Duration,
    /// Tenants linked at once in the link phase.
    pub link_concurrency: usize,
    /// Print one progress line per cycle to stderr.
    pub progress: bool,
}

impl ChaosOptions {
    /// Defaults for `tenants` × `cycles` with `bin`, embedded store, in `work_dir`.
    pub fn new(bin: PathBuf, work_dir: PathBuf, tenants: usize, cycles: usize) -> Self {
        Self {
            bin,
            tenants,
            cycles,
            seed: DEFAULT_SEED,
            store: ChaosStore::Embedded,
            sim: None,
            messages: false,
            messages_per_cycle: 5,
            work_dir,
            lease_ttl: Duration::from_secs(6),
            wait: Duration::from_secs(60),
            link_concurrency: 4,
            progress: false,
        }
    }
}

/// The default seed (fixed, so two runs without `--seed` do the same thing).
pub const DEFAULT_SEED: u64 = 20_261_123;

/// The run could not be carried out (distinct from a violated invariant, which is reported).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// A process could not be started, signalled or waited for.
    #[error("process operation failed: {what}")]
    Process {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed where the driver cannot go on.
    #[error("request failed")]
    Http(#[source] http::HttpError),
    /// The store could not be opened or read for the final check.
    #[error("store check failed")]
    Store(#[source] crate::store::StoreError),
    /// A promise was broken or a wait ran past its deadline (the message says which).
    #[error("{0}")]
    Invariant(String),
    /// Bad options.
    #[error("invalid options: {0}")]
    Options(String),
}

impl From<http::HttpError> for ChaosError {
    fn from(e: http::HttpError) -> Self {
        Self::Http(e)
    }
}

/// Runs the chaos: link, cycle, check, report. Never panics on what it observes; a broken
/// invariant ends the run early and is listed in the report (`ok == false`).
///
/// # Errors
/// [`ChaosError`] only when the run could not start (bad options, no binary, no simulator).
pub async fn run(options: ChaosOptions) -> Result<ChaosReport, ChaosError> {
    if options.tenants == 0 {
        return Err(ChaosError::Options("tenants must be at least 1".into()));
    }
    driver::Driver::run(options).await
}
