//! Our client, driven by `staylinked::conn` over real WebSockets, against `sim::Server` on
//! 127.0.0.1: QR pairing through the admin HTTP API, 515, login, restart from persisted creds,
//! 440 replacement, the admin JSON contract.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use staylinked::conn::{self, Command, PersistError, Persister};
use staylinked::sim::{Server, SimConfig};
use staylinked::wa::client::{Client, ClientConfig, Creds, Delta, DisconnectReason, Event};
use staylinked::wa::noise::TrustAnchor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const PHONE: &str = "15550002222";
const WAIT: Duration = Duration::from_secs(20);

/// In-memory store keeping the latest creds (shared so the test can read them).
#[derive(Default, Clone)]
struct MemStore {
    creds: Arc<Mutex<Option<Creds>>>,
}

impl Persister for MemStore {
    async fn persist(&mut self, delta: &Delta) -> Result<(), PersistError> {
        if let Delta::Creds(c) = delta {
            *self.creds.lock().unwrap() = Some((**c).clone());
        }
        Ok(())
    }
}

type Run = tokio::task::JoinHandle<Result<DisconnectReason, String>>;

fn spawn(mut c: Client, store: MemStore) -> (Run, mpsc::Receiver<Event>, mpsc::Sender<Command>) {
    let (etx, erx) = mpsc::channel(64);
    let (ctx, mut crx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let mut store = store;
        conn::run(&mut c, &mut store, &etx, &mut crx).await.map_err(|e| e.to_string())
    });
    (task, erx, ctx)
}

/// Minimal HTTP/1.1 JSON request (no client library needed); returns status and body.
async fn http(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} /admin{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .filter(|b| !b.is_empty())
        .map_or(serde_json::Value::Null, |b| serde_json::from_str(b).unwrap_or(serde_json::Value::Null));
    (status, json)
}

fn client(server: &Server, creds: Creds, seed: u64) -> Client {
    let config = ClientConfig {
        url: server.ws_url(),
        trust: TrustAnchor { root_public: server.root_public_key(), root_serial: 0 },
        ..ClientConfig::default()
    };
    let now = tokio::time::Instant::now().into_std();
    Client::new(config, creds, Box::new(StdRng::seed_from_u64(seed)), now, 1_800_000_000)
}

async fn next_event(rx: &mut mpsc::Receiver<Event>, what: &str, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = rx.recv().await.unwrap_or_else(|| panic!("driver ended while waiting for {what}"));
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// QR pairing end to end over sockets: QR → admin scan → 515 → login → Ready; a restart from
/// the persisted creds logs in with no QR; the device list shows one device with 2 logins; a
/// second client with the same creds replaces the first (440 → `Replaced`, no reconnect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_restart_and_replace_over_sockets() {
    let server = Server::start(SimConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
    let (st, body) =
        http(&server, "POST", "/phones", Some(serde_json::json!({"phone": PHONE, "name": "Bob"}))).await;
    assert_eq!((st, body["jid"].as_str()), (201, Some("15550002222@s.whatsapp.net")));
    let (st, _) =
        http(&server, "POST", "/phones", Some(serde_json::json!({"phone": PHONE, "name": "Bob"}))).await;
    assert_eq!(st, 200);

    // 1. pair by QR
    let mut rng = StdRng::seed_from_u64(1);
    let store = MemStore::default();
    let (task1, mut erx, _ctx1) = spawn(client(&server, Creds::generate(&mut rng), 2), store.clone());
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
