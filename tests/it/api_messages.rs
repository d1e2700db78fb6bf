//! Issue #8 through the HTTP API: queueing messages (`POST /messages`, clear JSON errors),
//! their status (`GET /messages/{id}`) surviving a SIGTERM-like shutdown and a crash, and
//! signed, ordered, retried webhooks where one tenant's failing endpoint never holds up
//! another tenant.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use staylinked::host::Host;
use staylinked::host::state::TenantState;
use staylinked::host::webhook::{EVENT_ID_HEADER, SIGNATURE_HEADER, verify};

use crate::host_util::*;

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Hit {
    name: String,
    ok: bool,
    id: String,
    signature: String,
    body: Vec<u8>,
}

impl Hit {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook endpoint on 127.0.0.1: `POST /hook/{name}` answers 500 while `name` is in
/// `failing`, else 204; every request is logged.
#[derive(Default)]
struct Receiver {
    hits: Mutex<Vec<Hit>>,
    failing: Mutex<HashSet<String>>,
}

impl Receiver {
    async fn start() -> (Arc<Self>, SocketAddr) {
        let me = Arc::new(Self::default());
        let app =
            axum::Router::new().route("/hook/{name}", axum::routing::post(hook)).with_state(Arc::clone(&me));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, addr)
    }

    fn hits(&self, name: &str) -> Vec<Hit> {
        self.hits.lock().unwrap().iter().filter(|h| h.name == name).cloned().collect()
    }

    fn delivered(&self, name: &str) -> Vec<Hit> {
        self.hits(name).into_iter().filter(|h| h.ok).collect()
    }
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let ok = !r.failing.lock().unwrap().contains(&name);
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    r.hits.lock().unwrap().push(Hit {
        name,
        ok,
        id: h(EVENT_ID_HEADER),
        signature: h(SIGNATURE_HEADER),
        body: body.to_vec(),
    });
    if ok { StatusCode::NO_CONTENT } else { StatusCode::INTERNAL_SERVER_ERROR }
}

/// Creates a tenant through the API (returns its webhook secret) and links it by QR.
async fn create_and_link(
    host: &Host,
    sim: &staylinked::sim::Server,
    id: &str,
    body: &str,
    phone: &str,
) -> String {
    let r = http(host.api_addr(), "POST", "/v1/tenants", Some(body), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let secret = r.json()["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    staylinked::demo::link_by_qr(sim, host.registry(), &tid(id), phone, WAIT).await.unwrap();
    secret
}

/// `connection.update` states a receiver got, in delivery order.
fn states(hits: &[Hit]) -> Vec<String> {
    hits.iter()
        .map(Hit::json)
        .filter(|j| j["event"] == "connection.update")
        .map(|j| j["data"]["state"].as_str().unwrap().to_owned())
        .collect()
}

/// POST /messages: clear JSON errors for bad bodies, 409 for an unlinked tenant, 202 with an
/// id for a good one; GET returns the message, 404 for unknown ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_messages_queue_and_errors() {
    let sim = sim().await;
    let host = start(&sim, &mem_store(), "msg").await;
    let a = host.api_addr();
    assert_eq!(http(a, "POST", "/v1/tenants", Some(r#"{"id":"idle"}"#), &[]).await.status, 201);
    let r =
        http(a, "POST", "/v1/tenants/idle/messages", Some(r#"{"to":"15551234567","text":"hi"}"#), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "not_linked"), "{:?}", r.json());
    create_and_link(&host, &sim, "live", r#"{"id":"live"}"#, "15550101010").await;
    let post = |body: &'static str| http(a, "POST", "/v1/tenants/live/messages", Some(body), &[]);
    for (body, status, code) in [
        ("{not json", 400, "invalid_body"),
        (r#"{"to":"15551234567"}"#, 400, "invalid_body"),
        (r#"{"to":"15551234567","text":"x","extra":1}"#, 400, "invalid_body"),
        (r#"{"to":"call me","text":"x"}"#, 400, "invalid_recipient"),
        (r#"{"to":"15551234567","text":"  "}"#, 400, "invalid_text"),
    ] {
        let r = post(body).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{body}: {:?}", r.json());
        assert!(!r.json()["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    let r = http(a, "POST", "/v1/tenants/nope/messages", Some(r#"{"to":"1555","text":"x"}"#), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "tenant_not_found"));
    let r = post(r#"{"to":"+1 555 123 4567","text":"hello"}"#).await;
    assert_eq!(r.status, 202, "{:?}", r.json());
    assert_eq!(r.json()["status"], "queued");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(id.len() >= 16 && id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    let r = http(a, "GET", &format!("/v1/tenants/live/messages/{id}"), None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!((r.json()["id"].as_str(), r.json()["to"].as_str()), (Some(id.as_str()), Some("15551234567")));
    let r = http(a, "GET", "/v1/tenants/live/messages/3EB0FFFFFFFFFFFFFFFF", None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (404, "message_not_found"));
    // Per-tenant pacing overrides are validated and shown.
    let r = http(a, "PATCH", "/v1/tenants/live", Some(r#"{"pacing":{"per_minute":0}}"#), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_pacing"));
    let r = http(
        a,
        "PATCH",
        "/v1/tenants/live",
        Some(r#"{"pacing":{"per_minute":5,"gap_min_ms":20,"gap_max_ms":40}}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["pacing"]["per_minute"], 5);
    host.shutdown().await;
}

/// Queued messages survive a SIGTERM-like shutdown and a crash (SIGKILL stand-in): the same
/// ids are known to the next process, with their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_messages_survive_shutdown_and_crash() {
    let sim = sim().await;
    let store = mem_store();
    // A short lease, so the process after the crash takes over without a long wait.
    let boot = |holder: &str| {
        let mut cfg = config(&sim, holder);
        cfg.lease_ttl = std::time::Duration::from_millis(800);
        Host::start(cfg, Arc::clone(&store))
    };
    let host = boot("p1").await.unwrap();
    create_and_link(&host, &sim, "dur", r#"{"id":"dur"}"#, "15550102020").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = format!(r#"{{"to":"15551230000","text":"m{i}"}}"#);
        let r = http(host.api_addr(), "POST", "/v1/tenants/dur/messages", Some(&body), &[]).await;
        assert_eq!(r.status, 202, "{:?}", r.json());
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    host.shutdown().await;
    for (holder, crash) in [("p2", true), ("p3", false)] {
        let host = boot(holder).await.unwrap();
        wait_state(&host, &tid("dur"), TenantState::Connected).await;
        for id in &ids {
            let r = http(host.api_addr(), "GET", &format!("/v1/tenants/dur/messages/{id}"), None, &[]).await;
            assert_eq!(r.status, 200, "{id} lost after restart: {:?}", r.json());
            assert_eq!(r.json()["id"], id.as_str());
        }
        if crash {
            host.crash().await
        } else {
            host.shutdown().await;
        }
    }
}

/// Webhooks are signed with the tenant's secret and delivered in order; a failing endpoint is
/// retried with the same event id while another tenant's webhooks keep flowing, and the
/// failing tenant itself keeps connecting meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_webhooks_signed_ordered_isolated() {
    let sim = sim().await;
    let (rx, addr) = Receiver::start().await;
    rx.failing.lock().unwrap().insert("a".into());
    let host = start(&sim, &mem_store(), "wh").await;
    let body_a = format!(r#"{{"id":"wa","webhook_url":"http://{addr}/hook/a"}}"#);
    let body_b = format!(r#"{{"id":"wb","webhook_url":"http://{addr}/hook/b"}}"#);
    let secret_a = create_and_link(&host, &sim, "wa", &body_a, "15550103030").await;
    let secret_b = create_and_link(&host, &sim, "wb", &body_b, "15550104040").await;
    // B gets everything up to `connected` while A's endpoint has only failed.
    poll("tenant b's connected webhook", || async {
        states(&rx.delivered("b")).contains(&"connected".to_owned()).then_some(())
    })
    .await;
    poll("retries of tenant a", || async { (rx.hits("a").len() >= 2).then_some(()) }).await;
    assert!(rx.delivered("a").is_empty());
    let first_try = rx.hits("a")[0].id.clone();
    assert!(rx.hits("a").iter().all(|h| h.id == first_try), "a retry changed the event id");
    // A's endpoint recovers: everything arrives, in order, starting with the retried event.
    rx.failing.lock().unwrap().clear();
    poll("tenant a's connected webhook", || async {
        states(&rx.delivered("a")).contains(&"connected".to_owned()).then_some(())
    })
    .await;
    for (name, secret, tenant) in [("a", &secret_a, "wa"), ("b", &secret_b, "wb")] {
        let hits = rx.delivered(name);
        assert_eq!(
            hits.first().map(|h| h.id.as_str()),
            (name == "a").then_some(first_try.as_str()).or(hits.first().map(|h| h.id.as_str()))
        );
        for h in &hits {
            assert!(verify(secret.as_bytes(), &h.body, &h.signature), "bad signature on {h:?}");
            let j = h.json();
            assert_eq!(j["tenant"], tenant);
            assert_eq!(j["id"], h.id.as_str());
            assert!(j["timestamp"].as_u64().is_some());
        }
        let other = if name == "a" { &secret_b } else { &secret_a };
        assert!(!verify(other.as_bytes(), &hits[0].body, &hits[0].signature));
        let st = states(&hits);
        let pos =
            |s: &str| st.iter().position(|x| x == s).unwrap_or_else(|| panic!("{name}: no {s} in {st:?}"));
        assert!(pos("linking") < pos("connecting") && pos("connecting") < pos("connected"), "{name}: {st:?}");
        let events: Vec<String> =
            hits.iter().map(|h| h.json()["event"].as_str().unwrap().to_owned()).collect();
        let qr = events.iter().position(|e| e == "qr.updated").unwrap_or_else(|| panic!("{events:?}"));
        assert!(qr < events.len() - 1, "qr.updated after connected: {events:?}");
        let ids: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids.len(), hits.len(), "an event delivered twice after a 2xx");
    }
    host.shutdown().await;
}

/// End to end over real sockets: messages queued through the API (held back by a long
/// warm-up) survive a SIGTERM-like shutdown and a crash, then reach the peer phone exactly
/// once each with the ids the API returned (typing presence on, which the server ignores); their status moves past `sent`, `message.status`
/// webhooks arrive, and a text from the phone arrives as a signed `message.received` webhook
/// whose inbox item is deleted once delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_messages_end_to_end_exactly_once() {
    let sim = sim().await;
    let store = mem_store();
    let (rx, addr) = Receiver::start().await;
    let boot = |holder: &str| {
        let mut cfg = config(&sim, holder);
        cfg.lease_ttl = std::time::Duration::from_millis(800);
        Host::start(cfg, Arc::clone(&store))
    };
    let peer = phone(7777);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();

    let host = boot("e1").await.unwrap();
    let body = format!(
        r#"{{"id":"e2e","webhook_url":"http://{addr}/hook/e2e","pacing":{{"warmup_ms":600000,"typing":true}}}}"#
    );
    let secret = create_and_link(&host, &sim, "e2e", &body, "15550105050").await;
    let queue = |host: &Host, text: &str| {
        let body = format!(r#"{{"to":"{peer}","text":"{text}"}}"#);
        let a = host.api_addr();
        async move {
            let r = http(a, "POST", "/v1/tenants/e2e/messages", Some(&body), &[]).await;
            assert_eq!(r.status, 202, "{:?}", r.json());
            r.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let mut ids = vec![queue(&host, "one").await, queue(&host, "two").await];
    host.shutdown().await;
    let host = boot("e2").await.unwrap();
    wait_state(&host, &tid("e2e"), TenantState::Connected).await;
    ids.push(queue(&host, "three").await);
    host.crash().await;
    assert!(phone_inbox(&sim, &peer).await.is_empty(), "sent during the warm-up");

    let host = boot("e3").await.unwrap();
    wait_state(&host, &tid("e2e"), TenantState::Connected).await;
    let r = http(
        host.api_addr(),
        "PATCH",
        "/v1/tenants/e2e",
        Some(r#"{"pacing":{"warmup_ms":0,"typing":true}}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let got = poll("peer phone gets all three", || async {
        let v = phone_inbox(&sim, &peer).await;
        (v.len() >= 3).then_some(v)
    })
    .await;
    let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "{got:?}");
    assert_eq!(got.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
    for id in &ids {
        poll("status past sent", || async {
            let r = http(host.api_addr(), "GET", &format!("/v1/tenants/e2e/messages/{id}"), None, &[]).await;
            let s = r.json()["status"].as_str().unwrap_or_default().to_owned();
            ["sent", "delivered", "read"].contains(&s.as_str()).then_some(())
        })
        .await;
    }
    poll("message.status webhooks", || async {
        rx.delivered("e2e").iter().any(|h| h.json()["event"] == "message.status").then_some(())
    })
    .await;

    // Phone → tenant: a signed message.received webhook; the inbox item goes once delivered.
    let (p, own) = (peer.clone(), "15550105050".to_owned());
    sim.with_sim(move |s, now| s.phone_send(now, &p, &own, "inbound hi")).await.unwrap().unwrap();
    let hit = poll("message.received webhook", || async {
        rx.delivered("e2e").into_iter().find(|h| h.json()["event"] == "message.received")
    })
    .await;
    assert!(verify(secret.as_bytes(), &hit.body, &hit.signature));
    assert_eq!(hit.json()["data"]["message"]["text"], "inbound hi");
    assert_eq!(hit.json()["id"], hit.json()["data"]["inbox_id"]);
    poll("inbox drained", || async { store.list_inbox(&tid("e2e")).await.unwrap().is_empty().then_some(()) })
        .await;
    // The inbound round trip came after every send: a duplicate would be in the inbox by now.
    assert_eq!(phone_inbox(&sim, &peer).await.len(), 3, "a message went out twice");
    host.shutdown().await;
}

/// A message received while the tenant's endpoint fails stays in the durable inbox across a
/// restart and is delivered (same event id = inbox id) by the next process, which then deletes
/// the inbox item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_webhooks_redeliver_inbox_after_restart() {
    let sim = sim().await;
    let store = mem_store();
    let (rx, addr) = Receiver::start().await;
    rx.failing.lock().unwrap().insert("rd".into());
    let peer = phone(8888);
    let p = peer.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
    let host = start(&sim, &store, "r1").await;
    let body = format!(r#"{{"id":"rd","webhook_url":"http://{addr}/hook/rd"}}"#);
    let secret = create_and_link(&host, &sim, "rd", &body, "15550106060").await;
    let (p, own) = (peer.clone(), "15550106060".to_owned());
    sim.with_sim(move |s, now| s.phone_send(now, &p, &own, "while down")).await.unwrap().unwrap();
    let inbox = poll("inbox item", || async {
        let v = store.list_inbox(&tid("rd")).await.unwrap();
        (!v.is_empty()).then_some(v)
    })
    .await;
    poll("a failed attempt", || async { (!rx.hits("rd").is_empty()).then_some(()) }).await;
    host.shutdown().await;
    assert_eq!(store.list_inbox(&tid("rd")).await.unwrap().len(), 1, "inbox item lost at shutdown");

    rx.failing.lock().unwrap().clear();
    let host = start(&sim, &store, "r2").await;
    let hit = poll("redelivered message.received", || async {
        rx.delivered("rd").into_iter().find(|h| h.json()["event"] == "message.received")
    })
    .await;
    assert_eq!(hit.id, inbox[0].id);
    assert_eq!(hit.json()["data"]["message"]["text"], "while down");
    assert!(verify(secret.as_bytes(), &hit.body, &hit.signature));
    poll("inbox drained", || async { store.list_inbox(&tid("rd")).await.unwrap().is_empty().then_some(()) })
        .await;
    let received = rx.delivered("rd").iter().filter(|h| h.json()["event"] == "message.received").count();
    assert_eq!(received, 1);
    host.shutdown().await;
}
