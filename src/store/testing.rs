//! Test wrappers around any [`Store`]: [`RecordingStore`] keeps an ordered log of operations
//! (so host tests can assert persist-before-send), [`FaultyStore`] fails chosen commits or plays
//! an unreachable store (crash and outage tests). Neither is used in production.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    BackendKind, ConfigPatch, DeltaBatch, InboxItem, Lease, OutboxItem, RekeyReport, Store, StoreError,
    StoredEvent, TenantSnapshot, TenantStatus,
};
use crate::types::{FencingToken, TenantId};

/// One recorded store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A commit attempt and whether it succeeded.
    Commit {
        /// Tenant.
        tenant: TenantId,
        /// Fence presented.
        fence: FencingToken,
        /// The batch.
        batch: DeltaBatch,
        /// Whether the store accepted it.
        ok: bool,
    },
    /// A lease acquisition and the epoch obtained (`None` on failure).
    Acquire {
        /// Tenant.
        tenant: TenantId,
        /// Holder.
        holder: String,
        /// Epoch obtained.
        epoch: Option<u64>,
    },
    /// A renewal.
    Renew {
        /// Tenant.
        tenant: TenantId,
        /// Epoch renewed.
        epoch: u64,
        /// Success.
        ok: bool,
    },
    /// A release.
    Release {
        /// Tenant.
        tenant: TenantId,
        /// Epoch released.
        epoch: u64,
        /// Success.
        ok: bool,
    },
    /// Keys deleted.
    DeleteKeys {
        /// Tenant.
        tenant: TenantId,
        /// Success.
        ok: bool,
    },
    /// The whole tenant deleted.
    DeleteTenant {
        /// Tenant.
        tenant: TenantId,
        /// Success.
        ok: bool,
    },
    /// A status write.
    WriteStatus {
        /// Tenant.
        tenant: TenantId,
        /// The status written.
        status: TenantStatus,
    },
    /// Any read (list, hydrate, read status, events, outbox, inbox).
    Read {
        /// Which read.
        what: &'static str,
        /// Tenant, if the read was per tenant.
        tenant: Option<TenantId>,
    },
    /// An event append.
    Event {
        /// Tenant.
        tenant: TenantId,
        /// Event kind.
        kind: String,
    },
}

/// Wraps a store and records every operation, in call order (rustls `ClientStorage` style).
#[derive(Debug)]
pub struct RecordingStore {
    inner: Arc<dyn Store>,
    ops: Mutex<Vec<StoreOp>>,
}

impl RecordingStore {
    /// Records operations passed to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, ops: Mutex::new(Vec::new()) }
    }

    /// The operations so far, in order.
    pub fn ops(&self) -> Vec<StoreOp> {
        self.ops.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Only the successful commits, in order.
    pub fn commits(&self) -> Vec<DeltaBatch> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                StoreOp::Commit { batch, ok: true, .. } => Some(batch),
                _ => None,
            })
            .collect()
    }

    fn push(&self, op: StoreOp) {
        if let Ok(mut g) = self.ops.lock() {
            g.push(op);
        }
    }
}

#[async_trait::async_trait]
impl Store for RecordingStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Wrapper
    }
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.push(StoreOp::Read { what: "list_tenants", tenant: None });
        self.inner.list_tenants().await
    }
    async fn invalid_tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.invalid_tenant_ids().await
    }
    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError> {
        self.push(StoreOp::Read { what: "hydrate", tenant: Some(tenant.clone()) });
        self.inner.hydrate(tenant).await
    }
    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError> {
        let r = self.inner.commit(tenant, fence, batch).await;
        self.push(StoreOp::Commit { tenant: tenant.clone(), fence, batch: batch.clone(), ok: r.is_ok() });
        r
    }
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let r = self.inner.acquire_lease(tenant, holder, ttl).await;
        let epoch = r.as_ref().ok().map(|l| l.epoch);
        self.push(StoreOp::Acquire { tenant: tenant.clone(), holder: holder.to_owned(), epoch });
        r
    }
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let r = self.inner.renew_lease(tenant, lease, ttl).await;
        self.push(StoreOp::Renew { tenant: tenant.clone(), epoch: lease.epoch, ok: r.is_ok() });
        r
    }
    async fn release_lease(&self, tenant: &TenantId, lease: &Lease) -> Result<(), StoreError> {
        let r = self.inner.release_lease(tenant, lease).await;
        self.push(StoreOp::Release { tenant: tenant.clone(), epoch: lease.epoch, ok: r.is_ok() });
        r
    }
    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let r = self.inner.delete_tenant_keys(tenant, fence).await;
        self.push(StoreOp::DeleteKeys { tenant: tenant.clone(), ok: r.is_ok() });
        r
    }
    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let r = self.inner.delete_tenant(tenant, fence).await;
        self.push(StoreOp::DeleteTenant { tenant: tenant.clone(), ok: r.is_ok() });
        r
    }
    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        self.push(StoreOp::Read { what: "read_status", tenant: Some(tenant.clone()) });
        self.inner.read_status(tenant).await
    }
    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        self.push(StoreOp::WriteStatus { tenant: tenant.clone(), status: status.clone() });
        self.inner.write_status(tenant, status).await
    }
    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        self.push(StoreOp::WriteStatus { tenant: tenant.clone(), status: status.clone() });
        self.inner.create_tenant(tenant, status).await
    }
    async fn write_config(&self, tenant: &TenantId, patch: &ConfigPatch) -> Result<(), StoreError> {
        self.inner.write_config(tenant, patch).await
    }
    async fn rekey(&self, tenant: &TenantId) -> Result<RekeyReport, StoreError> {
        self.inner.rekey(tenant).await
    }
    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError> {
        self.push(StoreOp::Event { tenant: tenant.clone(), kind: event.kind.clone() });
        self.inner.append_event(tenant, event).await
    }
    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        self.push(StoreOp::Read { what: "list_events", tenant: Some(tenant.clone()) });
        self.inner.list_events(tenant).await
    }
    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        self.push(StoreOp::Read { what: "list_outbox", tenant: Some(tenant.clone()) });
        self.inner.list_outbox(tenant).await
    }
    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError> {
        self.push(StoreOp::Read { what: "list_inbox", tenant: Some(tenant.clone()) });
        self.inner.list_inbox(tenant).await
    }
    async fn list_inbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.push(StoreOp::Read { what: "list_inbox_page", tenant: Some(tenant.clone()) });
        self.inner.list_inbox_page(tenant, after, limit).await
    }
    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        self.push(StoreOp::Read { what: "get_inbox", tenant: Some(tenant.clone()) });
        self.inner.get_inbox(tenant, id).await
    }
}

/// Wraps a store and injects faults: fail the Nth commit (1-based, counted from creation or
/// the last [`fail_commit_n`](Self::fail_commit_n)), or be unreachable altogether. A failed
/// commit never reaches the inner store (so nothing of it lands, like a crash before commit).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    commits: AtomicU64,
    fail_at: AtomicU64,
    down: AtomicBool,
    hang_renewals: AtomicBool,
}

impl FaultyStore {
    /// Passes everything through until told otherwise.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            commits: AtomicU64::new(0),
            fail_at: AtomicU64::new(0),
            down: AtomicBool::new(false),
            hang_renewals: AtomicBool::new(false),
        }
    }

    /// The `n`th commit from now (1 = the next one) fails with `Injected`.
    pub fn fail_commit_n(&self, n: u64) {
        self.commits.store(0, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }

    /// While `down`, every operation fails with `Unavailable`.
    pub fn set_unreachable(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// While set, every lease renewal hangs (never answers), like an RPC stuck on the network.
    pub fn set_renewals_hang(&self, hang: bool) {
        self.hang_renewals.store(hang, Ordering::SeqCst);
    }

    /// Commits attempted since the last [`fail_commit_n`](Self::fail_commit_n).
    pub fn commit_attempts(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    fn gate(&self, op: &'static str) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable(op, "fault injection: store unreachable"))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Wrapper
    }
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.gate("list tenants")?;
        self.inner.list_tenants().await
    }
    async fn invalid_tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        self.gate("list tenants")?;
        self.inner.invalid_tenant_ids().await
    }
    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError> {
        self.gate("hydrate")?;
        self.inner.hydrate(tenant).await
    }
    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError> {
        self.gate("commit")?;
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(StoreError::Injected { op: "commit" });
        }
        self.inner.commit(tenant, fence, batch).await
    }
    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.gate("acquire lease")?;
        self.inner.acquire_lease(tenant, holder, ttl).await
    }
    async fn renew_lease(
        &self,
        tenant: &TenantId,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.gate("renew lease")?;
        if self.hang_renewals.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.inner.renew_lease(tenant, lease, ttl).await
    }
    async fn release_lease(&self, tenant: &TenantId, lease: &Lease) -> Result<(), StoreError> {
        self.gate("release lease")?;
        self.inner.release_lease(tenant, lease).await
    }
    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        self.gate("delete tenant keys")?;
        self.inner.delete_tenant_keys(tenant, fence).await
    }
    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        self.gate("delete tenant")?;
        self.inner.delete_tenant(tenant, fence).await
    }
    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        self.gate("read status")?;
        self.inner.read_status(tenant).await
    }
    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        self.gate("write status")?;
        self.inner.write_status(tenant, status).await
    }
    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        self.gate("create tenant")?;
        self.inner.create_tenant(tenant, status).await
    }
    async fn write_config(&self, tenant: &TenantId, patch: &ConfigPatch) -> Result<(), StoreError> {
        self.gate("write config")?;
        self.inner.write_config(tenant, patch).await
    }
    async fn rekey(&self, tenant: &TenantId) -> Result<RekeyReport, StoreError> {
        self.gate("rekey")?;
        self.inner.rekey(tenant).await
    }
    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError> {
        self.gate("append event")?;
        self.inner.append_event(tenant, event).await
    }
    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        self.gate("list events")?;
        self.inner.list_events(tenant).await
    }
    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        self.gate("list outbox")?;
        self.inner.list_outbox(tenant).await
    }
    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError> {
        self.gate("list inbox")?;
        self.inner.list_inbox(tenant).await
    }
    async fn list_inbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.gate("list inbox")?;
        self.inner.list_inbox_page(tenant, after, limit).await
    }
    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        self.gate("get inbox")?;
        self.inner.get_inbox(tenant, id).await
    }
}
