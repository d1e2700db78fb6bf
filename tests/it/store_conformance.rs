//! Runs every `store::conformance` check against memory, embedded (temp dir) and Firestore
//! (the emulator at `FIRESTORE_EMULATOR_HOST`; each test gets its own project id, so tests run
//! in parallel safely). Without an emulator the Firestore tests skip loudly, except under
//! `CI=true`, where they fail.

use std::sync::Arc;

use staylinked::store::conformance::{self, Fixture};
use staylinked::store::crypt::{Keyring, MasterKey};
use staylinked::store::embedded::EmbeddedStore;
use staylinked::store::firestore::{FirestoreOptions, FirestoreStore, LeaseClock};
use staylinked::store::memory::MemoryStore;
use staylinked::store::{ManualClock, Store, StoreClock, StoreError, SystemClock, TestHooks};

const T0: u64 = 1_700_000_000_000;

fn ring() -> Arc<Keyring> {
    Arc::new(Keyring::new(&MasterKey::generate(), &[]))
}

async fn memory() -> Option<Fixture> {
    let clock = ManualClock::new(T0);
    let s = MemoryStore::new(ring(), Arc::new(clock.clone()));
    let down = MemoryStore::new(ring(), Arc::new(clock.clone()));
    down.set_unreachable(true);
    Some(Fixture {
        store: Arc::new(s.clone()),
        hooks: Arc::new(s),
        clock,
        unreachable: Ok(Arc::new(down) as Arc<dyn Store>),
        guard: None,
    })
}

async fn embedded() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let c: Arc<dyn StoreClock> = Arc::new(clock.clone());
    let s = EmbeddedStore::open(&dir.path().join("db/staylinked.redb"), ring(), c.clone()).await.unwrap();
    // A path below a regular file can never be opened.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let unreachable =
        EmbeddedStore::open(&blocker.join("x.redb"), ring(), c).await.map(|s| Arc::new(s) as Arc<dyn Store>);
    Some(Fixture {
        store: Arc::new(s.clone()),
        hooks: Arc::new(s),
        clock,
        unreachable,
        guard: Some(Box::new(dir)),
    })
}

/// The emulator address, or `None` (loud skip) — but a failure under CI.
pub(crate) fn emulator() -> Option<String> {
    match std::env::var("FIRESTORE_EMULATOR_HOST") {
        Ok(h) if !h.is_empty() => Some(h),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but FIRESTORE_EMULATOR_HOST is unset: start scripts/firestore-emulator.sh")
        }
        _ => {
            eprintln!(
                "\n!!! SKIPPING Firestore conformance: FIRESTORE_EMULATOR_HOST is unset.\n!!! Run `eval \"$(scripts/firestore-emulator.sh start)\"` first.\n"
            );
            None
        }
    }
}

/// A unique project id per test, so parallel tests never see each other's documents.
pub(crate) fn unique_project() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("sl-test-{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), rand_suffix())
}

fn rand_suffix() -> u32 {
    let k = MasterKey::generate();
    u32::from_str_radix(&k.key_id()[..8], 16).unwrap()
}

async fn firestore() -> Option<Fixture> {
    emulator()?;
    let clock = ManualClock::new(T0);
    let c: Arc<dyn StoreClock> = Arc::new(clock.clone());
    // The checks expire leases by moving the manual clock; server time cannot be moved, so the
    // lease clock is the store's here (server time is tested by `firestore_lease_clock_*`).
    let opts = FirestoreOptions::new(unique_project()).with_lease_clock(LeaseClock::Store);
    let s = FirestoreStore::connect(opts, ring(), c.clone()).await.unwrap();
    let unreachable = FirestoreStore::connect(
        FirestoreOptions::new(unique_project()).with_api_url("http://127.0.0.1:1"),
        ring(),
        c,
    )
    .await
    .map(|s| Arc::new(s) as Arc<dyn Store>);
    let hooks: Arc<dyn TestHooks> = Arc::new(s.clone());
    Some(Fixture { store: Arc::new(s), hooks, clock, unreachable, guard: None })
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod memory_backend {
            $(
                /// Conformance check on the memory backend.
                #[tokio::test]
                async fn $check() {
                    if let Some(f) = super::memory().await { super::conformance::$check(f).await }
                }
            )*
        }
        mod embedded_backend {
            $(
                /// Conformance check on the embedded (redb) backend.
                #[tokio::test]
                async fn $check() {
                    if let Some(f) = super::embedded().await { super::conformance::$check(f).await }
                }
            )*
        }
        mod firestore_backend {
            $(
                /// Conformance check on the Firestore backend, through the real emulator.
                #[tokio::test]
                async fn $check() {
                    if let Some(f) = super::firestore().await { super::conformance::$check(f).await }
                }
            )*
        }
    };
}

conformance!(
    hydrate_returns_committed,
    key_doc_ids_hide_addresses,
    commit_is_atomic,
    stale_fence_rejected,
    lease_expiry_and_takeover,
    release_lets_other_acquire,
    deleted_keys_stay_deleted,
    delete_tenant_removes_everything,
    corrupt_value_isolated,
    moved_value_fails,
    unreachable_is_unavailable,
    status_events_outbox,
    hydrate_all_streams_everyone,
    inbox_round_trip_in_id_order,
    inbox_atomic_fenced_and_kept_on_logout,
    oversized_value_rejected,
    status_writes_never_revert_config,
    create_tenant_is_exclusive,
    deleted_tenant_is_not_recreated,
    live_lease_never_taken_over,
    fence_compares_holder_and_epoch,
);

/// H3 on the memory backend: rotation, lazy rewrap and `rekey`.
#[tokio::test]
async fn memory_backend_rekey_rotates_master_key() {
    let base = MemoryStore::new(ring(), Arc::new(ManualClock::new(T0)));
    conformance::rekey_rotates_master_key(Box::new(move |ring| {
        let s: Arc<dyn Store> = Arc::new(base.with_ring(ring));
        Box::pin(async move { s })
    }))
    .await;
}

/// H3 on the embedded backend (each reopen reopens the redb file).
#[tokio::test]
async fn embedded_backend_rekey_rotates_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rot.redb");
    conformance::rekey_rotates_master_key(Box::new(move |ring| {
        let path = path.clone();
        Box::pin(async move {
            let c: Arc<dyn StoreClock> = Arc::new(ManualClock::new(T0));
            Arc::new(EmbeddedStore::open(&path, ring, c).await.unwrap()) as Arc<dyn Store>
        })
    }))
    .await;
}

/// H3 on Firestore through the emulator.
#[tokio::test]
async fn firestore_backend_rekey_rotates_master_key() {
    if emulator().is_none() {
        return;
    }
    let project = unique_project();
    conformance::rekey_rotates_master_key(Box::new(move |ring| {
        let project = project.clone();
        Box::pin(async move {
            let c: Arc<dyn StoreClock> = Arc::new(ManualClock::new(T0));
            Arc::new(FirestoreStore::connect(FirestoreOptions::new(project), ring, c).await.unwrap())
                as Arc<dyn Store>
        })
    }))
    .await;
}

/// Firestore `hydrate_all` with windows of 2 tenants and 3-document pages (several windows and
/// pages, a corrupt tenant in the middle, a tenant with only a status doc) yields for every tenant
/// exactly what `hydrate` yields, keeps the corrupt one to itself and never falls back.
#[tokio::test]
async fn firestore_windowed_hydrate_all_matches_hydrate() {
    use futures::StreamExt as _;
    use staylinked::store::conformance::{TTL, sample_creds, sample_keys, tenant};
    use staylinked::store::{
        Delta, DeltaBatch, InboxItem, KeyRef, OutboxItem, SecretBytes, StoreError, TenantStatus,
    };

    if emulator().is_none() {
        return;
    }
    let clock: Arc<dyn StoreClock> = Arc::new(ManualClock::new(T0));
    // Pages of 3 documents: several pages per window and per tenant, all at one read time.
    let opts = FirestoreOptions::new(unique_project()).with_hydrate_window(2).with_hydrate_page(3);
    let s = FirestoreStore::connect(opts, ring(), clock).await.unwrap();
    let mut want = Vec::new();
    for i in 0..7u8 {
        let t = tenant(&format!("win-{i}"));
        let lease = s.acquire_lease(&t, "h", TTL).await.unwrap();
        let mut b = DeltaBatch::new().with(Delta::CredsPut(Box::new(sample_creds(i))));
        for (key, value) in sample_keys(i) {
            b.push(Delta::KeyPut { key, value });
        }
        b.push(Delta::OutboxPut(OutboxItem {
            id: format!("m{i}"),
            created_at: u64::from(i),
            payload: SecretBytes::new(vec![i; 3]),
        }));
        for n in 0..=u64::from(i % 3) {
            b.push(Delta::InboxPut(InboxItem {
                id: format!("1700000000000-{n:06}"),
                created_at: n,
                payload: SecretBytes::new(vec![i, 0xee]),
            }));
        }
        s.commit(&t, lease.fence(), &b).await.unwrap();
        want.push(t);
    }
    let bare = tenant("win-9-bare");
    s.create_tenant(&bare, &TenantStatus::default()).await.unwrap();
    want.push(bare.clone());
    let bad = tenant("win-3");
    s.corrupt_key(&bad, &KeyRef::PreKey(1)).await.unwrap();

    let mut got = Vec::new();
    let mut stream = s.hydrate_all(3).await.unwrap();
    while let Some((t, r)) = stream.next().await {
        if t == bad {
            assert!(matches!(r, Err(StoreError::Corrupt { .. })), "corrupt tenant is Corrupt: {r:?}");
        } else {
            let snap = r.unwrap_or_else(|e| panic!("hydrate_all {t}: {e}"));
            let single = s.hydrate(&t).await.unwrap_or_else(|e| panic!("hydrate {t}: {e}"));
            assert_eq!(snap, single, "hydrate_all and hydrate agree for {t}");
            if t == bare {
                assert!(snap.creds.is_none() && snap.keys.is_empty() && snap.status.is_some());
            } else {
                assert_eq!(snap.keys.len(), sample_keys(0).len(), "{t} keys");
                assert_eq!(snap.outbox.len(), 1, "{t} outbox");
                assert!(!snap.inbox.is_empty(), "{t} inbox");
            }
        }
        got.push(t);
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every tenant exactly once");
    assert_eq!(s.hydrate_fallbacks(), 0, "collection-group windows served every tenant");
}

/// M7: on Firestore, lease expiry is judged by the server's clock, not the instance's. Two
/// instances on one database, one wall clock an hour fast and one an hour slow: the fast one
/// cannot take over the slow one's live lease, and the slow one sees the fast one's lease
/// expire after its TTL (not an hour later).
#[tokio::test]
async fn firestore_lease_clock_ignores_local_skew() {
    use std::time::Duration;
    if emulator().is_none() {
        return;
    }
    const HOUR: u64 = 3_600_000;
    let real = SystemClock.now_ms();
    let project = unique_project();
    let ring = ring();
    let open = |clock: ManualClock| {
        let (project, ring) = (project.clone(), ring.clone());
        async move {
            FirestoreStore::connect(FirestoreOptions::new(project), ring, Arc::new(clock)).await.unwrap()
        }
    };
    let fast = open(ManualClock::new(real + HOUR)).await;
    let slow = open(ManualClock::new(real - HOUR)).await;
    let t = conformance::tenant("skewed");
    let ttl = Duration::from_secs(30);

    // A live lease written by the slow instance stays live for the fast one.
    let a = slow.acquire_lease(&t, "slow-1", ttl).await.unwrap();
    assert!(
        a.expires_at.abs_diff(real + 30_000) < HOUR / 4,
        "expiry {} is not on the server's clock (real now {real})",
        a.expires_at
    );
    match fast.acquire_lease(&t, "fast-1", ttl).await {
        Err(StoreError::LeaseHeld { holder, .. }) => assert_eq!(holder, "slow-1"),
        other => panic!("a clock an hour fast took over a live lease: {other:?}"),
    }
    let a = slow.renew_lease(&t, &a, ttl).await.unwrap();
    assert!(fast.acquire_lease(&t, "fast-1", ttl).await.is_err(), "renewed lease taken over");
    slow.release_lease(&t, &a).await.unwrap();

    // An expired lease written by the fast instance is recognised by the slow one after the
    // TTL (polled with a deadline far below the hour of skew).
    let short = Duration::from_secs(1);
    let f = fast.acquire_lease(&t, "fast-1", short).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let s = loop {
        match slow.acquire_lease(&t, "slow-2", ttl).await {
            Ok(l) => break l,
            Err(StoreError::LeaseHeld { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the slow instance never saw the fast one's lease expire: {e}"),
        }
    };
    assert!(s.epoch > f.epoch, "takeover must bump the epoch");
}
