//! Issue 13 items 3 and 4, against the simulator behaving like today's server: a retry receipt
//! that arrives after the gateway was SIGKILLed and restarted is answered from the durable
//! sent-message record, and a view-once (`<unavailable>`) message is fetched from the tenant's
//! own phone with a placeholder resend and surfaced once.

use staylinked::store::Store;
use staylinked::types::TenantId;

use crate::host_process::{FAST_SEND, api, free_port, link_by_qr, spawn_with, wait_connected, wait_healthy};
use crate::host_util::*;

/// Issue 13 item 3: the tenant sends a text to a phone, the gateway process is SIGKILLed and
/// restarted from its store, then the phone sends a retry receipt for that message (as a phone
/// coming online hours later does): the restarted gateway resends it with the same id,
/// re-encrypted for the phone, and the phone decrypts it; a second retry with the phone's keys
/// is answered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_receipt_after_sigkill_restart_is_answered() {
    const TENANT: &str = "retry0";
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let own = phone(7101);
    let peer = phone(7102);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();
    let port = free_port();
    let mut child = spawn_with(&sim, &path, port, &FAST_SEND);
    wait_healthy(port).await;
    link_by_qr(&sim, port, TENANT, &own).await;

    let body = serde_json::json!({"to": peer, "text": "before the crash"}).to_string();
    let resp = api(port, "POST", &format!("/v1/tenants/{TENANT}/messages"), Some(&body)).await;
    assert_eq!(resp.status, 202, "{:?}", resp.json());
    let id = resp.json()["id"].as_str().unwrap().to_owned();
    // Delivered (the phone receipted it), so the outbox will not send it again by itself.
    poll("delivered status", || async {
        let r = api(port, "GET", &format!("/v1/tenants/{TENANT}/messages/{id}"), None).await;
        (r.json()["status"] == "delivered" || r.json()["status"] == "read").then_some(())
    })
    .await;
    assert!(phone_inbox(&sim, &peer).await.iter().any(|(i, _)| *i == id));

    child.kill().unwrap();
    let _ = child.wait();
    let port = free_port();
    let child = spawn_with(&sim, &path, port, &FAST_SEND);
    wait_healthy(port).await;
    wait_connected(port, TENANT, true).await;

    let (p, i) = (peer.clone(), id.clone());
    let asked = sim.with_sim(move |s, now| s.phone_request_retry(now, &p, &i)).await.unwrap().unwrap();
    assert_eq!(asked.user, own, "the receipt goes to the tenant's device");
    assert!(!phone_inbox(&sim, &peer).await.iter().any(|(i, _)| *i == id), "the phone forgot it");
    let got = poll("the resent message at the phone", || async {
        phone_inbox(&sim, &peer).await.into_iter().find(|(i, _)| *i == id)
    })
    .await;
    assert_eq!(got.1, "before the crash");
    // A second retry of the same message carries the phone's keys: the sender builds a fresh
    // session from them and resends once more.
    let (p, i) = (peer.clone(), id.clone());
    sim.with_sim(move |s, now| s.phone_request_retry(now, &p, &i)).await.unwrap().unwrap();
    poll("the second resend at the phone", || async {
        phone_inbox(&sim, &peer).await.into_iter().find(|(i, _)| *i == id)
    })
    .await;
    let s = stats(&sim).await;
    assert_eq!((s.phone_decrypt_failures, s.retry_receipts), (0, 2), "{s:?}");
    drop(child);
}

/// The tenant's durable inbox as `(id, sender, text)` of its message.received items.
async fn inbox(store: &std::sync::Arc<dyn Store>, t: &TenantId) -> Vec<(String, String, String)> {
    let items = store.list_inbox(t).await.unwrap();
    items
        .iter()
        .filter_map(|i| {
            let v: serde_json::Value = serde_json::from_slice(i.payload.expose()).ok()?;
            (v["event"] == "message.received").then_some(())?;
            let m = &v["data"]["message"];
            Some((
                m["id"].as_str()?.to_owned(),
                m["sender"].as_str()?.to_owned(),
                m["text"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Issue 13 item 4: a view-once text reaches the tenant's device as `<unavailable
/// type="view_once">` with no content; the gateway acks it, asks its own phone with a peer
/// placeholder-resend request, and surfaces the phone's answer as a received message — once,
/// with the right text and sender — while a later normal message still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_once_message_is_fetched_from_the_phone_and_surfaced_once() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "vo-a").await;
    let linked = link_n(&host, &sim, "vo", 1).await;
    let (t, own) = linked[0].clone();
    let peer = phone(4343);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
    wait_state(&host, &t, staylinked::host::state::TenantState::Connected).await;

    let (p, o) = (peer.clone(), own.clone());
    let id =
        sim.with_sim(move |s, now| s.phone_send_view_once(now, &p, &o, "look once")).await.unwrap().unwrap();
    let got = poll("the view-once text in the tenant inbox", || async {
        let v = inbox(&store, &t).await;
        v.iter().any(|(i, _, _)| *i == id).then_some(v)
    })
    .await;
    let entry = got.iter().find(|(i, _, _)| *i == id).unwrap();
    assert_eq!(
        (entry.1.as_str(), entry.2.as_str()),
        (format!("{peer}@s.whatsapp.net").as_str(), "look once")
    );

    // A normal message afterwards, then: still exactly one copy of the view-once message.
    let (p, o) = (peer.clone(), own.clone());
    let later = sim.with_sim(move |s, now| s.phone_send(now, &p, &o, "after")).await.unwrap().unwrap();
    let all = poll("the later message", || async {
        let v = inbox(&store, &t).await;
        v.iter().any(|(i, _, _)| *i == later).then_some(v)
    })
    .await;
    assert_eq!(all.iter().filter(|(i, _, _)| *i == id).count(), 1, "{all:?}");
    let s = stats(&sim).await;
    assert_eq!(s.phone_decrypt_failures, 0, "{s:?}");
    host.shutdown().await;
}
