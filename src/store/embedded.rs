//! Embedded backend: one redb file (default `./data/staylinked.redb`), used when no Firestore is
//! configured so the gateway runs with zero setup. Every commit and lease change is one redb
//! write transaction (serialised, durable on commit), so fencing is checked and the batch
//! applied atomically. redb is synchronous; calls run on tokio's blocking pool.
//!
//! Tables: `tenants` (tenant → status+lease JSON), `creds` (tenant → creds record),
//! `keys` ((tenant, doc id) → sealed value), `outbox` and `inbox` ((tenant, doc id) → sealed
//! item), `events` ((tenant, seq) → event JSON).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase as _, ReadableTable, TableDefinition};

use super::crypt::Keyring;
use super::model::EVENTS_KEPT;
use super::record::{self, FaultArm, Op, TenantRow};
use super::{
    BackendKind, ConfigPatch, DeltaBatch, InboxItem, KeyRef, Lease, OutboxItem, RekeyReport, Store,
    StoreClock, StoreError, StoredEvent, TenantSnapshot, TenantStatus, TestHooks, lease,
};
use crate::types::{FencingToken, TenantId};

const TENANTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tenants");
const CREDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("creds");
const KEYS: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("keys");
const OUTBOX: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("outbox");
const INBOX: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("inbox");
const EVENTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("events");

/// The redb-backed store. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    ring: Arc<Keyring>,
    clock: Arc<dyn StoreClock>,
    fault: FaultArm,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

fn err<E: Into<redb::Error>>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| {
        let e: redb::Error = e.into();
        match e {
            redb::Error::TableTypeMismatch { .. } | redb::Error::UpgradeRequired(_) => {
                StoreError::backend(op, e)
            }
            _ => StoreError::unavailable(op, e),
        }
    }
}

/// How long [`EmbeddedStore::open`] waits for another process to release the file. On a deploy
/// the new process starts before the old one has exited (it flushes within its shutdown
/// deadline, 8 s by default); redb's file lock makes the new one wait instead of failing.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often a locked file is tried again (there is no event to wait for: redb only try-locks).
const LOCK_RETRY: Duration = Duration::from_millis(50);

impl EmbeddedStore {
    /// Opens (or creates) the redb file at `path`, creating parent directories. A file that
    /// cannot be opened is `Unavailable`, never an empty store.
    ///
    /// While another process holds the file (deploy overlap) it waits up to [`LOCK_WAIT`] for
    /// the lock, logging once why.
    pub async fn open(
        path: &Path,
        ring: Arc<Keyring>,
        clock: Arc<dyn StoreClock>,
    ) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut logged = false;
        loop {
            if let Some(s) = Self::try_open(path, ring.clone(), clock.clone()).await? {
                if logged {
                    tracing::info!(path = %path.display(), "store file lock acquired");
                }
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::unavailable(
                    "open",
                    format!("{} is locked by another process after {}s", path.display(), LOCK_WAIT.as_secs()),
                ));
            }
            if !logged {
                tracing::warn!(
                    path = %path.display(),
                    wait_s = LOCK_WAIT.as_secs(),
                    "store file is locked by another process (deploy overlap); waiting for it to exit"
                );
                logged = true;
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    /// One open attempt; `None` while another process holds the file lock.
    async fn try_open(
        path: &Path,
        ring: Arc<Keyring>,
        clock: Arc<dyn StoreClock>,
    ) -> Result<Option<Self>, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::unavailable("open", format!("{}: {e}", dir.display())))?;
            }
            let db = match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
                r => r.map_err(err("open"))?,
            };
            let tx = db.begin_write().map_err(err("open"))?;
            {
                tx.open_table(TENANTS).map_err(err("open"))?;
                tx.open_table(CREDS).map_err(err("open"))?;
                tx.open_table(KEYS).map_err(err("open"))?;
                tx.open_table(OUTBOX).map_err(err("open"))?;
                tx.open_table(INBOX).map_err(err("open"))?;
                tx.open_table(EVENTS).map_err(err("open"))?;
            }
            tx.commit().map_err(err("open"))?;
            Ok(Some(Self { inner: Arc::new(Inner { db, path, ring, clock, fault: FaultArm::default() }) }))
        })
        .await
        .map_err(|e| StoreError::backend("open", e))?
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| StoreError::backend(op, e))?
    }
}

fn read_row(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    tenant: &TenantId,
) -> Result<Option<TenantRow>, StoreError> {
    match table.get(tenant.as_str()).map_err(err("read status"))? {
        Some(v) => Ok(Some(record::decode_row(tenant, v.value())?)),
        None => Ok(None),
    }
}

/// `(tenant, "")..` bounded to the tenant: collects (doc id, bytes).
fn scan(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &TenantId,
    op: &'static str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for item in table.range((tenant.as_str(), "")..).map_err(err(op))? {
        let (k, v) = item.map_err(err(op))?;
        let (t, id) = k.value();
        if t != tenant.as_str() {
            break;
        }
        out.push((id.to_owned(), v.value().to_vec()));
    }
    Ok(out)
}

/// Reads, modifies and writes the tenant row inside one write transaction.
fn with_row<T>(
    inner: &Inner,
    tenant: &TenantId,
    op: &'static str,
    f: impl FnOnce(&mut TenantRow, &redb::WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    with_row_durability(inner, tenant, op, redb::Durability::Immediate, f)
}

/// [`with_row`] for writes that are not deltas (updates of the status doc, lifecycle events,
/// lease changes): committed without an fsync of their own, so they become durable with the
/// next durable commit (a delta) or when the database closes. A crash can lose the latest of
/// these updates, never a delta or a tenant's creation. Leases stay safe: the redb file is
/// locked by one process, so fencing across processes is the file lock's job here; a delta
/// committed under an epoch makes that epoch durable with it, and a lost epoch bump had no
/// durable write under it, so reusing its number fences nothing that exists. A lost release
/// only delays the next start until the lease expires. Each fsync'd commit costs 0.3 ms to
/// hundreds of ms on a busy disk and they serialise, so five of them per tenant dominated a
/// 1,000-tenant cold start and the SIGTERM flush (`staylinked bench scale`).
fn with_row_lazy<T>(
    inner: &Inner,
    tenant: &TenantId,
    op: &'static str,
    f: impl FnOnce(&mut TenantRow, &redb::WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    with_row_durability(inner, tenant, op, redb::Durability::None, f)
}

fn with_row_durability<T>(
    inner: &Inner,
    tenant: &TenantId,
    op: &'static str,
    durability: redb::Durability,
    f: impl FnOnce(&mut TenantRow, &redb::WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = inner.db.begin_write().map_err(err(op))?;
    if !matches!(durability, redb::Durability::Immediate) {
        // Creating a tenant (its first row) is always durable: a created tenant must survive
        // a crash. Only updates of an existing row may wait for the next durable commit.
        let exists =
            tx.open_table(TENANTS).map_err(err(op))?.get(tenant.as_str()).map_err(err(op))?.is_some();
        if exists {
            tx.set_durability(durability).map_err(|e| StoreError::backend(op, e))?;
        }
    }
    let out = {
        let mut tenants = tx.open_table(TENANTS).map_err(err(op))?;
        let mut row = read_row(&tenants, tenant)?.unwrap_or_default();
        let out = f(&mut row, &tx)?;
        tenants.insert(tenant.as_str(), record::encode_row(&row)?.as_slice()).map_err(err(op))?;
        out
    };
    // Dropping `tx` on any error above aborts it: nothing of the batch lands.
    tx.commit().map_err(err(op))?;
    Ok(out)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Embedded
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.blocking("list tenants", |inner| {
            let tx = inner.db.begin_read().map_err(err("list tenants"))?;
            let table = tx.open_table(TENANTS).map_err(err("list tenants"))?;
            let mut out = Vec::new();
            for item in table.iter().map_err(err("list tenants"))? {
                let (k, _) = item.map_err(err("list tenants"))?;
                // Invalid ids are skipped (M9); `invalid_tenant_ids` reports them.
                if let Ok(id) = TenantId::new(k.value()) {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn invalid_tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        self.blocking("list tenants", |inner| {
            let tx = inner.db.begin_read().map_err(err("list tenants"))?;
            let table = tx.open_table(TENANTS).map_err(err("list tenants"))?;
            let mut out = Vec::new();
            for item in table.iter().map_err(err("list tenants"))? {
                let (k, _) = item.map_err(err("list tenants"))?;
                if TenantId::new(k.value()).is_err() {
                    out.push(k.value().to_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError> {
        let tenant = tenant.clone();
        self.blocking("hydrate", move |inner| {
            const OP: &str = "hydrate";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            let row = read_row(&tx.open_table(TENANTS).map_err(err(OP))?, &tenant)?.unwrap_or_default();
            let mut snap = TenantSnapshot { status: row.status, lease: row.lease, ..Default::default() };
            if let Some(c) = tx.open_table(CREDS).map_err(err(OP))?.get(tenant.as_str()).map_err(err(OP))? {
                snap.creds = Some(record::decode_creds(&inner.ring, &tenant, c.value())?);
            }
            let mut keys = record::KeyCollector::default();
            for (id, v) in scan(&tx.open_table(KEYS).map_err(err(OP))?, &tenant, OP)? {
                keys.add(record::decode_key_doc(&inner.ring, &tenant, &id, &v)?);
            }
            snap.keys = keys.into_keys();
            for (id, v) in scan(&tx.open_table(OUTBOX).map_err(err(OP))?, &tenant, OP)? {
                let item = record::decode_outbox(&inner.ring, &tenant, &id, &v)?;
                snap.outbox.insert(item.id.clone(), item);
            }
            // Ids and sizes only: inbox payloads are paged on demand, never hydrated.
            let inbox = tx.open_table(INBOX).map_err(err(OP))?;
            for item in inbox.range((tenant.as_str(), "")..).map_err(err(OP))? {
                let (k, v) = item.map_err(err(OP))?;
                let (t, doc) = k.value();
                if t != tenant.as_str() {
                    break;
                }
                snap.inbox.insert(record::inbox_id(&tenant, doc)?, v.value().len() as u64);
            }
            Ok(snap)
        })
        .await
    }

    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError> {
        let ops = record::encode_batch(&self.inner.ring, tenant, batch)?;
        let tenant = tenant.clone();
        self.blocking("commit", move |inner| {
            const OP: &str = "commit";
            let fail_after = inner.fault.take();
            with_row(inner, &tenant, OP, |row, tx| {
                lease::check_fence(&tenant, row.lease.as_ref(), fence)?;
                let mut creds = tx.open_table(CREDS).map_err(err(OP))?;
                let mut keys = tx.open_table(KEYS).map_err(err(OP))?;
                let mut outbox = tx.open_table(OUTBOX).map_err(err(OP))?;
                let mut inbox = tx.open_table(INBOX).map_err(err(OP))?;
                let t = tenant.as_str();
                for (i, op) in ops.into_iter().enumerate() {
                    if fail_after == Some(i) {
                        return Err(StoreError::Injected { op: OP });
                    }
                    match op {
                        Op::PutCreds(b) => {
                            creds.insert(t, b.as_slice()).map_err(err(OP))?;
                        }
                        Op::PutKey(k, b) => {
                            keys.insert((t, k.as_str()), b.as_slice()).map_err(err(OP))?;
                        }
                        Op::DeleteKey(k) => {
                            keys.remove((t, k.as_str())).map_err(err(OP))?;
                        }
                        Op::PutStatus(s) => {
                            row.status = Some(record::runtime_status(row.status.as_ref(), &s))
                        }
                        Op::PutOutbox(k, b) => {
                            outbox.insert((t, k.as_str()), b.as_slice()).map_err(err(OP))?;
                        }
                        Op::DeleteOutbox(k) => {
                            outbox.remove((t, k.as_str())).map_err(err(OP))?;
                        }
                        Op::PutInbox(k, b) => {
                            inbox.insert((t, k.as_str()), b.as_slice()).map_err(err(OP))?;
                        }
                        Op::DeleteInbox(k) => {
                            inbox.remove((t, k.as_str())).map_err(err(OP))?;
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (tenant, holder) = (tenant.clone(), holder.to_owned());
        self.blocking("acquire lease", move |inner| {
            let now = inner.clock.now_ms();
            with_row_lazy(inner, &tenant, "acquire lease", |row, _| {
                let l = lease::acquire(&tenant, row.lease.as_ref(), &holder, ttl, now)?;
                row.lease = Some(l.clone());
                Ok(l)
            })
        })
        .await
    }

    async fn renew_lease(
        &self,
        tenant: &TenantId,
        presented: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (tenant, presented) = (tenant.clone(), presented.clone());
        self.blocking("renew lease", move |inner| {
            let now = inner.clock.now_ms();
            with_row_lazy(inner, &tenant, "renew lease", |row, _| {
                let l = lease::renew(&tenant, row.lease.as_ref(), &presented, ttl, now)?;
                row.lease = Some(l.clone());
                Ok(l)
            })
        })
        .await
    }

    async fn release_lease(&self, tenant: &TenantId, presented: &Lease) -> Result<(), StoreError> {
        let (tenant, presented) = (tenant.clone(), presented.clone());
        self.blocking("release lease", move |inner| {
            with_row_lazy(inner, &tenant, "release lease", |row, _| {
                row.lease = Some(lease::release(&tenant, row.lease.as_ref(), &presented)?);
                Ok(())
            })
        })
        .await
    }

    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        self.blocking("delete tenant keys", move |inner| {
            const OP: &str = "delete tenant keys";
            with_row(inner, &tenant, OP, |row, tx| {
                lease::check_fence(&tenant, row.lease.as_ref(), fence)?;
                tx.open_table(CREDS).map_err(err(OP))?.remove(tenant.as_str()).map_err(err(OP))?;
                let mut keys = tx.open_table(KEYS).map_err(err(OP))?;
                let ids: Vec<String> = scan(&keys, &tenant, OP)?.into_iter().map(|(id, _)| id).collect();
                for id in ids {
                    keys.remove((tenant.as_str(), id.as_str())).map_err(err(OP))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        self.blocking("delete tenant", move |inner| {
            const OP: &str = "delete tenant";
            // One write transaction: the fence check and every removal land together or not at all.
            let tx = inner.db.begin_write().map_err(err(OP))?;
            {
                let t = tenant.as_str();
                let mut tenants = tx.open_table(TENANTS).map_err(err(OP))?;
                let row = read_row(&tenants, &tenant)?.unwrap_or_default();
                lease::check_fence(&tenant, row.lease.as_ref(), fence)?;
                tenants.remove(t).map_err(err(OP))?;
                tx.open_table(CREDS).map_err(err(OP))?.remove(t).map_err(err(OP))?;
                for table in [KEYS, OUTBOX, INBOX] {
                    let mut table = tx.open_table(table).map_err(err(OP))?;
                    for (id, _) in scan(&table, &tenant, OP)? {
                        table.remove((t, id.as_str())).map_err(err(OP))?;
                    }
                }
                let mut events = tx.open_table(EVENTS).map_err(err(OP))?;
                let mut seqs = Vec::new();
                for item in events.range((t, 0u64)..=(t, u64::MAX)).map_err(err(OP))? {
                    seqs.push(item.map_err(err(OP))?.0.value().1);
                }
                for seq in seqs {
                    events.remove((t, seq)).map_err(err(OP))?;
                }
            }
            tx.commit().map_err(err(OP))?;
            Ok(())
        })
        .await
    }

    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        let tenant = tenant.clone();
        self.blocking("read status", move |inner| {
            let tx = inner.db.begin_read().map_err(err("read status"))?;
            Ok(read_row(&tx.open_table(TENANTS).map_err(err("read status"))?, &tenant)?
                .and_then(|r| r.status))
        })
        .await
    }

    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        let (tenant, status) = (tenant.clone(), status.clone());
        self.blocking("write status", move |inner| {
            with_row_lazy(inner, &tenant, "write status", |row, _| {
                row.status = Some(record::runtime_status(row.status.as_ref(), &status));
                Ok(())
            })
        })
        .await
    }

    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        let (tenant, status) = (tenant.clone(), status.clone());
        self.blocking("create tenant", move |inner| {
            // One durable write transaction: check and create land together (redb serialises
            // write transactions), so two creates cannot both pass the check.
            with_row(inner, &tenant, "create tenant", |row, _| {
                if row.status.is_some() {
                    return Err(StoreError::AlreadyExists { tenant: tenant.clone() });
                }
                row.status = Some(status);
                Ok(())
            })
        })
        .await
    }

    async fn write_config(&self, tenant: &TenantId, patch: &ConfigPatch) -> Result<(), StoreError> {
        let (tenant, patch) = (tenant.clone(), patch.clone());
        self.blocking("write config", move |inner| {
            // Durable (fsync'd) before the API answers: a rotated secret or a DELETE must
            // survive a crash right after the answer.
            with_row(inner, &tenant, "write config", |row, _| {
                let status = row
                    .status
                    .as_mut()
                    .ok_or(StoreError::NotFound { tenant: tenant.clone(), what: "status" })?;
                status.apply(&patch);
                Ok(())
            })
        })
        .await
    }

    async fn rekey(&self, tenant: &TenantId) -> Result<RekeyReport, StoreError> {
        let tenant = tenant.clone();
        self.blocking("rekey", move |inner| {
            const OP: &str = "rekey";
            let ring = &inner.ring;
            let mut report = RekeyReport::default();
            // One durable write transaction per tenant: all of its values or none (a value
            // that does not open aborts it), and a rerun skips what is already current.
            let tx = inner.db.begin_write().map_err(err(OP))?;
            let t = tenant.as_str();
            {
                let mut creds = tx.open_table(CREDS).map_err(err(OP))?;
                let old = creds.get(t).map_err(err(OP))?.map(|v| v.value().to_vec());
                if let Some(old) = old
                    && let Some(new) = record::rekey_creds(ring, &tenant, &old, &mut report)?
                {
                    creds.insert(t, new.as_slice()).map_err(err(OP))?;
                }
            }
            {
                // Key documents under a legacy or older-key id move to their current hashed id.
                let mut table = tx.open_table(KEYS).map_err(err(OP))?;
                for (id, v) in scan(&table, &tenant, OP)? {
                    let doc = record::decode_key_doc(ring, &tenant, &id, &v)?;
                    if doc.canonical {
                        if let Some(new) =
                            record::rekey_value(ring, &tenant, &format!("keys/{id}"), &v, &mut report)?
                        {
                            table.insert((t, id.as_str()), new.as_slice()).map_err(err(OP))?;
                        }
                        continue;
                    }
                    report.saw(&v);
                    table.remove((t, id.as_str())).map_err(err(OP))?;
                    let (new_id, sealed) = record::encode_key(ring, &tenant, &doc.key, &doc.value)?;
                    if table.get((t, new_id.as_str())).map_err(err(OP))?.is_none() {
                        table.insert((t, new_id.as_str()), sealed.as_slice()).map_err(err(OP))?;
                    }
                    report.resealed += 1;
                }
            }
            for (coll, def) in [("outbox", OUTBOX), ("inbox", INBOX)] {
                let mut table = tx.open_table(def).map_err(err(OP))?;
                for (id, v) in scan(&table, &tenant, OP)? {
                    if let Some(new) =
                        record::rekey_value(ring, &tenant, &format!("{coll}/{id}"), &v, &mut report)?
                    {
                        table.insert((t, id.as_str()), new.as_slice()).map_err(err(OP))?;
                    }
                }
            }
            tx.commit().map_err(err(OP))?;
            Ok(report)
        })
        .await
    }

    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        let bytes = serde_json::to_vec(event).map_err(|e| StoreError::backend("append event", e))?;
        self.blocking("append event", move |inner| {
            const OP: &str = "append event";
            with_row_lazy(inner, &tenant, OP, |row, tx| {
                if row.status.is_none() && row.lease.is_none() {
                    // Never re-create a deleted (or unknown) tenant by an event.
                    return Err(StoreError::NotFound { tenant: tenant.clone(), what: "status" });
                }
                let mut events = tx.open_table(EVENTS).map_err(err(OP))?;
                let t = tenant.as_str();
                let mut seqs = Vec::new();
                for item in events.range((t, 0u64)..=(t, u64::MAX)).map_err(err(OP))? {
                    seqs.push(item.map_err(err(OP))?.0.value().1);
                }
                let next = seqs.last().map_or(0, |s| s.saturating_add(1));
                events.insert((t, next), bytes.as_slice()).map_err(err(OP))?;
                let excess = (seqs.len() + 1).saturating_sub(EVENTS_KEPT);
                for s in seqs.iter().take(excess) {
                    events.remove((t, *s)).map_err(err(OP))?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        let tenant = tenant.clone();
        self.blocking("list events", move |inner| {
            const OP: &str = "list events";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            let events = tx.open_table(EVENTS).map_err(err(OP))?;
            let t = tenant.as_str();
            let mut out = Vec::new();
            for item in events.range((t, 0u64)..=(t, u64::MAX)).map_err(err(OP))? {
                let (_, v) = item.map_err(err(OP))?;
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::corrupt(&tenant, "events", e))?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        let tenant = tenant.clone();
        self.blocking("list outbox", move |inner| {
            const OP: &str = "list outbox";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            scan(&tx.open_table(OUTBOX).map_err(err(OP))?, &tenant, OP)?
                .into_iter()
                .map(|(id, v)| record::decode_outbox(&inner.ring, &tenant, &id, &v))
                .collect()
        })
        .await
    }

    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError> {
        let tenant = tenant.clone();
        self.blocking("list inbox", move |inner| {
            const OP: &str = "list inbox";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            let mut items = scan(&tx.open_table(INBOX).map_err(err(OP))?, &tenant, OP)?
                .into_iter()
                .map(|(id, v)| record::decode_inbox(&inner.ring, &tenant, &id, &v))
                .collect::<Result<Vec<_>, _>>()?;
            // Stored by escaped doc id; the contract orders by the id itself.
            items.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(items)
        })
        .await
    }

    async fn list_inbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let (tenant, after) = (tenant.clone(), after.map(str::to_owned));
        self.blocking("list inbox", move |inner| {
            const OP: &str = "list inbox";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            let table = tx.open_table(INBOX).map_err(err(OP))?;
            // Ids (keys only) first, then the values of the page: never more than `limit`
            // payloads in memory.
            let mut ids = Vec::new();
            for item in table.range((tenant.as_str(), "")..).map_err(err(OP))? {
                let (k, _) = item.map_err(err(OP))?;
                let (t, doc) = k.value();
                if t != tenant.as_str() {
                    break;
                }
                let id = record::inbox_id(&tenant, doc)?;
                if after.as_deref().is_none_or(|a| id.as_str() > a) {
                    ids.push((id, doc.to_owned()));
                }
            }
            ids.sort();
            let mut out = Vec::new();
            for (_, doc) in ids.into_iter().take(limit) {
                if let Some(v) = table.get((tenant.as_str(), doc.as_str())).map_err(err(OP))? {
                    out.push(record::decode_inbox(&inner.ring, &tenant, &doc, v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        let (tenant, doc) = (tenant.clone(), record::inbox_doc_id(id));
        self.blocking("get inbox", move |inner| {
            const OP: &str = "get inbox";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            let table = tx.open_table(INBOX).map_err(err(OP))?;
            let v = table.get((tenant.as_str(), doc.as_str())).map_err(err(OP))?;
            v.map(|v| record::decode_inbox(&inner.ring, &tenant, &doc, v.value())).transpose()
        })
        .await
    }
}

#[async_trait::async_trait]
impl TestHooks for EmbeddedStore {
    async fn raw_key_ids(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let tenant = tenant.clone();
        self.blocking("raw key ids", move |inner| {
            const OP: &str = "raw key ids";
            let tx = inner.db.begin_read().map_err(err(OP))?;
            Ok(scan(&tx.open_table(KEYS).map_err(err(OP))?, &tenant, OP)?
                .into_iter()
                .map(|(id, _)| id)
                .collect())
        })
        .await
    }

    async fn put_legacy_key(&self, tenant: &TenantId, key: &KeyRef, value: &[u8]) -> Result<(), StoreError> {
        let (id, sealed) = record::encode_legacy_key(&self.inner.ring, tenant, key, value)?;
        let tenant = tenant.clone();
        self.blocking("put legacy key", move |inner| {
            const OP: &str = "put legacy key";
            let tx = inner.db.begin_write().map_err(err(OP))?;
            tx.open_table(KEYS)
                .map_err(err(OP))?
                .insert((tenant.as_str(), id.as_str()), sealed.as_slice())
                .map_err(err(OP))?;
            tx.commit().map_err(err(OP))
        })
        .await
    }

    async fn corrupt_key(&self, tenant: &TenantId, key: &KeyRef) -> Result<(), StoreError> {
        let (tenant, id) = (tenant.clone(), record::key_doc_id(&self.inner.ring, tenant, key));
        self.blocking("corrupt", move |inner| {
            let tx = inner.db.begin_write().map_err(err("corrupt"))?;
            tx.open_table(KEYS)
                .map_err(err("corrupt"))?
                .insert((tenant.as_str(), id.as_str()), record::GARBAGE)
                .map_err(err("corrupt"))?;
            tx.commit().map_err(err("corrupt"))
        })
        .await
    }

    async fn corrupt_inbox(&self, tenant: &TenantId, id: &str) -> Result<(), StoreError> {
        let (tenant, id) = (tenant.clone(), record::inbox_doc_id(id));
        self.blocking("corrupt", move |inner| {
            let tx = inner.db.begin_write().map_err(err("corrupt"))?;
            tx.open_table(INBOX)
                .map_err(err("corrupt"))?
                .insert((tenant.as_str(), id.as_str()), record::GARBAGE)
                .map_err(err("corrupt"))?;
            tx.commit().map_err(err("corrupt"))
        })
        .await
    }

    async fn corrupt_creds(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        self.blocking("corrupt", move |inner| {
            let tx = inner.db.begin_write().map_err(err("corrupt"))?;
            {
                let mut creds = tx.open_table(CREDS).map_err(err("corrupt"))?;
                let old = creds.get(tenant.as_str()).map_err(err("corrupt"))?.map(|v| v.value().to_vec());
                let bad = record::tamper_creds_record(&old.unwrap_or_default());
                creds.insert(tenant.as_str(), bad.as_slice()).map_err(err("corrupt"))?;
            }
            tx.commit().map_err(err("corrupt"))
        })
        .await
    }

    async fn copy_raw_key(
        &self,
        src: &TenantId,
        from: &KeyRef,
        dst: &TenantId,
        to: &KeyRef,
    ) -> Result<(), StoreError> {
        let ring = &self.inner.ring;
        let (from, to) = (record::key_doc_id(ring, src, from), record::key_doc_id(ring, dst, to));
        let (src, dst) = (src.clone(), dst.clone());
        self.blocking("copy", move |inner| {
            let tx = inner.db.begin_write().map_err(err("copy"))?;
            {
                let mut keys = tx.open_table(KEYS).map_err(err("copy"))?;
                let raw = keys
                    .get((src.as_str(), from.as_str()))
                    .map_err(err("copy"))?
                    .map(|v| v.value().to_vec())
                    .ok_or(StoreError::NotFound { tenant: src.clone(), what: "key" })?;
                keys.insert((dst.as_str(), to.as_str()), raw.as_slice()).map_err(err("copy"))?;
            }
            tx.commit().map_err(err("copy"))
        })
        .await
    }

    fn fail_next_commit_after(&self, writes: usize) {
        self.inner.fault.arm(writes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SystemClock;
    use crate::store::crypt::MasterKey;
    use crate::store::model::LinkState;

    /// Status updates skip their own fsync but are visible at once and durable after a clean
    /// close; a tenant's creation is durable by itself.
    #[tokio::test]
    async fn lazy_status_updates_survive_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let ring = Arc::new(Keyring::new(&MasterKey::from_bytes([7; 32]), &[]));
        let t = TenantId::new("lazy-1").unwrap();
        {
            let s = EmbeddedStore::open(&path, ring.clone(), Arc::new(SystemClock)).await.unwrap();
            s.write_status(&t, &TenantStatus::default()).await.unwrap();
            let connected = TenantStatus { state: LinkState::Connected, ..TenantStatus::default() };
            s.write_status(&t, &connected).await.unwrap();
            let ev = StoredEvent { at: 1, kind: "connected".into(), detail: String::new() };
            s.append_event(&t, &ev).await.unwrap();
            assert_eq!(s.read_status(&t).await.unwrap().unwrap().state, LinkState::Connected);
        }
        let s = EmbeddedStore::open(&path, ring, Arc::new(SystemClock)).await.unwrap();
        assert_eq!(s.list_tenants().await.unwrap(), vec![t.clone()]);
        assert_eq!(s.read_status(&t).await.unwrap().unwrap().state, LinkState::Connected);
        assert_eq!(s.list_events(&t).await.unwrap().len(), 1);
    }
}
