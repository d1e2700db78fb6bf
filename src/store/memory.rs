//! In-memory backend for unit and host tests. Same semantics as the others: values are
//! sealed with the keyring (so corruption tests behave the same), commits are atomic (staged on
//! a copy, swapped in on success) and fenced under one mutex. Nothing survives the process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::crypt::Keyring;
use super::model::EVENTS_KEPT;
use super::record::{self, FaultArm, Op, TenantRow};
use super::{
    BackendKind, ConfigPatch, DeltaBatch, InboxItem, KeyRef, Lease, OutboxItem, RekeyReport, Store,
    StoreClock, StoreError, StoredEvent, TenantSnapshot, TenantStatus, TestHooks, lease,
};
use crate::types::{FencingToken, TenantId};

#[derive(Debug, Clone, Default)]
struct MemTenant {
    row: TenantRow,
    creds: Option<Vec<u8>>,
    keys: BTreeMap<String, Vec<u8>>,
    outbox: BTreeMap<String, Vec<u8>>,
    inbox: BTreeMap<String, Vec<u8>>,
    events: VecDeque<StoredEvent>,
}

/// The in-memory store. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tenants: Arc<Mutex<BTreeMap<TenantId, MemTenant>>>,
    ring: Arc<Keyring>,
    clock: Arc<dyn StoreClock>,
    fault: FaultArm,
    down: AtomicBool,
}

impl MemoryStore {
    /// An empty store sealing values with `ring`, reading time from `clock`.
    pub fn new(ring: Arc<Keyring>, clock: Arc<dyn StoreClock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenants: Arc::new(Mutex::new(BTreeMap::new())),
                ring,
                clock,
                fault: FaultArm::default(),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// The same stored data seen through another keyring (what a restart with rotated master
    /// keys sees).
    pub fn with_ring(&self, ring: Arc<Keyring>) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenants: Arc::clone(&self.inner.tenants),
                ring,
                clock: Arc::clone(&self.inner.clock),
                fault: FaultArm::default(),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// Simulates the store being unreachable: every operation returns `Unavailable`.
    pub fn set_unreachable(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    fn lock(&self, op: &'static str) -> Result<MutexGuard<'_, BTreeMap<TenantId, MemTenant>>, StoreError> {
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(op, "memory store marked unreachable"));
        }
        self.inner.tenants.lock().map_err(|_| StoreError::backend(op, "memory store mutex poisoned"))
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_ms()
    }
}

fn apply(t: &mut MemTenant, ops: Vec<Op>, fail_after: Option<usize>) -> Result<(), StoreError> {
    for (i, op) in ops.into_iter().enumerate() {
        if fail_after == Some(i) {
            return Err(StoreError::Injected { op: "commit" });
        }
        match op {
            Op::PutCreds(b) => t.creds = Some(b),
            Op::PutKey(k, b) => {
                t.keys.insert(k, b);
            }
            Op::DeleteKey(k) => {
                t.keys.remove(&k);
            }
            Op::PutStatus(s) => t.row.status = Some(record::runtime_status(t.row.status.as_ref(), &s)),
            Op::PutOutbox(k, b) => {
                t.outbox.insert(k, b);
            }
            Op::DeleteOutbox(k) => {
                t.outbox.remove(&k);
            }
            Op::PutInbox(k, b) => {
                t.inbox.insert(k, b);
            }
            Op::DeleteInbox(k) => {
                t.inbox.remove(&k);
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        Ok(self.lock("list tenants")?.keys().cloned().collect())
    }

    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError> {
        let t = self.lock("hydrate")?.get(tenant).cloned().unwrap_or_default();
        let ring = &self.inner.ring;
        let mut snap = TenantSnapshot { status: t.row.status, lease: t.row.lease, ..Default::default() };
        if let Some(c) = &t.creds {
            snap.creds = Some(record::decode_creds(ring, tenant, c)?);
        }
        let mut keys = record::KeyCollector::default();
        for (id, v) in &t.keys {
            keys.add(record::decode_key_doc(ring, tenant, id, v)?);
        }
        snap.keys = keys.into_keys();
        for (id, v) in &t.outbox {
            let item = record::decode_outbox(ring, tenant, id, v)?;
            snap.outbox.insert(item.id.clone(), item);
        }
        for (id, v) in &t.inbox {
            // Ids and sizes only: payloads are paged on demand.
            snap.inbox.insert(record::inbox_id(tenant, id)?, v.len() as u64);
        }
        Ok(snap)
    }

    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError> {
        let ops = record::encode_batch(&self.inner.ring, tenant, batch)?;
        let mut map = self.lock("commit")?;
        let current = map.get(tenant).and_then(|t| t.row.lease.as_ref());
        lease::check_fence(tenant, current, fence)?;
        let mut staged = map.get(tenant).cloned().unwrap_or_default();
        apply(&mut staged, ops, self.inner.fault.take())?;
        map.insert(tenant.clone(), staged);
        Ok(())
    }

    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = self.now();
        let mut map = self.lock("acquire lease")?;
        let t = map.entry(tenant.clone()).or_default();
        let l = lease::acquire(tenant, t.row.lease.as_ref(), holder, ttl, now)?;
        t.row.lease = Some(l.clone());
        Ok(l)
    }

    async fn renew_lease(
        &self,
        tenant: &TenantId,
        presented: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let now = self.now();
        let mut map = self.lock("renew lease")?;
        // A failed renew must not create a row (it would list a deleted tenant again).
        let current = map.get(tenant).and_then(|t| t.row.lease.as_ref());
        let l = lease::renew(tenant, current, presented, ttl, now)?;
        map.entry(tenant.clone()).or_default().row.lease = Some(l.clone());
        Ok(l)
    }

    async fn release_lease(&self, tenant: &TenantId, presented: &Lease) -> Result<(), StoreError> {
        let mut map = self.lock("release lease")?;
        let current = map.get(tenant).and_then(|t| t.row.lease.as_ref());
        let l = lease::release(tenant, current, presented)?;
        map.entry(tenant.clone()).or_default().row.lease = Some(l);
        Ok(())
    }

    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let mut map = self.lock("delete tenant keys")?;
        lease::check_fence(tenant, map.get(tenant).and_then(|t| t.row.lease.as_ref()), fence)?;
        let t = map.entry(tenant.clone()).or_default();
        t.creds = None;
        t.keys.clear();
        Ok(())
    }

    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        let mut map = self.lock("delete tenant")?;
        lease::check_fence(tenant, map.get(tenant).and_then(|t| t.row.lease.as_ref()), fence)?;
        map.remove(tenant);
        Ok(())
    }

    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        Ok(self.lock("read status")?.get(tenant).and_then(|t| t.row.status.clone()))
    }

    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        let mut map = self.lock("write status")?;
        let row = &mut map.entry(tenant.clone()).or_default().row;
        row.status = Some(record::runtime_status(row.status.as_ref(), status));
        Ok(())
    }

    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        let mut map = self.lock("create tenant")?;
        if map.get(tenant).is_some_and(|t| t.row.status.is_some()) {
            return Err(StoreError::AlreadyExists { tenant: tenant.clone() });
        }
        map.entry(tenant.clone()).or_default().row.status = Some(status.clone());
        Ok(())
    }

    async fn write_config(&self, tenant: &TenantId, patch: &ConfigPatch) -> Result<(), StoreError> {
        let mut map = self.lock("write config")?;
        let status = map
            .get_mut(tenant)
            .and_then(|t| t.row.status.as_mut())
            .ok_or(StoreError::NotFound { tenant: tenant.clone(), what: "status" })?;
        status.apply(patch);
        Ok(())
    }

    async fn rekey(&self, tenant: &TenantId) -> Result<RekeyReport, StoreError> {
        let ring = &self.inner.ring;
        let mut report = RekeyReport::default();
        let mut map = self.lock("rekey")?;
        let Some(t) = map.get_mut(tenant) else { return Ok(report) };
        // Staged on a copy: a value that does not open leaves everything as it was.
        let mut staged = t.clone();
        if let Some(c) = &staged.creds
            && let Some(new) = record::rekey_creds(ring, tenant, c, &mut report)?
        {
            staged.creds = Some(new);
        }
        // Key documents under a legacy or older-key id move to their current hashed id.
        for (id, v) in t.keys.iter() {
            let doc = record::decode_key_doc(ring, tenant, id, v)?;
            if doc.canonical {
                if let Some(new) = record::rekey_value(ring, tenant, &format!("keys/{id}"), v, &mut report)? {
                    staged.keys.insert(id.clone(), new);
                }
                continue;
            }
            report.saw(v);
            staged.keys.remove(id);
            let (new_id, sealed) = record::encode_key(ring, tenant, &doc.key, &doc.value)?;
            if !t.keys.contains_key(&new_id) {
                staged.keys.insert(new_id, sealed);
            }
            report.resealed += 1;
        }
        for (coll, items) in [("outbox", &mut staged.outbox), ("inbox", &mut staged.inbox)] {
            for (id, v) in items.iter_mut() {
                if let Some(new) = record::rekey_value(ring, tenant, &format!("{coll}/{id}"), v, &mut report)?
                {
                    *v = new;
                }
            }
        }
        *t = staged;
        Ok(report)
    }

    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError> {
        let mut map = self.lock("append event")?;
        // Never re-create a deleted (or unknown) tenant by an event.
        let t = map.get_mut(tenant).ok_or(StoreError::NotFound { tenant: tenant.clone(), what: "status" })?;
        t.events.push_back(event.clone());
        while t.events.len() > EVENTS_KEPT {
            t.events.pop_front();
        }
        Ok(())
    }

    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .lock("list events")?
            .get(tenant)
            .map(|t| t.events.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        let t = self.lock("list outbox")?.get(tenant).cloned().unwrap_or_default();
        t.outbox.iter().map(|(id, v)| record::decode_outbox(&self.inner.ring, tenant, id, v)).collect()
    }

    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError> {
        let t = self.lock("list inbox")?.get(tenant).cloned().unwrap_or_default();
        let mut items = t
            .inbox
            .iter()
            .map(|(id, v)| record::decode_inbox(&self.inner.ring, tenant, id, v))
            .collect::<Result<Vec<_>, _>>()?;
        // Stored by escaped doc id; the contract orders by the id itself.
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }

    async fn list_inbox_page(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let raw: Vec<(String, Vec<u8>)> = {
            let map = self.lock("list inbox")?;
            let Some(t) = map.get(tenant) else { return Ok(Vec::new()) };
            let mut ids: Vec<(String, &String)> = t
                .inbox
                .keys()
                .map(|doc| Ok((record::inbox_id(tenant, doc)?, doc)))
                .collect::<Result<_, StoreError>>()?;
            ids.retain(|(id, _)| after.is_none_or(|a| id.as_str() > a));
            ids.sort();
            ids.into_iter()
                .take(limit)
                .filter_map(|(_, doc)| t.inbox.get(doc).map(|v| (doc.clone(), v.clone())))
                .collect()
        };
        raw.iter().map(|(doc, v)| record::decode_inbox(&self.inner.ring, tenant, doc, v)).collect()
    }

    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        let doc = record::inbox_doc_id(id);
        let raw = self.lock("get inbox")?.get(tenant).and_then(|t| t.inbox.get(&doc).cloned());
        raw.map(|v| record::decode_inbox(&self.inner.ring, tenant, &doc, &v)).transpose()
    }
}

#[async_trait::async_trait]
impl TestHooks for MemoryStore {
    async fn corrupt_key(&self, tenant: &TenantId, key: &KeyRef) -> Result<(), StoreError> {
        let mut map = self.lock("corrupt")?;
        let id = record::key_doc_id(&self.inner.ring, tenant, key);
        map.entry(tenant.clone()).or_default().keys.insert(id, record::GARBAGE.to_vec());
        Ok(())
    }

    async fn raw_key_ids(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .lock("raw key ids")?
            .get(tenant)
            .map(|t| t.keys.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_legacy_key(&self, tenant: &TenantId, key: &KeyRef, value: &[u8]) -> Result<(), StoreError> {
        let (id, sealed) = record::encode_legacy_key(&self.inner.ring, tenant, key, value)?;
        self.lock("put legacy key")?.entry(tenant.clone()).or_default().keys.insert(id, sealed);
        Ok(())
    }

    async fn corrupt_inbox(&self, tenant: &TenantId, id: &str) -> Result<(), StoreError> {
        let mut map = self.lock("corrupt")?;
        map.entry(tenant.clone())
            .or_default()
            .inbox
            .insert(record::inbox_doc_id(id), record::GARBAGE.to_vec());
        Ok(())
    }

    async fn corrupt_creds(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let mut map = self.lock("corrupt")?;
        let t = map.entry(tenant.clone()).or_default();
        let creds = t.creds.take().unwrap_or_default();
        t.creds = Some(record::tamper_creds_record(&creds));
        Ok(())
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
        let mut map = self.lock("copy")?;
        let raw = map
            .get(src)
            .and_then(|t| t.keys.get(&from).cloned())
            .ok_or(StoreError::NotFound { tenant: src.clone(), what: "key" })?;
        map.entry(dst.clone()).or_default().keys.insert(to, raw);
        Ok(())
    }

    fn fail_next_commit_after(&self, writes: usize) {
        self.inner.fault.arm(writes);
    }
}
