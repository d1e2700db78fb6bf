//! Invariant 1 under SIGKILL (issue 7 item 4): the real binary is killed at many points while
//! messages flow both ways (inbound decrypt + commit + receipt, outbound outbox + encrypt +
//! commit + send), restarted from the same embedded store each time, and in the end every
//! message is delivered exactly once in each direction with no decryption failure anywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use staylinked::store::StoreConfig;

use crate::host_process::{
    FAST_SEND, api, free_port, link_by_qr, sigterm, spawn_with, wait_connected, wait_exit, wait_healthy,
};
use crate::host_util::*;

const TENANT: &str = "crash0";
const ROUNDS: u64 = 12;
const PER_ROUND: usize = 2;
/// Kill delay of round `r` after its traffic was handed over: spread over the window in which
/// the gateway is decrypting, committing, receipting, encrypting and sending.
fn kill_delay(r: u64) -> Duration {
    const POINTS: [u64; 12] = [0, 3, 7, 12, 20, 30, 45, 60, 80, 110, 150, 200];
    Duration::from_millis(POINTS[(r as usize * 5) % POINTS.len()])
}

/// SIGKILL at 12 points during two-way traffic, restart after each: every message the phone
/// sent is in the tenant's durable inbox exactly once with its text, every message the API
/// accepted (202) reached the phone exactly once, no phone failed to decrypt and nobody sent a
/// retry receipt, and the device was never re-paired or replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_no_message_and_breaks_no_session() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let own = phone(7001);
    let peer = phone(7002);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();

    let mut port = free_port();
    let mut child = spawn_with(&sim, &path, port, &FAST_SEND);
    wait_healthy(port).await;
    link_by_qr(&sim, port, TENANT, &own).await;
    let me = api(port, "GET", &format!("/v1/tenants/{TENANT}"), None).await.json()["me"]
        .as_str()
        .unwrap()
        .to_owned();

    // id → text, per direction.
    let mut to_tenant: BTreeMap<String, String> = BTreeMap::new();
    let mut to_phone: BTreeMap<String, String> = BTreeMap::new();
    for r in 0..ROUNDS {
        for k in 0..PER_ROUND {
            let (p, o, text) = (peer.clone(), own.clone(), format!("in r{r} k{k}"));
            let t = text.clone();
            let id = sim.with_sim(move |s, now| s.phone_send(now, &p, &o, &t)).await.unwrap().unwrap();
            to_tenant.insert(id, text);
        }
        for k in 0..PER_ROUND {
            let text = format!("out r{r} k{k}");
            let body = serde_json::json!({"to": peer, "text": text}).to_string();
            let resp = api(port, "POST", &format!("/v1/tenants/{TENANT}/messages"), Some(&body)).await;
            assert_eq!(resp.status, 202, "round {r}: {:?}", resp.json());
            to_phone.insert(resp.json()["id"].as_str().unwrap().to_owned(), text);
        }
        tokio::time::sleep(kill_delay(r)).await;
        child.kill().unwrap();
        let _ = child.wait();
        port = free_port();
        child = spawn_with(&sim, &path, port, &FAST_SEND);
        wait_healthy(port).await;
        wait_connected(port, TENANT, true).await;
    }

    // Tenant → phone: every accepted id arrived, once, with its text.
    let deadline = tokio::time::Instant::now() + WAIT;
    let inbox = loop {
        let p = peer.clone();
        let v = sim.with_sim(move |s, _| s.phone_inbox(&p)).await.unwrap().unwrap();
        if v.len() >= to_phone.len() {
            break v;
        }
        if tokio::time::Instant::now() > deadline {
            let missing: Vec<_> = to_phone.iter().filter(|(id, _)| !v.iter().any(|e| &e.id == *id)).collect();
            let status =
                api(port, "GET", &format!("/v1/tenants/{TENANT}/messages/{}", missing[0].0), None).await;
            panic!(
                "{} of {} outbound messages missing at the phone: {missing:?}; first: {:?}; stats {:?}",
                missing.len(),
                to_phone.len(),
                status.json(),
                stats(&sim).await
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let got: BTreeMap<String, String> =
        inbox.iter().map(|e| (e.id.clone(), e.text.clone().unwrap_or_default())).collect();
    assert_eq!(got.len(), inbox.len(), "an id reached the phone twice");
    assert_eq!(got, to_phone);

    // Phone → tenant: every message was receipted by the tenant's device (it receipts only
    // after the message is durable).
    let p = peer.clone();
    poll("a delivery receipt from the tenant for every inbound message", || {
        let (p, ids, me) = (p.clone(), to_tenant.keys().cloned().collect::<Vec<_>>(), me.clone());
        let sim = &sim;
        async move {
            let sent = sim.with_sim(move |s, _| s.phone_sent(&p)).await.unwrap().unwrap();
            ids.iter()
                .all(|id| {
                    sent.iter().any(|m| {
                        &m.id == id
                            && m.devices.iter().any(|(d, st)| {
                                d.to_string() == me && st.as_str() != "sent" && st.as_str() != "retry"
                            })
                    })
                })
                .then_some(())
        }
    })
    .await;

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());
    let store = staylinked::store::open(&StoreConfig::Embedded { path }).await.unwrap();
    let items = store.list_inbox(&tid(TENANT)).await.unwrap();
    let mut received: BTreeMap<String, String> = BTreeMap::new();
    for i in &items {
        let v: serde_json::Value = serde_json::from_slice(i.payload.expose()).unwrap();
        if v["event"] == "message.received" {
            let m = &v["data"]["message"];
            let prev =
                received.insert(m["id"].as_str().unwrap().to_owned(), m["text"].as_str().unwrap().to_owned());
            assert!(prev.is_none(), "message {} is in the inbox twice", m["id"]);
        }
    }
    assert_eq!(received, to_tenant);

    let s = stats(&sim).await;
    assert_eq!((s.phone_decrypt_failures, s.retry_receipts), (0, 0), "{s:?}");
    assert_eq!((s.pairings, s.replaced), (1, 0), "{s:?}");
    assert_eq!(staylinked::demo::devices_on_phone(&sim, &own).await.unwrap(), 1);
}
