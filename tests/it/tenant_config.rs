//! M3 / L4 with two hosts on one store: tenant creation is atomic (two concurrent creates → one
//! tenant, one secret, the other answered 409), and one instance's status or config write never
//! reverts what another instance's `PATCH` changed (webhook URL, rotated secret, pacing).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use staylinked::store::{
    BackendKind, ConfigPatch, DeltaBatch, Lease, OutboxItem, RekeyReport, Store, StoreError, StoredEvent,
    TenantSnapshot, TenantStatus,
};
use staylinked::types::{FencingToken, TenantId};

use crate::host_util::*;

/// A store whose `read_status` waits (while armed) until two callers are inside it, so two
/// instances' "does it exist?" checks both run before either creates: the race of L4, made
/// deterministic.
struct RaceStore {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
    barrier: tokio::sync::Barrier,
}

impl std::fmt::Debug for RaceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaceStore")
    }
}

#[async_trait::async_trait]
impl Store for RaceStore {
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
        let r = self.inner.read_status(t).await;
        if self.armed.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(WAIT, self.barrier.wait()).await;
        }
        r
    }
    async fn write_status(&self, t: &TenantId, s: &TenantStatus) -> Result<(), StoreError> {
        self.inner.write_status(t, s).await
    }
    async fn create_tenant(&self, t: &TenantId, s: &TenantStatus) -> Result<(), StoreError> {
        self.inner.create_tenant(t, s).await
    }
    async fn write_config(&self, t: &TenantId, p: &ConfigPatch) -> Result<(), StoreError> {
        self.inner.write_config(t, p).await
    }
    async fn rekey(&self, t: &TenantId) -> Result<RekeyReport, StoreError> {
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

/// Two hosts, one store: concurrent creates give one tenant with the winner's secret; then
/// host A rotates the secret and sets a URL while host B sets pacing, and the store keeps
/// all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_create_once_and_never_revert_config() {
    let sim = sim().await;
    let race = Arc::new(RaceStore {
        inner: mem_store(),
        armed: AtomicBool::new(true),
        barrier: tokio::sync::Barrier::new(2),
    });
    let store: Arc<dyn Store> = race.clone();
    let a = start(&sim, &store, "host-a").await;
    let b = start(&sim, &store, "host-b").await;
    let body = Some(r#"{"id":"shared"}"#);
    let (ra, rb) = tokio::join!(
        http(a.api_addr(), "POST", "/v1/tenants", body, &[]),
        http(b.api_addr(), "POST", "/v1/tenants", body, &[])
    );
    race.armed.store(false, Ordering::SeqCst);
    let mut codes = [ra.status, rb.status];
    codes.sort_unstable();
    assert_eq!(codes, [201, 409], "two concurrent creates: {:?} / {:?}", ra.json(), rb.json());
    let winner = if ra.status == 201 { &ra } else { &rb };
    let secret = winner.json()["webhook_secret"].as_str().unwrap().to_owned();
    let stored = store.read_status(&tid("shared")).await.unwrap().unwrap();
    assert_eq!(stored.webhook_secret.map(|s| s.expose().to_vec()), Some(secret.into_bytes()), "two secrets");

    // The losing host restarts and hydrates the tenant; both hosts now run an (unlinked)
    // actor for it.
    let (a, loser) = if ra.status == 201 { (a, b) } else { (b, a) };
    loser.shutdown().await;
    let b = start(&sim, &store, "host-c").await;
    poll("b hydrated", || async {
        (http(b.api_addr(), "GET", "/v1/tenants/shared", None, &[]).await.status == 200).then_some(())
    })
    .await;
    let url = r#"{"webhook_url":"https://hooks.example.com/a","rotate_webhook_secret":true}"#;
    let r = http(a.api_addr(), "PATCH", "/v1/tenants/shared", Some(url), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let rotated = r.json()["webhook_secret"].as_str().unwrap().to_owned();
    let r =
        http(b.api_addr(), "PATCH", "/v1/tenants/shared", Some(r#"{"pacing":{"per_minute":5}}"#), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let s = store.read_status(&tid("shared")).await.unwrap().unwrap();
    assert_eq!(s.webhook_url.as_deref(), Some("https://hooks.example.com/a"), "B reverted A's URL");
    assert_eq!(
        s.webhook_secret.map(|s| s.expose().to_vec()),
        Some(rotated.into_bytes()),
        "B reverted the rotation"
    );
    assert_eq!(s.pacing.and_then(|p| p.per_minute), Some(5));
    a.shutdown().await;
    b.shutdown().await;
}
