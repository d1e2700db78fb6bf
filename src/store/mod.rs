//! The session store: every tenant's creds, Signal keys, status, lease, outbox, inbox and events.
//!
//! Owns the [`Store`] trait, the persisted model ([`model`]), encryption at rest ([`crypt`]) and
//! the three backends: [`firestore`] (production), [`embedded`] (redb file, the default) and
//! [`memory`] (tests). Commits are atomic and fenced by the tenant lease's epoch. Must not know
//! about the protocol core (`wa`): values are opaque bytes serialised by the Signal layer.
//!
//! Reading rules every backend follows: a value that does not decode or decrypt is
//! [`StoreError::Corrupt`] for that tenant only (never fresh creds, never a panic); an
//! unreachable store is [`StoreError::Unavailable`] (never an empty list).

pub mod bench;
pub mod conformance;
pub mod crypt;
pub mod embedded;
pub mod error;
#[cfg(feature = "firestore")]
pub mod firestore;
mod lease;
pub mod memory;
pub mod model;
mod record;
pub mod rekey;
pub mod testing;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;

pub use error::StoreError;
pub use model::{
    ConfigPatch, Creds, Delta, DeltaBatch, Hydrated, InboxItem, KeyKind, KeyRef, Lease, OutboxItem,
    RekeyReport, SecretBytes, StoredEvent, TenantSnapshot, TenantStatus,
};

use crate::types::{FencingToken, TenantId};

/// The store's wall clock (unix milliseconds), injected so lease-expiry tests need no sleeps.
pub trait StoreClock: Send + Sync + fmt::Debug {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl StoreClock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the store reads wall time (lease expiry, updated_at)
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock tests move by hand. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl StoreClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Which backend a store is (for logs, metrics and the bench report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// In-process maps.
    Memory,
    /// redb file.
    Embedded,
    /// Google Cloud Firestore (or its emulator).
    Firestore,
    /// A test wrapper around another store.
    Wrapper,
}

/// Default number of tenants hydrated concurrently by [`Store::hydrate_all`].
pub const DEFAULT_HYDRATE_CONCURRENCY: usize = 16;

/// The session store.
///
/// Uses `async-trait` rather than native `async fn` in traits: the host chooses the backend at
/// runtime from configuration and tests slip recording/fault-injecting wrappers in, so the
/// trait must be usable as `Arc<dyn Store>`, which native async trait methods do not allow yet.
/// The boxed future per call is noise next to a disk or network round trip.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// Every tenant that has a status doc. Unreachable store → `Unavailable`, never `[]`.
    /// Documents whose id is not a valid [`TenantId`] (another application's, a console edit)
    /// are skipped here and in [`Self::hydrate_all`]; [`Self::invalid_tenant_ids`] lists them.
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    /// Ids of tenant documents that are not valid [`TenantId`]s (skipped by the listing), so
    /// the host can report them once. Backends keyed by `TenantId` have none.
    async fn invalid_tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Everything stored for one tenant, from one consistent snapshot where the backend can.
    /// A tenant with nothing stored hydrates to an empty snapshot.
    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError>;

    /// Applies `batch` atomically (all or nothing, in order) if `fence` is the tenant's current
    /// lease epoch and the lease is held; otherwise `Fenced` and nothing lands.
    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError>;

    /// Takes the tenant's lease for `holder` if it is free, expired or already `holder`'s.
    /// Every acquisition increments the epoch. A live lease of another holder → `LeaseHeld`.
    /// Creates the status doc if missing.
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Extends `lease` by `ttl` from now if it is still the current one (same epoch and holder),
    /// even after expiry as long as nobody took over; otherwise `Fenced`.
    async fn renew_lease(&self, tenant: &TenantId, lease: &Lease, ttl: Duration)
    -> Result<Lease, StoreError>;

    /// Gives the lease up so another holder can acquire at once. Bumps the epoch, so commits
    /// with the old token are fenced from now on. A lease that is no longer current → `Fenced`.
    async fn release_lease(&self, tenant: &TenantId, lease: &Lease) -> Result<(), StoreError>;

    /// Deletes the tenant's creds and every key (after logout), fenced like a commit. The
    /// status doc, events, outbox and inbox stay.
    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError>;

    /// Deletes everything stored for the tenant — creds, keys, outbox, inbox, events and the status
    /// doc with its lease — fenced like a commit (`fence` must be the epoch of the held lease;
    /// otherwise `Fenced` and nothing is deleted). Afterwards the tenant is no longer listed
    /// and hydrates empty. Atomic on the memory and embedded backends; Firestore deletes the
    /// sub-collections in fenced transactions and the tenant doc last, so an interrupted delete
    /// leaves a still-listed tenant that a retry (under a fresh lease) finishes. The caller must
    /// write nothing for the tenant afterwards (a status write or event would re-create it).
    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError>;

    /// Reads the status doc (`None` if the tenant has none).
    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError>;

    /// Writes the runtime fields of the status doc (not fenced; the lease is untouched).
    /// Creates the doc. The operator-config fields of `status` (webhook url and secret,
    /// pacing, deleting) are ignored: only [`write_config`](Self::write_config) and
    /// [`create_tenant`](Self::create_tenant) write them, so a stale in-memory copy can
    /// never revert them.
    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError>;

    /// Creates the tenant with `status` (runtime and config fields) if nothing is stored for
    /// it yet, atomically: of two concurrent creates exactly one succeeds, the other gets
    /// `AlreadyExists` and nothing of it lands. Durable before it returns.
    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError>;

    /// Applies `patch` to the tenant's operator config: only the fields it names, durable
    /// (fsync'd on the embedded store) before it returns. A tenant with no status doc →
    /// `NotFound` (a patch never re-creates a deleted tenant).
    async fn write_config(&self, tenant: &TenantId, patch: &ConfigPatch) -> Result<(), StoreError>;

    /// Re-seals every sealed value of the tenant (creds, keys, outbox, inbox, webhook
    /// secret) that is not under the keyring's current key. Idempotent and resumable: values
    /// already under the current key are left alone, each value is replaced atomically and
    /// only if it did not change meanwhile, so an interrupted run loses nothing and a rerun
    /// finishes it. A value no key of the ring opens is `Corrupt`.
    async fn rekey(&self, tenant: &TenantId) -> Result<RekeyReport, StoreError>;

    /// Appends a lifecycle event; only the newest [`model::EVENTS_KEPT`] are kept.
    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError>;

    /// The kept events, oldest first.
    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError>;

    /// Queued outbox items, by id.
    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError>;

    /// Undelivered inbox items, sorted by id ascending (arrival order for host-made ids).
    /// A value that does not decode or decrypt is `Corrupt`.
    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError>;

    /// One page of the inbox: at most `limit` items whose id is greater than `after` (from the
    /// first when `None`), ascending. The default reads the whole inbox (backends override it
    /// with a bounded read; wrappers stay correct).
    async fn list_inbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let items = self.list_inbox(tenant).await?;
        Ok(items.into_iter().filter(|i| after.is_none_or(|a| i.id.as_str() > a)).take(limit).collect())
    }

    /// One inbox item by id (`None` when absent, e.g. already delivered and deleted).
    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        Ok(self.list_inbox(tenant).await?.into_iter().find(|i| i.id == id))
    }

    /// Hydrates every tenant, `concurrency` at a time, yielding each tenant's own result as it
    /// completes, so one corrupt tenant does not stop the others. Fails as a whole only when
    /// the tenant list itself cannot be read.
    async fn hydrate_all(&self, concurrency: usize) -> Result<BoxStream<'_, Hydrated>, StoreError> {
        let tenants = self.list_tenants().await?;
        let stream = futures::stream::iter(tenants)
            .map(move |t| async move {
                let r = self.hydrate(&t).await;
                (t, r)
            })
            .buffer_unordered(concurrency.max(1));
        Ok(stream.boxed())
    }
}

/// Test-only levers every backend offers to the conformance suite (corrupt a value, make the
/// next commit fail half-way). Not used in production code paths.
#[async_trait::async_trait]
pub trait TestHooks: Send + Sync {
    /// Overwrites the stored bytes of `key` with garbage that is not a valid envelope.
    async fn corrupt_key(&self, tenant: &TenantId, key: &KeyRef) -> Result<(), StoreError>;
    /// Overwrites the stored bytes of inbox item `id` with garbage that is not a valid envelope.
    async fn corrupt_inbox(&self, tenant: &TenantId, id: &str) -> Result<(), StoreError>;
    /// Overwrites the stored creds with a well-formed envelope that fails to authenticate.
    async fn corrupt_creds(&self, tenant: &TenantId) -> Result<(), StoreError>;
    /// Copies the raw sealed value of `from` (tenant `src`) into key `to` of tenant `dst`,
    /// the way an attacker or a bad migration would move a document.
    async fn copy_raw_key(
        &self,
        src: &TenantId,
        from: &KeyRef,
        dst: &TenantId,
        to: &KeyRef,
    ) -> Result<(), StoreError>;
    /// The raw document ids (storage keys) of `tenant`'s key documents, as stored.
    async fn raw_key_ids(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError>;
    /// Stores `value` for `key` the way stores written before hashed key ids did (plain
    /// document id naming the address), to check that old data still loads and migrates.
    async fn put_legacy_key(&self, tenant: &TenantId, key: &KeyRef, value: &[u8]) -> Result<(), StoreError>;
    /// Makes the next commit fail after `writes` of its writes were staged.
    fn fail_next_commit_after(&self, writes: usize);
}

/// Which backend to open, with its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In-memory (nothing survives the process).
    Memory,
    /// redb file at `path` (default `./data/staylinked.redb`).
    Embedded {
        /// The redb file.
        path: PathBuf,
    },
    /// Firestore `project` (emulator when `FIRESTORE_EMULATOR_HOST` is set).
    Firestore {
        /// Google Cloud project id.
        project: String,
        /// Database id (default `(default)`).
        database: Option<String>,
    },
}

/// Env var: `firestore|embedded|memory`.
pub const ENV_STORE: &str = "STAYLINKED_STORE";
/// Env var: the embedded store's redb file path.
pub const ENV_STORE_PATH: &str = "STAYLINKED_STORE_PATH";
/// Env var: the Firestore database id.
pub const ENV_FIRESTORE_DATABASE: &str = "STAYLINKED_FIRESTORE_DATABASE";
/// Env var read to find the Firestore project.
pub const ENV_GOOGLE_CLOUD_PROJECT: &str = "GOOGLE_CLOUD_PROJECT";
/// Env var naming the Firestore emulator (`host:port`).
pub const ENV_FIRESTORE_EMULATOR_HOST: &str = "FIRESTORE_EMULATOR_HOST";
/// The embedded store's default file.
pub const DEFAULT_EMBEDDED_PATH: &str = "./data/staylinked.redb";

impl StoreConfig {
    /// Reads [`ENV_STORE`], [`ENV_STORE_PATH`], [`ENV_GOOGLE_CLOUD_PROJECT`],
    /// [`ENV_FIRESTORE_EMULATOR_HOST`] and [`ENV_FIRESTORE_DATABASE`]. Default: Firestore when
    /// a project or an emulator is configured, else the embedded file.
    pub fn from_env() -> Result<Self, StoreError> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let project = var(ENV_GOOGLE_CLOUD_PROJECT);
        let emulator = var(ENV_FIRESTORE_EMULATOR_HOST);
        let firestore = || Self::Firestore {
            project: project.clone().unwrap_or_else(|| "staylinked-local".to_owned()),
            database: var(ENV_FIRESTORE_DATABASE),
        };
        let embedded = || Self::Embedded {
            path: var(ENV_STORE_PATH).unwrap_or_else(|| DEFAULT_EMBEDDED_PATH.to_owned()).into(),
        };
        match var(ENV_STORE).as_deref() {
            Some("memory") => Ok(Self::Memory),
            Some("embedded") => Ok(embedded()),
            Some("firestore") if project.is_some() || emulator.is_some() => Ok(firestore()),
            Some("firestore") => Err(StoreError::Config {
                detail: format!(
                    "{ENV_STORE}=firestore needs {ENV_GOOGLE_CLOUD_PROJECT} or {ENV_FIRESTORE_EMULATOR_HOST}"
                ),
            }),
            Some(other) => Err(StoreError::Config {
                detail: format!("{ENV_STORE}={other:?} is not one of firestore, embedded, memory"),
            }),
            None if project.is_some() || emulator.is_some() => Ok(firestore()),
            None => Ok(embedded()),
        }
    }
}

/// Opens the configured backend with the system clock and the keyring from the environment
/// (see [`crypt::Keyring::from_env`]).
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let clock: Arc<dyn StoreClock> = Arc::new(SystemClock);
    Ok(match config {
        StoreConfig::Memory => Arc::new(memory::MemoryStore::new(
            Arc::new(crypt::Keyring::new(&crypt::MasterKey::generate(), &[])),
            clock,
        )),
        StoreConfig::Embedded { path } => {
            let key_file = path.with_extension("key");
            let ring = crypt::Keyring::from_env(crypt::KeyPolicy::Local, Some(&key_file))?;
            Arc::new(embedded::EmbeddedStore::open(path, Arc::new(ring), clock).await?)
        }
        #[cfg(not(feature = "firestore"))]
        StoreConfig::Firestore { .. } => {
            return Err(StoreError::Config {
                detail: "this binary was built without the `firestore` feature".to_owned(),
            });
        }
        #[cfg(feature = "firestore")]
        StoreConfig::Firestore { project, database } => {
            let ring = crypt::Keyring::from_env(crypt::KeyPolicy::Remote, None)?;
            if !ring.is_encrypted() {
                tracing::warn!("firestore store runs without a master key: secrets are stored unencrypted");
            }
            let opts = firestore::FirestoreOptions::new(project.clone()).with_database(database.clone());
            Arc::new(firestore::FirestoreStore::connect(opts, Arc::new(ring), clock).await?)
        }
    })
}
