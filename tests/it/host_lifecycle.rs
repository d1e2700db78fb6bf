//! The host against the in-process simulator: cold start without QR, persist-before-send,
//! two hosts on one store, 401, 440, store outage, status reads never connect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use staylinked::host::state::TenantState;
use staylinked::sim::{Fault, Server};
use staylinked::store::model::LinkState;
use staylinked::store::testing::{FaultyStore, RecordingStore, StoreOp};
use staylinked::store::{
    BackendKind, Delta, DeltaBatch, Lease, OutboxItem, Store, StoreError, StoredEvent, TenantSnapshot,
    TenantStatus,
};
use staylinked::types::{FencingToken, TenantId};

use crate::host_util::*;

/// Invariant 3 + cold start: N linked tenants come back connected after a restart with zero new
/// pairings, one device per phone, and /readyz reports the progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_reconnects_all_without_qr() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    let tenants = link_n(&host, &sim, "cold", 4).await;
    host.shutdown().await;
    assert_eq!(stats(&sim).await.pairings, 4);

    let host = start(&sim, &store, "h1").await;
    for (id, _) in &tenants {
        let v = wait_state(&host, id, TenantState::Connected).await;
        assert!(v.qr.is_none());
    }
    let ready = poll("readyz", || async {
        let r = http(host.api_addr(), "GET", "/readyz", None, &[]).await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!((ready["hydrated"].as_u64(), ready["failed"].as_u64()), (Some(4), Some(0)));
    assert_eq!(ready["connected"].as_u64(), Some(4));
    let s = stats(&sim).await;
    assert_eq!((s.pairings, s.replaced), (4, 0), "{s:?}");
    for (_, ph) in &tenants {
        assert_eq!(staylinked::demo::devices_on_phone(&sim, ph).await.unwrap(), 1);
    }
    host.shutdown().await;
}

/// A store wrapper that, when pairing creds are committed, records how many pairings the
/// simulator had completed at that moment (the pairing completes only when our
/// pair-device-sign reply arrives).
struct Probe {
    inner: Arc<dyn Store>,
    sim: Arc<Server>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

#[async_trait::async_trait]
impl Store for Probe {
    fn kind(&self) -> BackendKind {
        BackendKind::Wrapper
    }
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.inner.list_tenants().await
    }
    async fn hydrate(&self, t: &TenantId) -> Result<TenantSnapshot, StoreError> {
        self.inner.hydrate(t).await
    }
    async fn commit(&self, t: &TenantId, f: FencingToken, b: &DeltaBatch) -> Result<(), StoreError> {
        if b.deltas.iter().any(|d| matches!(d, Delta::CredsPut(c) if c.me.is_some())) {
            let n = self.sim.with_sim(|s, _| s.stats().pairings).await.unwrap();
            self.seen.lock().unwrap().push(n);
        }
        self.inner.commit(t, f, b).await
    }
    async fn acquire_lease(&self, t: &TenantId, h: &str, ttl: Duration) -> Result<Lease, StoreError> {
        self.inner.acquire_lease(t, h, ttl).await
    }
    async fn renew_lease(&self, t: &TenantId, l: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        self.inner.renew_lease(t, l, ttl).await
    }
    async fn release_lease(&self, t: &TenantId, l: &Lease) -> Result<(), StoreError> {
        self.inner.release_lease(t, l).await
    }
    async fn delete_tenant_keys(&self, t: &TenantId, f: FencingToken) -> Result<(), StoreError> {
        self.inner.delete_tenant_keys(t, f).await
    }
    async fn delete_tenant(&self, t: &TenantId, f: FencingToken) -> Result<(), StoreError> {
        self.inner.delete_tenant(t, f).await
    }
    async fn read_status(&self, t: &TenantId) -> Result<Option<TenantStatus>, StoreError> {
        self.inner.read_status(t).await
    }
    async fn write_status(&self, t: &TenantId, s: &TenantStatus) -> Result<(), StoreError> {
        self.inner.write_status(t, s).await
    }
    async fn create_tenant(&self, t: &TenantId, s: &TenantStatus) -> Result<(), StoreError> {
        self.inner.create_tenant(t, s).await
    }
    async fn write_config(&self, t: &TenantId, p: &staylinked::store::ConfigPatch) -> Result<(), StoreError> {
        self.inner.write_config(t, p).await
    }
    async fn rekey(&self, t: &TenantId) -> Result<staylinked::store::RekeyReport, StoreError> {
        self.inner.rekey(t).await
    }
    async fn append_event(&self, t: &TenantId, e: &StoredEvent) -> Result<(), StoreError> {
        self.inner.append_event(t, e).await
    }
    async fn list_events(&self, t: &TenantId) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.list_events(t).await
    }
    async fn list_outbox(&self, t: &TenantId) -> Result<Vec<OutboxItem>, StoreError> {
        self.inner.list_outbox(t).await
    }
    async fn list_inbox(&self, t: &TenantId) -> Result<Vec<staylinked::store::InboxItem>, StoreError> {
        self.inner.list_inbox(t).await
    }
}

/// Invariant 1: the paired creds are committed (fenced, after the lease was acquired) before
/// the pair-device-sign reply leaves: at commit time the simulator has not completed the
/// pairing; afterwards it has. The recording store shows acquire → creds commit → connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_before_send_order() {
    let sim = Arc::new(sim().await);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::new(RecordingStore::new(Arc::new(Probe {
        inner: mem_store(),
        sim: Arc::clone(&sim),
        seen: Arc::clone(&seen),
    })));
    let store: Arc<dyn Store> = rec.clone();
    let host = start(&sim, &store, "h1").await;
    link_n(&host, &sim, "order", 1).await;
    // The first paired-creds commit is the pairing one; later ones (pre-key counter) follow login.
    assert_eq!(
        seen.lock().unwrap().first(),
        Some(&0),
        "creds must be durable before the pairing reply is sent"
    );
    assert_eq!(stats(&sim).await.pairings, 1);
    // The view turns `connected` just before the status doc is written: wait for the write.
    let is_connected = |o: &StoreOp| matches!(o, StoreOp::WriteStatus { status, .. } if status.state == LinkState::Connected);
    let ops = poll("connected status write", || {
        let ops = rec.ops();
        async move { ops.iter().any(is_connected).then_some(ops) }
    })
    .await;
    let pos = |f: &dyn Fn(&StoreOp) -> bool| ops.iter().position(f).unwrap();
    let acquire = pos(&|o| matches!(o, StoreOp::Acquire { epoch: Some(_), .. }));
    let creds = pos(
        &|o| matches!(o, StoreOp::Commit { ok: true, batch, .. } if batch.deltas.iter().any(|d| matches!(d, Delta::CredsPut(c) if c.me.is_some()))),
    );
    let connected = pos(&is_connected);
    assert!(acquire < creds && creds < connected, "acquire {acquire}, creds {creds}, connected {connected}");
    host.shutdown().await;
}

/// Invariant 2: a second host on the same store connects nothing while the first holds the
/// leases (state `held_elsewhere` with the holder shown), takes over after the first shuts
/// down, and the simulator never sees a replaced connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_one_store_connect_each_tenant_once() {
    let sim = sim().await;
    let store = mem_store();
    let a = start(&sim, &store, "host-a").await;
    let tenants = link_n(&a, &sim, "pair", 3).await;
    let b = start(&sim, &store, "host-b").await;
    for (id, _) in &tenants {
        let v = wait_state(&b, id, TenantState::HeldElsewhere).await;
        assert_eq!(v.lease_holder.as_deref(), Some("host-a"));
        assert_eq!(a.registry().get(id).unwrap().view.borrow().state, TenantState::Connected);
    }
    a.shutdown().await;
    for (id, _) in &tenants {
        let v = wait_state(&b, id, TenantState::Connected).await;
        assert_eq!(v.lease_holder.as_deref(), Some("host-b"));
    }
    let s = stats(&sim).await;
    assert_eq!((s.replaced, s.pairings), (0, 3), "{s:?}");
    b.shutdown().await;
}

/// Invariant 3 + policy: 401 (device removed on the phone) → `logged_out`, keys cleared, no QR
/// and no new pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_removed_401_is_logged_out_without_qr() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    let t = link_n(&host, &sim, "gone", 1).await.remove(0);
    let ph = t.1.clone();
    sim.with_sim(move |s, now| s.remove_device(now, &ph, "1")).await.unwrap().unwrap();
    let v = wait_state(&host, &t.0, TenantState::LoggedOut).await;
    assert!(v.qr.is_none() && v.me.is_none());
    assert_eq!(v.last_disconnect.as_ref().map(|d| d.code), Some(401));
    assert!(
        v.devices_registered.iter().any(|d| d.ends_with(":1@s.whatsapp.net")),
        "history keeps the device"
    );
    assert!(store.hydrate(&t.0).await.unwrap().creds.is_none(), "keys cleared");
    let r = http(host.api_addr(), "GET", &format!("/v1/tenants/{}/qr", t.0), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "qr_not_available"));
    assert_eq!(stats(&sim).await.pairings, 1);
    host.shutdown().await;
}

/// Invariant 4: an injected 440 puts the tenant in a long cooldown (minutes), never a quick
/// reconnect loop; the lease is still ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_440_cools_down_instead_of_looping() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    let t = link_n(&host, &sim, "conflict", 1).await.remove(0);
    let logins = stats(&sim).await.logins;
    let jid = format!("{}:1@s.whatsapp.net", t.1);
    sim.with_sim(move |s, now| s.inject_fault(now, &jid, Fault::Conflict)).await.unwrap().unwrap();
    let v = wait_state(&host, &t.0, TenantState::Backoff).await;
    assert_eq!(v.last_disconnect.as_ref().map(|d| d.code), Some(440));
    assert!(v.retry_in_ms.unwrap_or(0) >= 300_000, "cooldown must be long: {v:?}");
    assert_eq!(v.lease_holder.as_deref(), Some("h1"));
    assert_eq!(stats(&sim).await.logins, logins, "no reconnect after 440");
    host.shutdown().await;
}

/// Invariant 1 under a store outage: while commits fail, the pairing reply is never sent (the
/// simulator completes no pairing) and the tenant stays blocked; once the store is back the
/// commit lands, the reply goes out and the tenant connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_blocks_acks_and_recovers() {
    let sim = sim().await;
    let faulty = Arc::new(FaultyStore::new(mem_store()));
    let store: Arc<dyn Store> = faulty.clone();
    let host = start(&sim, &store, "h1").await;
    let id = tid("outage");
    let ph = phone(7);
    host.registry().create(id.clone(), None).await.unwrap();
    let p = ph.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();
    staylinked::demo::request_link(host.registry(), &id, staylinked::host::state::LinkMethod::Qr)
        .await
        .unwrap();
    let v = staylinked::demo::wait_view(host.registry(), &id, "qr", WAIT, |v| v.qr.is_some()).await.unwrap();
    faulty.set_unreachable(true);
    let qr = v.qr.unwrap().qr;
    let p = ph.clone();
    sim.with_sim(move |s, now| s.scan(now, &p, &qr)).await.unwrap().unwrap();
    staylinked::demo::wait_view(host.registry(), &id, "blocked commits", WAIT, |v| v.commit_failures >= 3)
        .await
        .unwrap();
    assert_eq!(stats(&sim).await.pairings, 0, "nothing acknowledged while the store is down");
    assert_ne!(host.registry().get(&id).unwrap().view.borrow().state, TenantState::Connected);
    faulty.set_unreachable(false);
    wait_state(&host, &id, TenantState::Connected).await;
    assert_eq!(stats(&sim).await.pairings, 1);
    assert!(store.hydrate(&id).await.unwrap().creds.is_some_and(|c| c.me.is_some()));
    host.shutdown().await;
}

/// Invariant 4: health checks and status reads never start a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_status_reads_never_connect() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    host.registry().create(tid("idle"), None).await.unwrap();
    for _ in 0..10 {
        for path in ["/healthz", "/readyz", "/v1/tenants", "/v1/tenants/idle", "/metrics"] {
            let r = http(host.api_addr(), "GET", path, None, &[]).await;
            assert!(r.status == 200 || (path == "/readyz" && r.status == 503), "{path}: {}", r.status);
        }
    }
    assert_eq!(stats(&sim).await.connections, 0);
    assert_eq!(host.registry().get(&tid("idle")).unwrap().view.borrow().state, TenantState::Unlinked);
    host.shutdown().await;
}

/// Invariant 2: when another holder takes the lease over (ours expired in store time), the
/// tenant closes its socket at once, shows `held_elsewhere` with the new holder, and the lease
/// loss is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_taken_over_closes_the_socket() {
    use staylinked::store::ManualClock;
    use staylinked::store::crypt::{Keyring, MasterKey};
    use staylinked::store::memory::MemoryStore;

    let sim = sim().await;
    let clock = ManualClock::new(staylinked::host::clock::unix_ms());
    let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(ring, Arc::new(clock.clone())));
    let mut cfg = config(&sim, "h1");
    cfg.lease_ttl = Duration::from_millis(600);
    let host = staylinked::host::Host::start(cfg, Arc::clone(&store)).await.unwrap();
    let (id, ph) = link_n(&host, &sim, "steal", 1).await.remove(0);
    let mut stolen = false;
    for _ in 0..50 {
        clock.advance(Duration::from_secs(5));
        if store.acquire_lease(&id, "intruder", Duration::from_secs(3600)).await.is_ok() {
            stolen = true;
            break;
        }
    }
    assert!(stolen, "the expired lease could be taken over");
    staylinked::demo::wait_view(host.registry(), &id, "held by intruder", WAIT, |v| {
        v.state == TenantState::HeldElsewhere && v.lease_holder.as_deref() == Some("intruder")
    })
    .await
    .unwrap();
    poll("socket closed", || {
        let ph = ph.clone();
        let sim = &sim;
        async move {
            let d = sim.with_sim(move |s, _| s.devices(&ph)).await.unwrap().unwrap();
            d.iter().all(|d| !d.online).then_some(())
        }
    })
    .await;
    let m = http(host.api_addr(), "GET", "/metrics", None, &[]).await;
    let m = String::from_utf8_lossy(&m.body).to_string();
    assert!(m.contains("staylinked_lease_losses_total 1"), "{m}");
    assert_eq!(stats(&sim).await.replaced, 0);
    host.shutdown().await;
}

/// Invariant 4 watchdog: a socket that stops answering pings is treated as dead (408) and
/// replaced by a new connection without QR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_socket_is_replaced() {
    let sim = sim().await;
    let store = mem_store();
    let mut cfg = config(&sim, "h1");
    cfg.keepalive = Duration::from_secs(1);
    let host = staylinked::host::Host::start(cfg, Arc::clone(&store)).await.unwrap();
    let (id, ph) = link_n(&host, &sim, "mute", 1).await.remove(0);
    let jid = format!("{ph}:1@s.whatsapp.net");
    sim.with_sim(move |s, now| s.inject_fault(now, &jid, Fault::MutePongs)).await.unwrap().unwrap();
    let v = staylinked::demo::wait_view(host.registry(), &id, "408 then connected", WAIT, |v| {
        v.state == TenantState::Connected
            && v.reconnects >= 1
            && v.last_disconnect.as_ref().is_some_and(|d| d.code == 408)
    })
    .await
    .unwrap();
    assert!(v.reconnects >= 1 && v.qr.is_none());
    assert_eq!(stats(&sim).await.pairings, 1);
    host.shutdown().await;
}

/// Cold start with one tenant whose stored creds do not decrypt: that tenant is `error` with the
/// reason and is never re-paired; the others reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_tenant_is_error_and_others_proceed() {
    use staylinked::store::TestHooks as _;
    use staylinked::store::crypt::{Keyring, MasterKey};
    use staylinked::store::memory::MemoryStore;

    let sim = sim().await;
    let mem = Arc::new(MemoryStore::new(
        Arc::new(Keyring::new(&MasterKey::generate(), &[])),
        Arc::new(staylinked::store::SystemClock),
    ));
    let store: Arc<dyn Store> = mem.clone();
    let host = start(&sim, &store, "h1").await;
    let tenants = link_n(&host, &sim, "bad", 2).await;
    host.shutdown().await;
    mem.corrupt_creds(&tenants[0].0).await.unwrap();
    let host = start(&sim, &store, "h1").await;
    wait_state(&host, &tenants[1].0, TenantState::Connected).await;
    let v = wait_state(&host, &tenants[0].0, TenantState::Error).await;
    assert!(v.error.as_deref().is_some_and(|e| e.contains("failed to load")), "{v:?}");
    assert!(v.qr.is_none());
    let ready = poll("readyz", || async {
        let r = http(host.api_addr(), "GET", "/readyz", None, &[]).await;
        (r.status == 200).then(|| r.json())
    })
    .await;
    assert_eq!((ready["hydrated"].as_u64(), ready["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats(&sim).await.pairings, 2, "nothing re-paired");
    host.shutdown().await;
}

/// Invariants 2 and 3 on the Firestore emulator: two hosts on one Firestore project connect
/// each tenant exactly once (the second takes over after the first shuts down), and a cold
/// start reconnects everything without new pairings. Skips loudly without an emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firestore_two_hosts_and_cold_start() {
    use staylinked::store::crypt::{Keyring, MasterKey};
    use staylinked::store::firestore::{FirestoreOptions, FirestoreStore};

    if crate::store_conformance::emulator().is_none() {
        return;
    }
    let sim = sim().await;
    let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    let fs = FirestoreStore::connect(
        FirestoreOptions::new(crate::store_conformance::unique_project()),
        ring,
        Arc::new(staylinked::store::SystemClock),
    )
    .await
    .unwrap();
    let store: Arc<dyn Store> = Arc::new(fs);
    let a = start(&sim, &store, "fs-a").await;
    let tenants = link_n(&a, &sim, "fs", 2).await;
    let b = start(&sim, &store, "fs-b").await;
    for (id, _) in &tenants {
        let v = wait_state(&b, id, TenantState::HeldElsewhere).await;
        assert_eq!(v.lease_holder.as_deref(), Some("fs-a"));
    }
    a.shutdown().await;
    for (id, _) in &tenants {
        wait_state(&b, id, TenantState::Connected).await;
    }
    b.shutdown().await;
    let c = start(&sim, &store, "fs-c").await;
    for (id, _) in &tenants {
        wait_state(&c, id, TenantState::Connected).await;
    }
    let s = stats(&sim).await;
    assert_eq!((s.pairings, s.replaced), (2, 0), "{s:?}");
    c.shutdown().await;
}

/// Invariant 4: 503 from the server → backoff with jitter, then a reconnect without QR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_503_backs_off_and_reconnects() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    let (id, ph) = link_n(&host, &sim, "flaky", 1).await.remove(0);
    let jid = format!("{ph}:1@s.whatsapp.net");
    sim.with_sim(move |s, now| s.inject_fault(now, &jid, Fault::Unavailable)).await.unwrap().unwrap();
    let v = staylinked::demo::wait_view(host.registry(), &id, "reconnected after 503", WAIT, |v| {
        v.state == TenantState::Connected && v.reconnects >= 1
    })
    .await
    .unwrap();
    assert_eq!(v.last_disconnect.as_ref().map(|d| d.code), Some(503));
    assert_eq!(stats(&sim).await.pairings, 1);
    host.shutdown().await;
}

/// Invariant 4: 403 (banned) → state `banned`, no reconnect; a restart keeps it banned without
/// connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_403_stops() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "h1").await;
    let (id, ph) = link_n(&host, &sim, "ban", 1).await.remove(0);
    let jid = format!("{ph}:1@s.whatsapp.net");
    sim.with_sim(move |s, now| s.inject_fault(now, &jid, Fault::Ban)).await.unwrap().unwrap();
    let v = wait_state(&host, &id, TenantState::Banned).await;
    assert!(v.qr.is_none());
    host.shutdown().await;
    let connections = stats(&sim).await.connections;
    let host = start(&sim, &store, "h1").await;
    let v = wait_state(&host, &id, TenantState::Banned).await;
    assert!(v.lease_epoch.is_none());
    let ready = poll("readyz", || async {
        let r = http(host.api_addr(), "GET", "/readyz", None, &[]).await;
        (r.status == 200).then_some(())
    });
    ready.await;
    assert_eq!(stats(&sim).await.connections, connections, "a banned tenant is not reconnected");
    host.shutdown().await;
}
