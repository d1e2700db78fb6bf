//! Hydration reads for the Firestore backend: snapshot reads at a `read_time` instead of a
//! read-only transaction per tenant, and collection-group queries that fetch many tenants'
//! documents per round trip.
//!
//! Consistency: `hydrate_all` lists the status docs with one query, takes that query's read
//! time and reads every other document at exactly that time, so the whole fleet comes from one
//! snapshot. `hydrate(t)` reads the status and creds docs with one `BatchGetDocuments` and the
//! key, outbox and inbox collections at that call's read time. Firestore guarantees that a streamed
//! result's earlier documents did not change up to a later `read_time` of the same stream, so
//! the last read time of the first call is a valid snapshot for everything it returned.
//!
//! Must not change what is read or how it is decoded: decoding stays in [`FirestoreStore`]'s
//! `assemble` (a bad value is `Corrupt` for its tenant only) and an unreachable store is
//! `Unavailable`, never an empty result.

use std::collections::HashMap;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use gcloud_sdk::google::firestore::v1::structured_query::{
    CollectionSelector, Direction, FieldReference, Order,
};
use gcloud_sdk::google::firestore::v1::{
    BatchGetDocumentsRequest, Cursor, Document, RunQueryRequest, StructuredQuery, Value,
    batch_get_documents_request, batch_get_documents_response, run_query_request, run_query_response,
    value::ValueType,
};
use gcloud_sdk::prost_types::Timestamp;

use super::{FirestoreStore, codec, map_status};
use crate::store::{Hydrated, StoreError, TenantSnapshot};
use crate::types::TenantId;

/// The documents that make up one tenant's snapshot, all read at one time.
#[derive(Debug, Default)]
pub(super) struct TenantDocs {
    /// `tenants/{t}`.
    pub(super) status: Option<Document>,
    /// `tenants/{t}/creds/current`.
    pub(super) creds: Option<Document>,
    /// `tenants/{t}/keys/*`.
    pub(super) keys: Vec<Document>,
    /// `tenants/{t}/outbox/*`.
    pub(super) outbox: Vec<Document>,
    /// `tenants/{t}/inbox/*`.
    pub(super) inbox: Vec<Document>,
}

/// Tenants that share one window of collection-group queries, with the name bounds of that
/// window (`end` is the next window's first tenant doc; `None` for the last window).
struct Window {
    tenants: Vec<(TenantId, Document)>,
    end: Option<String>,
}

fn by_name() -> Vec<Order> {
    vec![Order {
        field: Some(FieldReference { field_path: "__name__".to_owned() }),
        direction: Direction::Ascending as i32,
    }]
}

fn reference(name: String) -> Value {
    Value { value_type: Some(ValueType::ReferenceValue(name)) }
}

/// A query over `collection` under the query parent, ordered by document name.
/// `all_descendants` makes it a collection-group query; `start`/`end` bound it by name
/// (both exclusive of the named document itself, which never belongs to the group).
fn query(
    collection: &str,
    all_descendants: bool,
    start: Option<String>,
    end: Option<String>,
) -> StructuredQuery {
    StructuredQuery {
        from: vec![CollectionSelector { collection_id: collection.to_owned(), all_descendants }],
        order_by: by_name(),
        start_at: start.map(|n| Cursor { values: vec![reference(n)], before: true }),
        end_at: end.map(|n| Cursor { values: vec![reference(n)], before: true }),
        ..Default::default()
    }
}

/// The later of two read times.
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if (b.seconds, b.nanos) > (a.seconds, a.nanos) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Floors a read time to whole microseconds, the precision Firestore accepts for `read_time`.
/// Commit times are whole microseconds, so no write lands between the floor and the original.
fn whole_micros(t: Timestamp) -> Timestamp {
    Timestamp { seconds: t.seconds, nanos: t.nanos - t.nanos.rem_euclid(1000) }
}

/// Splits `{docs}/tenants/{t}/{collection}/{id}` into `(t, collection)`; `None` for any other
/// shape (a same-named collection elsewhere in the database).
fn tenant_and_collection<'a>(docs: &str, name: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = name.strip_prefix(docs)?.strip_prefix("/tenants/")?;
    let mut parts = rest.split('/');
    let (t, coll, _id) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((t, coll))
}

impl FirestoreStore {
    /// Runs `query` page by page (`hydrate_page` documents each); the first page fixes the read
    /// time when `read_time` is `None`, every later page reads at that time. Returns all
    /// documents and the read time they are consistent at.
    async fn query_all(
        &self,
        op: &'static str,
        parent: String,
        mut query: StructuredQuery,
        mut read_time: Option<Timestamp>,
    ) -> Result<(Vec<Document>, Option<Timestamp>), StoreError> {
        let page_size = self.inner.hydrate_page;
        query.limit = Some(page_size);
        let mut out = Vec::new();
        loop {
            let (page, at) = self.run_query(op, parent.clone(), query.clone(), read_time).await?;
            if read_time.is_none() {
                read_time = at.map(whole_micros);
            }
            let full = page.len() >= usize::try_from(page_size).unwrap_or(usize::MAX);
            let last = page.last().map(|d| d.name.clone());
            out.extend(page);
            match last {
                Some(_) if full && read_time.is_none() => {
                    // Without a read time the next page could come from another snapshot.
                    return Err(StoreError::backend(op, "query page returned no read time"));
                }
                Some(name) if full => {
                    query.start_at = Some(Cursor { values: vec![reference(name)], before: false });
                }
                _ => return Ok((out, read_time)),
            }
        }
    }

    /// Runs one query RPC to completion; returns its documents and its last read time.
    async fn run_query(
        &self,
        op: &'static str,
        parent: String,
        query: StructuredQuery,
        read_time: Option<Timestamp>,
    ) -> Result<(Vec<Document>, Option<Timestamp>), StoreError> {
        let collection = query.from.first().map(|c| c.collection_id.clone()).unwrap_or_default();
        let req = RunQueryRequest {
            parent,
            explain_options: None,
            request_options: None,
            query_type: Some(run_query_request::QueryType::StructuredQuery(query)),
            consistency_selector: read_time.map(run_query_request::ConsistencySelector::ReadTime),
        };
        let started = tokio::time::Instant::now();
        let mut stream = self.rpc(op, self.client().run_query(req)).await?;
        let first = started.elapsed();
        let (mut docs, mut at) = (Vec::new(), None);
        loop {
            let msg = match tokio::time::timeout(self.inner.timeout, stream.message()).await {
                Err(_) => return Err(StoreError::unavailable(op, "deadline exceeded")),
                Ok(Err(s)) => return Err(map_status(op, &s)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(m))) => m,
            };
            at = later(at, msg.read_time);
            docs.extend(msg.document);
            if msg.continuation_selector == Some(run_query_response::ContinuationSelector::Done(true)) {
                break;
            }
        }
        tracing::debug!(
            op,
            collection,
            docs = docs.len(),
            first_ms = first.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "firestore run_query"
        );
        Ok((docs, at))
    }

    /// Gets several documents in one call (inside transaction `tx` if given); returns the found
    /// ones by name and the last read time (the server's clock).
    pub(super) async fn batch_get(
        &self,
        op: &'static str,
        names: Vec<String>,
        tx: Option<&[u8]>,
    ) -> Result<(HashMap<String, Document>, Option<Timestamp>), StoreError> {
        let req = BatchGetDocumentsRequest {
            database: self.inner.database.clone(),
            documents: names,
            mask: None,
            request_options: None,
            consistency_selector: tx
                .map(|t| batch_get_documents_request::ConsistencySelector::Transaction(t.to_vec())),
        };
        let mut stream = self.rpc(op, self.client().batch_get_documents(req)).await?;
        let (mut found, mut at) = (HashMap::new(), None);
        loop {
            let msg = match tokio::time::timeout(self.inner.timeout, stream.message()).await {
                Err(_) => return Err(StoreError::unavailable(op, "deadline exceeded")),
                Ok(Err(s)) => return Err(map_status(op, &s)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(m))) => m,
            };
            at = later(at, msg.read_time);
            if let Some(batch_get_documents_response::Result::Found(d)) = msg.result {
                found.insert(d.name.clone(), d);
            }
        }
        Ok((found, at))
    }

    /// One tenant: status + creds in one batch get, then keys, outbox and inbox at its read time.
    pub(super) async fn hydrate_one(&self, t: &TenantId) -> Result<TenantSnapshot, StoreError> {
        const OP: &str = "hydrate";
        let status_name = self.tenant_path(t);
        let creds_name = self.sub_path(t, "creds", "current");
        let (mut found, at) = self.batch_get(OP, vec![status_name.clone(), creds_name.clone()], None).await?;
        let at =
            at.map(whole_micros).ok_or_else(|| StoreError::backend(OP, "batch get returned no read time"))?;
        let ((keys, _), (outbox, _), (inbox, _)) = futures::try_join!(
            self.query_all(OP, status_name.clone(), query("keys", false, None, None), Some(at)),
            self.query_all(OP, status_name.clone(), query("outbox", false, None, None), Some(at)),
            self.query_all(OP, status_name.clone(), query("inbox", false, None, None), Some(at)),
        )?;
        let docs = TenantDocs {
            status: found.remove(&status_name),
            creds: found.remove(&creds_name),
            keys,
            outbox,
            inbox,
        };
        self.assemble(t, docs)
    }

    /// Every tenant from one snapshot: one query lists the status docs; then, per window of
    /// `hydrate_window` tenants, four collection-group queries (creds, keys, outbox, inbox) bounded
    /// by tenant name read the rest at the listing's read time. `concurrency` windows run at
    /// once. A window whose queries stay unavailable after one retry yields `Unavailable` for
    /// each of its tenants; one whose queries are refused otherwise (e.g. a database that does
    /// not serve collection-group queries) falls back to per-tenant reads.
    pub(super) async fn hydrate_all_windows(
        &self,
        concurrency: usize,
    ) -> Result<BoxStream<'_, Hydrated>, StoreError> {
        const OP: &str = "hydrate all";
        let (docs, at) =
            self.query_all(OP, self.inner.docs.clone(), query("tenants", false, None, None), None).await?;
        let mut tenants = Vec::with_capacity(docs.len());
        for d in docs {
            // A document with an invalid id is skipped (`invalid_tenant_ids` reports it); its
            // subcollections may fall in a window and are ignored there.
            if let Ok(t) = TenantId::new(codec::doc_id(&d.name)) {
                tenants.push((t, d));
            }
        }
        if tenants.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let at =
            at.map(whole_micros).ok_or_else(|| StoreError::backend(OP, "query returned no read time"))?;
        let size = self.inner.hydrate_window.max(1);
        let mut windows: Vec<Window> = Vec::with_capacity(tenants.len().div_ceil(size));
        let mut rest = tenants.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<_> = rest.by_ref().take(size).collect();
            let end = rest.peek().map(|(_, d)| d.name.clone());
            windows.push(Window { tenants: chunk, end });
        }
        let stream = futures::stream::iter(windows)
            .map(move |w| self.hydrate_window(w, at))
            .buffer_unordered(concurrency.max(1))
            .flat_map(futures::stream::iter);
        Ok(stream.boxed())
    }

    async fn hydrate_window(&self, w: Window, at: Timestamp) -> Vec<Hydrated> {
        const OP: &str = "hydrate all";
        let start = w.tenants.first().map(|(_, d)| d.name.clone());
        let group = |coll: &str| {
            let q = query(coll, true, start.clone(), w.end.clone());
            self.query_all(OP, self.inner.docs.clone(), q, Some(at))
        };
        let mut read = futures::try_join!(group("creds"), group("keys"), group("outbox"), group("inbox"));
        if matches!(read, Err(StoreError::Unavailable { .. })) {
            // One retry for a slow or briefly unreachable store, then each tenant reports it.
            read = futures::try_join!(group("creds"), group("keys"), group("outbox"), group("inbox"));
        }
        let ((creds, _), (keys, _), (outbox, _), (inbox, _)) = match read {
            Ok(r) => r,
            Err(StoreError::Unavailable { op, detail }) => {
                return w
                    .tenants
                    .into_iter()
                    .map(|(t, _)| (t, Err(StoreError::Unavailable { op, detail: detail.clone() })))
                    .collect();
            }
            Err(e) => {
                // E.g. a database that refuses collection-group queries: read tenant by tenant.
                self.inner.window_fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, tenants = w.tenants.len(), "collection-group hydrate failed; reading tenants one by one");
                return futures::stream::iter(w.tenants)
                    .map(|(t, _)| async move {
                        let r = self.hydrate_one(&t).await;
                        (t, r)
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await;
            }
        };
        let docs_root = self.inner.docs.as_str();
        let mut by_tenant: HashMap<String, TenantDocs> =
            w.tenants.iter().map(|(t, _)| (t.as_str().to_owned(), TenantDocs::default())).collect();
        for d in creds.into_iter().chain(keys).chain(outbox).chain(inbox) {
            let Some((t, coll)) = tenant_and_collection(docs_root, &d.name) else { continue };
            // Documents of tenants without a status doc fall in a window but are not listed.
            let Some(slot) = by_tenant.get_mut(t) else { continue };
            match coll {
                "creds" if codec::doc_id(&d.name) == "current" => slot.creds = Some(d),
                "keys" => slot.keys.push(d),
                "outbox" => slot.outbox.push(d),
                "inbox" => slot.inbox.push(d),
                _ => {}
            }
        }
        w.tenants
            .into_iter()
            .map(|(t, status)| {
                let mut docs = by_tenant.remove(t.as_str()).unwrap_or_default();
                docs.status = Some(status);
                let r = self.assemble(&t, docs);
                (t, r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names split into tenant and collection only for the exact `tenants/{t}/{coll}/{id}` shape.
    #[test]
    fn splits_only_tenant_subcollection_docs() {
        let root = "projects/p/databases/(default)/documents";
        let n = format!("{root}/tenants/acme/keys/prekey-1");
        assert_eq!(tenant_and_collection(root, &n), Some(("acme", "keys")));
        assert_eq!(tenant_and_collection(root, &format!("{root}/tenants/acme")), None);
        assert_eq!(tenant_and_collection(root, &format!("{root}/other/acme/keys/x")), None);
        assert_eq!(tenant_and_collection(root, &format!("{root}/tenants/a/x/b/keys/c")), None);
        assert_eq!(tenant_and_collection("elsewhere", &n), None);
    }

    /// Reads at a snapshot's read time see that time's values, not later commits (the
    /// emulator honours `read_time`; skipped without `FIRESTORE_EMULATOR_HOST`).
    #[tokio::test]
    async fn reads_at_read_time_ignore_later_commits() {
        use std::sync::Arc;
        use std::time::Duration;

        use crate::store::crypt::{Keyring, MasterKey};
        use crate::store::firestore::FirestoreOptions;
        use crate::store::{Delta, DeltaBatch, KeyRef, ManualClock, SecretBytes, Store as _};

        if std::env::var("FIRESTORE_EMULATOR_HOST").map_or(true, |h| h.is_empty()) {
            return;
        }
        let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
        let project = format!("sl-unit-rt-{}", MasterKey::generate().key_id());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let s = FirestoreStore::connect(FirestoreOptions::new(project), ring, clock).await.unwrap();
        let t = TenantId::new("rt").unwrap();
        let fence = s.acquire_lease(&t, "h", Duration::from_secs(30)).await.unwrap().fence();
        let put = |id: u32, v: u8| {
            DeltaBatch::new()
                .with(Delta::KeyPut { key: KeyRef::PreKey(id), value: SecretBytes::new(vec![v]) })
        };
        s.commit(&t, fence, &put(1, 1)).await.unwrap();
        let (_, at) = s.batch_get("test", vec![s.tenant_path(&t)], None).await.unwrap();
        let at = whole_micros(at.unwrap());
        s.commit(&t, fence, &put(1, 2)).await.unwrap();
        s.commit(&t, fence, &put(2, 2)).await.unwrap();

        let (keys, _) =
            s.query_all("test", s.tenant_path(&t), query("keys", false, None, None), Some(at)).await.unwrap();
        let then = s.assemble(&t, TenantDocs { keys, ..TenantDocs::default() }).unwrap();
        assert_eq!(then.keys.len(), 1, "the later key is not in the old snapshot");
        assert_eq!(then.keys.get(&KeyRef::PreKey(1)).map(|v| v.expose().to_vec()), Some(vec![1]));
        let now = s.hydrate(&t).await.unwrap();
        assert_eq!(now.keys.get(&KeyRef::PreKey(1)).map(|v| v.expose().to_vec()), Some(vec![2]));
        assert_eq!(now.keys.len(), 2);
    }

    /// Read times floor to whole microseconds and never move forward.
    #[test]
    fn read_time_floors_to_micros() {
        let t = whole_micros(Timestamp { seconds: 5, nanos: 123_456_789 });
        assert_eq!((t.seconds, t.nanos), (5, 123_456_000));
        let l = later(Some(Timestamp { seconds: 5, nanos: 2 }), Some(Timestamp { seconds: 5, nanos: 1 }));
        assert_eq!(l.map(|t| t.nanos), Some(2));
        assert_eq!(later(None, Some(Timestamp { seconds: 1, nanos: 0 })).map(|t| t.seconds), Some(1));
    }
}
