//! The hydrate-and-run host: opens the store, hydrates every tenant with bounded concurrency,
//! runs one actor per tenant (lease, connection, reconnect policy, watchdog), serves the HTTP
//! API and shuts down as a flush on SIGTERM/SIGINT.
//!
//! Submodules: [`supervisor`] (cold start, registry), [`tenant`] (the actor), `connection`
//! (one socket), [`policy`] (pure reconnect table), [`lease`], [`persist`] (the only
//! core↔store conversion), [`shutdown`], [`metrics`], [`state`] (views and commands),
//! [`clock`], [`outbox`] (paced, persisted sends), [`webhook`] (signed event delivery),
//! [`egress`] (which outbound URLs are allowed). Must not contain protocol logic (that is `wa/`) or storage logic (`store/`).

pub mod clock;
mod connection;
pub mod egress;
pub mod events;
pub mod inbox;
pub mod lease;
pub mod metrics;
pub mod outbox;
pub mod persist;
pub mod policy;
pub mod shutdown;
mod sidecar;
pub mod state;
pub mod supervisor;
pub mod tenant;
pub mod version;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use shutdown::ShutdownSummary;
pub use supervisor::{Host, Progress, Registry};

use crate::config::Config;
use crate::store::{self, Store, StoreConfig, StoreError};

/// Shared, read-only context of every tenant task.
#[derive(Debug)]
pub struct Ctx {
    /// Configuration.
    pub config: Config,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Every task of the host (no untracked spawns).
    pub tracker: TaskTracker,
    /// Cancelled at shutdown; each tenant holds a child token.
    pub root: CancellationToken,
    /// Abort handles of every spawned task, for [`Host::crash`] (the SIGKILL stand-in).
    pub(crate) aborts: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Where tenant events go (webhooks); publishing never blocks.
    pub events: Arc<dyn events::EventSink>,
    /// The webhook dispatcher behind `events` (tenants attach their lanes and outboxes).
    pub webhooks: Arc<webhook::Dispatcher>,
    /// HTTP client of the webhook deliveries (rustls); also fetches `sw.js` for `auto`.
    pub http: reqwest::Client,
    /// The WA Web version every tenant announces.
    pub wa_version: version::VersionSource,
}

impl Ctx {
    /// Spawns `fut` on the tracker (never an untracked spawn) and remembers how to abort it.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let h = self.tracker.spawn(fut);
        if let Ok(mut v) = self.aborts.lock() {
            // Prune finished handles only when the vector would grow: amortised O(1) per spawn
            // instead of a scan of every handle on each spawn (quadratic over a cold start;
            // 3% of the gateway's samples at 1,000 tenants, `staylinked bench scale`).
            if v.len() == v.capacity() {
                v.retain(|a| !a.is_finished());
            }
            v.push(h.abort_handle());
        }
    }
}

/// The host failed to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The store could not be opened (configuration, unreachable backend).
    #[error("cannot open the store")]
    Store(#[source] StoreError),
    /// The webhook HTTP client could not be built (TLS set-up).
    #[error("cannot build the webhook http client")]
    Http(#[source] reqwest::Error),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the configured store; a master key given in the config wins over the environment.
///
/// # Errors
/// [`HostError::Store`].
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, HostError> {
    let clock: Arc<dyn store::StoreClock> = Arc::new(store::SystemClock);
    let given =
        config.master_key.as_deref().map(|k| keyring(k, config.master_keys_old.as_deref())).transpose()?;
    match (&config.store, given) {
        (StoreConfig::Embedded { path }, Some(ring)) => {
            let s = store::embedded::EmbeddedStore::open(path, Arc::new(ring), clock)
                .await
                .map_err(HostError::Store)?;
            Ok(Arc::new(s))
        }
        (StoreConfig::Memory, Some(ring)) => {
            Ok(Arc::new(store::memory::MemoryStore::new(Arc::new(ring), clock)))
        }
        #[cfg(feature = "firestore")]
        (StoreConfig::Firestore { project, database }, Some(ring)) => {
            let opts =
                store::firestore::FirestoreOptions::new(project.clone()).with_database(database.clone());
            let s = store::firestore::FirestoreStore::connect(opts, Arc::new(ring), clock)
                .await
                .map_err(HostError::Store)?;
            Ok(Arc::new(s))
        }
        (cfg, _) => store::open(cfg).await.map_err(HostError::Store),
    }
}

/// The keyring of a configured master key: seals with `current`, opens with it and every key
/// of `old` (comma-separated base64, `STAYLINKED_MASTER_KEYS_OLD`).
///
/// # Errors
/// [`HostError::Store`] when a key does not parse.
pub fn keyring(current: &str, old: Option<&str>) -> Result<store::crypt::Keyring, HostError> {
    let current = store::crypt::MasterKey::from_base64(current).map_err(HostError::Store)?;
    let old = match old {
        Some(list) => store::crypt::parse_key_list(list).map_err(HostError::Store)?,
        None => Vec::new(),
    };
    Ok(store::crypt::Keyring::new(&current, &old))
}

/// `staylinked rekey`: opens the configured store with the current and old master keys and
/// re-seals every value under the current key, writing progress to `out`.
///
/// # Errors
/// [`HostError::Store`] when no master key is configured, the store cannot be opened or the
/// tenants cannot be listed.
pub async fn rekey(
    config: &Config,
    out: &mut dyn std::io::Write,
) -> Result<store::rekey::RekeySummary, HostError> {
    let Some(current) = config.master_key.as_deref() else {
        return Err(HostError::Store(StoreError::Config {
            detail: format!(
                "rekey needs {} (the new key) and {} (the keys it replaces)",
                store::crypt::ENV_MASTER_KEY,
                store::crypt::ENV_MASTER_KEYS_OLD
            ),
        }));
    };
    let kid = store::crypt::MasterKey::from_base64(current).map_err(HostError::Store)?.key_id();
    let store = open_store(config).await?;
    store::rekey::rekey_all(store.as_ref(), &kid, out).await.map_err(HostError::Store)
}

/// Runs a host until `shutdown` resolves, then shuts it down as a flush (invariant 5).
///
/// # Errors
/// [`HostError`] when the store or the listener cannot be opened.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<ShutdownSummary, HostError> {
    let store = open_store(&config).await?;
    let host = Host::start(config, store).await?;
    shutdown.await;
    Ok(host.shutdown().await)
}

/// The default shutdown deadline (below Cloud Run's 10 s grace).
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(8);
