//! Ack discipline against a linked tenant over real sockets (issue 13 item 2): the simulator
//! keeps every stanza it pushes pending until the device acks it as the real server wants and
//! ends the stream with `<stream:error><ack/>` after the ack timeout (`PUT /admin/config`).
//! Calls and a message that never decrypts must leave nothing pending, cause no stream error
//! and no reconnect, and the message must not come back at the next login.

use staylinked::host::state::TenantState;
use staylinked::sim::{Server, Stats};

use crate::host_util::*;

async fn admin(sim: &Server, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let r = http(sim.local_addr(), method, &format!("/admin{path}"), Some(&body.to_string()), &[]).await;
    assert!((200..300).contains(&r.status), "{method} {path}: {} {:?}", r.status, r.json());
    r.json()
}

/// Waits until nothing is pending, then checks no ack stream error and no new login happened
/// since `before` (once nothing is pending no ack deadline can fire any more).
async fn all_acked(sim: &Server, before: &Stats) -> Stats {
    let s = poll("every pushed stanza acked", || async {
        let s = stats(sim).await;
        (s.unacked == 0).then_some(s)
    })
    .await;
    assert_eq!(s.ack_stream_errors, 0, "{s:?}");
    assert_eq!((s.logins, s.connections), (before.logins, before.connections), "no reconnect: {s:?}");
    s
}

/// 20 calls in a row (offer, then terminate, each) to a linked tenant: every `<call>` is acked
/// to its `from`; `unacked` goes back to 0 with no stream error and no reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_leave_nothing_pending() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "ack-a").await;
    let (t, own) = link_n(&host, &sim, "ca", 1).await.remove(0);
    let caller = phone(4747);
    admin(&sim, "POST", "/phones", serde_json::json!({"phone": caller})).await;
    wait_state(&host, &t, TenantState::Connected).await;
    let cfg = admin(&sim, "PUT", "/config", serde_json::json!({"ack_timeout_ms": 3000})).await;
    assert_eq!(cfg["ack_timeout_ms"], 3000);
    let before = stats(&sim).await;
    for _ in 0..20 {
        let r = admin(&sim, "POST", &format!("/phones/{caller}/call"), serde_json::json!({"to": own})).await;
        assert_eq!(r["devices"], 1, "{r}");
    }
    let s = all_acked(&sim, &before).await;
    assert_eq!(s.calls, before.calls + 20);
    host.shutdown().await;
}

/// A message that can never decrypt (every resend spoilt too): the tenant sends retry
/// receipts, acks the stanza (no nack 500), nothing stays pending, and after a restart the
/// message is not redelivered (only a message sent while the tenant was down is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecryptable_message_is_acked_and_never_redelivered() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "ack-b").await;
    let (t, own) = link_n(&host, &sim, "cb", 1).await.remove(0);
    let peer = phone(4848);
    admin(&sim, "POST", "/phones", serde_json::json!({"phone": peer})).await;
    wait_state(&host, &t, TenantState::Connected).await;
    admin(&sim, "PUT", "/config", serde_json::json!({"ack_timeout_ms": 3000})).await;
    let devices = admin(&sim, "GET", &format!("/phones/{own}/devices"), serde_json::json!({})).await;
    let dev = devices["devices"][0]["device_jid"].as_str().unwrap().to_owned();
    let fault = serde_json::json!({"device_jid": dev, "fault": "undecryptable_next_message"});
    admin(&sim, "POST", "/faults", fault).await;
    let before = stats(&sim).await;
    admin(&sim, "POST", &format!("/phones/{peer}/send"), serde_json::json!({"to": own, "text": "never"}))
        .await;
    // Five retry receipts (Baileys' and whatsmeow's limit), five spoilt resends, six acks.
    poll("five retry receipts", || async {
        (stats(&sim).await.retry_receipts == before.retry_receipts + 5).then_some(())
    })
    .await;
    let s = all_acked(&sim, &before).await;
    assert_eq!((s.retry_receipts, s.corrupted), (before.retry_receipts + 5, before.corrupted + 6), "{s:?}");
    host.shutdown().await;

    // While the tenant is down only a new message waits; the restart redelivers that one alone.
    admin(&sim, "POST", &format!("/phones/{peer}/send"), serde_json::json!({"to": own, "text": "later"}))
        .await;
    let host = start(&sim, &store, "ack-b2").await;
    wait_state(&host, &t, TenantState::Connected).await;
    poll("the later message in the inbox", || async {
        let items = store.list_inbox(&t).await.unwrap();
        items.iter().any(|i| String::from_utf8_lossy(i.payload.expose()).contains("later")).then_some(())
    })
    .await;
    // (its receipt follows the inbox commit)
    let after = poll("the later message receipted", || async {
        let s = stats(&sim).await;
        (s.unacked == 0).then_some(s)
    })
    .await;
    assert_eq!(after.offline_redelivered, s.offline_redelivered + 1, "only the later one: {after:?}");
    assert_eq!((after.retry_receipts, after.ack_stream_errors, after.unacked), (s.retry_receipts, 0, 0));
    let items = store.list_inbox(&t).await.unwrap();
    assert!(!items.iter().any(|i| String::from_utf8_lossy(i.payload.expose()).contains("never")));
    host.shutdown().await;
}
