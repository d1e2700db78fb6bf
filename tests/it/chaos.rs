//! The bounded chaos run (issue 9): 5 tenants linked through the in-process simulator, then
//! 20 seeded cycles of SIGTERM, SIGKILL and overlapping starts of the real `staylinked` binary
//! on one embedded store. The driver (`staylinked::chaos`) checks after every cycle; this test
//! asserts its verdict and the counters that prove the scenario really ran.

use std::time::Duration;

use staylinked::chaos::{ChaosOptions, ChaosStore, SimTarget};

use crate::host_util::sim;

/// 20 sleep/wake/deploy cycles with messages both ways: never a re-pair, one device per phone,
/// no 440, no ack stream error, every tenant back to `connected` without a QR each time, lease epochs strictly
/// increasing, creds of the phone's device in the store at the end with every lease released,
/// every message in the recipient's inbox exactly once, no decrypt failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_wake_and_deploy_overlap_never_repair_or_conflict() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = ChaosOptions::new(env!("CARGO_BIN_EXE_staylinked").into(), dir.path().to_path_buf(), 5, 20);
    o.seed = 9;
    o.store = ChaosStore::Embedded;
    o.messages = true;
    o.sim = Some(SimTarget {
        addr: sim.local_addr(),
        ws_url: sim.ws_url(),
        root_public_key: sim.root_public_key(),
    });
    // A SIGKILLed holder's tenants wait for its lease to expire: short, so 20 cycles stay quick.
    o.lease_ttl = Duration::from_secs(3);
    let r = staylinked::chaos::run(o).await.unwrap();
    let md = staylinked::chaos::markdown(&r);
    assert!(r.ok, "chaos failed:\n{md}");
    assert_eq!(r.cycles_ok, 20, "{md}");
    assert_eq!((r.re_pairs, r.sim.replaced, r.devices_per_phone), (0, 0, (1, 1)), "{md}");
    // Every stanza the server pushed was acked in time (issue 13): no `<stream:error><ack/>`.
    assert_eq!(r.sim.ack_stream_errors, 0, "{md}");
    assert_eq!(r.epoch_checks, 5 * 20, "{md}");
    assert_eq!(r.store_checked, 5, "{md}");
    assert!(r.sigkills >= 5 && r.overlaps >= 5, "the mix must exercise kills and overlaps: {md}");
    assert_eq!(r.processes_started, 21, "{md}");
    // Traffic ran both ways: every message in the recipient's inbox exactly once.
    let m = &r.messages;
    assert_eq!(m.phone_to_tenant.sent, 5 * 20, "{md}");
    assert_eq!(m.phone_to_tenant.delivered, m.phone_to_tenant.sent, "{md}");
    assert_eq!(
        (m.tenant_to_phone.sent + m.tenant_to_phone.unknown, m.note.as_deref()),
        (5 * 20, None),
        "{md}"
    );
    assert_eq!(m.tenant_to_phone.delivered, m.tenant_to_phone.sent, "{md}");
    assert_eq!((m.tenant_to_phone.lost, m.tenant_to_phone.duplicated, m.decrypt_failures), (0, 0, 0), "{md}");
}

/// Deploy overlap on the embedded store: a second open of a file another holder has open waits
/// for the lock (it neither fails nor opens an empty store) and succeeds once the file is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_open_waits_for_the_file_lock() {
    use std::sync::Arc;

    use staylinked::store::crypt::{Keyring, MasterKey};
    use staylinked::store::embedded::EmbeddedStore;
    use staylinked::store::{Store, SystemClock};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let ring = Arc::new(Keyring::new(&MasterKey::generate(), &[]));
    let first = EmbeddedStore::open(&path, ring.clone(), Arc::new(SystemClock)).await.unwrap();
    let id = crate::host_util::tid("lock");
    first.write_status(&id, &staylinked::store::TenantStatus::default()).await.unwrap();
    let second = tokio::spawn({
        let (path, ring) = (path.clone(), ring.clone());
        async move { EmbeddedStore::open(&path, ring, Arc::new(SystemClock)).await }
    });
    // While the first holder is open the second one is still waiting (not failed).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second open must wait for the lock: {:?}", second.await);
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(20), second).await.unwrap().unwrap().unwrap();
    assert_eq!(second.list_tenants().await.unwrap(), vec![id], "the waiting open sees the same data");
}
