//! The supervisor: opens the API listener first (so `/healthz` answers from the first
//! millisecond), hydrates every tenant with bounded concurrency, starts one actor per tenant
//! (linked ones connect staggered with jitter, without QR), keeps the registry (the only
//! shared map: tenant id → [`TenantHandle`]) and runs the ordered shutdown.
//!
//! Never pairs anything and never reads tenant state itself beyond handing snapshots to actors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use rand::Rng as _;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::Metrics;
use super::shutdown::ShutdownSummary;
use super::state::{TenantState, TenantView};
use super::tenant::{self, Initial, TenantHandle};
use super::{Ctx, HostError, clock};
use crate::config::Config;
use crate::store::{Store, StoreError, TenantStatus};
use crate::types::TenantId;

/// Cold-start progress (the `/readyz` body).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Hydration finished.
    pub ready: bool,
    /// Tenants found in the store (known once listing succeeded).
    pub total: u64,
    /// Tenants hydrated.
    pub hydrated: u64,
    /// Tenants connected right now.
    pub connected: u64,
    /// Tenants whose state failed to load (state `error`).
    pub failed: u64,
    /// Tenant documents skipped because their id is not a valid tenant id (logged once each).
    pub skipped: u64,
}

/// Why a tenant could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The id is taken.
    #[error("tenant already exists")]
    Exists,
    /// The host is shutting down.
    #[error("host is shutting down")]
    ShuttingDown,
    /// The status doc could not be written.
    #[error("store failed")]
    Store(#[source] StoreError),
}

/// The registry of tenant actors plus cold-start progress.
#[derive(Debug)]
pub struct Registry {
    ctx: Arc<Ctx>,
    tenants: Mutex<BTreeMap<TenantId, TenantHandle>>,
    /// Handles of forgotten tenants whose actors still finish a logout + delete: kept so their
    /// command channel stays open (a closed channel reads as "stop" to the actor).
    forgotten: Mutex<Vec<TenantHandle>>,
    total: AtomicU64,
    hydrated: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    ready: AtomicBool,
    accepting: AtomicBool,
}

impl Registry {
    /// Whether API writes are accepted (false once shutdown began).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// The shared context.
    pub fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// The handle of one tenant.
    pub fn get(&self, id: &TenantId) -> Option<TenantHandle> {
        self.tenants.lock().ok().and_then(|m| m.get(id).cloned())
    }

    /// Views of every tenant, by id.
    pub fn list(&self) -> Vec<TenantView> {
        let handles: Vec<TenantHandle> =
            self.tenants.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        handles.iter().map(|h| h.view.borrow().clone()).collect()
    }

    /// Tenants per state name (every state present, zero included). Reads each tenant's state
    /// in place (no view clones): `/metrics` and `/readyz` are polled during cold start.
    pub fn states(&self) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> = TenantState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        if let Ok(tenants) = self.tenants.lock() {
            for h in tenants.values() {
                *m.entry(h.view.borrow().state.as_str()).or_default() += 1;
            }
        }
        m
    }

    /// Cold-start progress.
    pub fn progress(&self) -> Progress {
        let connected = self.states().get(TenantState::Connected.as_str()).copied().unwrap_or(0);
        Progress {
            ready: self.ready.load(Ordering::SeqCst),
            total: self.total.load(Ordering::SeqCst),
            hydrated: self.hydrated.load(Ordering::SeqCst),
            connected,
            failed: self.failed.load(Ordering::SeqCst),
            skipped: self.skipped.load(Ordering::SeqCst),
        }
    }

    /// Creates a tenant: writes its status doc (so the next cold start finds it), then starts
    /// its actor in state `unlinked`.
    ///
    /// # Errors
    /// [`CreateError`].
    pub async fn create(&self, id: TenantId, webhook_url: Option<String>) -> Result<TenantView, CreateError> {
        self.create_with(id, webhook_url, None, PresenceSettings::default()).await.map(|(view, _)| view)
    }

    /// [`Self::create`] with per-tenant pacing overrides; also returns the tenant's new webhook
    /// signing secret (stored in the status doc; shown to the caller this once).
    ///
    /// # Errors
    /// [`CreateError`].
    pub async fn create_with(
        &self,
        id: TenantId,
        webhook_url: Option<String>,
        pacing: Option<crate::store::model::PacingOverride>,
        presence: PresenceSettings,
    ) -> Result<(TenantView, String), CreateError> {
        if !self.is_accepting() {
            return Err(CreateError::ShuttingDown);
        }
        if self.get(&id).is_some() {
            return Err(CreateError::Exists);
        }
        if self.ctx.store.read_status(&id).await.map_err(CreateError::Store)?.is_some() {
            return Err(CreateError::Exists);
        }
        let secret = super::webhook::new_secret(&mut rand::rngs::OsRng);
        let status = TenantStatus {
            updated_at: clock::unix_ms(),
            webhook_url,
            webhook_secret: Some(crate::store::SecretBytes::new(secret.clone().into_bytes())),
            pacing: pacing.map(Box::new),
            push_name: presence.push_name,
            presence: presence.presence,
            ..TenantStatus::default()
        };
        // Atomic in the store: of two instances creating the same tenant, one wins and the
        // other answers "exists" (never a second secret).
        match self.ctx.store.create_tenant(&id, &status).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => return Err(CreateError::Exists),
            Err(e) => return Err(CreateError::Store(e)),
        }
        // Check, spawn and insert under one lock: exactly one actor per tenant, even when
        // cold-start hydration finds the status doc we just wrote.
        let mut map = self.tenants.lock().map_err(|_| CreateError::ShuttingDown)?;
        if let Some(existing) = map.get(&id) {
            // Hydration found the status doc just written (with this secret) first.
            return Ok((existing.view.borrow().clone(), secret));
        }
        let handle = tenant::spawn(&self.ctx, id.clone(), Initial::Created { status }, Duration::ZERO);
        let view = handle.view.borrow().clone();
        map.insert(id, handle);
        Ok((view, secret))
    }

    /// Drops a tenant from the registry without stopping its actor (it finishes a logout and
    /// delete it started and exits by itself). Its handle is parked until the actor has exited.
    pub fn forget(&self, id: &TenantId) {
        let handle = self.tenants.lock().ok().and_then(|mut m| m.remove(id));
        if let Ok(mut parked) = self.forgotten.lock() {
            parked.retain(|h| !h.commands.is_closed());
            parked.extend(handle);
        }
    }

    /// Drops a tenant from the registry, stopping its actor.
    pub fn remove(&self, id: &TenantId) {
        if let Ok(mut m) = self.tenants.lock()
            && let Some(h) = m.remove(id)
        {
            h.cancel.cancel();
        }
    }

    /// Starts the actor of a hydrated tenant unless one already runs (created meanwhile).
    fn start_hydrated(&self, id: TenantId, initial: Initial, delay: Duration) {
        if let Ok(mut m) = self.tenants.lock()
            && !m.contains_key(&id)
        {
            let handle = tenant::spawn(&self.ctx, id.clone(), initial, delay);
            m.insert(id, handle);
        }
    }
}

/// Per-tenant presence settings given at creation (API fields `push_name`, `presence`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceSettings {
    /// Push name announced with `<presence>` after login.
    pub push_name: Option<String>,
    /// Presence type (default `unavailable`).
    pub presence: Option<crate::store::model::PresenceType>,
}

/// A running host: API + tenant actors.
#[derive(Debug)]
pub struct Host {
    registry: Arc<Registry>,
    api_addr: SocketAddr,
    api_stop: CancellationToken,
    api_task: JoinHandle<()>,
}

impl Host {
    /// Binds the API, then hydrates and starts every tenant in the background (`/readyz`
    /// reports progress).
    ///
    /// # Errors
    /// [`HostError::Bind`].
    pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Self, HostError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| HostError::Bind { addr: config.listen, source })?;
        let api_addr =
            listener.local_addr().map_err(|source| HostError::Bind { addr: config.listen, source })?;
        match (config.api_key.is_some(), api_addr.ip().is_loopback()) {
            (true, _) => {}
            (false, true) => tracing::warn!(
                addr = %api_addr,
                "STAYLINKED_API_KEY is not set: the API listens on {} only (set STAYLINKED_API_KEY to serve other hosts)",
                api_addr.ip()
            ),
            (false, false) => tracing::error!(
                addr = %api_addr,
                "STAYLINKED_API_KEY is not set and STAYLINKED_INSECURE_NO_AUTH is on: the /v1 API is open to anyone who can reach {}",
                api_addr
            ),
        }
        if config.webhook.egress.allow_private {
            tracing::warn!(
                "STAYLINKED_WEBHOOK_ALLOW_PRIVATE is on: webhooks may use plain http and reach private, loopback and link-local addresses"
            );
        }
        let http = super::egress::client(
            config.webhook.egress,
            concat!("staylinked-webhook/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(HostError::Http)?;
        let webhooks = Arc::new(super::webhook::Dispatcher::new());
        let wa_version = super::version::VersionSource::new(config.wa_version.clone());
        let ctx = Arc::new(Ctx {
            config,
            store,
            metrics: Arc::new(Metrics::default()),
            tracker: TaskTracker::new(),
            root: CancellationToken::new(),
            aborts: Mutex::new(Vec::new()),
            events: Arc::clone(&webhooks) as Arc<dyn super::events::EventSink>,
            webhooks,
            http,
            wa_version,
        });
        let registry = Arc::new(Registry {
            ctx: Arc::clone(&ctx),
            tenants: Mutex::new(BTreeMap::new()),
            forgotten: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
            hydrated: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
        });
        let api_stop = CancellationToken::new();
        let api_task = tokio::spawn(crate::api::serve(listener, Arc::clone(&registry), api_stop.clone()));
        tracing::info!(addr = %api_addr, holder = %ctx.config.holder_id, "http listening");
        let reg = Arc::clone(&registry);
        ctx.spawn(async move {
            // `auto`: read the current version before the linked tenants connect (bounded by
            // the fetch timeout; the API already answers meanwhile).
            let c = &reg.ctx;
            if c.wa_version.is_auto() {
                c.wa_version.refresh(&c.http).await;
            }
            tracing::info!(version = %c.wa_version.current(), "WA Web version");
            hydrate(reg).await;
        });
        Ok(Self { registry, api_addr, api_stop, api_task })
    }

    /// The API's bound address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Ordered shutdown: stop accepting API writes → every tenant stops reading, commits its
    /// pending deltas, closes its socket, releases its lease → stop the API. Bounded by the
    /// configured deadline. Logs one summary line.
    pub async fn shutdown(self) -> ShutdownSummary {
        let started = tokio::time::Instant::now();
        let ctx = Arc::clone(&self.registry.ctx);
        self.registry.accepting.store(false, Ordering::SeqCst);
        let tenants = self.registry.tenants.lock().map(|m| m.len()).unwrap_or(0);
        tracing::info!(tenants, "shutdown: flushing tenants");
        ctx.root.cancel();
        ctx.tracker.close();
        let clean =
            tokio::time::timeout_at(started + ctx.config.shutdown_deadline, ctx.tracker.wait()).await.is_ok();
        self.api_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.api_task).await;
        let summary = ShutdownSummary {
            tenants_flushed: if clean { tenants } else { 0 },
            deltas_committed: ctx.metrics.deltas_committed(),
            elapsed: started.elapsed(),
            clean,
        };
        if clean {
            tracing::info!(
                tenants_flushed = summary.tenants_flushed,
                deltas_committed = summary.deltas_committed,
                elapsed_ms = clock::ms(summary.elapsed),
                "shutdown complete"
            );
        } else {
            tracing::error!(
                tenants = tenants,
                deltas_committed = summary.deltas_committed,
                elapsed_ms = clock::ms(summary.elapsed),
                "shutdown deadline passed with tenants still flushing"
            );
        }
        summary
    }

    /// Stops everything at once without flushing or releasing leases — the in-process stand-in
    /// for SIGKILL (the demo and tests use it). Sockets close as their tasks are dropped.
    pub async fn crash(self) {
        self.registry.accepting.store(false, Ordering::SeqCst);
        let ctx = Arc::clone(&self.registry.ctx);
        self.api_task.abort();
        let aborts = ctx.aborts.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        for a in aborts {
            a.abort();
        }
        ctx.tracker.close();
        let _ = tokio::time::timeout(ctx.config.shutdown_deadline, ctx.tracker.wait()).await;
        ctx.root.cancel();
    }
}

/// Reports, once per cold start, tenant documents whose id is not a valid tenant id (another
/// application's documents in a shared collection, a console edit): each is logged and counted in
/// `/readyz` (`skipped`), and the other tenants start as usual.
async fn report_invalid_ids(registry: &Registry) {
    match registry.ctx.store.invalid_tenant_ids().await {
        Ok(ids) => {
            for id in &ids {
                // The id is foreign data: escaped and cut short in the log line.
                let shown: String = id.escape_debug().take(80).collect();
                tracing::error!(
                    doc_id = %shown,
                    "tenant document with an invalid id skipped (ids are [a-z0-9_-]{{1,64}}); move or delete it"
                );
            }
            registry.skipped.store(u64::try_from(ids.len()).unwrap_or(u64::MAX), Ordering::SeqCst);
        }
        Err(e) => tracing::warn!(error = %e, "could not check tenant documents for invalid ids"),
    }
}

/// Finishes the delete of a tenant whose `DELETE` was answered (durable `deleting` marker)
/// before the process stopped: takes the lease (waiting out a live holder) and purges the
/// tenant without connecting to WhatsApp. The tenant is not in the registry meanwhile, so the
/// API no longer shows it. Retries until done or shutdown.
async fn finish_delete(ctx: Arc<Ctx>, id: TenantId) {
    let mut attempt = 0u32;
    loop {
        let wait = match super::lease::acquire(&ctx, &id).await {
            Ok(super::lease::Acquired::Held(guard)) => {
                match ctx.store.delete_tenant(&id, guard.fence()).await {
                    Ok(()) => {
                        guard.stop_renewal();
                        ctx.metrics.count_delete_finished();
                        tracing::info!("deleted tenant purged after restart");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "purging a deleted tenant failed; retrying");
                        let _ = guard.release().await;
                        None
                    }
                }
            }
            Ok(super::lease::Acquired::Elsewhere { .. }) => Some(ctx.config.held_retry),
            Err(e) => {
                tracing::warn!(error = %e, "lease for a deleted tenant failed; retrying");
                None
            }
        };
        attempt = attempt.saturating_add(1);
        let wait = wait.unwrap_or_else(|| {
            super::policy::backoff(Duration::from_secs(1), attempt, rand::thread_rng().r#gen())
        });
        tokio::select! {
            () = ctx.root.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Cold start: hydrate everything with bounded concurrency and start each tenant's actor.
async fn hydrate(registry: Arc<Registry>) {
    let ctx = Arc::clone(&registry.ctx);
    let started = tokio::time::Instant::now();
    let mut attempt = 0u32;
    let mut stream = loop {
        match ctx.store.hydrate_all(ctx.config.hydrate_concurrency).await {
            Ok(s) => break s,
            Err(e) => {
                attempt = attempt.saturating_add(1);
                let wait =
                    super::policy::backoff(Duration::from_secs(1), attempt, rand::thread_rng().r#gen());
                tracing::warn!(error = %e, "listing tenants failed; retrying");
                tokio::select! {
                    () = ctx.root.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    };
    if let Ok(tenants) = ctx.store.list_tenants().await {
        registry.total.store(u64::try_from(tenants.len()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
    report_invalid_ids(&registry).await;
    let stagger = ctx.config.connect_stagger;
    let mut linked = 0u32;
    while let Some((id, result)) = stream.next().await {
        if ctx.root.is_cancelled() {
            return;
        }
        let initial = match result {
            Ok(snap) if snap.status.as_ref().is_some_and(|s| s.deleting) => {
                // A DELETE was answered before the last stop: finish it, never reconnect.
                registry.hydrated.fetch_add(1, Ordering::SeqCst);
                let c = Arc::clone(&ctx);
                let span = tracing::info_span!("tenant", tenant_id = %id);
                ctx.spawn(tracing::Instrument::instrument(finish_delete(c, id), span));
                continue;
            }
            Ok(snap) => {
                registry.hydrated.fetch_add(1, Ordering::SeqCst);
                Initial::Hydrated(Box::new(snap))
            }
            Err(e) => {
                registry.failed.fetch_add(1, Ordering::SeqCst);
                tracing::error!(tenant_id = %id, error = %e, "tenant state failed to load; marked error");
                Initial::Failed(format!("state failed to load: {e}"))
            }
        };
        let is_linked =
            matches!(&initial, Initial::Hydrated(s) if s.creds.as_ref().is_some_and(|c| c.me.is_some()));
        let delay = if is_linked {
            linked = linked.saturating_add(1);
            let jitter = stagger.mul_f64(rand::thread_rng().r#gen::<f64>());
            stagger.saturating_mul(linked - 1) + jitter
        } else {
            Duration::ZERO
        };
        registry.start_hydrated(id, initial, delay);
    }
    ctx.metrics.set_hydration(started.elapsed());
    registry.ready.store(true, Ordering::SeqCst);
    let p = registry.progress();
    tracing::info!(
        hydrated = p.hydrated,
        failed = p.failed,
        elapsed_ms = clock::ms(started.elapsed()),
        "hydration complete"
    );
}
