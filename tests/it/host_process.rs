//! The real binary as a child process (`staylinked run`) against the in-process simulator and an
//! embedded store in a temp dir: SIGTERM during traffic exits 0 within the deadline with every
//! delta durable; SIGKILL, then restart, reconnects every tenant without QR.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use staylinked::store::StoreConfig;

use crate::host_util::*;

const KEY: &str = "proc-key-0123456789abcdef0123456789";
const TENANTS: [&str; 3] = ["p0", "p1", "p2"];

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn spawn(sim: &staylinked::sim::Server, store: &Path, port: u16) -> Guard {
    spawn_with(sim, store, port, &[])
}

/// `STAYLINKED_TEST_CHILD_LOGS=<dir>`: keep each child's debug log as `<dir>/<port>.log`
/// (for debugging a failing process test; off by default).
fn child_log_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("STAYLINKED_TEST_CHILD_LOGS").map(std::path::PathBuf::from)
}

/// `staylinked run` on `port` with the embedded store at `store`, plus `extra` env vars.
pub(crate) fn spawn_with(
    sim: &staylinked::sim::Server,
    store: &Path,
    port: u16,
    extra: &[(&str, &str)],
) -> Guard {
    let root: String = sim.root_public_key().iter().map(|b| format!("{b:02x}")).collect();
    Command::new(env!("CARGO_BIN_EXE_staylinked"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("STAYLINKED_BIND", "127.0.0.1")
        .env("STAYLINKED_STORE", "embedded")
        .env("STAYLINKED_STORE_PATH", store)
        .env("STAYLINKED_API_KEY", KEY)
        .env("STAYLINKED_WA_URL", sim.ws_url())
        .env("STAYLINKED_WA_ROOT_KEY", root)
        .env("STAYLINKED_HOLDER_ID", "proc-test")
        // Each process gets its own holder (`proc-test-<nonce>`): after a SIGKILL the next
        // one waits for the lease to expire, so keep the TTL short.
        .env("STAYLINKED_LEASE_TTL", "3s")
        .env("STAYLINKED_HELD_RETRY", "500ms")
        .env("STAYLINKED_SHUTDOWN_DEADLINE", "8")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .envs(child_log_dir().map(|_| ("RUST_LOG", "staylinked=debug")))
        .stdout(Stdio::null())
        .stderr(child_log_dir().map_or_else(Stdio::null, |d| {
            std::fs::File::create(d.join(format!("{port}.log"))).map_or_else(|_| Stdio::null(), Stdio::from)
        }))
        .spawn()
        .map(Guard)
        .unwrap()
}

/// Kills the child when the test ends or fails, so no orphan keeps running.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

pub(crate) async fn api(port: u16, m: &str, p: &str, b: Option<&str>) -> Resp {
    http(addr(port), m, p, b, &[("X-API-Key", KEY)]).await
}

pub(crate) async fn wait_healthy(port: u16) {
    poll("healthz", || async {
        let ok = tokio::net::TcpStream::connect(addr(port)).await.is_ok()
            && http(addr(port), "GET", "/healthz", None, &[]).await.status == 200;
        ok.then_some(())
    })
    .await;
}

pub(crate) async fn wait_connected(port: u16, t: &str, restarted: bool) {
    poll(&format!("{t} connected"), || async {
        let r = api(port, "GET", &format!("/v1/tenants/{t}"), None).await;
        let state = r.json()["state"].as_str().unwrap_or_default().to_owned();
        if restarted {
            assert!(state != "linking" && state != "unlinked", "{t} asked for a QR after a restart: {state}");
        }
        (state == "connected").then_some(())
    })
    .await;
}

/// Links tenant `t` through the gateway on `port` with phone `ph` (QR scanned by the sim).
pub(crate) async fn link_by_qr(sim: &staylinked::sim::Server, port: u16, t: &str, ph: &str) {
    let p = ph.to_owned();
    sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();
    assert_eq!(api(port, "POST", "/v1/tenants", Some(&format!(r#"{{"id":"{t}"}}"#))).await.status, 201);
    assert_eq!(
        api(port, "POST", &format!("/v1/tenants/{t}/link"), Some(r#"{"method":"qr"}"#)).await.status,
        202
    );
    let qr = poll("qr", || async {
        let r = api(port, "GET", &format!("/v1/tenants/{t}/qr?format=json"), None).await;
        (r.status == 200).then(|| r.json()["qr"].as_str().unwrap().to_owned())
    })
    .await;
    let p = ph.to_owned();
    sim.with_sim(move |s, now| s.scan(now, &p, &qr)).await.unwrap().unwrap();
    wait_connected(port, t, false).await;
}

/// Outbox pacing off for process tests whose subject is not the pacing (it has its own tests).
pub(crate) const FAST_SEND: [(&str, &str); 4] = [
    ("STAYLINKED_SEND_WARMUP", "0s"),
    ("STAYLINKED_SEND_GAP_MIN", "0s"),
    ("STAYLINKED_SEND_GAP_MAX", "0s"),
    ("STAYLINKED_SEND_PER_MINUTE", "600"),
];

pub(crate) async fn wait_exit(child: &mut Guard, within: Duration) -> std::process::ExitStatus {
    let started = tokio::time::Instant::now();
    poll("child exit", || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    let status = child.wait().unwrap();
    assert!(started.elapsed() < within, "exit took {:?}", started.elapsed());
    status
}

pub(crate) fn sigterm(child: &Guard) {
    let ok = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(ok.success());
}

/// Invariants 5 and 1 with a real process: SIGTERM right after the last QR scan (pairing and
/// pre-key traffic in flight) → exit 0 within the deadline, every device the phone lists has
/// its creds durable, leases released; then SIGKILL at full speed → a restart reconnects every
/// tenant without QR, one device per phone, no 440.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_sigkill_is_survivable() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staylinked.redb");
    let port = free_port();
    let mut child = spawn(&sim, &path, port);
    wait_healthy(port).await;
    for (i, t) in TENANTS.iter().enumerate() {
        let ph = phone(900 + i);
        let p = ph.clone();
        sim.with_sim(move |s, _| s.add_phone(&p, "x")).await.unwrap().unwrap();
        assert_eq!(api(port, "POST", "/v1/tenants", Some(&format!(r#"{{"id":"{t}"}}"#))).await.status, 201);
        assert_eq!(
            api(port, "POST", &format!("/v1/tenants/{t}/link"), Some(r#"{"method":"qr"}"#)).await.status,
            202
        );
        let qr = poll("qr", || async {
            let r = api(port, "GET", &format!("/v1/tenants/{t}/qr?format=json"), None).await;
            (r.status == 200).then(|| r.json()["qr"].as_str().unwrap().to_owned())
        })
        .await;
        sim.with_sim(move |s, now| s.scan(now, &ph, &qr)).await.unwrap().unwrap();
        if i + 1 < TENANTS.len() {
            wait_connected(port, t, false).await;
        }
    }
    // SIGTERM while the last tenant's pairing / 515 / login / pre-key upload are in flight.
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(9)).await;
    assert!(status.success(), "SIGTERM must exit 0: {status:?}");

    {
        let store = staylinked::store::open(&StoreConfig::Embedded { path: path.clone() }).await.unwrap();
        for (i, t) in TENANTS.iter().enumerate() {
            let id = tid(t);
            let snap = store.hydrate(&id).await.unwrap();
            let on_phone = staylinked::demo::devices_on_phone(&sim, &phone(900 + i)).await.unwrap();
            let paired = snap.creds.as_ref().is_some_and(|c| c.me.is_some());
            assert_eq!(on_phone == 1, paired, "{t}: phone lists {on_phone} devices, creds durable: {paired}");
            assert!(snap.lease.as_ref().is_some_and(|l| l.holder.is_empty()), "{t}: lease released");
        }
    }
    let linked: Vec<&str> = {
        let mut v = Vec::new();
        for (i, t) in TENANTS.iter().enumerate() {
            if staylinked::demo::devices_on_phone(&sim, &phone(900 + i)).await.unwrap() == 1 {
                v.push(*t);
            }
        }
        v
    };
    assert!(linked.len() >= 2);
    let pairings = stats(&sim).await.pairings;

    // Restart, then SIGKILL, then restart again: every linked tenant reconnects without QR.
    let port = free_port();
    let mut child = spawn(&sim, &path, port);
    wait_healthy(port).await;
    for t in &linked {
        wait_connected(port, t, true).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    let port = free_port();
    let mut child = spawn(&sim, &path, port);
    wait_healthy(port).await;
    for t in &linked {
        wait_connected(port, t, true).await;
    }
    let s = stats(&sim).await;
    assert_eq!((s.pairings, s.replaced), (pairings, 0), "{s:?}");
    for i in 0..TENANTS.len() {
        assert!(staylinked::demo::devices_on_phone(&sim, &phone(900 + i)).await.unwrap() <= 1);
    }
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(9)).await.success());
}
