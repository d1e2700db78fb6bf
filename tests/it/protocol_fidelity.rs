//! What today's WhatsApp server demands of a linked gateway (review
//! 2026-12-fidelity-vs-real-whatsapp items 1, 13): a version floor enforced with 405 (tenant
//! state `outdated`, never a reconnect loop; `auto` refetches sw.js once and recovers), and the
//! push name announced with `<presence>` after login (per-tenant `push_name` / `presence`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use staylinked::host::Host;
use staylinked::host::state::TenantState;
use staylinked::host::version::VersionSetting;
use staylinked::sim::{Fault, Server};
use staylinked::wa::version::WaVersion;

use crate::host_util::*;

/// A local stand-in for web.whatsapp.com/sw.js whose `client_revision` the test sets.
async fn sw_js(rev: Arc<AtomicU32>) -> String {
    let app = axum::Router::new().route(
        "/sw.js",
        axum::routing::get(move || {
            let rev = rev.load(Ordering::SeqCst);
            async move { format!(r#"self.__swData=JSON.parse('{{"client_revision":{rev},"other":1}}');"#) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/sw.js")
}

/// A webhook endpoint on 127.0.0.1 that logs every JSON body.
async fn webhook_sink() -> (Arc<Mutex<Vec<serde_json::Value>>>, SocketAddr) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = Arc::clone(&log);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let l = Arc::clone(&l2);
            async move {
                if let Ok(j) = serde_json::from_slice(&body) {
                    l.lock().unwrap().push(j);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (log, addr)
}

/// Raises the simulator's version floor through its admin API.
async fn set_floor(sim: &Server, v: WaVersion) {
    let (status, body) =
        crate::support::http(sim, "PUT", "/config", Some(serde_json::json!({"min_version": v.to_string()})))
            .await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body["min_version"], v.to_string());
}

async fn refused_405(sim: &Server) -> u64 {
    stats(sim).await.stream_errors.get("405").copied().unwrap_or(0)
}

fn bump(v: WaVersion, by: u32) -> WaVersion {
    WaVersion([v.0[0], v.0[1], v.0[2] + by])
}

/// A linked tenant whose version falls below the server's floor becomes `outdated` (API,
/// `connection.update` webhook, metrics, a message naming STAYLINKED_WA_VERSION) after exactly
/// one refused attempt: no reconnect loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_below_floor_makes_tenant_outdated_without_loop() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "o1").await;
    let (hooks, hook_addr) = webhook_sink().await;
    let body = format!(r#"{{"id":"old","webhook_url":"http://{hook_addr}/hook"}}"#);
    assert_eq!(http(host.api_addr(), "POST", "/v1/tenants", Some(&body), &[]).await.status, 201);
    let device =
        staylinked::demo::link_by_qr(&sim, host.registry(), &tid("old"), &phone(1), WAIT).await.unwrap();

    set_floor(&sim, bump(WaVersion::DEFAULT, 1)).await;
    sim.with_sim(move |s, now| s.inject_fault(now, &device, Fault::Drop)).await.unwrap().unwrap();
    wait_state(&host, &tid("old"), TenantState::Outdated).await;

    let r = http(host.api_addr(), "GET", "/v1/tenants/old", None, &[]).await;
    assert_eq!(r.json()["state"], "outdated", "{:?}", r.json());
    let why = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("STAYLINKED_WA_VERSION") && why.contains(&WaVersion::DEFAULT.to_string()), "{why}");
    let metrics = String::from_utf8(http(host.api_addr(), "GET", "/metrics", None, &[]).await.body).unwrap();
    assert!(metrics.contains("staylinked_tenants{state=\"outdated\"} 1"), "{metrics}");
    poll("connection.update outdated webhook", || async {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|j| j["event"] == "connection.update" && j["data"]["state"] == "outdated")
            .then_some(())
    })
    .await;

    // Time passes with real work (another tenant links: dial, QR, 515, login); a loop would
    // have retried meanwhile and left `outdated` (connecting/backoff) with more 405s.
    let attempts = stats(&sim).await.connections;
    assert_eq!(refused_405(&sim).await, 1);
    set_floor(&sim, WaVersion::DEFAULT).await;
    host.registry().create(tid("other"), None).await.unwrap();
    staylinked::demo::link_by_qr(&sim, host.registry(), &tid("other"), &phone(2), WAIT).await.unwrap();
    assert_eq!(host.registry().get(&tid("old")).unwrap().view.borrow().state, TenantState::Outdated);
    assert_eq!(refused_405(&sim).await, 1, "exactly one refused attempt");
    let others = stats(&sim).await.connections - attempts;
    assert_eq!(others, 2, "only the new tenant's registration and login connected meanwhile");
    host.shutdown().await;
}

/// With `STAYLINKED_WA_VERSION=auto`, a 405 makes the host refetch sw.js once: a newer
/// `client_revision` there brings the tenant back (one refused attempt); when sw.js has
/// nothing newer, the one retry is refused too and the tenant is `outdated` (no loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_version_refetches_once_and_recovers() {
    let sim = sim().await;
    let store = mem_store();
    let rev = Arc::new(AtomicU32::new(WaVersion::DEFAULT.0[2]));
    let url = sw_js(Arc::clone(&rev)).await;
    let mut config = config(&sim, "a1");
    config.wa_version = VersionSetting::Auto { url };
    let host = Host::start(config, Arc::clone(&store)).await.unwrap();
    host.registry().create(tid("auto"), None).await.unwrap();
    let device =
        staylinked::demo::link_by_qr(&sim, host.registry(), &tid("auto"), &phone(3), WAIT).await.unwrap();
    let logins = || async {
        let p = phone(3);
        sim.with_sim(move |s, _| s.devices(&p).unwrap()[0].logins).await.unwrap()
    };
    let before = logins().await;

    // The server moves on and so does sw.js: one 405, a refetch, a successful retry.
    let newer = bump(WaVersion::DEFAULT, 7);
    set_floor(&sim, newer).await;
    rev.store(newer.0[2], Ordering::SeqCst);
    let d = device.clone();
    sim.with_sim(move |s, now| s.inject_fault(now, &d, Fault::Drop)).await.unwrap().unwrap();
    poll("login with the refetched version", || async { (logins().await > before).then_some(()) }).await;
    wait_state(&host, &tid("auto"), TenantState::Connected).await;
    assert_eq!(refused_405(&sim).await, 1);

    // The server moves again but sw.js does not: the one retry is refused too → outdated.
    set_floor(&sim, bump(newer, 1)).await;
    sim.with_sim(move |s, now| s.inject_fault(now, &device, Fault::Drop)).await.unwrap().unwrap();
    let v = wait_state(&host, &tid("auto"), TenantState::Outdated).await;
    assert!(v.error.unwrap_or_default().contains(&newer.to_string()));
    assert_eq!(refused_405(&sim).await, 3, "the refused attempt and exactly one retry");
    host.shutdown().await;
}

/// The push name given at creation (and `presence`) reaches the server in `<presence>` after
/// login; a PATCH changes it on the live connection, and `push_name: null` goes back to the
/// name learned at pairing (the phone's `<biz name>`). The view and the status doc show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_name_and_presence_reach_the_server() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "p1").await;
    let a = host.api_addr();
    let bad = http(a, "POST", "/v1/tenants", Some(r#"{"id":"x","push_name":" "}"#), &[]).await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_push_name"));
    let bad = http(a, "POST", "/v1/tenants", Some(r#"{"id":"x","presence":"away"}"#), &[]).await;
    assert_eq!(bad.status, 400);
    let r = http(
        a,
        "POST",
        "/v1/tenants",
        Some(r#"{"id":"named","push_name":"Acme Support","presence":"available"}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    assert_eq!(
        (r.json()["push_name"].clone(), r.json()["presence"].clone()),
        ("Acme Support".into(), "available".into())
    );
    let ph = phone(4);
    staylinked::demo::link_by_qr(&sim, host.registry(), &tid("named"), &ph, WAIT).await.unwrap();
    let presence = || async {
        let p = ph.clone();
        sim.with_sim(move |s, _| s.devices(&p).unwrap()[0].presence.clone()).await.unwrap()
    };
    let want = |t: &str, n: &str| Some((t.to_owned(), Some(n.to_owned())));
    poll("presence with the configured name", || async {
        (presence().await == want("available", "Acme Support")).then_some(())
    })
    .await;

    let r =
        http(a, "PATCH", "/v1/tenants/named", Some(r#"{"push_name":null,"presence":"unavailable"}"#), &[])
            .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(r.json()["push_name"].is_null());
    assert_eq!(r.json()["presence"], "unavailable");
    poll("presence with the name from pairing", || async {
        (presence().await == want("unavailable", "Demo phone")).then_some(())
    })
    .await;
    let r = http(a, "PATCH", "/v1/tenants/named", Some(r#"{"push_name":"Acme"}"#), &[]).await;
    assert_eq!(r.status, 200);
    poll("presence renamed", || async { (presence().await == want("unavailable", "Acme")).then_some(()) })
        .await;
    let stored = store.read_status(&tid("named")).await.unwrap().unwrap();
    assert_eq!(stored.push_name.as_deref(), Some("Acme"));
    assert_eq!(stored.presence, Some(staylinked::store::model::PresenceType::Unavailable));
    host.shutdown().await;
}
