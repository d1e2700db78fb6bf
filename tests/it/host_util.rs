//! Shared fixtures of the host/API tests: a simulator, fresh stores, hosts on 127.0.0.1:0,
//! linking through the simulated phone, a minimal HTTP client, and waits with deadlines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use staylinked::config::Config;
use staylinked::host::Host;
use staylinked::host::state::{TenantState, TenantView};
use staylinked::sim::{Server, SimConfig, Stats};
use staylinked::store::crypt::{Keyring, MasterKey};
use staylinked::store::memory::MemoryStore;
use staylinked::store::{Store, SystemClock};
use staylinked::types::TenantId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound on any single wait (a failing test fails, never hangs).
pub(crate) const WAIT: Duration = Duration::from_secs(15);

pub(crate) async fn sim() -> Server {
    Server::start(SimConfig::new("127.0.0.1:0".parse().unwrap())).await.unwrap()
}

pub(crate) fn mem_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(Arc::new(Keyring::new(&MasterKey::generate(), &[])), Arc::new(SystemClock)))
}

pub(crate) fn config(sim: &Server, holder: &str) -> Config {
    let mut c = Config::for_simulator(sim.ws_url(), sim.root_public_key(), holder);
    // The webhook receivers of these tests listen on 127.0.0.1 over plain http.
    c.webhook.egress.allow_private = true;
    c
}

pub(crate) async fn start(sim: &Server, store: &Arc<dyn Store>, holder: &str) -> Host {
    Host::start(config(sim, holder), Arc::clone(store)).await.unwrap()
}

pub(crate) async fn stats(sim: &Server) -> Stats {
    sim.with_sim(|s, _| s.stats()).await.unwrap()
}

/// What the simulated phone `phone` decrypted, as `(message id, text)` in arrival order.
pub(crate) async fn phone_inbox(sim: &Server, phone: &str) -> Vec<(String, String)> {
    let p = phone.to_owned();
    sim.with_sim(move |s, _| s.phone_inbox(&p))
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.text.unwrap_or_default()))
        .collect()
}

pub(crate) fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

pub(crate) fn phone(i: usize) -> String {
    format!("1555010{i:04}")
}

/// Creates `n` tenants `{prefix}{i}` on `host` and links each by QR (phone `phone(i)`).
pub(crate) async fn link_n(host: &Host, sim: &Server, prefix: &str, n: usize) -> Vec<(TenantId, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = tid(&format!("{prefix}{i}"));
        let ph = phone(i + 100 * prefix.len());
        host.registry().create(id.clone(), None).await.unwrap();
        staylinked::demo::link_by_qr(sim, host.registry(), &id, &ph, WAIT).await.unwrap();
        out.push((id, ph));
    }
    out
}

pub(crate) async fn wait_state(host: &Host, id: &TenantId, state: TenantState) -> TenantView {
    staylinked::demo::wait_view(host.registry(), id, state.as_str(), WAIT, |v| v.state == state)
        .await
        .unwrap_or_else(|e| {
            panic!("{e}; view: {:?}", host.registry().get(id).map(|h| h.view.borrow().clone()))
        })
}

/// Minimal HTTP/1.1 response.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub(crate) fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// One HTTP request (Connection: close) with optional JSON body and extra headers.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut s = tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(addr)).await.unwrap().unwrap();
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("http header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    Resp { status, content_type: header("content-type").unwrap_or_default(), body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// Polls `f` every 20 ms until it returns `Some`, failing after [`WAIT`].
pub(crate) async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
