//! Bounded work per inbound message and bounded memory per tenant (review H1, H2, M2): a
//! received message the store can never take is failed with a reason and the tenant goes on; a
//! full inbox stops acknowledging (WhatsApp keeps the messages) and resumes when deliveries or
//! `POST /inbox/ack` free space; the webhook backlog is paged from the durable inbox; a flood
//! of one tenant (inbound and outbox) keeps the real binary's RSS bounded while another tenant
//! keeps sending and receiving.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use staylinked::host::Host;
use staylinked::host::state::TenantState;
use staylinked::sim::Server;
use staylinked::store::Store;
use staylinked::types::TenantId;

use crate::host_util::*;

/// A webhook endpoint on 127.0.0.1 that logs every body and answers 500 while `failing`.
#[derive(Default)]
pub(crate) struct Hook {
    hits: Mutex<Vec<(bool, serde_json::Value)>>,
    failing: std::sync::atomic::AtomicBool,
}

impl Hook {
    pub(crate) async fn start(failing: bool) -> (Arc<Self>, SocketAddr) {
        let me = Arc::new(Self::default());
        me.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
        let app =
            axum::Router::new().route("/hook/{name}", axum::routing::post(hook)).with_state(Arc::clone(&me));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (me, addr)
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bodies answered 2xx, in order.
    fn delivered(&self) -> Vec<serde_json::Value> {
        self.hits.lock().unwrap().iter().filter(|(ok, _)| *ok).map(|(_, b)| b.clone()).collect()
    }

    /// Delivered events named `event`.
    fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.delivered().into_iter().filter(|b| b["event"] == event).collect()
    }

    /// Texts of delivered `message.received` events, in delivery order.
    fn texts(&self) -> Vec<String> {
        self.events("message.received")
            .iter()
            .map(|b| b["data"]["message"]["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn hook(State(h): State<Arc<Hook>>, Path(_name): Path<String>, body: Bytes) -> StatusCode {
    let ok = !h.failing.load(std::sync::atomic::Ordering::SeqCst);
    let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    h.hits.lock().unwrap().push((ok, v));
    if ok { StatusCode::NO_CONTENT } else { StatusCode::INTERNAL_SERVER_ERROR }
}

/// The texts in the tenant's durable inbox, in id order.
async fn inbox_texts(store: &Arc<dyn Store>, t: &TenantId) -> Vec<String> {
    store
        .list_inbox(t)
        .await
        .unwrap()
        .iter()
        .filter_map(|i| {
            let v: serde_json::Value = serde_json::from_slice(i.payload.expose()).ok()?;
            Some(v["data"]["message"]["text"].as_str()?.to_owned())
        })
        .collect()
}

/// Creates `id` (webhook to `hook`, if any) through the API and links it to `own` by QR.
async fn create_linked(host: &Host, sim: &Server, id: &str, hook: Option<SocketAddr>, own: &str) -> TenantId {
    let body = match hook {
        Some(a) => format!(r#"{{"id":"{id}","webhook_url":"http://{a}/hook/{id}"}}"#),
        None => format!(r#"{{"id":"{id}"}}"#),
    };
    let r = http(host.api_addr(), "POST", "/v1/tenants", Some(&body), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let t = tid(id);
    staylinked::demo::link_by_qr(sim, host.registry(), &t, own, WAIT).await.unwrap();
    wait_state(host, &t, TenantState::Connected).await;
    t
}

async fn add_phone(sim: &Server, p: &str) {
    let p = p.to_owned();
    sim.with_sim(move |s, _| s.add_phone(&p, "peer")).await.unwrap().unwrap();
}

async fn phone_send(sim: &Server, from: &str, to: &str, text: String) {
    let (f, t) = (from.to_owned(), to.to_owned());
    sim.with_sim(move |s, now| s.phone_send(now, &f, &t, &text)).await.unwrap().unwrap();
}

/// H1: a received message the store can never take (a text over the 1 MiB value limit) is
/// failed with a reason — a `message.failed` webhook and a metric — and acknowledged, so the
/// server does not redeliver it forever; the tenant stays connected and the next message is
/// stored and delivered. Before the fix the commit was retried forever and nothing after the
/// big message was ever processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_inbound_message_is_failed_and_the_tenant_goes_on() {
    let sim = sim().await;
    let store = mem_store();
    let host = start(&sim, &store, "lim-a").await;
    let (hook, addr) = Hook::start(false).await;
    let own = phone(7001);
    let peer = phone(7002);
    add_phone(&sim, &peer).await;
    let t = create_linked(&host, &sim, "h1", Some(addr), &own).await;

    phone_send(&sim, &peer, &own, "x".repeat(1_100_000)).await;
    phone_send(&sim, &peer, &own, "small after".to_owned()).await;

    let texts = poll("the message after the rejected one", || async {
        let v = inbox_texts(&store, &t).await;
        let delivered = hook.texts();
        (v.iter().any(|x| x == "small after") || delivered.iter().any(|x| x == "small after")).then_some(())
    })
    .await;
    let () = texts;
    let failed =
        poll("message.failed webhook", || async { hook.events("message.failed").first().cloned() }).await;
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("rejected") && reason.contains("limit"), "{failed}");
    assert!(failed["data"]["id"].as_str().is_some_and(|s| !s.is_empty()), "{failed}");
    poll("small after delivered by webhook", || async {
        hook.texts().iter().any(|x| x == "small after").then_some(())
    })
    .await;
    assert!(hook.texts().iter().all(|x| x.len() < 1000), "the rejected text was never stored or delivered");
    let view = host.registry().get(&t).unwrap().view.borrow().clone();
    assert_eq!(view.state, TenantState::Connected, "{view:?}");
    let metrics = http(host.api_addr(), "GET", "/metrics", None, &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("staylinked_messages_rejected_total 1"), "{text}");
    // Acknowledged: the server keeps nothing for the device (no redelivery loop).
    poll("nothing left queued at the server", || async {
        let s = stats(&sim).await;
        (s.phone_decrypt_failures == 0).then_some(())
    })
    .await;
    host.shutdown().await;
}

/// H2: with a 3-message inbox cap and a failing webhook, the inbox holds exactly 3 messages, the
/// tenant reports `inbox_full` (view, metric, `tenant.inbox_full` webhook) and stops
/// acknowledging; `GET /inbox` pages the stored messages and `POST /inbox/ack` deletes one, which
/// lets the next one in; once the endpoint recovers every other message is delivered from the
/// durable inbox, in order, exactly once — nothing was lost while the inbox was full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbox_stops_acking_and_resumes_when_space_frees() {
    let sim = sim().await;
    let store = mem_store();
    let mut cfg = config(&sim, "lim-b");
    cfg.limits.inbox_max_messages = 3;
    let host = Host::start(cfg, Arc::clone(&store)).await.unwrap();
    let (hook, addr) = Hook::start(true).await;
    let own = phone(7011);
    let peer = phone(7012);
    add_phone(&sim, &peer).await;
    let t = create_linked(&host, &sim, "h2", Some(addr), &own).await;
    let api = host.api_addr();

    for i in 0..8 {
        phone_send(&sim, &peer, &own, format!("m{i}")).await;
    }
    poll("inbox full", || async {
        let r = http(api, "GET", "/v1/tenants/h2", None, &[]).await;
        (r.json()["inbox_full"] == true).then_some(())
    })
    .await;
    assert_eq!(inbox_texts(&store, &t).await, ["m0", "m1", "m2"], "the cap holds");

    // Paged reads of the durable inbox.
    let r = http(api, "GET", "/v1/tenants/h2/inbox?limit=2", None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let page = r.json();
    let items = page["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["event"], "message.received");
    assert_eq!(items[0]["data"]["message"]["text"], "m0");
    let next = page["next"].as_str().unwrap().to_owned();
    let r = http(api, "GET", &format!("/v1/tenants/h2/inbox?after={next}&limit=500"), None, &[]).await;
    let rest = r.json()["items"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["data"]["message"]["text"], "m2");
    let r = http(api, "GET", "/v1/tenants/h2/inbox?limit=501", None, &[]).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_limit")));

    // Acking one frees one slot: the next message comes in (it waited at the server).
    let first = items[0]["id"].as_str().unwrap();
    let r =
        http(api, "POST", "/v1/tenants/h2/inbox/ack", Some(&format!(r#"{{"ids":["{first}"]}}"#)), &[]).await;
    assert_eq!((r.status, r.json()["acked"].as_u64()), (200, Some(1)), "{:?}", r.json());
    poll("m3 after the ack", || async {
        (inbox_texts(&store, &t).await == ["m1", "m2", "m3"]).then_some(())
    })
    .await;

    // One full spell before the ack; after it m3 fits and m4 may already have started another.
    let metrics = String::from_utf8_lossy(&http(api, "GET", "/metrics", None, &[]).await.body).into_owned();
    let spells: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("staylinked_inbox_full_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&spells), "{metrics}");

    // The endpoint recovers: everything else arrives from the inbox, in order, once.
    hook.set_failing(false);
    let want: Vec<String> = (1..8).map(|i| format!("m{i}")).collect();
    poll("all delivered", || async { (hook.texts().len() >= want.len()).then_some(()) }).await;
    assert_eq!(hook.texts(), want, "in order, exactly once, m0 acked by hand");
    let full = hook.events("tenant.inbox_full");
    assert!(!full.is_empty(), "tenant.inbox_full delivered");
    assert_eq!(full[0]["data"]["max_messages"], 3);
    poll("inbox drained", || async { inbox_texts(&store, &t).await.is_empty().then_some(()) }).await;
    let r = http(api, "GET", "/v1/tenants/h2", None, &[]).await;
    assert!(r.json().get("inbox_full").is_none(), "{:?}", r.json());
    host.shutdown().await;
}

/// VmRSS of a process in bytes (Linux `/proc/<pid>/status`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Creates `id` on the child at `port` and links it to `own` by QR.
async fn link_on_child(sim: &Server, port: u16, id: &str, body: &str, own: &str) {
    use crate::host_process::{api, wait_connected};
    let own = own.to_owned();
    let p = own.clone();
    sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();
    let r = api(port, "POST", "/v1/tenants", Some(body)).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = api(port, "POST", &format!("/v1/tenants/{id}/link"), Some(r#"{"method":"qr"}"#)).await;
    assert_eq!(r.status, 202);
    let qr = poll("qr", || async {
        let r = api(port, "GET", &format!("/v1/tenants/{id}/qr?format=json"), None).await;
        (r.status == 200).then(|| r.json()["qr"].as_str().unwrap().to_owned())
    })
    .await;
    sim.with_sim(move |s, now| s.scan(now, &own, &qr)).await.unwrap().unwrap();
    wait_connected(port, id, false).await;
}

/// H2 / M2 with the real binary: one tenant is flooded — hundreds of 60 KB texts from a phone
/// while its webhook fails, and hundreds of 60 KB `POST /messages` held back by pacing — and
/// the gateway's RSS stays within a bound derived from the caps (the inbox stops at its cap
/// and waits at WhatsApp, the outbox answers 429 `outbox_full`), also after a SIGKILL and a
/// restart (hydration loads no inbox bodies); meanwhile another tenant still receives and
/// sends. Before the fix the backlog and the outbox grew in RAM with every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_one_tenant_keeps_rss_bounded_and_others_serving() {
    use crate::host_process::{api, free_port, spawn_with, wait_connected, wait_healthy};
    const FLOOD: usize = 250;
    const INBOX_MAX_BYTES: u64 = 4 << 20;
    const OUTBOX_MAX_BYTES: u64 = 2 << 20;
    let sim = sim().await;
    let (_hook, addr) = Hook::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let (inbox_bytes, outbox_bytes) = (INBOX_MAX_BYTES.to_string(), OUTBOX_MAX_BYTES.to_string());
    let env = [
        ("STAYLINKED_INBOX_MAX_MESSAGES", "40"),
        ("STAYLINKED_INBOX_MAX_BYTES", inbox_bytes.as_str()),
        ("STAYLINKED_OUTBOX_MAX_MESSAGES", "1000"),
        ("STAYLINKED_OUTBOX_MAX_BYTES", outbox_bytes.as_str()),
        ("STAYLINKED_WEBHOOK_ALLOW_PRIVATE", "1"),
        ("STAYLINKED_WEBHOOK_RETRY_MAX", "1s"),
    ];
    let port = free_port();
    let child = spawn_with(&sim, &path, port, &env);
    wait_healthy(port).await;
    let (f_own, g_own, peer, g_peer) = (phone(7021), phone(7022), phone(7023), phone(7024));
    add_phone(&sim, &peer).await;
    add_phone(&sim, &g_peer).await;
    let f_body = format!(
        r#"{{"id":"flood","webhook_url":"http://{addr}/hook/flood","pacing":{{"warmup_ms":600000}}}}"#
    );
    link_on_child(&sim, port, "flood", &f_body, &f_own).await;
    link_on_child(&sim, port, "calm", r#"{"id":"calm"}"#, &g_own).await;
    let baseline = rss_bytes(child.id());
    // Generous: several times everything the caps let one tenant hold, plus fixed slack. The
    // old code held every message in RAM (~250 KB of RSS per 60 KB message).
    let bound = baseline + 6 * (INBOX_MAX_BYTES + OUTBOX_MAX_BYTES) + (24 << 20);

    let text = |i: usize| format!("{i:05} {}", "x".repeat(60_000));
    for i in 0..FLOOD {
        phone_send(&sim, &peer, &f_own, text(i)).await;
    }
    let (mut queued, mut full) = (0, 0);
    for i in 0..FLOOD {
        let body = serde_json::json!({"to": peer, "text": text(i)}).to_string();
        let r = api(port, "POST", "/v1/tenants/flood/messages", Some(&body)).await;
        match r.status {
            202 => queued += 1,
            429 => {
                assert_eq!(r.json()["error"]["code"], "outbox_full", "{:?}", r.json());
                full += 1;
            }
            s => panic!("unexpected {s}: {:?}", r.json()),
        }
    }
    assert!(queued > 0 && full > 0, "the outbox byte cap answers 429: {queued} queued, {full} refused");
    assert!(queued <= 35, "2 MiB of 60 KB texts: {queued} queued");
    poll("inbox full", || async {
        let r = api(port, "GET", "/v1/tenants/flood", None).await;
        (r.json()["inbox_full"] == true).then_some(())
    })
    .await;
    let peak = rss_bytes(child.id());
    assert!(peak < bound, "RSS {peak} B after the flood exceeds {bound} B (baseline {baseline} B)");
    let metrics = api(port, "GET", "/metrics", None).await;
    let m = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(m.contains("staylinked_inbox_full_total 1"), "{m}");
    assert!(m.contains(&format!("staylinked_outbox_full_total {full}")), "{m}");

    // The other tenant still receives and sends.
    phone_send(&sim, &g_peer, &g_own, "hello calm".to_owned()).await;
    poll("calm receives", || async {
        let r = api(port, "GET", "/v1/tenants/calm/inbox", None).await;
        let items = r.json()["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|i| i["data"]["message"]["text"] == "hello calm").then_some(())
    })
    .await;
    let body = serde_json::json!({"to": g_peer, "text": "calm replies"}).to_string();
    assert_eq!(api(port, "POST", "/v1/tenants/calm/messages", Some(&body)).await.status, 202);
    poll("calm sends", || async {
        let p = g_peer.clone();
        let inbox = sim.with_sim(move |s, _| s.phone_inbox(&p)).await.unwrap().unwrap();
        inbox.iter().any(|e| e.text.as_deref() == Some("calm replies")).then_some(())
    })
    .await;

    // SIGKILL and restart: hydration loads ids, not bodies; the server redelivers what waited.
    drop(child);
    let port = free_port();
    let child = spawn_with(&sim, &path, port, &env);
    wait_healthy(port).await;
    wait_connected(port, "flood", true).await;
    wait_connected(port, "calm", true).await;
    poll("inbox full again after the restart", || async {
        let r = api(port, "GET", "/v1/tenants/flood", None).await;
        (r.json()["inbox_full"] == true).then_some(())
    })
    .await;
    let after = rss_bytes(child.id());
    assert!(after < bound, "RSS {after} B after the restart exceeds {bound} B (baseline {baseline} B)");
    let r = api(port, "GET", "/v1/tenants/flood/inbox?limit=500", None).await;
    let n = r.json()["items"].as_array().map_or(0, Vec::len);
    assert!(n <= 40, "the inbox cap held across the restart: {n}");
}

/// A received message bigger than the whole inbox byte cap could never fit: it is failed at
/// once (`message.failed`, reason names the cap) instead of waiting for space forever, and the
/// next message is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_bigger_than_the_inbox_cap_is_failed_not_waited_for() {
    let sim = sim().await;
    let store = mem_store();
    let mut cfg = config(&sim, "lim-c");
    cfg.limits.inbox_max_bytes = 4_000;
    let host = Host::start(cfg, Arc::clone(&store)).await.unwrap();
    let (hook, addr) = Hook::start(false).await;
    let own = phone(7031);
    let peer = phone(7032);
    add_phone(&sim, &peer).await;
    let t = create_linked(&host, &sim, "h3", Some(addr), &own).await;
    phone_send(&sim, &peer, &own, "y".repeat(8_000)).await;
    phone_send(&sim, &peer, &own, "fits".to_owned()).await;
    let failed = poll("message.failed", || async { hook.events("message.failed").first().cloned() }).await;
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("the inbox holds at most 4000 bytes"), "{failed}");
    poll("fits delivered", || async { hook.texts().iter().any(|x| x == "fits").then_some(()) }).await;
    assert_eq!(hook.texts(), ["fits"]);
    let view = host.registry().get(&t).unwrap().view.borrow().clone();
    assert!(!view.inbox_full && view.state == TenantState::Connected, "{view:?}");
    host.shutdown().await;
}
