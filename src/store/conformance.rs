//! The store conformance suite: one set of checks every backend must pass (memory, embedded,
//! Firestore through the emulator). Each check takes a fresh [`Fixture`] and panics with a clear
//! message on a violation; `tests/it/store_conformance.rs` runs every check against every
//! backend. Used only by tests and the bench; never by production code paths.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::model::{EVENTS_KEPT, KeyPair, LastDisconnect, LinkState, Me, SignedPreKey};
use super::{
    Creds, Delta, DeltaBatch, InboxItem, KeyRef, ManualClock, OutboxItem, SecretBytes, Store, StoreError,
    StoredEvent, TenantStatus, TestHooks,
};
use crate::types::{FencingToken, TenantId};

/// A fresh store plus the levers the checks need.
pub struct Fixture {
    /// The store under test (empty).
    pub store: Arc<dyn Store>,
    /// Backend-specific test hooks on the same store.
    pub hooks: Arc<dyn TestHooks>,
    /// The clock the store reads (lease expiry).
    pub clock: ManualClock,
    /// A store of the same backend whose storage cannot be reached, or the error that opening
    /// one gave.
    pub unreachable: Result<Arc<dyn Store>, StoreError>,
    /// Keeps temp dirs etc. alive for the fixture's lifetime.
    pub guard: Option<Box<dyn Any + Send>>,
}

/// Lease TTL used by the checks.
pub const TTL: Duration = Duration::from_secs(30);

/// A tenant id for tests (panics on an invalid literal: test-only).
pub fn tenant(s: &str) -> TenantId {
    match TenantId::new(s) {
        Ok(t) => t,
        Err(e) => panic!("bad test tenant id {s:?}: {e}"),
    }
}

/// Deterministic sample creds, different per `seed`.
pub fn sample_creds(seed: u8) -> Creds {
    let b = |n: u8, len: usize| vec![seed.wrapping_mul(31).wrapping_add(n); len];
    Creds {
        noise_key: KeyPair { public: b(1, 32), private: SecretBytes::new(b(2, 32)) },
        identity_key: KeyPair { public: b(3, 33), private: SecretBytes::new(b(4, 32)) },
        registration_id: 1000 + u32::from(seed),
        signed_pre_key: SignedPreKey {
            id: 1,
            key_pair: KeyPair { public: b(5, 33), private: SecretBytes::new(b(6, 32)) },
            signature: b(7, 64),
        },
        adv_secret: SecretBytes::new(b(8, 32)),
        me: Some(Me { jid: format!("1555000{seed}:3@s.whatsapp.net"), lid: Some(format!("9{seed}:3@lid")) }),
        account: Some(b(9, 120)),
        platform: Some("smba".into()),
        push_name: Some(format!("tenant {seed}")),
        next_pre_key_id: 31,
        first_unuploaded_pre_key_id: 31,
        my_app_state_key_id: Some("00aa".into()),
        routing_info: Some(b(10, 8)),
        last_prop_hash: None,
    }
}

/// One of each key kind, values derived from `seed`.
pub fn sample_keys(seed: u8) -> Vec<(KeyRef, SecretBytes)> {
    let v = |n: u8| SecretBytes::new(vec![seed ^ n; 40 + usize::from(n)]);
    vec![
        (KeyRef::PreKey(1), v(1)),
        (KeyRef::PreKey(2), v(2)),
        (KeyRef::SignedPreKey(1), v(3)),
        (KeyRef::Session("15550001234.0:1".into()), v(4)),
        (KeyRef::Identity("15550001234.0:1".into()), v(5)),
        (KeyRef::SenderKey { group: "120363@g.us".into(), sender: "9@lid.2".into() }, v(6)),
        (KeyRef::SenderKeyMemory("120363@g.us".into()), v(7)),
        (KeyRef::AppStateSyncKey("00aa".into()), v(8)),
        (KeyRef::AppStateVersion("regular_high".into()), v(9)),
        (KeyRef::LidMapping("15550001234".into()), v(10)),
        (KeyRef::DeviceList("15550001234".into()), v(11)),
        (KeyRef::TcToken("a/b c".into()), v(12)),
        (KeyRef::SentMessage("3EB0A1F2.x/y".into()), v(13)),
    ]
}

fn sample_status() -> TenantStatus {
    TenantStatus {
        state: LinkState::Connected,
        me: Some("15550001:3@s.whatsapp.net".into()),
        push_name: Some("x".into()),
        presence: Some(crate::store::model::PresenceType::Available),
        linked_at: Some(10),
        last_connected_at: Some(20),
        last_disconnect: Some(LastDisconnect { code: 428, reason: "connection closed".into(), at: 15 }),
        reconnects: 2,
        devices_registered: vec!["15550001:3@s.whatsapp.net".into()],
        updated_at: 20,
        webhook_url: Some("https://hooks.example.com/acme?k=v".into()),
        webhook_secret: Some(SecretBytes::new(b"whsec-sample".to_vec())),
        pacing: Some(Box::new(crate::store::model::PacingOverride {
            gap_min_ms: Some(0),
            ..Default::default()
        })),
        deleting: false,
    }
}

fn full_batch(seed: u8) -> DeltaBatch {
    let mut b = DeltaBatch::new().with(Delta::CredsPut(Box::new(sample_creds(seed))));
    for (key, value) in sample_keys(seed) {
        b.push(Delta::KeyPut { key, value });
    }
    b.push(Delta::StatusPut(sample_status()));
    b.push(Delta::OutboxPut(OutboxItem {
        id: "3EB0/AB.cd".into(),
        created_at: 5,
        payload: SecretBytes::new(b"hello".to_vec()),
    }));
    b.push(Delta::InboxPut(inbox_item(LINKED_INBOX_ID)));
    b
}

/// The inbox item every linked test tenant gets from [`full_batch`].
const LINKED_INBOX_ID: &str = "1700000000000-000001";

/// An inbox item whose payload is derived from its id.
fn inbox_item(id: &str) -> InboxItem {
    InboxItem {
        id: id.into(),
        created_at: 1_700_000_000_000,
        payload: SecretBytes::new(format!("{{\"event\":\"{id}\"}}").into_bytes()),
    }
}

fn inbox_ids(items: &[InboxItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

async fn link(f: &Fixture, t: &TenantId, seed: u8) -> FencingToken {
    f.store.create_tenant(t, &sample_status()).await.unwrap_or_else(|e| panic!("create {t}: {e}"));
    let lease =
        f.store.acquire_lease(t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire {t}: {e}"));
    f.store.commit(t, lease.fence(), &full_batch(seed)).await.unwrap_or_else(|e| panic!("commit {t}: {e}"));
    lease.fence()
}

/// Hydrate returns exactly what was committed; later deltas on the same key win.
pub async fn hydrate_returns_committed(f: Fixture) {
    let t = tenant("alpha");
    let fence = link(&f, &t, 1).await;
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(snap.creds, Some(sample_creds(1)), "creds differ after round trip");
    let want: std::collections::BTreeMap<_, _> = sample_keys(1).into_iter().collect();
    assert_eq!(snap.keys, want, "keys differ after round trip");
    assert_eq!(snap.status, Some(sample_status()));
    assert_eq!(snap.lease.as_ref().map(|l| l.fence()), Some(fence));
    assert_eq!(snap.outbox.get("3EB0/AB.cd").map(|o| o.payload.expose().to_vec()), Some(b"hello".to_vec()));
    assert!(snap.inbox.get(LINKED_INBOX_ID).is_some_and(|size| *size > 0), "inbox id and size hydrated");
    assert_eq!(snap.inbox.len(), 1);
    let item = f.store.get_inbox(&t, LINKED_INBOX_ID).await.unwrap_or_else(|e| panic!("get inbox: {e}"));
    assert_eq!(item, Some(inbox_item(LINKED_INBOX_ID)), "inbox round trip");

    let mut c2 = sample_creds(1);
    c2.next_pre_key_id = 99;
    let b = DeltaBatch::new()
        .with(Delta::KeyPut { key: KeyRef::PreKey(1), value: SecretBytes::new(vec![1]) })
        .with(Delta::KeyPut { key: KeyRef::PreKey(1), value: SecretBytes::new(vec![2]) })
        .with(Delta::CredsPut(Box::new(c2.clone())));
    f.store.commit(&t, fence, &b).await.unwrap_or_else(|e| panic!("commit 2: {e}"));
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate 2: {e}"));
    assert_eq!(
        snap.keys.get(&KeyRef::PreKey(1)).map(|v| v.expose().to_vec()),
        Some(vec![2]),
        "last put wins"
    );
    assert_eq!(snap.creds, Some(c2));
    let tenants = f.store.list_tenants().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(tenants, vec![t.clone()]);
    let empty = f.store.hydrate(&tenant("nobody")).await.unwrap_or_else(|e| panic!("hydrate empty: {e}"));
    assert!(empty.creds.is_none() && empty.keys.is_empty(), "unknown tenant hydrates empty");
}

/// M8: key document ids name no contact. After committing keys for an address, no stored id
/// contains its digits (the kind stays readable: `session.<hex>`), and hydration returns the
/// keys under their real address. A store written in the old format (plain ids naming the
/// address) still hydrates; a write of such a key, a delete and `rekey` migrate it away.
pub async fn key_doc_ids_hide_addresses(f: Fixture) {
    let ids_of = |t: TenantId| {
        let hooks = f.hooks.clone();
        async move { hooks.raw_key_ids(&t).await.unwrap_or_else(|e| panic!("raw ids: {e}")) }
    };
    let t = tenant("hidden");
    let fence = link(&f, &t, 5).await;
    let (session, identity) =
        (KeyRef::Session("15551234567.0".into()), KeyRef::Identity("15551234567.0".into()));
    let b = DeltaBatch::new()
        .with(Delta::KeyPut { key: session.clone(), value: SecretBytes::new(vec![5; 40]) })
        .with(Delta::KeyPut { key: identity.clone(), value: SecretBytes::new(vec![6; 33]) });
    f.store.commit(&t, fence, &b).await.unwrap_or_else(|e| panic!("commit: {e}"));
    let ids = ids_of(t.clone()).await;
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| !id.contains("15551234567")), "an address in a key document id: {ids:?}");
    assert!(ids.iter().any(|id| id.starts_with("session.")), "kind not readable: {ids:?}");
    assert!(ids.iter().any(|id| id.starts_with("identity.")), "kind not readable: {ids:?}");
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(snap.keys.get(&session).map(|v| v.expose().to_vec()), Some(vec![5; 40]));
    assert_eq!(snap.keys.get(&identity).map(|v| v.expose().to_vec()), Some(vec![6; 33]));

    // The old format: plain ids naming the address, the value sealed alone.
    let old = tenant("legacy");
    f.store.create_tenant(&old, &sample_status()).await.unwrap_or_else(|e| panic!("create: {e}"));
    let lease = f.store.acquire_lease(&old, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    let keys = [
        KeyRef::Session("15557654321.0".into()),
        KeyRef::Identity("15557654321.0".into()),
        KeyRef::SenderKey { group: "1203@g.us".into(), sender: "15557654321.0".into() },
    ];
    for (i, k) in keys.iter().enumerate() {
        let v = [u8::try_from(i).unwrap_or(0) + 1; 8];
        f.hooks.put_legacy_key(&old, k, &v).await.unwrap_or_else(|e| panic!("legacy put: {e}"));
    }
    assert_eq!(ids_of(old.clone()).await.iter().filter(|id| id.contains("15557654321")).count(), 3);
    let snap = f.store.hydrate(&old).await.unwrap_or_else(|e| panic!("old format must hydrate: {e}"));
    for (i, k) in keys.iter().enumerate() {
        let v = vec![u8::try_from(i).unwrap_or(0) + 1; 8];
        assert_eq!(snap.keys.get(k).map(|x| x.expose().to_vec()), Some(v), "{k}");
    }
    // A write migrates the key; a delete removes the legacy copy too.
    let b = DeltaBatch::new()
        .with(Delta::KeyPut { key: keys[0].clone(), value: SecretBytes::new(vec![9; 8]) })
        .with(Delta::KeyDelete(keys[1].clone()));
    f.store.commit(&old, lease.fence(), &b).await.unwrap_or_else(|e| panic!("commit: {e}"));
    let ids = ids_of(old.clone()).await;
    assert_eq!(ids.iter().filter(|id| id.contains("15557654321")).count(), 1, "{ids:?}");
    let snap = f.store.hydrate(&old).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(snap.keys.get(&keys[0]).map(|x| x.expose().to_vec()), Some(vec![9; 8]), "the write wins");
    assert!(!snap.keys.contains_key(&keys[1]), "the deleted legacy key came back");
    // `rekey` migrates what is left.
    let r = f.store.rekey(&old).await.unwrap_or_else(|e| panic!("rekey: {e}"));
    assert!(r.resealed >= 1, "{r:?}");
    let ids = ids_of(old.clone()).await;
    assert!(ids.iter().all(|id| !id.contains("15557654321")), "rekey left a plain id: {ids:?}");
    let again = f.store.hydrate(&old).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(again.keys, snap.keys, "rekey changed what hydrates");
    assert_eq!(f.store.rekey(&old).await.map(|r| r.resealed).ok(), Some(0), "a rerun has nothing left");
}

/// A commit that fails half-way applies nothing; the next commit works.
pub async fn commit_is_atomic(f: Fixture) {
    let t = tenant("atomic");
    let fence = link(&f, &t, 2).await;
    let before = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    let mut c = sample_creds(2);
    c.next_pre_key_id = 500;
    let b = DeltaBatch::new()
        .with(Delta::KeyPut { key: KeyRef::Session("new.0".into()), value: SecretBytes::new(vec![9; 10]) })
        .with(Delta::KeyDelete(KeyRef::PreKey(1)))
        .with(Delta::CredsPut(Box::new(c)))
        .with(Delta::KeyPut { key: KeyRef::PreKey(77), value: SecretBytes::new(vec![7]) });
    f.hooks.fail_next_commit_after(2);
    let r = f.store.commit(&t, fence, &b).await;
    assert!(r.is_err(), "armed commit must fail, got {r:?}");
    let after = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate after: {e}"));
    assert_eq!(after, before, "a failed commit left partial writes behind");
    f.store.commit(&t, fence, &b).await.unwrap_or_else(|e| panic!("retry commit: {e}"));
    let done = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate done: {e}"));
    assert!(!done.keys.contains_key(&KeyRef::PreKey(1)) && done.keys.contains_key(&KeyRef::PreKey(77)));
    assert_eq!(done.creds.map(|c| c.next_pre_key_id), Some(500));
}

/// Invariant 2: a stale holder's commit is rejected and nothing of its batch lands.
pub async fn stale_fence_rejected(f: Fixture) {
    let t = tenant("fenced");
    let a = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire a: {e}"));
    f.store.commit(&t, a.fence(), &full_batch(3)).await.unwrap_or_else(|e| panic!("commit a: {e}"));
    f.clock.advance(TTL + Duration::from_secs(1));
    let b = f.store.acquire_lease(&t, "holder-b", TTL).await.unwrap_or_else(|e| panic!("acquire b: {e}"));
    assert!(b.epoch > a.epoch, "takeover must bump the epoch");
    let stale = DeltaBatch::new()
        .with(Delta::KeyPut { key: KeyRef::Session("stale.0".into()), value: SecretBytes::new(vec![1]) })
        .with(Delta::KeyDelete(KeyRef::PreKey(1)));
    match f.store.commit(&t, a.fence(), &stale).await {
        Err(StoreError::Fenced { held, presented, .. }) => {
            assert_eq!((held, presented), (b.fence(), a.fence()));
        }
        other => panic!("stale commit must be Fenced, got {other:?}"),
    }
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert!(!snap.keys.contains_key(&KeyRef::Session("stale.0".into())), "stale put landed");
    assert!(snap.keys.contains_key(&KeyRef::PreKey(1)), "stale delete landed");
    assert!(matches!(f.store.renew_lease(&t, &a, TTL).await, Err(StoreError::Fenced { .. })));
    assert!(matches!(f.store.delete_tenant_keys(&t, a.fence()).await, Err(StoreError::Fenced { .. })));
    assert!(matches!(
        f.store.commit(&tenant("never-leased"), FencingToken::new(1, "holder-a"), &stale).await,
        Err(StoreError::Fenced { .. })
    ));
    f.store.commit(&t, b.fence(), &stale).await.unwrap_or_else(|e| panic!("current holder commit: {e}"));
}

/// A live lease blocks others; expiry allows takeover with a higher epoch; renew extends.
pub async fn lease_expiry_and_takeover(f: Fixture) {
    let t = tenant("lease");
    let a = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    match f.store.acquire_lease(&t, "holder-b", TTL).await {
        Err(StoreError::LeaseHeld { holder, .. }) => assert_eq!(holder, "holder-a"),
        other => panic!("live lease must block another holder, got {other:?}"),
    }
    f.clock.advance(TTL / 2);
    let a2 = f.store.renew_lease(&t, &a, TTL).await.unwrap_or_else(|e| panic!("renew: {e}"));
    assert_eq!(a2.epoch, a.epoch, "renew keeps the epoch");
    assert!(a2.expires_at > a.expires_at, "renew extends");
    f.clock.advance(TTL / 2 + Duration::from_secs(1));
    assert!(f.store.acquire_lease(&t, "holder-b", TTL).await.is_err(), "renewed lease still live");
    f.clock.advance(TTL);
    let b = f.store.acquire_lease(&t, "holder-b", TTL).await.unwrap_or_else(|e| panic!("takeover: {e}"));
    assert!(b.epoch > a2.epoch);
    assert!(f.store.acquire_lease(&t, "holder-a", TTL).await.is_err(), "old holder cannot come back");
}

/// Release lets another holder acquire at once, and fences the releaser.
pub async fn release_lets_other_acquire(f: Fixture) {
    let t = tenant("release");
    let a = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    f.store.release_lease(&t, &a).await.unwrap_or_else(|e| panic!("release: {e}"));
    let b = f
        .store
        .acquire_lease(&t, "holder-b", TTL)
        .await
        .unwrap_or_else(|e| panic!("acquire after release: {e}"));
    assert!(b.epoch > a.epoch);
    let r = f.store.commit(&t, a.fence(), &DeltaBatch::new().with(Delta::KeyDelete(KeyRef::PreKey(1)))).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "released fence must not commit: {r:?}");
    assert!(f.store.release_lease(&t, &a).await.is_err(), "double release of a stale lease is refused");
}

/// Deleted keys stay deleted; delete_tenant_keys clears creds and keys but keeps status.
pub async fn deleted_keys_stay_deleted(f: Fixture) {
    let t = tenant("deleted");
    let fence = link(&f, &t, 4).await;
    f.store
        .commit(&t, fence, &DeltaBatch::new().with(Delta::KeyDelete(KeyRef::PreKey(2))))
        .await
        .unwrap_or_else(|e| panic!("delete commit: {e}"));
    for _ in 0..2 {
        let s = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
        assert!(!s.keys.contains_key(&KeyRef::PreKey(2)), "deleted key came back");
    }
    f.store.delete_tenant_keys(&t, fence).await.unwrap_or_else(|e| panic!("delete tenant keys: {e}"));
    let s = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert!(s.creds.is_none(), "creds survived delete_tenant_keys");
    assert!(s.keys.is_empty(), "keys survived delete_tenant_keys: {:?}", s.keys.keys().collect::<Vec<_>>());
    assert_eq!(s.status, Some(sample_status()), "status doc must stay");
    assert!(s.inbox.contains_key(LINKED_INBOX_ID), "inbox must stay");
    let item = f.store.get_inbox(&t, LINKED_INBOX_ID).await.unwrap_or_else(|e| panic!("get inbox: {e}"));
    assert_eq!(item, Some(inbox_item(LINKED_INBOX_ID)), "inbox must stay");
    assert!(f.store.list_tenants().await.unwrap_or_default().contains(&t), "tenant still listed");
}

/// `delete_tenant` is fenced (a stale or foreign epoch deletes nothing), then removes creds,
/// keys, outbox, events and the status doc: the tenant is no longer listed, hydrates empty,
/// has no status or events, and a neighbour tenant is untouched. A later acquire starts over.
pub async fn delete_tenant_removes_everything(f: Fixture) {
    let (t, other) = (tenant("doomed"), tenant("neighbour"));
    let fence = link(&f, &t, 5).await;
    link(&f, &other, 6).await;
    for i in 0..3u64 {
        let e = StoredEvent { at: 100 + i, kind: "connected".into(), detail: format!("e{i}") };
        f.store.append_event(&t, &e).await.unwrap_or_else(|e| panic!("append: {e}"));
        f.store.append_event(&other, &e).await.unwrap_or_else(|e| panic!("append other: {e}"));
    }
    let stale = FencingToken { epoch: fence.epoch.saturating_sub(1), ..fence };
    for bad in [stale, FencingToken { epoch: fence.epoch + 1, ..fence }] {
        let r = f.store.delete_tenant(&t, bad).await;
        assert!(matches!(r, Err(StoreError::Fenced { .. })), "delete with fence {bad:?}: {r:?}");
    }
    let r = f.store.delete_tenant(&tenant("never-leased"), FencingToken::new(1, "holder-a")).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "delete of an unleased tenant: {r:?}");
    let s = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert!(s.creds.is_some() && !s.keys.is_empty(), "a fenced delete must delete nothing");

    f.store.delete_tenant(&t, fence).await.unwrap_or_else(|e| panic!("delete tenant: {e}"));
    let listed = f.store.list_tenants().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert!(!listed.contains(&t), "deleted tenant still listed: {listed:?}");
    assert!(listed.contains(&other), "neighbour vanished: {listed:?}");
    let s = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate after delete: {e}"));
    assert!(
        s.creds.is_none() && s.keys.is_empty() && s.outbox.is_empty() && s.inbox.is_empty(),
        "state survived delete"
    );
    assert_eq!((s.status, s.lease), (None, None), "status doc survived delete");
    assert_eq!(f.store.read_status(&t).await.unwrap_or_else(|e| panic!("read: {e}")), None);
    assert!(f.store.list_events(&t).await.unwrap_or_else(|e| panic!("events: {e}")).is_empty());
    assert!(f.store.list_outbox(&t).await.unwrap_or_else(|e| panic!("outbox: {e}")).is_empty());
    assert!(f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("inbox: {e}")).is_empty());
    let all: Vec<_> =
        f.store.hydrate_all(4).await.unwrap_or_else(|e| panic!("hydrate_all: {e}")).collect().await;
    assert!(all.iter().all(|(id, _)| id != &t), "hydrate_all still yields the deleted tenant");

    // The old fence is dead: renew/release/commit fail and re-create nothing.
    let gone = super::Lease { holder: "holder-a".into(), epoch: fence.epoch, expires_at: 0 };
    assert!(f.store.renew_lease(&t, &gone, TTL).await.is_err());
    assert!(f.store.release_lease(&t, &gone).await.is_err());
    assert!(f.store.commit(&t, fence, &full_batch(5)).await.is_err());
    let listed = f.store.list_tenants().await.unwrap_or_else(|e| panic!("list: {e}"));
    assert!(!listed.contains(&t), "a failed lease op re-created the tenant: {listed:?}");

    let n = f.store.hydrate(&other).await.unwrap_or_else(|e| panic!("hydrate neighbour: {e}"));
    assert_eq!(n.creds, Some(sample_creds(6)), "neighbour's creds touched");
    assert_eq!(f.store.list_events(&other).await.map(|e| e.len()).unwrap_or(0), 3, "neighbour's events");
    let again =
        f.store.acquire_lease(&t, "holder-b", TTL).await.unwrap_or_else(|e| panic!("re-acquire: {e}"));
    assert!(f.store.hydrate(&t).await.is_ok_and(|s| s.creds.is_none()), "re-created tenant starts empty");
    f.store.delete_tenant(&t, again.fence()).await.unwrap_or_else(|e| panic!("second delete: {e}"));
}

/// A corrupt or undecryptable value (key, creds or inbox item) is `Corrupt` for that tenant
/// only; the others hydrate.
pub async fn corrupt_value_isolated(f: Fixture) {
    let (bad_key, bad_creds, good) = (tenant("bad-key"), tenant("bad-creds"), tenant("good"));
    let bad_inbox = tenant("bad-inbox");
    link(&f, &bad_key, 5).await;
    link(&f, &bad_creds, 6).await;
    link(&f, &good, 7).await;
    link(&f, &bad_inbox, 8).await;
    f.hooks.corrupt_inbox(&bad_inbox, LINKED_INBOX_ID).await.unwrap_or_else(|e| panic!("corrupt inbox: {e}"));
    let inbox_key = format!("inbox/{LINKED_INBOX_ID}");
    // Hydration does not open inbox payloads: the tenant starts and lists the item's id; every
    // read of the payload is Corrupt.
    let snap = f.store.hydrate(&bad_inbox).await.unwrap_or_else(|e| panic!("hydrate bad inbox: {e}"));
    assert!(snap.inbox.contains_key(LINKED_INBOX_ID), "corrupt inbox item still listed by id");
    match f.store.list_inbox(&bad_inbox).await {
        Err(StoreError::Corrupt { tenant, key, .. }) => {
            assert_eq!((tenant, key), (bad_inbox.clone(), inbox_key.clone()))
        }
        other => panic!("list_inbox over a corrupt item must be Corrupt, got {other:?}"),
    }
    match f.store.get_inbox(&bad_inbox, LINKED_INBOX_ID).await {
        Err(StoreError::Corrupt { tenant, key, .. }) => {
            assert_eq!((tenant, key), (bad_inbox.clone(), inbox_key.clone()))
        }
        other => panic!("get_inbox of a corrupt item must be Corrupt, got {other:?}"),
    }
    match f.store.list_inbox_page(&bad_inbox, None, 10).await {
        Err(StoreError::Corrupt { tenant, key, .. }) => {
            assert_eq!((tenant, key), (bad_inbox.clone(), inbox_key))
        }
        other => panic!("an inbox page over a corrupt item must be Corrupt, got {other:?}"),
    }
    let victim = KeyRef::Session("15550001234.0:1".into());
    f.hooks.corrupt_key(&bad_key, &victim).await.unwrap_or_else(|e| panic!("corrupt key: {e}"));
    f.hooks.corrupt_creds(&bad_creds).await.unwrap_or_else(|e| panic!("corrupt creds: {e}"));
    match f.store.hydrate(&bad_key).await {
        Err(StoreError::Corrupt { tenant, key, .. }) => {
            assert_eq!(tenant, bad_key);
            // M8: the key is named by its hashed document id, never by the address.
            assert!(key.starts_with("keys/session.") && !key.contains("15550001234"), "{key}");
            let ids = f.hooks.raw_key_ids(&bad_key).await.unwrap_or_else(|e| panic!("raw ids: {e}"));
            assert!(ids.iter().any(|id| format!("keys/{id}") == key), "{key} not among {ids:?}");
        }
        other => panic!("corrupt key must be Corrupt, got {other:?}"),
    }
    match f.store.hydrate(&bad_creds).await {
        Err(StoreError::Corrupt { tenant, key, .. }) => {
            assert_eq!((tenant, key.as_str()), (bad_creds.clone(), "creds/current"))
        }
        other => panic!("corrupt creds must be Corrupt (never fresh creds), got {other:?}"),
    }
    let mut seen = Vec::new();
    let mut stream = f.store.hydrate_all(2).await.unwrap_or_else(|e| panic!("hydrate_all: {e}"));
    while let Some((t, r)) = stream.next().await {
        seen.push(t.clone());
        if t == good {
            match r {
                Ok(s) => assert_eq!(s.creds, Some(sample_creds(7)), "good tenant hydrates intact"),
                Err(e) => panic!("good tenant must hydrate despite the corrupt ones: {e}"),
            }
        } else if t == bad_inbox {
            // Inbox payloads are not opened at hydration: the tenant starts; reads are Corrupt.
            let s = r.unwrap_or_else(|e| panic!("a corrupt inbox item must not stop hydration: {e}"));
            assert!(s.inbox.contains_key(LINKED_INBOX_ID), "corrupt inbox item still listed by id");
        } else {
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{t} must be Corrupt");
        }
    }
    seen.sort();
    assert_eq!(seen, vec![bad_creds, bad_inbox, bad_key, good], "hydrate_all must yield every tenant");
}

/// A sealed value moved to another tenant or another key fails to open (AAD binding).
pub async fn moved_value_fails(f: Fixture) {
    let (a, b, c) = (tenant("src"), tenant("dst"), tenant("self"));
    link(&f, &a, 8).await;
    link(&f, &b, 9).await;
    link(&f, &c, 10).await;
    let k = KeyRef::Session("15550001234.0:1".into());
    f.hooks.copy_raw_key(&a, &k, &b, &k).await.unwrap_or_else(|e| panic!("copy: {e}"));
    assert!(
        matches!(f.store.hydrate(&b).await, Err(StoreError::Corrupt { .. })),
        "value moved across tenants opened"
    );
    f.hooks
        .copy_raw_key(&c, &KeyRef::PreKey(1), &c, &KeyRef::PreKey(2))
        .await
        .unwrap_or_else(|e| panic!("copy: {e}"));
    assert!(
        matches!(f.store.hydrate(&c).await, Err(StoreError::Corrupt { .. })),
        "value moved across keys opened"
    );
    assert!(f.store.hydrate(&a).await.is_ok(), "the source tenant is untouched");
}

/// An unreachable store is `Unavailable` (retryable), never an empty tenant list.
pub async fn unreachable_is_unavailable(f: Fixture) {
    let store = match f.unreachable {
        Err(e) => {
            assert!(matches!(e, StoreError::Unavailable { .. }), "opening an unreachable store: {e:?}");
            return;
        }
        Ok(s) => s,
    };
    match store.list_tenants().await {
        Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("list_tenants on an unreachable store must be Unavailable, got {other:?}"),
    }
    assert!(matches!(store.hydrate(&tenant("x")).await, Err(StoreError::Unavailable { .. })));
    assert!(matches!(store.hydrate_all(4).await, Err(StoreError::Unavailable { .. })));
    let r = store.commit(&tenant("x"), FencingToken::new(1, "h"), &DeltaBatch::new()).await;
    assert!(matches!(r, Err(StoreError::Unavailable { .. })), "commit: {r:?}");
    assert!(store.acquire_lease(&tenant("x"), "h", TTL).await.is_err());
}

/// Status doc, bounded events and outbox items behave the same everywhere.
pub async fn status_events_outbox(f: Fixture) {
    let t = tenant("misc");
    assert_eq!(f.store.read_status(&t).await.unwrap_or_else(|e| panic!("read: {e}")), None);
    f.store.create_tenant(&t, &sample_status()).await.unwrap_or_else(|e| panic!("create: {e}"));
    assert_eq!(f.store.read_status(&t).await.ok().flatten(), Some(sample_status()));
    let lease = f.store.acquire_lease(&t, "h", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    let mut s2 = sample_status();
    s2.me = None;
    s2.state = LinkState::LoggedOut;
    f.store.write_status(&t, &s2).await.unwrap_or_else(|e| panic!("write 2: {e}"));
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(snap.status, Some(s2), "status fields replaced, cleared field gone");
    assert_eq!(snap.lease, Some(lease.clone()), "status write must not touch the lease");

    for i in 0..(EVENTS_KEPT as u64 + 5) {
        let e = StoredEvent { at: 1000 + i, kind: "connected".into(), detail: format!("n{i}") };
        f.store.append_event(&t, &e).await.unwrap_or_else(|e| panic!("append: {e}"));
    }
    let ev = f.store.list_events(&t).await.unwrap_or_else(|e| panic!("events: {e}"));
    assert_eq!(ev.len(), EVENTS_KEPT, "events are bounded");
    assert_eq!(ev.first().map(|e| e.detail.as_str()), Some("n5"), "oldest dropped first");
    assert_eq!(ev.last().map(|e| e.detail.as_str()), Some(format!("n{}", EVENTS_KEPT + 4).as_str()));

    let item = |id: &str| OutboxItem {
        id: id.into(),
        created_at: 1,
        payload: SecretBytes::new(id.as_bytes().to_vec()),
    };
    let b = DeltaBatch::new().with(Delta::OutboxPut(item("m1"))).with(Delta::OutboxPut(item("m2")));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("outbox commit: {e}"));
    let b = DeltaBatch::new().with(Delta::OutboxDelete("m1".into()));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("outbox delete: {e}"));
    let out = f.store.list_outbox(&t).await.unwrap_or_else(|e| panic!("list outbox: {e}"));
    assert_eq!(out, vec![item("m2")]);
}

/// hydrate_all streams every tenant with bounded concurrency.
pub async fn hydrate_all_streams_everyone(f: Fixture) {
    let mut want = Vec::new();
    for i in 0..12u8 {
        let t = tenant(&format!("bulk-{i:02}"));
        link(&f, &t, i).await;
        want.push(t);
    }
    let mut got: Vec<TenantId> = Vec::new();
    let mut stream = f.store.hydrate_all(3).await.unwrap_or_else(|e| panic!("hydrate_all: {e}"));
    while let Some((t, r)) = stream.next().await {
        let snap = r.unwrap_or_else(|e| panic!("hydrate {t}: {e}"));
        assert!(snap.creds.is_some() && snap.keys.len() == sample_keys(0).len());
        got.push(t);
    }
    got.sort();
    assert_eq!(got, want);
}

/// Inbox items round-trip through `commit`, `hydrate`, `hydrate_all` and `list_inbox`: puts in
/// any order across batches come back sorted by id (the id, not its escaped document name), a
/// put on an existing id replaces it, deletes (also of absent ids) remove exactly one item.
pub async fn inbox_round_trip_in_id_order(f: Fixture) {
    let t = tenant("inbox");
    let lease = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    assert!(f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("empty list: {e}")).is_empty());
    // "0003-a~" escapes to "0003-a%7E", which sorts before "0003-aa" although the id sorts after.
    let b = DeltaBatch::new()
        .with(Delta::InboxPut(inbox_item("0003-a~")))
        .with(Delta::InboxPut(inbox_item("0001-x")))
        .with(Delta::InboxPut(inbox_item("0003-aa")));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("commit 1: {e}"));
    let mut replaced = inbox_item("0001-x");
    replaced.payload = SecretBytes::new(b"second".to_vec());
    let b = DeltaBatch::new()
        .with(Delta::InboxPut(inbox_item("0002-y/z.w")))
        .with(Delta::InboxPut(inbox_item("0004-doomed")))
        .with(Delta::InboxPut(replaced.clone()))
        .with(Delta::InboxDelete("0004-doomed".into()))
        .with(Delta::InboxDelete("0009-never-there".into()));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("commit 2: {e}"));

    let want = ["0001-x", "0002-y/z.w", "0003-aa", "0003-a~"];
    let listed = f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("list inbox: {e}"));
    assert_eq!(inbox_ids(&listed), want, "list_inbox sorted by id");
    assert_eq!(listed.first(), Some(&replaced), "a later put on the same id wins");
    assert_eq!(listed.get(1), Some(&inbox_item("0002-y/z.w")), "payload and created_at round trip");
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert_eq!(snap.inbox.keys().map(String::as_str).collect::<Vec<_>>(), want, "hydrate lists the ids");
    assert!(snap.inbox.values().all(|size| *size > 0), "hydrate knows each item's size");
    // Pages: bounded, in id order, resuming after a given id.
    let page = f.store.list_inbox_page(&t, None, 2).await.unwrap_or_else(|e| panic!("page 1: {e}"));
    assert_eq!(page, listed[..2].to_vec(), "first page");
    let page =
        f.store.list_inbox_page(&t, Some("0002-y/z.w"), 10).await.unwrap_or_else(|e| panic!("page 2: {e}"));
    assert_eq!(page, listed[2..].to_vec(), "page after an id");
    let page =
        f.store.list_inbox_page(&t, Some("0003-a~"), 10).await.unwrap_or_else(|e| panic!("page 3: {e}"));
    assert!(page.is_empty(), "nothing after the last id");
    let one = f.store.get_inbox(&t, "0002-y/z.w").await.unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(one.as_ref(), listed.get(1), "get one item by id");
    assert_eq!(f.store.get_inbox(&t, "0004-doomed").await.unwrap_or_else(|e| panic!("get: {e}")), None);
    assert!(snap.outbox.is_empty() && snap.keys.is_empty(), "inbox items land only in the inbox");

    f.store
        .commit(&t, lease.fence(), &DeltaBatch::new().with(Delta::InboxDelete("0003-aa".into())))
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    let listed = f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("list after delete: {e}"));
    assert_eq!(inbox_ids(&listed), ["0001-x", "0002-y/z.w", "0003-a~"], "exactly one item deleted");
    let mut all = f.store.hydrate_all(2).await.unwrap_or_else(|e| panic!("hydrate_all: {e}"));
    let mut seen = 0;
    while let Some((id, r)) = all.next().await {
        let snap = r.unwrap_or_else(|e| panic!("hydrate_all {id}: {e}"));
        assert_eq!(
            snap.inbox.keys().map(String::as_str).collect::<Vec<_>>(),
            inbox_ids(&listed),
            "hydrate_all sees the inbox"
        );
        seen += 1;
    }
    assert_eq!(seen, 1, "one tenant");
}

/// A value over [`MAX_VALUE_BYTES`](super::model::MAX_VALUE_BYTES) is refused as `Invalid`
/// (rejected: the same batch can never land) on every backend, and nothing of its batch lands;
/// a value just under the limit commits.
pub async fn oversized_value_rejected(f: Fixture) {
    let t = tenant("oversized");
    let lease = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    let mut big = inbox_item("1700000000000-000009");
    big.payload = SecretBytes::new(vec![b'x'; super::model::MAX_VALUE_BYTES + 1]);
    let b = DeltaBatch::new()
        .with(Delta::KeyPut { key: KeyRef::PreKey(7), value: SecretBytes::new(vec![7]) })
        .with(Delta::InboxPut(big));
    match f.store.commit(&t, lease.fence(), &b).await {
        Err(e @ StoreError::Invalid { .. }) => assert!(e.is_rejected() && !e.is_retryable(), "{e}"),
        other => panic!("an oversized value must be Invalid, got {other:?}"),
    }
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert!(snap.keys.is_empty() && snap.inbox.is_empty(), "nothing of a rejected batch lands");
    let mut fits = inbox_item("1700000000000-000010");
    fits.payload = SecretBytes::new(vec![b'y'; 512 * 1024]);
    let b = DeltaBatch::new().with(Delta::InboxPut(fits.clone()));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("a 512 KiB value must fit: {e}"));
    assert_eq!(f.store.get_inbox(&t, &fits.id).await.unwrap_or_else(|e| panic!("get: {e}")), Some(fits));
}

/// An inbox put commits atomically with key changes (an injected mid-batch failure lands
/// nothing, the retry lands all), a stale fence lands no inbox put or delete, logout
/// (`delete_tenant_keys`) keeps the inbox and `delete_tenant` removes it.
pub async fn inbox_atomic_fenced_and_kept_on_logout(f: Fixture) {
    let t = tenant("inbox-life");
    let a = f.store.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire a: {e}"));
    f.store.commit(&t, a.fence(), &full_batch(11)).await.unwrap_or_else(|e| panic!("link: {e}"));
    let before = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));

    // Keys and the message's inbox event in one batch, as the host commits a received message.
    let received = DeltaBatch::new()
        .with(Delta::KeyPut { key: KeyRef::Session("peer.0".into()), value: SecretBytes::new(vec![4; 16]) })
        .with(Delta::InboxPut(inbox_item("1700000000001-000002")))
        .with(Delta::KeyDelete(KeyRef::PreKey(1)))
        .with(Delta::InboxDelete(LINKED_INBOX_ID.into()));
    for after in [1, 2, 3] {
        f.hooks.fail_next_commit_after(after);
        let r = f.store.commit(&t, a.fence(), &received).await;
        assert!(r.is_err(), "armed commit (fail after {after}) must fail, got {r:?}");
        let now = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate after fault: {e}"));
        assert_eq!(now, before, "a failed commit (fail after {after}) left partial writes behind");
    }
    f.store.commit(&t, a.fence(), &received).await.unwrap_or_else(|e| panic!("retry: {e}"));
    let done = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate done: {e}"));
    assert_eq!(done.inbox.keys().map(String::as_str).collect::<Vec<_>>(), ["1700000000001-000002"]);
    assert!(done.keys.contains_key(&KeyRef::Session("peer.0".into())));
    assert!(!done.keys.contains_key(&KeyRef::PreKey(1)));

    // Takeover: the old holder's inbox writes are fenced and land nothing.
    f.clock.advance(TTL + Duration::from_secs(1));
    let b = f.store.acquire_lease(&t, "holder-b", TTL).await.unwrap_or_else(|e| panic!("acquire b: {e}"));
    let stale = DeltaBatch::new()
        .with(Delta::InboxPut(inbox_item("1700000000002-000003")))
        .with(Delta::InboxDelete("1700000000001-000002".into()));
    match f.store.commit(&t, a.fence(), &stale).await {
        Err(StoreError::Fenced { held, presented, .. }) => {
            assert_eq!((held, presented), (b.fence(), a.fence()))
        }
        other => panic!("stale inbox commit must be Fenced, got {other:?}"),
    }
    let listed = f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(inbox_ids(&listed), ["1700000000001-000002"], "a stale inbox put or delete landed");

    // Logout keeps the undelivered events; deleting the tenant removes them.
    f.store.delete_tenant_keys(&t, b.fence()).await.unwrap_or_else(|e| panic!("logout: {e}"));
    let s = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate after logout: {e}"));
    assert!(s.creds.is_none() && s.keys.is_empty(), "logout clears creds and keys");
    assert_eq!(
        s.inbox.keys().map(String::as_str).collect::<Vec<_>>(),
        inbox_ids(&listed),
        "logout keeps the inbox"
    );
    assert_eq!(f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("list: {e}")), listed);
    f.store.delete_tenant(&t, b.fence()).await.unwrap_or_else(|e| panic!("delete tenant: {e}"));
    assert!(
        f.store.list_inbox(&t).await.unwrap_or_else(|e| panic!("list: {e}")).is_empty(),
        "inbox survived delete"
    );
    assert!(f.store.hydrate(&t).await.is_ok_and(|s| s.inbox.is_empty()), "inbox survived delete (hydrate)");
}

/// M3: a runtime status write never touches the operator config (webhook url and secret,
/// pacing), whatever stale copy of it the writer holds; config patches touch only the fields
/// they name, so two writers patching different fields keep both; a patch of an unknown
/// tenant is `NotFound` and creates nothing.
pub async fn status_writes_never_revert_config(f: Fixture) {
    use super::ConfigPatch;
    use super::model::PacingOverride;
    let t = tenant("masked");
    let created = TenantStatus { webhook_url: Some("https://a.example/1".into()), ..TenantStatus::default() };
    f.store.create_tenant(&t, &created).await.unwrap_or_else(|e| panic!("create: {e}"));
    // What a stale actor holds in memory: the config as it was at creation.
    let stale = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    let secret = SecretBytes::new(b"whsec-rotated".to_vec());
    let patch = |p: ConfigPatch| {
        let store = Arc::clone(&f.store);
        let t = t.clone();
        async move { store.write_config(&t, &p).await.unwrap_or_else(|e| panic!("config: {e}")) }
    };
    patch(ConfigPatch {
        webhook_url: Some(Some("https://b.example/2".into())),
        webhook_secret: Some(secret.clone()),
        ..ConfigPatch::default()
    })
    .await;
    let pacing = PacingOverride { per_minute: Some(5), ..PacingOverride::default() };
    patch(ConfigPatch { pacing: Some(Some(pacing)), ..ConfigPatch::default() }).await;
    let runtime = TenantStatus { state: LinkState::Connected, reconnects: 3, ..stale };
    f.store.write_status(&t, &runtime).await.unwrap_or_else(|e| panic!("status: {e}"));
    let got = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    assert_eq!(got.webhook_url.as_deref(), Some("https://b.example/2"), "status write reverted the url");
    assert_eq!(got.webhook_secret, Some(secret.clone()), "status write reverted the rotated secret");
    assert_eq!(got.pacing.as_deref(), Some(&pacing), "a secret patch and a pacing patch must both stay");
    assert_eq!((got.state, got.reconnects), (LinkState::Connected, 3), "runtime fields written");
    // The same through a fenced batch (StatusPut).
    let lease = f.store.acquire_lease(&t, "h", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    let b = DeltaBatch::new().with(Delta::StatusPut(TenantStatus::default()));
    f.store.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("commit: {e}"));
    let got = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    assert_eq!(got.webhook_secret, Some(secret), "a StatusPut delta reverted the secret");
    patch(ConfigPatch { webhook_url: Some(None), ..ConfigPatch::default() }).await;
    let got = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    assert_eq!(got.webhook_url, None, "Some(None) clears");
    assert_eq!(got.pacing.as_deref(), Some(&pacing), "clearing the url keeps pacing");

    let ghost = tenant("ghost");
    let r =
        f.store.write_config(&ghost, &ConfigPatch { deleting: Some(true), ..ConfigPatch::default() }).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "patch of an unknown tenant: {r:?}");
    assert!(!f.store.list_tenants().await.unwrap_or_default().contains(&ghost), "a patch created a tenant");
}

/// L4: tenant creation is atomic: of two concurrent creates exactly one succeeds, the other is
/// `AlreadyExists`, and the stored secret is the winner's.
pub async fn create_tenant_is_exclusive(f: Fixture) {
    let t = tenant("twice");
    let with = |s: &[u8]| TenantStatus {
        webhook_secret: Some(SecretBytes::new(s.to_vec())),
        ..TenantStatus::default()
    };
    let (a, b) = (with(b"secret-a"), with(b"secret-b"));
    let (ra, rb) = futures::join!(f.store.create_tenant(&t, &a), f.store.create_tenant(&t, &b));
    let winner = match (&ra, &rb) {
        (Ok(()), Err(StoreError::AlreadyExists { .. })) => &a,
        (Err(StoreError::AlreadyExists { .. }), Ok(())) => &b,
        other => panic!("exactly one create must win: {other:?}"),
    };
    let got = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    assert_eq!(got.webhook_secret, winner.webhook_secret, "the stored secret is the winner's");
    let r = f.store.create_tenant(&t, &with(b"secret-c")).await;
    assert!(matches!(r, Err(StoreError::AlreadyExists { .. })), "a later create: {r:?}");
    let got = f.store.read_status(&t).await.ok().flatten().unwrap_or_default();
    assert_eq!(got.webhook_secret, winner.webhook_secret, "a refused create wrote nothing");
}

/// M4: once deleted, nothing a straggler writes (an event, a config patch) brings a tenant back.
pub async fn deleted_tenant_is_not_recreated(f: Fixture) {
    use super::ConfigPatch;
    let t = tenant("gone");
    let fence = link(&f, &t, 8).await;
    f.store.delete_tenant(&t, fence).await.unwrap_or_else(|e| panic!("delete: {e}"));
    let ev = StoredEvent { at: 1, kind: "disconnected".into(), detail: String::new() };
    assert!(f.store.append_event(&t, &ev).await.is_err(), "an event for a deleted tenant must fail");
    let p = ConfigPatch { webhook_url: Some(None), ..ConfigPatch::default() };
    assert!(matches!(f.store.write_config(&t, &p).await, Err(StoreError::NotFound { .. })));
    assert!(!f.store.list_tenants().await.unwrap_or_default().contains(&t), "deleted tenant listed again");
    assert_eq!(f.store.read_status(&t).await.ok().flatten(), None);
}

/// M7: a holder never takes over a live lease it does not hold: another holder is refused
/// until the (renewed) lease has expired by the store's clock, and cannot renew, release or
/// commit under it with the holder's epoch.
pub async fn live_lease_never_taken_over(f: Fixture) {
    let t = tenant("live");
    let a = f.store.acquire_lease(&t, "proc-a-1", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    f.clock.advance(TTL - Duration::from_millis(1));
    assert!(
        matches!(f.store.acquire_lease(&t, "proc-a-2", TTL).await, Err(StoreError::LeaseHeld { .. })),
        "a live lease was taken over 1 ms before expiry"
    );
    let a = f.store.renew_lease(&t, &a, TTL).await.unwrap_or_else(|e| panic!("renew: {e}"));
    f.clock.advance(Duration::from_secs(2));
    assert!(f.store.acquire_lease(&t, "proc-a-2", TTL).await.is_err(), "renewed lease taken over");
    let forged = super::Lease { holder: "proc-a-2".into(), ..a.clone() };
    assert!(matches!(f.store.renew_lease(&t, &forged, TTL).await, Err(StoreError::Fenced { .. })));
    assert!(matches!(f.store.release_lease(&t, &forged).await, Err(StoreError::Fenced { .. })));
    let b =
        DeltaBatch::new().with(Delta::KeyPut { key: KeyRef::PreKey(3), value: SecretBytes::new(vec![3]) });
    f.store.commit(&t, a.fence(), &b).await.unwrap_or_else(|e| panic!("holder's commit: {e}"));
    f.clock.advance(TTL);
    let c = f.store.acquire_lease(&t, "proc-a-2", TTL).await.unwrap_or_else(|e| panic!("after expiry: {e}"));
    assert!(c.epoch > a.epoch);
}

/// Opens the same stored data with a given keyring (a restart with other master keys).
pub type Reopen = Box<
    dyn Fn(Arc<super::crypt::Keyring>) -> futures::future::BoxFuture<'static, Arc<dyn Store>> + Send + Sync,
>;

/// H3: master-key rotation. Data sealed under K1 opens after a restart with K2 current and K1
/// old; writes seal under K2 at once (lazy rewrap); `rekey` re-seals everything else under
/// K2, a rerun finds nothing left to do; then K2 alone opens everything, and K1 alone opens
/// nothing. Each store is dropped before the next opens (the embedded file is locked).
pub async fn rekey_rotates_master_key(reopen: Reopen) {
    use super::crypt::{Keyring, MasterKey};
    let (k1, k2) = (MasterKey::generate(), MasterKey::generate());
    let (kid1, kid2) = (k1.key_id(), k2.key_id());
    let t = tenant("rotated");
    let s = reopen(Arc::new(Keyring::new(&k1, &[]))).await;
    s.create_tenant(&t, &sample_status()).await.unwrap_or_else(|e| panic!("create: {e}"));
    let lease = s.acquire_lease(&t, "holder-a", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    s.commit(&t, lease.fence(), &full_batch(9)).await.unwrap_or_else(|e| panic!("commit: {e}"));
    let before = s.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate k1: {e}"));
    drop(s);

    let s = reopen(Arc::new(Keyring::new(&k2, std::slice::from_ref(&k1)))).await;
    let snap = s.hydrate(&t).await.unwrap_or_else(|e| panic!("K1 values must open after rotation: {e}"));
    assert_eq!(snap, before, "rotation changed what hydrates");
    let fresh = SecretBytes::new(vec![0x42; 33]);
    let b = DeltaBatch::new().with(Delta::KeyPut { key: KeyRef::PreKey(1), value: fresh.clone() });
    s.commit(&t, lease.fence(), &b).await.unwrap_or_else(|e| panic!("commit k2: {e}"));
    let r = s.rekey(&t).await.unwrap_or_else(|e| panic!("rekey: {e}"));
    assert!(r.resealed > 0 && r.skipped == 0, "{r:?}");
    assert!(r.by_key_id.get(&kid1).is_some_and(|n| *n == r.resealed), "K1 values re-sealed: {r:?}");
    assert_eq!(r.by_key_id.get(&kid2), Some(&1), "the new write was sealed under K2 at once: {r:?}");
    let again = s.rekey(&t).await.unwrap_or_else(|e| panic!("rekey rerun: {e}"));
    assert_eq!((again.resealed, again.skipped), (0, 0), "a rerun has nothing left: {again:?}");
    assert_eq!(again.by_key_id.keys().collect::<Vec<_>>(), vec![&kid2], "{again:?}");
    assert_eq!(again.values, r.values);
    drop(s);

    let s = reopen(Arc::new(Keyring::new(&k2, &[]))).await;
    let mut want = before.clone();
    want.keys.insert(KeyRef::PreKey(1), fresh);
    let got = s.hydrate(&t).await.unwrap_or_else(|e| panic!("K2 alone must open everything: {e}"));
    assert_eq!(got, want);
    assert_eq!(s.read_status(&t).await.ok().flatten(), Some(sample_status()));
    drop(s);
    let s = reopen(Arc::new(Keyring::new(&k1, &[]))).await;
    assert!(matches!(s.hydrate(&t).await, Err(StoreError::Corrupt { .. })), "K1 alone must open nothing");
}

/// L4: the fence compares holder and epoch. A tenant deleted and re-created starts its epochs
/// again, so a stale process of the earlier incarnation can present the same epoch number as
/// the new holder: its commit is still `Fenced` and nothing of it lands.
pub async fn fence_compares_holder_and_epoch(f: Fixture) {
    let t = tenant("reborn");
    f.store.create_tenant(&t, &sample_status()).await.unwrap_or_else(|e| panic!("create: {e}"));
    let old = f.store.acquire_lease(&t, "proc-old", TTL).await.unwrap_or_else(|e| panic!("acquire: {e}"));
    f.store.delete_tenant(&t, old.fence()).await.unwrap_or_else(|e| panic!("delete: {e}"));
    f.store.create_tenant(&t, &sample_status()).await.unwrap_or_else(|e| panic!("re-create: {e}"));
    let new = f.store.acquire_lease(&t, "proc-new", TTL).await.unwrap_or_else(|e| panic!("acquire new: {e}"));
    let stale =
        DeltaBatch::new().with(Delta::KeyPut { key: KeyRef::PreKey(9), value: SecretBytes::new(vec![9]) });
    let r = f.store.commit(&t, old.fence(), &stale).await;
    assert!(
        matches!(r, Err(StoreError::Fenced { .. })),
        "old incarnation's epoch {} passed the fence: {r:?}",
        old.epoch
    );
    let snap = f.store.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate: {e}"));
    assert!(!snap.keys.contains_key(&KeyRef::PreKey(9)), "the stale write landed");
    f.store.commit(&t, new.fence(), &stale).await.unwrap_or_else(|e| panic!("new holder's commit: {e}"));
}
