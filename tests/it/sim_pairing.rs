//! Our client, driven by `staylinked::conn` over real WebSockets, against `sim::Server` on
//! 127.0.0.1: QR pairing through the admin HTTP API, 515, login, restart from persisted creds,
//! 440 replacement, the admin JSON contract.

use staylinked::wa::client::{DisconnectReason, Event};

use super::support::{MemStore, WAIT, client, http, next_event, spawn, start_sim};

const PHONE: &str = "15550002222";

/// QR pairing end to end over sockets: QR → admin scan → 515 → login → Ready; a restart from
/// the persisted creds logs in with no QR; the device list shows one device with 2 logins; a
/// second client with the same creds replaces the first (440 → `Replaced`, no reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_restart_and_replace_over_sockets() {
    let server = start_sim().await;
    let (st, body) =
        http(&server, "POST", "/phones", Some(serde_json::json!({"phone": PHONE, "name": "Bob"}))).await;
    assert_eq!((st, body["jid"].as_str()), (201, Some("15550002222@s.whatsapp.net")));
    let (st, _) =
        http(&server, "POST", "/phones", Some(serde_json::json!({"phone": PHONE, "name": "Bob"}))).await;
    assert_eq!(st, 200);

    // 1. pair by QR
    let store = MemStore::default();
    let (task1, mut erx, _ctx1) = spawn(client(&server, super::support::fresh_creds(1), 2), store.clone());
    let Event::Qr(qr) = next_event(&mut erx, "qr", |e| matches!(e, Event::Qr(_))).await else {
        unreachable!()
    };
    let (st, body) =
        http(&server, "POST", &format!("/phones/{PHONE}/scan"), Some(serde_json::json!({"qr": qr}))).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["device_jid"], "15550002222:1@s.whatsapp.net");
    let (st, _) =
        http(&server, "POST", &format!("/phones/{PHONE}/scan"), Some(serde_json::json!({"qr": qr}))).await;
    assert_eq!(st, 404, "a used ref is no longer pending");
    next_event(&mut erx, "paired", |e| matches!(e, Event::Paired { .. })).await;
    next_event(&mut erx, "ready after 515", |e| matches!(e, Event::Ready { .. })).await;
    let (st, body) = http(&server, "GET", "/stats", None).await;
    assert_eq!(st, 200);
    assert_eq!(body["stream_errors"]["515"], 1);
    assert_eq!(body["pairings"], 1);

    // 2. a second client from the persisted creds logs in without a QR and replaces the first
    let creds = store.creds.lock().unwrap().clone().expect("creds persisted at pairing");
    assert!(creds.is_paired());
    let (task2, mut erx2, ctx2) = spawn(client(&server, creds, 3), MemStore::default());
    let first =
        next_event(&mut erx2, "second login", |e| matches!(e, Event::Qr(_) | Event::Ready { .. })).await;
    assert!(matches!(first, Event::Ready { .. }), "restart from creds must not show a QR: {first:?}");
    let r1 = tokio::time::timeout(WAIT, task1).await.expect("first driver ends").unwrap();
    assert_eq!(r1, Ok(DisconnectReason::Replaced));
    let (_, body) = http(&server, "GET", &format!("/phones/{PHONE}/devices"), None).await;
    let devs = body["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(devs.len(), 1, "{body}");
    assert_eq!(devs[0]["logins"], 2);
    assert_eq!(devs[0]["online"], true);
    let (_, body) = http(&server, "GET", "/stats", None).await;
    assert_eq!(body["replaced"], 1);
    assert_eq!(body["stream_errors"]["440"], 1);

    // 3. removing the device through the admin API logs the live client out
    let (st, _) = http(&server, "DELETE", &format!("/phones/{PHONE}/devices/1"), None).await;
    assert_eq!(st, 204);
    let r2 = tokio::time::timeout(WAIT, task2).await.expect("second driver ends").unwrap();
    let r2 = r2.unwrap();
    assert!(r2.is_logged_out(), "{r2:?}");
    drop(ctx2);
    let (st, body) = http(
        &server,
        "POST",
        "/faults",
        Some(serde_json::json!({"device_jid": "15550002222:1@s.whatsapp.net", "fault": "drop"})),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    server.shutdown().await;
}
