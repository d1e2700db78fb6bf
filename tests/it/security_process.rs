//! Issue 14 (security review) with the real binary: no open API by accident (C1), keys that
//! survive a secret file's trailing newline (M6), `/metrics` behind its own key, webhook URLs
//! re-checked at delivery (M1) and logged without their query (L2), and the container
//! health probe (`staylinked healthcheck`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host_process::{Guard, free_port, wait_exit, wait_healthy};
use crate::host_util::*;

/// A key of the minimum length (48 hex characters, like `openssl rand -hex 24`).
const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// `staylinked run` on `port` with a memory store (or what `extra` says), nothing else from the
/// environment; stderr goes to `log`.
fn gateway(port: u16, log: &Path, extra: &[(&str, &str)]) -> Guard {
    Command::new(env!("CARGO_BIN_EXE_staylinked"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("STAYLINKED_STORE", "memory")
        .env("STAYLINKED_WA_URL", "ws://127.0.0.1:9/ws/chat")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .map(Guard)
        .unwrap()
}

fn log_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(format!("{name}.log"))
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Waits until cold-start hydration is done (`/readyz` 200), so hydrated tenants are served.
async fn wait_ready(port: u16) {
    wait_healthy(port).await;
    poll("readyz", || async {
        (http(addr(port), "GET", "/readyz", None, &[]).await.status == 200).then_some(())
    })
    .await;
}

/// The IPv4 address a listening socket on `port` is bound to, from /proc/net/tcp.
fn bound_ip(port: u16) -> Option<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let (local, state) = (cols.get(1)?, cols.get(3)?);
        let (ip, p) = local.split_once(':')?;
        (*state == "0A" && u16::from_str_radix(p, 16).ok()? == port)
            .then(|| u32::from_str_radix(ip, 16).ok().map(|v| std::net::Ipv4Addr::from(v.swap_bytes())))
            .flatten()
    })
}

/// C1: without an API key `run` listens on 127.0.0.1 only (the socket, not just a log line),
/// says so on start, and the API works there with zero setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_binds_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (free_port(), log_path(&dir, "nokey"));
    let _child = gateway(port, &log, &[]);
    wait_healthy(port).await;
    assert_eq!(bound_ip(port), Some(std::net::Ipv4Addr::LOCALHOST), "bound to loopback only");
    let r = http(addr(port), "POST", "/v1/tenants", Some(r#"{"id":"local"}"#), &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    poll("start-up notice", || async { read_log(&log).contains("listens on 127.0.0.1 only").then_some(()) })
        .await;
}

/// C1: a non-loopback bind without a key refuses to start with an error naming the ways out;
/// `STAYLINKED_INSECURE_NO_AUTH=1` starts it on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_bind_without_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (free_port(), log_path(&dir, "refused"));
    let mut child = gateway(port, &log, &[("STAYLINKED_BIND", "0.0.0.0")]);
    let status = wait_exit(&mut child, Duration::from_secs(15)).await;
    assert!(!status.success(), "must refuse to start");
    let err = read_log(&log);
    for needle in ["STAYLINKED_API_KEY", "STAYLINKED_INSECURE_NO_AUTH", "0.0.0.0"] {
        assert!(err.contains(needle), "error must mention {needle}: {err}");
    }

    let (port, log) = (free_port(), log_path(&dir, "insecure"));
    let _child = gateway(port, &log, &[("STAYLINKED_BIND", "0.0.0.0"), ("STAYLINKED_INSECURE_NO_AUTH", "1")]);
    wait_healthy(port).await;
    assert_eq!(bound_ip(port), Some(std::net::Ipv4Addr::UNSPECIFIED));
}

/// C1: keys shorter than 32 characters are refused at start with a clear error (the key itself
/// is never echoed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_keys_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for var in ["STAYLINKED_API_KEY", "STAYLINKED_METRICS_KEY"] {
        let (port, log) = (free_port(), log_path(&dir, var));
        let mut child = gateway(port, &log, &[(var, "hunter2-hunter2")]);
        let status = wait_exit(&mut child, Duration::from_secs(15)).await;
        assert!(!status.success(), "{var}: a short key must refuse to start");
        let err = read_log(&log);
        assert!(err.contains(var) && err.contains("at least 32"), "{var}: {err}");
        assert!(!err.contains("hunter2"), "the key is never echoed: {err}");
    }
}

/// M6: a key read from a secret file with a trailing newline (the README's Cloud Run recipe)
/// works; with a key the default bind serves other hosts (0.0.0.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_with_trailing_newline_works() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (free_port(), log_path(&dir, "newline"));
    let with_newline = format!("{KEY}\n");
    let _child = gateway(port, &log, &[("STAYLINKED_API_KEY", &with_newline)]);
    wait_healthy(port).await;
    assert_eq!(bound_ip(port), Some(std::net::Ipv4Addr::UNSPECIFIED));
    let r = http(addr(port), "GET", "/v1/tenants", None, &[("X-API-Key", KEY)]).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let bearer = format!("Bearer {KEY}");
    let r = http(addr(port), "GET", "/v1/tenants", None, &[("Authorization", &bearer)]).await;
    assert_eq!(r.status, 200);
    let r = http(addr(port), "GET", "/v1/tenants", None, &[("X-API-Key", &KEY[..40])]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = http(addr(port), "GET", "/v1/tenants", None, &[]).await;
    assert_eq!(r.status, 401);
}

/// L5: `STAYLINKED_METRICS_KEY` puts `/metrics` behind its own key (the API key does not open
/// it); health routes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_key_guards_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (free_port(), log_path(&dir, "metrics"));
    let mkey = "metrics-0123456789abcdef0123456789abcdef";
    let _child = gateway(port, &log, &[("STAYLINKED_API_KEY", KEY), ("STAYLINKED_METRICS_KEY", mkey)]);
    wait_healthy(port).await;
    assert_eq!(http(addr(port), "GET", "/metrics", None, &[]).await.status, 401);
    assert_eq!(http(addr(port), "GET", "/metrics", None, &[("X-API-Key", KEY)]).await.status, 401);
    let bearer = format!("Bearer {mkey}");
    let r = http(addr(port), "GET", "/metrics", None, &[("Authorization", &bearer)]).await;
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("staylinked_tenants"));
    wait_ready(port).await; // /readyz stays open (polled: it is 503 until hydration is done)
}

/// `staylinked healthcheck` (the Dockerfile's HEALTHCHECK) exits 0 against a live gateway and
/// non-zero when nothing answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_subcommand_probes_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (free_port(), log_path(&dir, "health"));
    let _child = gateway(port, &log, &[]);
    wait_healthy(port).await;
    let probe = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_staylinked"))
            .env_clear()
            .env("PORT", port.to_string())
            .arg("healthcheck")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(probe(port).success());
    assert!(!probe(free_port()).success());
}

/// An HTTP listener on 127.0.0.1 that counts the requests it gets.
async fn counting_listener() -> (std::sync::Arc<std::sync::atomic::AtomicUsize>, u16) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = std::sync::Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { axum::http::StatusCode::NO_CONTENT }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (hits, port)
}

/// Seeds tenant `t` with `webhook_url` into the embedded store at `path` (as an older version or
/// a since-changed flag would have left it), bypassing the API's checks.
async fn seed_webhook(path: &Path, t: &str, webhook_url: &str) {
    use staylinked::store::{StoreConfig, TenantStatus};
    let store = staylinked::store::open(&StoreConfig::Embedded { path: path.to_owned() }).await.unwrap();
    let status = TenantStatus { webhook_url: Some(webhook_url.to_owned()), ..TenantStatus::default() };
    store.create_tenant(&tid(t), &status).await.unwrap();
}

/// M1 at delivery time: a stored webhook URL pointing at 127.0.0.1 is refused when the event is
/// delivered (logged, retried, never connected) unless `STAYLINKED_WEBHOOK_ALLOW_PRIVATE=1`.
/// L2: the failure log carries neither the URL's query token nor its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_private_webhook_is_refused_at_delivery() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let (hits, hook_port) = counting_listener().await;
    let url = format!("http://127.0.0.1:{hook_port}/hook?token=tok_live_123");
    seed_webhook(&path, "w", &url).await;
    let root: String = sim.root_public_key().iter().map(|b| format!("{b:02x}")).collect();
    let (port, log) = (free_port(), log_path(&dir, "strict"));
    let store = path.display().to_string();
    let base = [
        ("STAYLINKED_STORE", "embedded"),
        ("STAYLINKED_STORE_PATH", store.as_str()),
        ("STAYLINKED_API_KEY", KEY),
        ("STAYLINKED_BIND", "127.0.0.1"),
        ("STAYLINKED_WEBHOOK_RETRY_BASE", "100ms"),
        ("STAYLINKED_WEBHOOK_RETRY_MAX", "200ms"),
        ("STAYLINKED_HOLDER_ID", "sec-test"),
    ];
    let ws = sim.ws_url();
    let mut env: Vec<(&str, &str)> = base.to_vec();
    env.extend([("STAYLINKED_WA_URL", ws.as_str()), ("STAYLINKED_WA_ROOT_KEY", root.as_str())]);
    let mut child = gateway(port, &log, &env);
    wait_ready(port).await;
    let key = [("X-API-Key", KEY)];
    let r = http(addr(port), "POST", "/v1/tenants/w/link", Some(r#"{"method":"qr"}"#), &key).await;
    assert_eq!(r.status, 202, "{:?}", r.json());
    poll("refused delivery logged", || async {
        read_log(&log).contains("webhook_url refused").then_some(())
    })
    .await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing may reach 127.0.0.1");
    let text = read_log(&log);
    assert!(!text.contains("tok_live_123") && !text.contains("/hook"), "URL leaked into logs: {text}");
    crate::host_process::sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).await.success());

    // Same store, private destinations allowed: a failing delivery (closed port) is logged
    // without the URL (reqwest's error text carries it, query token included).
    let (port, log) = (free_port(), log_path(&dir, "dev"));
    env.push(("STAYLINKED_WEBHOOK_ALLOW_PRIVATE", "1"));
    let _child = gateway(port, &log, &env);
    wait_ready(port).await;
    let closed = format!(r#"{{"webhook_url":"http://127.0.0.1:{}/hook?token=tok_live_123"}}"#, free_port());
    let r = http(addr(port), "PATCH", "/v1/tenants/w", Some(&closed), &key).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let r = http(addr(port), "POST", "/v1/tenants/w/link", Some(r#"{"method":"qr"}"#), &key).await;
    assert_eq!(r.status, 202, "{:?}", r.json());
    poll("failed delivery logged", || async {
        read_log(&log).contains("webhook delivery failed").then_some(())
    })
    .await;
    let text = read_log(&log);
    assert!(!text.contains("tok_live_123"), "query token leaked into logs: {text}");
}
