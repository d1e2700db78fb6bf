//! Shared fixtures of the socket-level simulator tests: an in-memory persister, the driver
//! spawner, a tiny HTTP client for `/admin`, client construction and bounded event waits.
//!
//! Test scaffolding only: no assertions about behaviour live here beyond "the fixture worked".

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

/// Upper bound for every single wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// In-memory store keeping the latest creds (shared so the test can read them).
#[derive(Default, Clone)]
pub(crate) struct MemStore {
    pub(crate) creds: Arc<Mutex<Option<Creds>>>,
}

impl MemStore {
    /// The last persisted creds, if any.
    pub(crate) fn latest(&self) -> Option<Creds> {
        self.creds.lock().unwrap().clone()
    }
}

impl Persister for MemStore {
    async fn persist(&mut self, delta: &Delta) -> Result<(), PersistError> {
        if let Delta::Creds(c) = delta {
            *self.creds.lock().unwrap() = Some((**c).clone());
        }
        Ok(())
    }
}

/// The driver task of one client: ends with the reason its last connection ended.
pub(crate) type Run = tokio::task::JoinHandle<Result<DisconnectReason, String>>;

/// Runs `c` under `conn::run` on its own task.
pub(crate) fn spawn(mut c: Client, store: MemStore) -> (Run, mpsc::Receiver<Event>, mpsc::Sender<Command>) {
    let (etx, erx) = mpsc::channel(64);
    let (ctx, mut crx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let mut store = store;
        conn::run(&mut c, &mut store, &etx, &mut crx).await.map_err(|e| e.to_string())
    });
    (task, erx, ctx)
}

/// Starts a simulator on a free port of 127.0.0.1.
pub(crate) async fn start_sim() -> Server {
    Server::start(SimConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap()
}

/// Minimal HTTP/1.1 JSON request (no client library needed); returns status and body.
pub(crate) async fn http(
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
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .unwrap_or_else(|_| panic!("admin {method} {path} did not answer in time"))
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .filter(|b| !b.is_empty())
        .map_or(serde_json::Value::Null, |b| serde_json::from_str(b).unwrap_or(serde_json::Value::Null));
    (status, json)
}

/// A client of `server` with the default keepalive.
pub(crate) fn client(server: &Server, creds: Creds, seed: u64) -> Client {
    client_with_keepalive(server, creds, seed, ClientConfig::default().keepalive)
}

/// A client of `server` pinging every `keepalive`.
pub(crate) fn client_with_keepalive(server: &Server, creds: Creds, seed: u64, keepalive: Duration) -> Client {
    let config = ClientConfig {
        url: server.ws_url(),
        trust: TrustAnchor { root_public: server.root_public_key(), root_serial: 0 },
        keepalive,
        ..ClientConfig::default()
    };
    let now = tokio::time::Instant::now().into_std();
    Client::new(config, creds, Box::new(StdRng::seed_from_u64(seed)), now, 1_800_000_000)
}

/// Fresh (unpaired) creds from `seed`.
pub(crate) fn fresh_creds(seed: u64) -> Creds {
    Creds::generate(&mut StdRng::seed_from_u64(seed))
}

/// The next event matching `f`, or a panic naming `what` after [`WAIT`].
pub(crate) async fn next_event(
    rx: &mut mpsc::Receiver<Event>,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
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
