//! The recording and fault-injecting store wrappers behave as host tests expect, and the
//! embedded store keeps data across reopen.

use std::sync::Arc;
use std::time::Duration;

use staylinked::store::conformance::{sample_creds, tenant};
use staylinked::store::crypt::{Keyring, MasterKey};
use staylinked::store::embedded::EmbeddedStore;
use staylinked::store::memory::MemoryStore;
use staylinked::store::testing::{FaultyStore, RecordingStore, StoreOp};
use staylinked::store::{Delta, DeltaBatch, KeyRef, SecretBytes, Store, StoreError, SystemClock};

fn mem() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(Arc::new(Keyring::new(&MasterKey::generate(), &[])), Arc::new(SystemClock)))
}

/// The recording store logs operations in call order with their outcome.
#[tokio::test]
async fn recording_store_logs_in_order() {
    let rec = RecordingStore::new(mem());
    let t = tenant("rec");
    let lease = rec.acquire_lease(&t, "h", Duration::from_secs(5)).await.unwrap();
    let b =
        DeltaBatch::new().with(Delta::KeyPut { key: KeyRef::PreKey(1), value: SecretBytes::new(vec![1]) });
    rec.commit(&t, lease.fence(), &b).await.unwrap();
    assert!(rec.commit(&t, staylinked::types::FencingToken::new(99, "x"), &b).await.is_err());
    let ops = rec.ops();
    assert!(matches!(ops.first(), Some(StoreOp::Acquire { epoch: Some(1), .. })));
    assert!(matches!(ops.get(1), Some(StoreOp::Commit { ok: true, .. })));
    assert!(matches!(ops.get(2), Some(StoreOp::Commit { ok: false, .. })));
    assert_eq!(rec.commits(), vec![b]);
}

/// The fault-injecting store fails exactly the Nth commit (nothing of it lands) and plays an
/// outage as `Unavailable`.
#[tokio::test]
async fn faulty_store_fails_nth_commit_and_outage() {
    let inner = mem();
    let f = FaultyStore::new(inner.clone());
    let t = tenant("faulty");
    let lease = f.acquire_lease(&t, "h", Duration::from_secs(5)).await.unwrap();
    f.fail_commit_n(2);
    let put = |id| {
        DeltaBatch::new().with(Delta::KeyPut { key: KeyRef::PreKey(id), value: SecretBytes::new(vec![1]) })
    };
    f.commit(&t, lease.fence(), &put(1)).await.unwrap();
    assert!(matches!(f.commit(&t, lease.fence(), &put(2)).await, Err(StoreError::Injected { .. })));
    f.commit(&t, lease.fence(), &put(3)).await.unwrap();
    let keys = inner.hydrate(&t).await.unwrap().keys;
    assert!(keys.contains_key(&KeyRef::PreKey(1)) && !keys.contains_key(&KeyRef::PreKey(2)));
    f.set_unreachable(true);
    assert!(matches!(f.list_tenants().await, Err(StoreError::Unavailable { .. })));
    f.set_unreachable(false);
    assert_eq!(f.list_tenants().await.unwrap(), vec![t]);
}

/// Embedded data survives closing and reopening the file (the restart case), with the
/// locally generated key file.
#[tokio::test]
async fn embedded_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let key = staylinked::store::crypt::load_or_create_key_file(&path.with_extension("key")).unwrap();
    let t = tenant("reopen");
    {
        let s = EmbeddedStore::open(&path, Arc::new(Keyring::new(&key, &[])), Arc::new(SystemClock))
            .await
            .unwrap();
        let lease = s.acquire_lease(&t, "h", Duration::from_secs(5)).await.unwrap();
        s.commit(&t, lease.fence(), &DeltaBatch::new().with(Delta::CredsPut(Box::new(sample_creds(1)))))
            .await
            .unwrap();
    }
    let key = staylinked::store::crypt::load_or_create_key_file(&path.with_extension("key")).unwrap();
    let s =
        EmbeddedStore::open(&path, Arc::new(Keyring::new(&key, &[])), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(s.hydrate(&t).await.unwrap().creds, Some(sample_creds(1)));
    let other = Keyring::new(&MasterKey::generate(), &[]);
    drop(s);
    let s = EmbeddedStore::open(&path, Arc::new(other), Arc::new(SystemClock)).await.unwrap();
    assert!(
        matches!(s.hydrate(&t).await, Err(StoreError::Corrupt { .. })),
        "wrong master key must be Corrupt"
    );
}
