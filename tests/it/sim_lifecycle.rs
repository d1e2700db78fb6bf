//! Connection lifecycle of our client against `sim::Server` over real sockets on 127.0.0.1:
//! pair-code linking, restarts from persisted creds, keepalive death, corrupt frames, the
//! device limit, every injectable fault, and garbage from raw WebSocket peers.
//!
//! Each test owns its simulator and its phone numbers; every wait is bounded.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use staylinked::conn::Command;
use staylinked::sim::{MAX_COMPANIONS, Server};
use staylinked::wa::client::{DisconnectReason, Event, ProtocolError};
use staylinked::wa::frame::{self, INTRO};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::support::{
    MemStore, Run, WAIT, client, client_with_keepalive, fresh_creds, http, next_event, spawn, start_sim,
};

/// A keepalive short enough for a socket test to see two intervals pass quickly.
const FAST_KEEPALIVE: Duration = Duration::from_millis(300);

/// One linked companion driven over a socket.
struct Linked {
    task: Run,
    events: mpsc::Receiver<Event>,
    commands: mpsc::Sender<Command>,
    store: MemStore,
    device_jid: String,
}

async fn add_phone(server: &Server, phone: &str) {
    let (st, body) =
        http(server, "POST", "/phones", Some(serde_json::json!({"phone": phone, "name": "Sim"}))).await;
    assert_eq!(st, 201, "creating phone {phone}: {body}");
}

/// Pairs a fresh companion by QR and waits until it is Ready after the 515 restart.
async fn pair_by_qr(server: &Server, phone: &str, seed: u64, keepalive: Duration) -> Linked {
    let store = MemStore::default();
    let c = client_with_keepalive(server, fresh_creds(seed), seed + 1, keepalive);
    let (task, mut events, commands) = spawn(c, store.clone());
    let Event::Qr(qr) = next_event(&mut events, "qr", |e| matches!(e, Event::Qr(_))).await else {
        unreachable!()
    };
    let (st, body) =
        http(server, "POST", &format!("/phones/{phone}/scan"), Some(serde_json::json!({"qr": qr}))).await;
    assert_eq!(st, 200, "scan for {phone}: {body}");
    let device_jid = body["device_jid"].as_str().expect("scan answers a device jid").to_owned();
    next_event(&mut events, "paired", |e| matches!(e, Event::Paired { .. })).await;
    next_event(&mut events, "ready after 515", |e| matches!(e, Event::Ready { .. })).await;
    Linked { task, events, commands, store, device_jid }
}

/// The devices list of `phone`.
async fn devices(server: &Server, phone: &str) -> Vec<serde_json::Value> {
    let (st, body) = http(server, "GET", &format!("/phones/{phone}/devices"), None).await;
    assert_eq!(st, 200, "devices of {phone}: {body}");
    body["devices"].as_array().cloned().unwrap_or_default()
}

/// `online` of one device in the admin list (`None` when it is not listed).
async fn online(server: &Server, phone: &str, jid: &str) -> Option<bool> {
    devices(server, phone).await.iter().find(|d| d["device_jid"] == jid).and_then(|d| d["online"].as_bool())
}

/// Polls the admin API until `jid`'s `online` flag equals `want`, failing after [`WAIT`].
async fn wait_online(server: &Server, phone: &str, jid: &str, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if online(server, phone, jid).await == Some(want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{jid} never became online={want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the driver task to end and returns its reason.
async fn end_reason(task: Run, within: Duration, what: &str) -> DisconnectReason {
    tokio::time::timeout(within, task)
        .await
        .unwrap_or_else(|_| panic!("{what}: the driver did not end within {within:?}"))
        .expect("driver task panicked")
        .unwrap_or_else(|e| panic!("{what}: driver error {e}"))
}

async fn inject(server: &Server, device_jid: &str, fault: &str) {
    let (st, body) =
        http(server, "POST", "/faults", Some(serde_json::json!({"device_jid": device_jid, "fault": fault})))
            .await;
    assert_eq!(st, 204, "fault {fault} on {device_jid}: {body}");
}

/// Pair-code linking over sockets: the client asks for a code, the phone enters it through
/// the admin API, pair-success → 515 → login → Ready, and the phone lists exactly one device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_linking_over_sockets() {
    const PHONE: &str = "15550003001";
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let store = MemStore::default();
    let (task, mut events, commands) = spawn(client(&server, fresh_creds(301), 302), store.clone());
    // A pair code can only be requested while the registration (QR) phase is showing.
    next_event(&mut events, "first qr", |e| matches!(e, Event::Qr(_))).await;
    commands.send(Command::RequestPairCode(PHONE.into())).await.unwrap();
    let Event::PairCode(code) =
        next_event(&mut events, "pair code", |e| matches!(e, Event::PairCode(_))).await
    else {
        unreachable!()
    };
    assert!(code.len() == 9 && code.as_bytes().get(4) == Some(&b'-'), "grouped XXXX-XXXX: {code:?}");
    // The companion_hello travels over the socket while the event reaches us; retry the
    // phone's entry until the simulator has seen the request (bounded).
    let deadline = tokio::time::Instant::now() + WAIT;
    let (st, body) = loop {
        let (st, body) = http(
            &server,
            "POST",
            &format!("/phones/{PHONE}/link-code"),
            Some(serde_json::json!({"code": code})),
        )
        .await;
        if st != 404 || tokio::time::Instant::now() >= deadline {
            break (st, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st, 200, "link-code: {body}");
    assert_eq!(body["device_jid"], format!("{PHONE}:1@s.whatsapp.net"));
    let Event::Paired { jid } =
        next_event(&mut events, "paired", |e| matches!(e, Event::Paired { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(jid, format!("{PHONE}:1@s.whatsapp.net"));
    next_event(&mut events, "ready after 515", |e| matches!(e, Event::Ready { .. })).await;
    assert!(store.latest().is_some_and(|c| c.is_paired()), "paired creds were persisted");
    let devs = devices(&server, PHONE).await;
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!((devs[0]["logins"].as_u64(), devs[0]["online"].as_bool()), (Some(1), Some(true)));
    let (_, stats) = http(&server, "GET", "/stats", None).await;
    assert_eq!((stats["pairings"].as_u64(), stats["stream_errors"]["515"].as_u64()), (Some(1), Some(1)));
    commands.send(Command::Disconnect).await.unwrap();
    assert_eq!(end_reason(task, WAIT, "disconnect").await, DisconnectReason::LocalClose);
    server.shutdown().await;
}

/// Two restarts from persisted creds log in without a QR; the phone keeps one device and its
/// `logins` counter goes 1 → 2 → 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_twice_from_persisted_creds() {
    const PHONE: &str = "15550003002";
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let first = pair_by_qr(&server, PHONE, 311, FAST_KEEPALIVE * 100).await;
    first.commands.send(Command::Disconnect).await.unwrap();
    assert_eq!(end_reason(first.task, WAIT, "first disconnect").await, DisconnectReason::LocalClose);
    let creds = first.store.latest().expect("creds persisted at pairing");
    for (round, seed) in [(2u64, 320u64), (3, 330)] {
        let (task, mut events, commands) = spawn(client(&server, creds.clone(), seed), MemStore::default());
        let e = next_event(&mut events, "login", |e| matches!(e, Event::Qr(_) | Event::Ready { .. })).await;
        assert!(matches!(e, Event::Ready { .. }), "restart {round} showed a QR: {e:?}");
        let devs = devices(&server, PHONE).await;
        assert_eq!(devs.len(), 1, "restart {round}: {devs:?}");
        assert_eq!(devs[0]["logins"].as_u64(), Some(round), "restart {round}: {devs:?}");
        assert_eq!(devs[0]["device_jid"], first.device_jid);
        commands.send(Command::Disconnect).await.unwrap();
        assert_eq!(end_reason(task, WAIT, "disconnect").await, DisconnectReason::LocalClose);
    }
    let (_, stats) = http(&server, "GET", "/stats", None).await;
    assert_eq!((stats["logins"].as_u64(), stats["pairings"].as_u64()), (Some(3), Some(1)), "{stats}");
    server.shutdown().await;
}

/// `mute_pongs`: a healthy connection survives several fast keepalive intervals; once pongs
/// stop, the client ends with `ConnectionLost` (a reconnectable reason) on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_pongs_is_detected_by_keepalive() {
    const PHONE: &str = "15550003003";
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let mut l = pair_by_qr(&server, PHONE, 341, FAST_KEEPALIVE).await;
    // Healthy: answered pings keep the connection up for four intervals.
    let early = tokio::time::timeout(FAST_KEEPALIVE * 4, &mut l.task).await;
    assert!(early.is_err(), "a connection with answered pings ended: {early:?}");
    inject(&server, &l.device_jid, "mute_pongs").await;
    // Detection is due within two intervals (exact bound proven with a virtual clock in
    // wa::client::tests); the socket test allows generous scheduling slack.
    let r = end_reason(l.task, FAST_KEEPALIVE * 20, "mute_pongs").await;
    assert_eq!(r, DisconnectReason::ConnectionLost);
    assert!(r.should_reconnect() && !r.is_logged_out());
    wait_online(&server, PHONE, &l.device_jid, false).await;
    server.shutdown().await;
}

/// `corrupt_frame`: the client disconnects cleanly with `Protocol(Decrypt)`, and the
/// simulator keeps serving a second companion of the same phone, which stays online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frame_is_typed_and_isolated() {
    const PHONE: &str = "15550003004";
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let victim = pair_by_qr(&server, PHONE, 351, FAST_KEEPALIVE * 100).await;
    let bystander = pair_by_qr(&server, PHONE, 361, FAST_KEEPALIVE * 100).await;
    assert_ne!(victim.device_jid, bystander.device_jid);
    inject(&server, &victim.device_jid, "corrupt_frame").await;
    let r = end_reason(victim.task, WAIT, "corrupt_frame").await;
    assert_eq!(r, DisconnectReason::Protocol(ProtocolError::Decrypt));
    assert!(r.should_reconnect() && !r.is_logged_out());
    wait_online(&server, PHONE, &victim.device_jid, false).await;
    assert_eq!(online(&server, PHONE, &bystander.device_jid).await, Some(true));
    assert!(!bystander.task.is_finished(), "the other companion's connection must survive");
    // The victim's creds are intact: it logs in again without a QR.
    let creds = victim.store.latest().expect("creds persisted");
    let (task, mut events, _c) = spawn(client(&server, creds, 352), MemStore::default());
    let e = next_event(&mut events, "relogin", |e| matches!(e, Event::Qr(_) | Event::Ready { .. })).await;
    assert!(matches!(e, Event::Ready { .. }), "{e:?}");
    assert_eq!(devices(&server, PHONE).await.len(), 2);
    task.abort();
    server.shutdown().await;
}

/// The phone refuses a fifth companion: `POST /scan` answers 409 `device_limit_reached`,
/// the fifth client never gets pair-success (nothing persisted), and the four stay linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifth_companion_is_refused() {
    const PHONE: &str = "15550003005";
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let mut linked = Vec::new();
    for i in 0..MAX_COMPANIONS as u64 {
        linked.push(pair_by_qr(&server, PHONE, 400 + 10 * i, FAST_KEEPALIVE * 100).await);
    }
    assert_eq!(devices(&server, PHONE).await.len(), 4);
    let store = MemStore::default();
    let (task, mut events, commands) = spawn(client(&server, fresh_creds(490), 491), store.clone());
    let Event::Qr(qr) = next_event(&mut events, "fifth qr", |e| matches!(e, Event::Qr(_))).await else {
        unreachable!()
    };
    let (st, body) =
        http(&server, "POST", &format!("/phones/{PHONE}/scan"), Some(serde_json::json!({"qr": qr}))).await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(body["error"]["code"], "device_limit_reached", "{body}");
    // The fifth companion is still waiting for a scan; closing it shows nothing was linked.
    commands.send(Command::Disconnect).await.unwrap();
    assert_eq!(end_reason(task, WAIT, "fifth disconnect").await, DisconnectReason::LocalClose);
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, Event::Paired { .. } | Event::LoggedIn), "fifth companion linked: {e:?}");
    }
    assert!(store.latest().is_none(), "no creds may be persisted for a refused companion");
    let devs = devices(&server, PHONE).await;
    assert_eq!(devs.len(), 4, "{devs:?}");
    assert!(devs.iter().all(|d| d["online"] == true), "{devs:?}");
    assert!(linked.iter().all(|l| !l.task.is_finished()));
    server.shutdown().await;
}

/// Pairs a companion on a fresh phone, injects `fault` and returns the reason plus the
/// pieces needed to check what follows.
async fn fault_case(phone: &str, seed: u64, fault: &str) -> (Server, Linked, DisconnectReason) {
    let server = start_sim().await;
    add_phone(&server, phone).await;
    let mut l = pair_by_qr(&server, phone, seed, FAST_KEEPALIVE * 100).await;
    inject(&server, &l.device_jid, fault).await;
    let task = std::mem::replace(&mut l.task, tokio::spawn(async { Err("replaced".to_owned()) }));
    let r = end_reason(task, WAIT, fault).await;
    (server, l, r)
}

/// Logs in from the creds `l` persisted and returns how that connection ends or `None`
/// when it reaches Ready (the task is then aborted).
async fn relogin(server: &Server, l: &Linked, seed: u64) -> Option<DisconnectReason> {
    let creds = l.store.latest().expect("creds persisted");
    let (task, mut events, _c) = spawn(client(server, creds, seed), MemStore::default());
    let outcome = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if matches!(e, Event::Ready { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .expect("relogin neither became ready nor ended");
    if outcome {
        task.abort();
        return None;
    }
    Some(end_reason(task, WAIT, "relogin").await)
}

/// `drop` fault: the socket closes with nothing said → `ConnectionClosed`, reconnectable,
/// and the creds still log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_drop_is_connection_closed() {
    let (server, l, r) = fault_case("15550003011", 511, "drop").await;
    assert_eq!(r, DisconnectReason::ConnectionClosed);
    assert!(r.should_reconnect() && !r.is_logged_out());
    assert_eq!(relogin(&server, &l, 512).await, None, "creds must still log in after a drop");
    server.shutdown().await;
}

/// `unavailable` fault: `<stream:error code="503"/>` → `ServiceUnavailable { 503 }`,
/// reconnectable, and the creds still log in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_unavailable_is_service_unavailable() {
    let (server, l, r) = fault_case("15550003012", 521, "unavailable").await;
    assert_eq!(r, DisconnectReason::ServiceUnavailable { code: 503 });
    assert!(r.should_reconnect() && !r.is_logged_out());
    assert_eq!(relogin(&server, &l, 522).await, None, "creds must still log in after 503");
    server.shutdown().await;
}

/// `logout` fault: stream:error 401 device_removed → `LoggedOut { 401, live stream }`, no
/// reconnect; the device is gone and a later login is refused at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_logout_is_logged_out() {
    const PHONE: &str = "15550003013";
    let (server, l, r) = fault_case(PHONE, 531, "logout").await;
    assert_eq!(r, DisconnectReason::LoggedOut { code: 401, on_connect: false });
    assert!(r.is_logged_out() && !r.should_reconnect());
    assert!(devices(&server, PHONE).await.is_empty());
    let again = relogin(&server, &l, 532).await;
    assert_eq!(again, Some(DisconnectReason::LoggedOut { code: 401, on_connect: true }));
    server.shutdown().await;
}

/// `ban` fault: `<failure reason="403"/>` on the live stream → `LoggedOut { 403, live
/// stream }`, no reconnect; a later login is refused with 403 at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_ban_is_logged_out() {
    let (server, l, r) = fault_case("15550003014", 541, "ban").await;
    assert_eq!(r, DisconnectReason::LoggedOut { code: 403, on_connect: false });
    assert!(r.is_logged_out() && !r.should_reconnect());
    let again = relogin(&server, &l, 542).await;
    assert_eq!(again, Some(DisconnectReason::LoggedOut { code: 403, on_connect: true }));
    server.shutdown().await;
}

/// Records every non-trace event's fields as text (the crate has no subscriber dependency).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        *m.level() != tracing::Level::TRACE
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        e.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Sends `messages` from a raw WebSocket peer and waits until the simulator closes it.
async fn raw_peer_is_closed(server: &Server, what: &str, messages: Vec<Vec<u8>>) {
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(server.ws_url()))
        .await
        .expect("dial timed out")
        .expect("raw websocket dial");
    for m in messages {
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the simulator kept the connection open"));
}

/// Garbage from raw WebSocket peers (wrong intro; valid intro then a junk frame; a huge
/// length prefix) closes only those connections, each logged by the simulator; a companion
/// connected meanwhile stays online and the admin API keeps answering.
#[tokio::test(flavor = "current_thread")]
async fn garbage_peers_are_closed_and_isolated() {
    const PHONE: &str = "15550003021";
    // current_thread: every simulator task runs on this thread, under this subscriber.
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let server = start_sim().await;
    add_phone(&server, PHONE).await;
    let l = pair_by_qr(&server, PHONE, 611, FAST_KEEPALIVE * 100).await;

    raw_peer_is_closed(&server, "wrong intro", vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()]).await;
    let mut junk = INTRO.to_vec();
    junk.extend(frame::frame(&[0xff; 40]).unwrap());
    raw_peer_is_closed(&server, "junk frame after intro", vec![junk]).await;
    let mut huge = INTRO.to_vec();
    huge.extend([0xff, 0xff, 0xff]);
    raw_peer_is_closed(&server, "huge length prefix", vec![huge]).await;

    let rejected = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("sim closing connection after bad input"))
        .count();
    assert_eq!(rejected, 3, "one log line per rejected peer: {:?}", capture.0.lock().unwrap());
    assert!(!l.task.is_finished(), "the companion's connection must survive the garbage peers");
    assert_eq!(online(&server, PHONE, &l.device_jid).await, Some(true));
    // Each rejected connection is released: only the companion's remains open.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (st, stats) = http(&server, "GET", "/stats", None).await;
        assert_eq!(st, 200, "{stats}");
        if stats["open_connections"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "rejected connections were not released: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(l.events);
    drop(l.commands);
    server.shutdown().await;
}
