//! Scenario tests: our [`Client`] against the sans-IO simulator core, wired in memory with a
//! virtual clock and seeded RNGs (no sockets, no tokio). Each scenario runs in milliseconds.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::sim::{ConnId, ConnOutput, Fault, Sim, SimConfig};
use crate::wa::noise::TrustAnchor;

mod fidelity;

const PHONE: &str = "15550001111";
const UNIX0: u64 = 1_800_000_000;

/// One entry of the client's output log, for order assertions.
#[derive(Debug, Clone, PartialEq)]
enum Log {
    Persist,
    Send,
    Event(Event),
    Close(DisconnectReason),
}

/// Client + simulator + virtual clock.
struct Pair {
    sim: Sim,
    client: Client,
    conn: Option<ConnId>,
    now: Instant,
    log: Vec<Log>,
    persisted: Vec<Delta>,
    /// Simulator outputs for connections other than the current one.
    stray: Vec<(ConnId, ConnOutput)>,
}

impl Pair {
    fn new(seed: u64) -> Self {
        #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the virtual clock")]
        let now = Instant::now();
        let mut sim = Sim::new(SimConfig::seeded("127.0.0.1:0".parse().unwrap(), seed), now, UNIX0);
        sim.add_phone(PHONE, "Alice").unwrap();
        let trust = TrustAnchor { root_public: sim.root_public_key(), root_serial: 0 };
        let config = ClientConfig {
            url: "mem".into(),
            trust,
            keepalive: Duration::from_secs(30),
            os_name: "test".into(),
            ..ClientConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(seed + 1);
        let creds = Creds::generate(&mut rng);
        let client = Client::new(config, creds, Box::new(rng), now, UNIX0);
        Self { sim, client, conn: None, now, log: Vec::new(), persisted: Vec::new(), stray: Vec::new() }
    }

    fn with_creds(&self, seed: u64, creds: Creds) -> Client {
        Client::new(
            self.client.config().clone(),
            creds,
            Box::new(StdRng::seed_from_u64(seed)),
            self.now,
            UNIX0,
        )
    }

    fn connect(&mut self) {
        self.conn = Some(self.sim.open(self.now));
        self.client.connect(self.now);
    }

    /// Moves bytes both ways until neither side has output. Bounded.
    fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(o) = self.client.poll_output() {
                progressed = true;
                match o {
                    Output::Persist(d) => {
                        self.log.push(Log::Persist);
                        self.persisted.push(d);
                    }
                    Output::Send(b) => {
                        self.log.push(Log::Send);
                        if let Some(c) = self.conn {
                            self.sim.handle_data(self.now, c, &b);
                        }
                    }
                    Output::Event(e) => self.log.push(Log::Event(e)),
                    Output::Close(r) => {
                        self.log.push(Log::Close(r));
                        if let Some(c) = self.conn.take() {
                            self.sim.handle_closed(self.now, c);
                        }
                    }
                }
            }
            while let Some((c, o)) = self.sim.poll_output() {
                progressed = true;
                if Some(c) != self.conn {
                    self.stray.push((c, o));
                    continue;
                }
                match o {
                    ConnOutput::Send(b) => self.client.handle_data(self.now, &b),
                    ConnOutput::Close => {
                        self.conn = None;
                        self.sim.handle_closed(self.now, c);
                        self.client.handle_closed(self.now);
                    }
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("livelock: drive did not settle");
    }

    /// Drives, then jumps to the next deadline, until `done` holds. Bounded.
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..1000 {
            self.drive();
            if done(self) {
                return;
            }
            let next = [self.client.poll_timeout(), self.sim.poll_timeout()].into_iter().flatten().min();
            let Some(t) = next else { panic!("stuck waiting for {what}: no deadline; log {:?}", self.log) };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.sim.handle_timeout(self.now);
        }
        panic!("gave up waiting for {what}; log {:?}", self.log);
    }

    fn closed_with(&self) -> Option<&DisconnectReason> {
        self.log.iter().rev().find_map(|l| if let Log::Close(r) = l { Some(r) } else { None })
    }

    fn last_qr(&self) -> Option<String> {
        self.log
            .iter()
            .rev()
            .find_map(|l| if let Log::Event(Event::Qr(q)) = l { Some(q.clone()) } else { None })
    }

    fn has_event(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.log.iter().any(|l| matches!(l, Log::Event(e) if f(e)))
    }

    /// QR pairing + 515 + reconnect until Ready.
    fn pair_and_login(&mut self) {
        self.connect();
        self.run_until("qr", |p| p.last_qr().is_some());
        let qr = self.last_qr().unwrap();
        let jid = self.sim.scan(self.now, PHONE, &qr).unwrap();
        assert!(jid.starts_with(&format!("{PHONE}:")) && jid.ends_with("@s.whatsapp.net"), "{jid}");
        self.run_until("515", |p| p.closed_with().is_some());
        assert_eq!(self.closed_with(), Some(&DisconnectReason::RestartRequired));
        self.log.clear();
        self.connect();
        self.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    }
}

/// QR pairing end to end: creds are persisted before the pair-device-sign reply and the
/// Paired event, 515 follows, the login reaches Ready and the sim lists one device.
#[test]
fn qr_pairing_515_login() {
    let mut p = Pair::new(1);
    p.connect();
    p.run_until("qr", |p| p.last_qr().is_some());
    let qr = p.last_qr().unwrap();
    assert!(qr.starts_with("https://wa.me/settings/linked_devices#2@"));
    p.sim.scan(p.now, PHONE, &qr).unwrap();
    p.run_until("515", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::RestartRequired));
    let persist = p.log.iter().position(|l| *l == Log::Persist).expect("creds persisted");
    let paired =
        p.log.iter().position(|l| matches!(l, Log::Event(Event::Paired { .. }))).expect("paired event");
    assert_eq!(
        p.log.get(persist + 1),
        Some(&Log::Send),
        "pair-device-sign is the frame right after the barrier"
    );
    assert!(persist < paired);
    assert!(p.client.creds().is_paired());
    assert!(matches!(&p.persisted[0], Delta::Creds(c) if c.is_paired()));
    p.log.clear();
    p.connect();
    p.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    assert!(p.client.is_logged_in());
    // pre-keys were persisted before the upload frame
    let pk = p.log.iter().position(|l| *l == Log::Persist).expect("prekeys persisted");
    assert!(
        matches!(p.persisted.iter().find(|d| matches!(d, Delta::PreKeys(_))), Some(Delta::PreKeys(k)) if k.len() == PRE_KEY_BATCH as usize)
    );
    assert_eq!(p.log.get(pk + 2), Some(&Log::Send));
    let devs = p.sim.devices(PHONE).unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].logins, 1);
    assert!(devs[0].online);
    assert_eq!(p.sim.stats().stream_errors.get("515"), Some(&1));
}

/// Restart from persisted creds logs in with no QR and the device count stays 1.
#[test]
fn restart_from_persisted_creds() {
    let mut p = Pair::new(2);
    p.pair_and_login();
    let creds = p.client.creds().clone();
    p.client.disconnect(p.now);
    p.drive();
    p.client = p.with_creds(99, creds);
    p.log.clear();
    p.connect();
    p.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    assert!(p.last_qr().is_none());
    let devs = p.sim.devices(PHONE).unwrap();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].logins, 2);
}

/// Keepalive pings are answered; with `mute_pongs` the dead socket is detected within two
/// intervals.
#[test]
fn mute_pongs_detected_within_two_intervals() {
    let mut p = Pair::new(3);
    p.pair_and_login();
    let interval = p.client.config().keepalive;
    // three healthy intervals
    let t0 = p.now;
    p.run_until("3 intervals", |p| p.now >= t0 + interval * 3);
    assert!(p.closed_with().is_none(), "healthy connection must stay up: {:?}", p.log);
    p.sim.inject_fault(p.now, &format!("{PHONE}:1@s.whatsapp.net"), Fault::MutePongs).unwrap();
    let muted = p.now;
    p.run_until("connection lost", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::ConnectionLost));
    assert!(p.now - muted <= interval * 2, "detected after {:?}", p.now - muted);
}

/// A second login with the same creds replaces the first: the older connection ends with
/// `Replaced`, which does not allow an automatic reconnect.
#[test]
fn second_login_replaces_first() {
    let mut p = Pair::new(4);
    p.pair_and_login();
    let old_conn = p.conn.take().unwrap();
    let creds = p.client.creds().clone();
    let newer = p.with_creds(7, creds);
    let mut older = std::mem::replace(&mut p.client, newer);
    p.log.clear();
    p.connect();
    p.run_until("new ready", |o| o.has_event(|e| matches!(e, Event::Ready { .. })));
    assert_eq!(p.sim.stats().replaced, 1);
    assert_eq!(p.sim.stats().stream_errors.get("440"), Some(&1));
    for (c, o) in std::mem::take(&mut p.stray) {
        if c != old_conn {
            continue;
        }
        match o {
            ConnOutput::Send(b) => older.handle_data(p.now, &b),
            ConnOutput::Close => older.handle_closed(p.now),
        }
    }
    let mut reason = None;
    while let Some(o) = older.poll_output() {
        if let Output::Close(r) = o {
            reason.get_or_insert(r);
        }
    }
    assert_eq!(reason, Some(DisconnectReason::Replaced));
    assert!(!DisconnectReason::Replaced.should_reconnect());
    assert!(p.client.is_logged_in());
}

/// Removing the device through the admin API logs the live client out, and a later login
/// is refused with 401 at connect.
#[test]
fn device_removed_logs_out() {
    let mut p = Pair::new(5);
    p.pair_and_login();
    p.sim.remove_device(p.now, PHONE, "1").unwrap();
    p.run_until("logout", |p| p.closed_with().is_some());
    let r = p.closed_with().unwrap().clone();
    assert_eq!(r, DisconnectReason::LoggedOut { code: 401, on_connect: false });
    assert!(r.is_logged_out() && !r.should_reconnect());
    p.log.clear();
    p.connect();
    p.run_until("refused", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::LoggedOut { code: 401, on_connect: true }));
}

/// A corrupt frame from the server ends the connection with a typed protocol error.
#[test]
fn corrupt_frame_is_typed_error() {
    let mut p = Pair::new(6);
    p.pair_and_login();
    p.sim.inject_fault(p.now, &format!("{PHONE}:1@s.whatsapp.net"), Fault::CorruptFrame).unwrap();
    p.run_until("close", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::Protocol(ProtocolError::Decrypt)));
}

/// A ban on a live stream (`<failure reason="403"/>` after `<success>`) is a logout that did
/// not happen at connect; the next login is refused with 403 at connect.
#[test]
fn ban_on_live_stream_is_not_on_connect() {
    let mut p = Pair::new(7);
    p.pair_and_login();
    p.sim.inject_fault(p.now, &format!("{PHONE}:1@s.whatsapp.net"), Fault::Ban).unwrap();
    p.run_until("ban", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::LoggedOut { code: 403, on_connect: false }));
    p.log.clear();
    p.connect();
    p.run_until("refused", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::LoggedOut { code: 403, on_connect: true }));
}

/// Logout sends remove-companion-device; the sim unlinks the device and the client ends
/// with LocalLogout.
#[test]
fn logout_unlinks() {
    let mut p = Pair::new(8);
    p.pair_and_login();
    p.client.logout(p.now);
    p.run_until("logout", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::LocalLogout));
    assert!(p.sim.devices(PHONE).unwrap().is_empty());
}

/// A client trusting another root refuses the simulator's certificate chain.
#[test]
fn wrong_root_is_refused() {
    let mut p = Pair::new(9);
    let mut cfg = p.client.config().clone();
    cfg.trust = TrustAnchor::whatsapp();
    p.client = Client::new(cfg, p.client.creds().clone(), Box::new(StdRng::seed_from_u64(1)), p.now, UNIX0);
    p.connect();
    p.run_until("close", |p| p.closed_with().is_some());
    assert!(matches!(p.closed_with(), Some(DisconnectReason::Protocol(ProtocolError::Handshake(_)))));
}

/// QR refs rotate (60 s, then 20 s each) and the client gives up with QrTimeout after all six.
#[test]
fn qr_rotation_and_timeout() {
    let mut p = Pair::new(10);
    p.connect();
    p.run_until("qr timeout", |p| p.closed_with().is_some());
    let qrs: Vec<_> = p.log.iter().filter(|l| matches!(l, Log::Event(Event::Qr(_)))).collect();
    assert_eq!(qrs.len(), 6);
    assert_eq!(p.closed_with(), Some(&DisconnectReason::QrTimeout));
}

/// Pair-code linking end to end: the phone enters the code shown by the client, both sides
/// derive the same ADV secret, pair-success verifies, 515, login.
#[test]
fn pair_code_linking() {
    let mut p = Pair::new(11);
    p.connect();
    p.run_until("qr", |p| p.last_qr().is_some());
    let code = p.client.request_pair_code(p.now, PHONE).expect("pairing state");
    assert_eq!(code.len(), 9);
    p.drive();
    let jid = p.sim.enter_link_code(p.now, PHONE, &code).unwrap();
    assert_eq!(jid, format!("{PHONE}:1@s.whatsapp.net"));
    p.run_until("515", |p| p.closed_with().is_some());
    assert_eq!(p.closed_with(), Some(&DisconnectReason::RestartRequired));
    p.log.clear();
    p.connect();
    p.run_until("ready", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
    assert_eq!(p.sim.devices(PHONE).unwrap().len(), 1);
}

/// A fifth companion is refused by the phone (device limit 4).
#[test]
fn fifth_companion_refused() {
    let mut p = Pair::new(12);
    for i in 0..4 {
        let mut rng = StdRng::seed_from_u64(100 + i);
        p.client = p.with_creds(200 + i, Creds::generate(&mut rng));
        p.log.clear();
        p.pair_and_login();
    }
    assert_eq!(p.sim.devices(PHONE).unwrap().len(), 4);
    let mut rng = StdRng::seed_from_u64(300);
    p.client = p.with_creds(301, Creds::generate(&mut rng));
    p.log.clear();
    p.connect();
    p.run_until("qr", |p| p.last_qr().is_some());
    let qr = p.last_qr().unwrap();
    assert_eq!(p.sim.scan(p.now, PHONE, &qr), Err(crate::sim::AdminError::DeviceLimit));
}

/// Arbitrary frames fed to an online client end the connection with a typed reason (or are
/// ignored), never a panic; the client can log in again afterwards.
#[test]
fn arbitrary_frames_to_online_client_never_panic() {
    use rand::RngCore;
    let mut p = Pair::new(13);
    p.pair_and_login();
    let mut rng = StdRng::seed_from_u64(77);
    for i in 0..40 {
        let mut junk = vec![0u8; (rng.next_u32() % 300) as usize];
        rng.fill_bytes(&mut junk);
        if i % 2 == 0 {
            // well-framed garbage reaches the decrypt/decode path
            junk = frame::frame(&junk).unwrap();
        }
        p.client.handle_data(p.now, &junk);
        p.drive();
        if p.closed_with().is_some() {
            assert!(matches!(p.closed_with(), Some(DisconnectReason::Protocol(_))), "{:?}", p.closed_with());
            if let Some(c) = p.conn.take() {
                p.sim.handle_closed(p.now, c);
            }
            p.log.clear();
            p.connect();
            p.run_until("ready again", |p| p.has_event(|e| matches!(e, Event::Ready { .. })));
        }
    }
}

proptest::proptest! {
    /// Arbitrary bytes sent to the simulator (raw, or after a valid intro) close that
    /// connection at worst; the simulator never panics.
    #[test]
    fn arbitrary_bytes_to_sim_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), intro in proptest::prelude::any::<bool>()) {
        let mut p = Pair::new(14);
        let c = p.sim.open(p.now);
        if intro {
            p.sim.handle_data(p.now, c, &frame::INTRO);
        }
        p.sim.handle_data(p.now, c, &bytes);
        while p.sim.poll_output().is_some() {}
        p.sim.handle_timeout(p.now + Duration::from_secs(1));
    }
}
