//! Firestore backend (production), tested against the Cloud Firestore emulator.
//!
//! Client construction, the Google credentials chain (Cloud Run metadata server,
//! `GOOGLE_APPLICATION_CREDENTIALS`, gcloud ADC) and emulator detection (`FIRESTORE_EMULATOR_HOST`)
//! come from the `firestore` crate. Reads and writes use gcloud-sdk's generated gRPC client from
//! that same connection (`FirestoreDb::client().get()`), because the fenced commit needs a
//! read-write transaction whose read of the tenant doc and whose writes go to one `Commit` RPC;
//! the crate's typed helpers do not let us combine a transactional read, update masks and
//! preconditions the way we need. Never uses the non-atomic `BatchWrite`.
//!
//! Fencing: `commit` begins a read-write transaction, reads `tenants/{t}` (the lease) inside it,
//! checks the epoch and commits all writes with that transaction. Firestore serialises it
//! against a concurrent takeover (which writes the same doc in its own transaction): either the
//! takeover waits, or our commit aborts. A stale holder can therefore never land a write after
//! a takeover — Firestore enforces it, not a check-then-write race in our code.
//!
//! Lease time: acquire and renew judge expiry by the read time Firestore returns for the lease
//! read inside their transaction, and write `expires_at` = that read time + TTL, so every
//! instance compares server time with server time; wall-clock skew between instances cannot
//! shorten or lengthen a lease (M7). The holder's own view of its deadline is monotonic and
//! measured from the send time of its renewal (`host/lease.rs`), which precedes the read time.
//!
//! Hydration takes no transaction: every read of a snapshot names one `read_time` (see
//! `hydrate.rs`), and `hydrate_all` reads many tenants per collection-group query.
//!
//! Layout (see ARCHITECTURE.md): `tenants/{t}` status fields + `lease {holder, epoch,
//! expires_at}`; `tenants/{t}/creds/current`; `tenants/{t}/keys/{kind}-{id}`;
//! `tenants/{t}/outbox/{id}`; `tenants/{t}/inbox/{id}`; `tenants/{t}/events/{id}`.

pub mod codec;
mod hydrate;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::firestore::{FirestoreDb, FirestoreDbOptions};
use futures::stream::BoxStream;
use gcloud_sdk::GoogleAuthMiddleware;
use gcloud_sdk::google::firestore::v1::firestore_client::FirestoreClient;
use gcloud_sdk::google::firestore::v1::transaction_options::{Mode, ReadWrite};
use gcloud_sdk::google::firestore::v1::{
    BeginTransactionRequest, CommitRequest, Document, DocumentMask, GetDocumentRequest, ListDocumentsRequest,
    Precondition, RollbackRequest, TransactionOptions, Value, Write, get_document_request,
    list_documents_request, precondition, write,
};
use gcloud_sdk::tonic::{Code, Status};
use rand_core::{OsRng, RngCore as _};

use super::crypt::Keyring;
use super::model::EVENTS_KEPT;
use super::record::{self, FaultArm, Op};
use super::{
    BackendKind, Creds, DeltaBatch, Hydrated, InboxItem, KeyRef, Lease, OutboxItem, Store, StoreClock,
    StoreError, StoredEvent, TenantSnapshot, TenantStatus, TestHooks, lease,
};
use crate::types::{FencingToken, TenantId};

/// How often a commit or lease transaction is retried after Firestore aborted it (contention).
const TXN_ATTEMPTS: usize = 4;
/// Page size for collection listings.
const PAGE: i32 = 500;
/// Documents deleted per fenced transaction by `delete_tenant_keys` and `delete_tenant`.
const DELETE_CHUNK: i32 = 400;
/// Default tenants per window of collection-group queries in `hydrate_all`: 1,000 tenants are
/// 2 windows (2 parallel key streams in production, few full scans on the emulator).
pub const DEFAULT_HYDRATE_WINDOW: usize = 500;
/// Default documents per page of a hydration query: bounds the size and duration of each RPC
/// for very large fleets. Large on purpose: the emulator scans the whole collection group for
/// every query whatever its cursor or limit (a 304-document page cost as much as a
/// 1,000-document one), so each extra page is a full scan there; production serves each page
/// from the name index.
pub const DEFAULT_HYDRATE_PAGE: i32 = 20_000;

/// Which clock judges lease expiry on the Firestore backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeaseClock {
    /// Firestore's own clock: the read time of the lease read inside the lease transaction.
    /// Expiry is written and compared in server time, so instances whose wall clocks disagree
    /// can neither steal a live lease nor believe an expired one is still held (M7).
    #[default]
    Server,
    /// The store's injected [`StoreClock`]: only for tests that expire leases by moving a
    /// manual clock (server time cannot be moved).
    Store,
}

/// How to reach Firestore.
#[derive(Debug, Clone)]
pub struct FirestoreOptions {
    /// Google Cloud project id.
    pub project: String,
    /// Database id; `None` = `(default)`.
    pub database: Option<String>,
    /// Explicit API URL (tests point this at an unreachable port); `None` = the emulator from
    /// `FIRESTORE_EMULATOR_HOST`, else production.
    pub api_url: Option<String>,
    /// Deadline of each RPC; a slower call fails with `Unavailable`.
    pub request_timeout: Duration,
    /// Tenants whose documents `hydrate_all` reads with one set of collection-group queries.
    pub hydrate_window: usize,
    /// Documents per page of a hydration query.
    pub hydrate_page: i32,
    /// The clock lease expiry is judged by (production: [`LeaseClock::Server`]).
    pub lease_clock: LeaseClock,
}

impl FirestoreOptions {
    /// Options for `project` with defaults (database `(default)`, 10 s per RPC).
    pub fn new(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            database: None,
            api_url: None,
            request_timeout: Duration::from_secs(10),
            hydrate_window: DEFAULT_HYDRATE_WINDOW,
            hydrate_page: DEFAULT_HYDRATE_PAGE,
            lease_clock: LeaseClock::Server,
        }
    }

    /// Sets the clock lease expiry is judged by (tests only: see [`LeaseClock::Store`]).
    pub fn with_lease_clock(mut self, clock: LeaseClock) -> Self {
        self.lease_clock = clock;
        self
    }

    /// Sets the number of tenants per `hydrate_all` query window (at least 1).
    pub fn with_hydrate_window(mut self, tenants: usize) -> Self {
        self.hydrate_window = tenants.max(1);
        self
    }

    /// Sets the documents per page of a hydration query (at least 1).
    pub fn with_hydrate_page(mut self, docs: i32) -> Self {
        self.hydrate_page = docs.max(1);
        self
    }

    /// Sets the database id.
    pub fn with_database(mut self, database: Option<String>) -> Self {
        self.database = database;
        self
    }

    /// Sets an explicit API URL.
    pub fn with_api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }
}

/// The Firestore-backed store. Cheap to clone.
#[derive(Clone)]
pub struct FirestoreStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: FirestoreDb,
    database: String,
    docs: String,
    ring: Arc<Keyring>,
    clock: Arc<dyn StoreClock>,
    lease_clock: LeaseClock,
    timeout: Duration,
    hydrate_window: usize,
    hydrate_page: i32,
    /// `hydrate_all` windows that fell back to per-tenant reads.
    window_fallbacks: AtomicU64,
    fault: FaultArm,
}

impl std::fmt::Debug for FirestoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreStore").field("database", &self.inner.database).finish_non_exhaustive()
    }
}

fn map_status(op: &'static str, s: &Status) -> StoreError {
    let detail = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Unknown => StoreError::Unavailable { op, detail },
        Code::Aborted | Code::FailedPrecondition => StoreError::Contention { op, detail },
        // The request itself is refused (e.g. a value over 1 MiB): it can never succeed.
        Code::InvalidArgument => StoreError::Invalid { what: op, detail },
        _ => StoreError::Backend { op, detail },
    }
}

type Client = FirestoreClient<GoogleAuthMiddleware>;

impl FirestoreStore {
    /// Connects (emulator when `FIRESTORE_EMULATOR_HOST` is set, else the Google credentials
    /// chain). Failure to set up the client is `Unavailable`.
    pub async fn connect(
        opts: FirestoreOptions,
        ring: Arc<Keyring>,
        clock: Arc<dyn StoreClock>,
    ) -> Result<Self, StoreError> {
        let mut o = FirestoreDbOptions::new(opts.project.clone());
        if let Some(db) = &opts.database {
            o = o.with_database_id(db.clone());
        }
        o.firebase_api_url = opts.api_url.clone();
        o.request_timeout = Some(opts.request_timeout);
        let db = tokio::time::timeout(opts.request_timeout, FirestoreDb::with_options(o))
            .await
            .map_err(|_| StoreError::unavailable("connect", "timed out"))?
            .map_err(|e| StoreError::unavailable("connect", e))?;
        let database = db.get_database_path().clone();
        let docs = db.get_documents_path().clone();
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                database,
                docs,
                ring,
                clock,
                lease_clock: opts.lease_clock,
                timeout: opts.request_timeout,
                hydrate_window: opts.hydrate_window,
                hydrate_page: opts.hydrate_page.max(1),
                window_fallbacks: AtomicU64::new(0),
                fault: FaultArm::default(),
            }),
        })
    }

    /// How many `hydrate_all` windows fell back to per-tenant reads because their
    /// collection-group queries failed (a health signal: normally 0).
    pub fn hydrate_fallbacks(&self) -> u64 {
        self.inner.window_fallbacks.load(Ordering::Relaxed)
    }

    fn client(&self) -> Client {
        self.inner.db.client().get()
    }

    fn tenant_path(&self, t: &TenantId) -> String {
        format!("{}/tenants/{}", self.inner.docs, t.as_str())
    }

    fn sub_path(&self, t: &TenantId, coll: &str, id: &str) -> String {
        format!("{}/tenants/{}/{coll}/{id}", self.inner.docs, t.as_str())
    }

    async fn rpc<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<gcloud_sdk::tonic::Response<T>, Status>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Err(_) => Err(StoreError::unavailable(op, "deadline exceeded")),
            Ok(Err(s)) => Err(map_status(op, &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// Begins a read-write transaction.
    async fn begin(&self, op: &'static str) -> Result<Vec<u8>, StoreError> {
        let mode = Mode::ReadWrite(ReadWrite::default());
        let req = BeginTransactionRequest {
            database: self.inner.database.clone(),
            options: Some(TransactionOptions { mode: Some(mode) }),
            request_options: None,
        };
        Ok(self.rpc(op, self.client().begin_transaction(req)).await?.transaction)
    }

    async fn rollback(&self, tx: Vec<u8>) {
        let req =
            RollbackRequest { database: self.inner.database.clone(), transaction: tx, request_options: None };
        if let Err(e) = self.rpc("rollback", self.client().rollback(req)).await {
            tracing::debug!(error = %e, "firestore rollback failed (transaction expires on its own)");
        }
    }

    /// Gets one document; `None` if it does not exist.
    async fn get(
        &self,
        op: &'static str,
        name: String,
        tx: Option<&[u8]>,
    ) -> Result<Option<Document>, StoreError> {
        let req = GetDocumentRequest {
            name,
            mask: None,
            request_options: None,
            consistency_selector: tx
                .map(|t| get_document_request::ConsistencySelector::Transaction(t.to_vec())),
        };
        match tokio::time::timeout(self.inner.timeout, self.client().get_document(req)).await {
            Err(_) => Err(StoreError::unavailable(op, "deadline exceeded")),
            Ok(Err(s)) if s.code() == Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(map_status(op, &s)),
            Ok(Ok(r)) => Ok(Some(r.into_inner())),
        }
    }

    /// Lists a collection (all pages, or the first `limit` docs), ordered by name.
    async fn list(
        &self,
        op: &'static str,
        parent: String,
        collection: &str,
        tx: Option<&[u8]>,
        names_only: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Document>, StoreError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page_size = limit.map_or(PAGE, |l| l.min(PAGE));
            let req = ListDocumentsRequest {
                parent: parent.clone(),
                collection_id: collection.to_owned(),
                page_size,
                page_token: token.clone(),
                order_by: String::new(),
                // A mask naming a field no document has returns just the names.
                mask: names_only.then(|| DocumentMask { field_paths: vec!["__none__x".to_owned()] }),
                show_missing: false,
                request_options: None,
                consistency_selector: tx
                    .map(|t| list_documents_request::ConsistencySelector::Transaction(t.to_vec())),
            };
            let resp = self.rpc(op, self.client().list_documents(req)).await?;
            out.extend(resp.documents);
            if resp.next_page_token.is_empty()
                || limit.is_some_and(|l| out.len() >= usize::try_from(l).unwrap_or(0))
            {
                return Ok(out);
            }
            token = resp.next_page_token;
        }
    }

    fn update(name: String, fields: HashMap<String, Value>, mask: Option<Vec<String>>) -> Write {
        Write {
            update_mask: mask.map(|field_paths| DocumentMask { field_paths }),
            update_transforms: Vec::new(),
            current_document: None,
            operation: Some(write::Operation::Update(Document { name, fields, ..Default::default() })),
        }
    }

    fn delete(name: String) -> Write {
        Write {
            update_mask: None,
            update_transforms: Vec::new(),
            current_document: None,
            operation: Some(write::Operation::Delete(name)),
        }
    }

    /// A runtime status write: only [`codec::RUNTIME_FIELDS`] (never the operator config).
    fn status_write(&self, t: &TenantId, status: &TenantStatus) -> Result<Write, StoreError> {
        let mask = codec::RUNTIME_FIELDS.iter().map(|s| (*s).to_owned()).collect();
        let fields = codec::status_fields(&self.inner.ring, t, status, &codec::RUNTIME_FIELDS)?;
        Ok(Self::update(self.tenant_path(t), fields, Some(mask)))
    }

    /// Commits `writes` outside a transaction; `Ok(false)` when a precondition did not hold
    /// (the document changed, exists or is missing) and nothing landed.
    async fn commit_cas(&self, op: &'static str, writes: Vec<Write>) -> Result<bool, StoreError> {
        let req = CommitRequest {
            database: self.inner.database.clone(),
            writes,
            transaction: Vec::new(),
            request_options: None,
        };
        match tokio::time::timeout(self.inner.timeout, self.client().commit(req)).await {
            Err(_) => Err(StoreError::unavailable(op, "deadline exceeded")),
            Ok(Err(s))
                if matches!(s.code(), Code::FailedPrecondition | Code::AlreadyExists | Code::NotFound) =>
            {
                Ok(false)
            }
            Ok(Err(s)) => Err(map_status(op, &s)),
            Ok(Ok(_)) => Ok(true),
        }
    }

    /// `writes`' first write gets `precondition`.
    fn with_precondition(mut w: Write, condition: precondition::ConditionType) -> Write {
        w.current_document = Some(Precondition { condition_type: Some(condition) });
        w
    }

    /// Re-seals one document's sealed field `field` (storage name `name`) under the current
    /// key if it is stale, only if the document did not change since it was read.
    async fn rekey_doc(
        &self,
        t: &TenantId,
        doc: &Document,
        field: &str,
        name: &str,
        report: &mut super::RekeyReport,
    ) -> Result<(), StoreError> {
        let Some(sealed) = codec::sealed_field(doc, field) else {
            return Err(StoreError::corrupt(t, name, format!("{field} field missing or not bytes")));
        };
        report.saw(sealed);
        let Some(new) = self.inner.ring.reseal(t, name, sealed)? else { return Ok(()) };
        let mut fields = HashMap::from([(field.to_owned(), codec::bytes(new.clone()))]);
        let mut mask = vec![field.to_owned()];
        if let Some(kid) = Keyring::key_id_of(&new) {
            fields.insert(codec::KID_FIELD.to_owned(), codec::string(kid));
            mask.push(codec::KID_FIELD.to_owned());
        }
        let w = Self::update(doc.name.clone(), fields, Some(mask));
        let w = match &doc.update_time {
            Some(ts) => Self::with_precondition(w, precondition::ConditionType::UpdateTime(*ts)),
            None => Self::with_precondition(w, precondition::ConditionType::Exists(true)),
        };
        if self.commit_cas("rekey", vec![w]).await? {
            report.resealed += 1;
        } else {
            report.skipped += 1;
        }
        Ok(())
    }

    fn lease_write(&self, t: &TenantId, l: &Lease) -> Write {
        Self::update(self.tenant_path(t), codec::lease_fields(l), Some(vec![codec::LEASE_FIELD.to_owned()]))
    }

    /// Reads the lease inside transaction `tx`.
    async fn read_lease(
        &self,
        op: &'static str,
        t: &TenantId,
        tx: &[u8],
    ) -> Result<Option<Lease>, StoreError> {
        match self.get(op, self.tenant_path(t), Some(tx)).await? {
            Some(doc) => codec::decode_lease(t, &doc),
            None => Ok(None),
        }
    }

    /// Reads the lease inside transaction `tx`, with "now" for judging its expiry: the
    /// server's read time of that read ([`LeaseClock::Server`]), never this host's wall clock,
    /// so the expiry a holder wrote and the time an acquirer compares it with come from one
    /// clock whatever the skew between instances.
    async fn read_lease_now(
        &self,
        op: &'static str,
        t: &TenantId,
        tx: &[u8],
    ) -> Result<(Option<Lease>, u64), StoreError> {
        let name = self.tenant_path(t);
        let (mut found, at) = self.batch_get(op, vec![name.clone()], Some(tx)).await?;
        let lease = match found.remove(&name) {
            Some(doc) => codec::decode_lease(t, &doc)?,
            None => None,
        };
        let now = match self.inner.lease_clock {
            LeaseClock::Store => self.inner.clock.now_ms(),
            LeaseClock::Server => {
                let at =
                    at.ok_or_else(|| StoreError::backend(op, "transactional read returned no read time"))?;
                let ms = at.seconds.saturating_mul(1000).saturating_add(i64::from(at.nanos / 1_000_000));
                u64::try_from(ms).map_err(|_| StoreError::backend(op, "read time before 1970"))?
            }
        };
        Ok((lease, now))
    }

    async fn commit_writes(
        &self,
        op: &'static str,
        writes: Vec<Write>,
        tx: Vec<u8>,
    ) -> Result<(), StoreError> {
        let req = CommitRequest {
            database: self.inner.database.clone(),
            writes,
            transaction: tx,
            request_options: None,
        };
        self.rpc(op, self.client().commit(req)).await.map(|_| ())
    }

    /// Runs a read-write transaction: `body` reads (with the tx id) and returns writes; they are
    /// committed in the same transaction. Aborted transactions are retried.
    async fn transact<T, F, Fut>(&self, op: &'static str, mut body: F) -> Result<T, StoreError>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: Future<Output = Result<(Vec<Write>, T), StoreError>>,
    {
        let mut last = None;
        for _ in 0..TXN_ATTEMPTS {
            let tx = self.begin(op).await?;
            let (writes, out) = match body(tx.clone()).await {
                Ok(v) => v,
                Err(e) => {
                    self.rollback(tx).await;
                    return Err(e);
                }
            };
            match self.commit_writes(op, writes, tx).await {
                Ok(()) => return Ok(out),
                Err(e @ StoreError::Contention { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(StoreError::Contention { op, detail: "transaction aborted".into() }))
    }

    fn op_writes(&self, t: &TenantId, ops: Vec<Op>) -> Result<Vec<Write>, StoreError> {
        ops.into_iter()
            .map(|op| {
                Ok(match op {
                    Op::PutCreds(_) => unreachable_creds(),
                    Op::PutKey(id, sealed) => {
                        let kind = record::key_doc_kind(&id);
                        let fields = codec::sealed_fields(sealed, &[("kind", codec::string(kind))]);
                        Self::update(self.sub_path(t, "keys", &id), fields, None)
                    }
                    Op::DeleteKey(id) => Self::delete(self.sub_path(t, "keys", &id)),
                    Op::PutStatus(s) => self.status_write(t, &s)?,
                    Op::PutOutbox(id, sealed) => {
                        Self::update(self.sub_path(t, "outbox", &id), codec::sealed_fields(sealed, &[]), None)
                    }
                    Op::DeleteOutbox(id) => Self::delete(self.sub_path(t, "outbox", &id)),
                    Op::PutInbox(id, sealed) => {
                        Self::update(self.sub_path(t, "inbox", &id), codec::sealed_fields(sealed, &[]), None)
                    }
                    Op::DeleteInbox(id) => Self::delete(self.sub_path(t, "inbox", &id)),
                })
            })
            .collect()
    }

    fn creds_write(&self, t: &TenantId, creds: &Creds) -> Result<Write, StoreError> {
        let (public, secret) = creds.split();
        let sealed = record::seal_creds_secret(&self.inner.ring, t, &secret)?;
        Ok(Self::update(self.sub_path(t, "creds", "current"), codec::creds_fields(&public, sealed)?, None))
    }

    fn batch_writes(&self, t: &TenantId, batch: &DeltaBatch) -> Result<Vec<Write>, StoreError> {
        use super::Delta;
        // Creds map to document fields (not an opaque record), so they are encoded here; the
        // rest share the record encoder with the other backends.
        let mut writes = Vec::with_capacity(batch.len());
        for d in &batch.deltas {
            match d {
                Delta::CredsPut(c) => writes.push(self.creds_write(t, c)?),
                other => {
                    let one = DeltaBatch { deltas: vec![other.clone()] };
                    writes.extend(self.op_writes(t, record::encode_batch(&self.inner.ring, t, &one)?)?);
                }
            }
        }
        Ok(writes)
    }

    /// Decodes one `tenants/{t}/inbox/{id}` document.
    fn decode_inbox_doc(&self, t: &TenantId, doc: &Document) -> Result<InboxItem, StoreError> {
        let id = codec::doc_id(&doc.name);
        let sealed = codec::sealed_value(t, &format!("inbox/{id}"), doc)?;
        record::decode_inbox(&self.inner.ring, t, id, sealed)
    }

    /// Decodes one tenant's documents (read at one snapshot) into its snapshot. Any value that
    /// does not decode or decrypt is `Corrupt` for this tenant.
    fn assemble(&self, t: &TenantId, docs: hydrate::TenantDocs) -> Result<TenantSnapshot, StoreError> {
        let ring = &self.inner.ring;
        let hydrate::TenantDocs { status, creds, keys, outbox, inbox } = docs;
        let mut snap = TenantSnapshot::default();
        if let Some(doc) = status {
            (snap.status, snap.lease) = codec::decode_status_doc(ring, t, &doc)?;
        }
        if let Some(doc) = creds {
            let (public, sealed) = codec::decode_creds_doc(t, &doc)?;
            snap.creds = Some(Creds::join(public, record::open_creds_secret(ring, t, &sealed)?));
        }
        let mut collected = record::KeyCollector::default();
        for doc in &keys {
            let id = codec::doc_id(&doc.name);
            let sealed = codec::sealed_value(t, &format!("keys/{id}"), doc)?;
            collected.add(record::decode_key_doc(ring, t, id, sealed)?);
        }
        snap.keys = collected.into_keys();
        for doc in &outbox {
            let id = codec::doc_id(&doc.name);
            let sealed = codec::sealed_value(t, &format!("outbox/{id}"), doc)?;
            let item = record::decode_outbox(ring, t, id, sealed)?;
            snap.outbox.insert(item.id.clone(), item);
        }
        for doc in &inbox {
            // Ids and sizes only (the documents were read, but no payload is opened or kept).
            let id = codec::doc_id(&doc.name);
            let sealed = codec::sealed_value(t, &format!("inbox/{id}"), doc)?;
            snap.inbox.insert(record::inbox_id(t, id)?, sealed.len() as u64);
        }
        Ok(snap)
    }
}

/// Creds never reach `op_writes` (see `batch_writes`); an empty write list keeps this total.
fn unreachable_creds() -> Write {
    Write { update_mask: None, update_transforms: Vec::new(), current_document: None, operation: None }
}

#[async_trait::async_trait]
impl Store for FirestoreStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Firestore
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let docs = self.list("list tenants", self.inner.docs.clone(), "tenants", None, true, None).await?;
        // Invalid ids (another application's documents, a console edit) are skipped (M9);
        // `invalid_tenant_ids` reports them.
        Ok(docs.iter().filter_map(|d| TenantId::new(codec::doc_id(&d.name)).ok()).collect())
    }

    async fn invalid_tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        let docs = self.list("list tenants", self.inner.docs.clone(), "tenants", None, true, None).await?;
        Ok(docs
            .iter()
            .map(|d| codec::doc_id(&d.name))
            .filter(|id| TenantId::new(id).is_err())
            .map(str::to_owned)
            .collect())
    }

    async fn hydrate(&self, tenant: &TenantId) -> Result<TenantSnapshot, StoreError> {
        // Every read at one read time = one consistent snapshot across the tenant's docs.
        self.hydrate_one(tenant).await
    }

    async fn hydrate_all(&self, concurrency: usize) -> Result<BoxStream<'_, Hydrated>, StoreError> {
        self.hydrate_all_windows(concurrency).await
    }

    async fn commit(
        &self,
        tenant: &TenantId,
        fence: FencingToken,
        batch: &DeltaBatch,
    ) -> Result<(), StoreError> {
        let mut writes = self.batch_writes(tenant, batch)?;
        let fault = self.inner.fault.take();
        if let Some(at) = fault {
            // A write whose precondition cannot hold: Firestore rejects the whole commit.
            let poison = Write {
                current_document: Some(Precondition {
                    condition_type: Some(precondition::ConditionType::Exists(true)),
                }),
                ..Self::update(self.sub_path(tenant, "keys", "fault-injection-missing"), HashMap::new(), None)
            };
            writes.insert(at.min(writes.len()), poison);
        }
        let r = self
            .transact("commit", |tx| {
                let writes = writes.clone();
                async move {
                    let current = self.read_lease("commit", tenant, &tx).await?;
                    lease::check_fence(tenant, current.as_ref(), fence)?;
                    Ok((writes, ()))
                }
            })
            .await;
        match r {
            Err(e) if fault.is_some() && !e.is_fenced() => Err(StoreError::Injected { op: "commit" }),
            other => other,
        }
    }

    async fn acquire_lease(
        &self,
        tenant: &TenantId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.transact("acquire lease", |tx| async move {
            let (current, now) = self.read_lease_now("acquire lease", tenant, &tx).await?;
            let l = lease::acquire(tenant, current.as_ref(), holder, ttl, now)?;
            Ok((vec![self.lease_write(tenant, &l)], l))
        })
        .await
    }

    async fn renew_lease(
        &self,
        tenant: &TenantId,
        presented: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.transact("renew lease", |tx| async move {
            let (current, now) = self.read_lease_now("renew lease", tenant, &tx).await?;
            let l = lease::renew(tenant, current.as_ref(), presented, ttl, now)?;
            Ok((vec![self.lease_write(tenant, &l)], l))
        })
        .await
    }

    async fn release_lease(&self, tenant: &TenantId, presented: &Lease) -> Result<(), StoreError> {
        self.transact("release lease", |tx| async move {
            let current = self.read_lease("release lease", tenant, &tx).await?;
            let l = lease::release(tenant, current.as_ref(), presented)?;
            Ok((vec![self.lease_write(tenant, &l)], ()))
        })
        .await
    }

    async fn delete_tenant_keys(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        // Creds go in the first fenced transaction, so a partial failure never leaves creds
        // without keys; then keys in fenced chunks until none are left (idempotent on retry).
        loop {
            let more = self
                .transact("delete tenant keys", |tx| async move {
                    let current = self.read_lease("delete tenant keys", tenant, &tx).await?;
                    lease::check_fence(tenant, current.as_ref(), fence)?;
                    let keys = self
                        .list(
                            "delete tenant keys",
                            self.tenant_path(tenant),
                            "keys",
                            Some(&tx),
                            true,
                            Some(DELETE_CHUNK),
                        )
                        .await?;
                    let mut writes = vec![Self::delete(self.sub_path(tenant, "creds", "current"))];
                    writes.extend(keys.iter().map(|d| Self::delete(d.name.clone())));
                    Ok((writes, !keys.is_empty()))
                })
                .await?;
            if !more {
                return Ok(());
            }
        }
    }

    async fn delete_tenant(&self, tenant: &TenantId, fence: FencingToken) -> Result<(), StoreError> {
        const OP: &str = "delete tenant";
        // Sub-collection docs go in fenced transactions of at most DELETE_CHUNK deletes (creds
        // first, so a partial failure never leaves creds without keys); the tenant doc (status +
        // lease) goes last, alone, once nothing is left below it. Until then the tenant stays
        // listed and its lease stays in place, so a crash midway leaves a tenant that a retried
        // delete finishes.
        loop {
            let done = self
                .transact(OP, |tx| async move {
                    let current = self.read_lease(OP, tenant, &tx).await?;
                    lease::check_fence(tenant, current.as_ref(), fence)?;
                    let mut doomed = Vec::new();
                    for coll in ["creds", "keys", "outbox", "inbox", "events"] {
                        let room = DELETE_CHUNK - i32::try_from(doomed.len()).unwrap_or(DELETE_CHUNK);
                        if room <= 0 {
                            break;
                        }
                        let docs = self
                            .list(OP, self.tenant_path(tenant), coll, Some(&tx), true, Some(room))
                            .await?;
                        doomed.extend(docs.into_iter().map(|d| d.name));
                    }
                    if doomed.is_empty() {
                        return Ok((vec![Self::delete(self.tenant_path(tenant))], true));
                    }
                    Ok((doomed.into_iter().map(Self::delete).collect(), false))
                })
                .await?;
            if done {
                return Ok(());
            }
        }
    }

    async fn read_status(&self, tenant: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        match self.get("read status", self.tenant_path(tenant), None).await? {
            Some(doc) => Ok(codec::decode_status_doc(&self.inner.ring, tenant, &doc)?.0),
            None => Ok(None),
        }
    }

    async fn write_status(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        let w = self.status_write(tenant, status)?;
        self.commit_writes("write status", vec![w], Vec::new()).await
    }

    async fn create_tenant(&self, tenant: &TenantId, status: &TenantStatus) -> Result<(), StoreError> {
        const OP: &str = "create tenant";
        let all: Vec<&str> =
            codec::RUNTIME_FIELDS.iter().chain(codec::CONFIG_FIELDS.iter()).copied().collect();
        let fields = codec::status_fields(&self.inner.ring, tenant, status, &all)?;
        let mask: Vec<String> = all.iter().map(|f| (*f).to_owned()).collect();
        for _ in 0..TXN_ATTEMPTS {
            // Compare-and-set on the tenant doc: created only if missing, or (a doc holding only
            // a lease) only if unchanged since read. Two concurrent creates: one lands.
            let doc = self.get(OP, self.tenant_path(tenant), None).await?;
            let cond = match &doc {
                Some(d) if d.fields.contains_key("state") => {
                    return Err(StoreError::AlreadyExists { tenant: tenant.clone() });
                }
                Some(d) => match d.update_time {
                    Some(ts) => precondition::ConditionType::UpdateTime(ts),
                    None => precondition::ConditionType::Exists(true),
                },
                None => precondition::ConditionType::Exists(false),
            };
            let w = Self::update(self.tenant_path(tenant), fields.clone(), Some(mask.clone()));
            if self.commit_cas(OP, vec![Self::with_precondition(w, cond)]).await? {
                return Ok(());
            }
        }
        Err(StoreError::Contention { op: OP, detail: "tenant doc kept changing".into() })
    }

    async fn write_config(&self, tenant: &TenantId, patch: &super::ConfigPatch) -> Result<(), StoreError> {
        const OP: &str = "write config";
        let mut status = TenantStatus::default();
        status.apply(patch);
        let mut mask: Vec<&str> = Vec::new();
        if patch.webhook_url.is_some() {
            mask.push("webhook_url");
        }
        if patch.webhook_secret.is_some() {
            mask.push(codec::WEBHOOK_SECRET_FIELD);
        }
        if patch.pacing.is_some() {
            mask.push("pacing");
        }
        if patch.push_name.is_some() {
            mask.push("push_name");
        }
        if patch.presence.is_some() {
            mask.push("presence");
        }
        if patch.deleting.is_some() {
            mask.push("deleting");
        }
        if mask.is_empty() {
            return Ok(());
        }
        // Only the named fields: a concurrent patch of other fields (another instance) is kept.
        let fields = codec::status_fields(&self.inner.ring, tenant, &status, &mask)?;
        let w = Self::update(
            self.tenant_path(tenant),
            fields,
            Some(mask.iter().map(|m| (*m).to_owned()).collect()),
        );
        let w = Self::with_precondition(w, precondition::ConditionType::Exists(true));
        if self.commit_cas(OP, vec![w]).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound { tenant: tenant.clone(), what: "status" })
        }
    }

    async fn rekey(&self, tenant: &TenantId) -> Result<super::RekeyReport, StoreError> {
        const OP: &str = "rekey";
        let mut report = super::RekeyReport::default();
        // Each stale value is re-sealed with a compare-and-set on its document's update time:
        // a value written meanwhile (by a tenant actor, sealed with its own current key) is
        // left alone and counted as skipped; a rerun picks up whatever is still stale.
        if let Some(doc) = self.get(OP, self.tenant_path(tenant), None).await? {
            match codec::raw_webhook_secret(&doc) {
                Some(Ok(_)) => {
                    self.rekey_doc(
                        tenant,
                        &doc,
                        codec::WEBHOOK_SECRET_FIELD,
                        codec::WEBHOOK_SECRET_NAME,
                        &mut report,
                    )
                    .await?;
                }
                Some(Err(())) => {
                    // Legacy base64 text: seal it (the migration of older data).
                    report.values += 1;
                    *report.by_key_id.entry("plaintext".to_owned()).or_default() += 1;
                    let (status, _) = codec::decode_status_doc(&self.inner.ring, tenant, &doc)?;
                    let secret = status.and_then(|s| s.webhook_secret);
                    let patch = super::ConfigPatch { webhook_secret: secret, ..Default::default() };
                    let mut st = TenantStatus::default();
                    st.apply(&patch);
                    let fields =
                        codec::status_fields(&self.inner.ring, tenant, &st, &[codec::WEBHOOK_SECRET_FIELD])?;
                    let w = Self::update(
                        doc.name.clone(),
                        fields,
                        Some(vec![codec::WEBHOOK_SECRET_FIELD.to_owned()]),
                    );
                    let cond = match doc.update_time {
                        Some(ts) => precondition::ConditionType::UpdateTime(ts),
                        None => precondition::ConditionType::Exists(true),
                    };
                    if self.commit_cas(OP, vec![Self::with_precondition(w, cond)]).await? {
                        report.resealed += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                None => {}
            }
        }
        let parent = self.tenant_path(tenant);
        for doc in self.list(OP, parent.clone(), "creds", None, false, None).await? {
            self.rekey_doc(tenant, &doc, codec::SECRET_FIELD, record::CREDS_NAME, &mut report).await?;
        }
        let keys = self.list(OP, parent.clone(), "keys", None, false, None).await?;
        let present: std::collections::HashSet<&str> = keys.iter().map(|d| codec::doc_id(&d.name)).collect();
        for doc in &keys {
            let id = codec::doc_id(&doc.name);
            let name = format!("keys/{id}");
            let sealed = codec::sealed_value(tenant, &name, doc)?;
            let opened = record::decode_key_doc(&self.inner.ring, tenant, id, sealed)?;
            if opened.canonical {
                self.rekey_doc(tenant, doc, codec::VALUE_FIELD, &name, &mut report).await?;
                continue;
            }
            // A legacy or older-key id moves to its current hashed id, only if the document
            // did not change since it was read.
            report.saw(sealed);
            let cond = match doc.update_time {
                Some(ts) => precondition::ConditionType::UpdateTime(ts),
                None => precondition::ConditionType::Exists(true),
            };
            let mut writes = vec![Self::with_precondition(Self::delete(doc.name.clone()), cond)];
            let (new_id, sealed) = record::encode_key(&self.inner.ring, tenant, &opened.key, &opened.value)?;
            if !present.contains(new_id.as_str()) {
                let kind = record::key_doc_kind(&new_id).to_owned();
                let fields = codec::sealed_fields(sealed, &[("kind", codec::string(&kind))]);
                writes.push(Self::with_precondition(
                    Self::update(self.sub_path(tenant, "keys", &new_id), fields, None),
                    precondition::ConditionType::Exists(false),
                ));
            }
            if self.commit_cas(OP, writes).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
        for coll in ["outbox", "inbox"] {
            for doc in self.list(OP, parent.clone(), coll, None, false, None).await? {
                let name = format!("{coll}/{}", codec::doc_id(&doc.name));
                self.rekey_doc(tenant, &doc, codec::VALUE_FIELD, &name, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn append_event(&self, tenant: &TenantId, event: &StoredEvent) -> Result<(), StoreError> {
        const OP: &str = "append event";
        // Ids sort by time; the random suffix keeps same-millisecond events apart.
        let id = format!("{:013}-{:08x}", event.at, OsRng.next_u32());
        let mut writes =
            vec![Self::update(self.sub_path(tenant, "events", &id), codec::event_fields(event)?, None)];
        let existing = self.list(OP, self.tenant_path(tenant), "events", None, true, None).await?;
        let excess = (existing.len() + 1).saturating_sub(EVENTS_KEPT);
        writes.extend(existing.iter().take(excess).map(|d| Self::delete(d.name.clone())));
        // The tenant doc must exist (no fields touched): an event never re-creates a deleted
        // tenant.
        writes.push(Self::with_precondition(
            Self::update(self.tenant_path(tenant), HashMap::new(), Some(Vec::new())),
            precondition::ConditionType::Exists(true),
        ));
        if self.commit_cas(OP, writes).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound { tenant: tenant.clone(), what: "status" })
        }
    }

    async fn list_events(&self, tenant: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        let docs = self.list("list events", self.tenant_path(tenant), "events", None, false, None).await?;
        docs.iter().map(|d| codec::decode_event(tenant, d)).collect()
    }

    async fn list_outbox(&self, tenant: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        let docs = self.list("list outbox", self.tenant_path(tenant), "outbox", None, false, None).await?;
        docs.iter()
            .map(|d| {
                let id = codec::doc_id(&d.name);
                record::decode_outbox(
                    &self.inner.ring,
                    tenant,
                    id,
                    codec::sealed_value(tenant, &format!("outbox/{id}"), d)?,
                )
            })
            .collect()
    }

    async fn list_inbox(&self, tenant: &TenantId) -> Result<Vec<InboxItem>, StoreError> {
        let docs = self.list("list inbox", self.tenant_path(tenant), "inbox", None, false, None).await?;
        let mut items =
            docs.iter().map(|d| self.decode_inbox_doc(tenant, d)).collect::<Result<Vec<_>, _>>()?;
        // Listed by escaped doc id; the contract orders by the id itself.
        items.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }

    async fn get_inbox(&self, tenant: &TenantId, id: &str) -> Result<Option<InboxItem>, StoreError> {
        let name = self.sub_path(tenant, "inbox", &record::inbox_doc_id(id));
        let doc = self.get("get inbox", name, None).await?;
        doc.map(|d| self.decode_inbox_doc(tenant, &d)).transpose()
    }
}

#[async_trait::async_trait]
impl TestHooks for FirestoreStore {
    async fn raw_key_ids(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let docs = self.list("raw key ids", self.tenant_path(tenant), "keys", None, true, None).await?;
        Ok(docs.iter().map(|d| codec::doc_id(&d.name).to_owned()).collect())
    }

    async fn put_legacy_key(&self, tenant: &TenantId, key: &KeyRef, value: &[u8]) -> Result<(), StoreError> {
        let (id, sealed) = record::encode_legacy_key(&self.inner.ring, tenant, key, value)?;
        let fields = codec::sealed_fields(sealed, &[("kind", codec::string(key.kind().as_str()))]);
        let w = Self::update(self.sub_path(tenant, "keys", &id), fields, None);
        self.commit_writes("put legacy key", vec![w], Vec::new()).await
    }

    async fn corrupt_key(&self, tenant: &TenantId, key: &KeyRef) -> Result<(), StoreError> {
        let fields = codec::sealed_fields(record::GARBAGE.to_vec(), &[]);
        let id = record::key_doc_id(&self.inner.ring, tenant, key);
        let w = Self::update(self.sub_path(tenant, "keys", &id), fields, None);
        self.commit_writes("corrupt", vec![w], Vec::new()).await
    }

    async fn corrupt_inbox(&self, tenant: &TenantId, id: &str) -> Result<(), StoreError> {
        let fields = codec::sealed_fields(record::GARBAGE.to_vec(), &[]);
        let w = Self::update(self.sub_path(tenant, "inbox", &record::inbox_doc_id(id)), fields, None);
        self.commit_writes("corrupt", vec![w], Vec::new()).await
    }

    async fn corrupt_creds(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let name = self.sub_path(tenant, "creds", "current");
        let mut doc = self.get("corrupt", name.clone(), None).await?.unwrap_or_default();
        let mut secret = match doc.fields.remove(codec::SECRET_FIELD).and_then(|v| v.value_type) {
            Some(gcloud_sdk::google::firestore::v1::value::ValueType::BytesValue(b)) => b,
            _ => record::GARBAGE.to_vec(),
        };
        if let Some(last) = secret.last_mut() {
            *last ^= 0x55;
        }
        doc.fields.insert(codec::SECRET_FIELD.to_owned(), codec::bytes(secret));
        let w = Self::update(name, doc.fields, None);
        self.commit_writes("corrupt", vec![w], Vec::new()).await
    }

    async fn copy_raw_key(
        &self,
        src: &TenantId,
        from: &KeyRef,
        dst: &TenantId,
        to: &KeyRef,
    ) -> Result<(), StoreError> {
        let doc = self
            .get("copy", self.sub_path(src, "keys", &record::key_doc_id(&self.inner.ring, src, from)), None)
            .await?
            .ok_or(StoreError::NotFound { tenant: src.clone(), what: "key" })?;
        let to = record::key_doc_id(&self.inner.ring, dst, to);
        let w = Self::update(self.sub_path(dst, "keys", &to), doc.fields, None);
        self.commit_writes("copy", vec![w], Vec::new()).await
    }

    fn fail_next_commit_after(&self, writes: usize) {
        self.inner.fault.arm(writes);
    }
}
