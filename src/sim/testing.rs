//! In-memory harness for tests and fuzz targets: one [`Client`] wired to one [`Sim`] with a
//! virtual clock, paired by QR and brought online, then fed arbitrary bytes from the
//! "server" side. Hidden from the docs; not part of the product API.
//!
//! No sockets, no clocks, no OS randomness: the caller supplies the time anchor and seeds.
//! Never panics; every loop is bounded and failures come back as `None`/`false`.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::core::{ConnId, ConnOutput, Sim, SimConfig};
use crate::wa::client::{Client, ClientConfig, Creds, DisconnectReason, Event, Output};
use crate::wa::noise::TrustAnchor;

/// The phone every [`OnlinePair`] links to.
pub const PHONE: &str = "15550009999";
/// Unix time the virtual clocks start at.
const UNIX0: u64 = 1_800_000_000;
/// Upper bound on message exchanges in one [`OnlinePair::drive`].
const DRIVE_ROUNDS: usize = 10_000;
/// Upper bound on timer jumps while waiting for a state.
const TIMER_JUMPS: usize = 200;

/// A client and the simulator connected in memory, with the client's event log.
pub struct OnlinePair {
    sim: Sim,
    client: Client,
    conn: Option<ConnId>,
    start: Instant,
    now: Instant,
    events: Vec<Event>,
    closed: Option<DisconnectReason>,
}

impl std::fmt::Debug for OnlinePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlinePair").field("conn", &self.conn).field("closed", &self.closed).finish()
    }
}

impl OnlinePair {
    /// Creates a simulator with [`PHONE`], pairs a fresh client by QR, follows the 515 and
    /// logs in until Ready. `None` if any step does not happen.
    pub fn new(seed: u64, now: Instant) -> Option<Self> {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut sim = Sim::new(SimConfig::seeded(listen, seed), now, UNIX0);
        sim.add_phone(PHONE, "Fuzz").ok()?;
        let config = ClientConfig {
            url: "mem".into(),
            trust: TrustAnchor { root_public: sim.root_public_key(), root_serial: 0 },
            ..ClientConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1));
        let creds = Creds::generate(&mut rng);
        let client = Client::new(config, creds, Box::new(rng), now, UNIX0);
        let mut p = Self { sim, client, conn: None, start: now, now, events: Vec::new(), closed: None };
        p.connect();
        p.run_until(|p| p.events.iter().any(|e| matches!(e, Event::Qr(_))));
        let qr = p.events.iter().find_map(|e| if let Event::Qr(q) = e { Some(q.clone()) } else { None })?;
        p.sim.scan(p.now, PHONE, &qr).ok()?;
        p.run_until(|p| p.closed.is_some());
        if p.closed != Some(DisconnectReason::RestartRequired) {
            return None;
        }
        p.relogin(seed.wrapping_add(2)).then_some(p)
    }

    /// Drops the current connection and logs in again with a new client built from the
    /// current creds (fresh transport, empty event log). True once it is Ready.
    pub fn relogin(&mut self, seed: u64) -> bool {
        if let Some(c) = self.conn.take() {
            self.sim.handle_closed(self.now, c);
        }
        let unix = UNIX0 + self.now.saturating_duration_since(self.start).as_secs();
        self.client = Client::new(
            self.client.config().clone(),
            self.client.creds().clone(),
            Box::new(StdRng::seed_from_u64(seed)),
            self.now,
            unix,
        );
        self.connect();
        self.run_until(|p| p.is_ready() || p.closed.is_some());
        self.is_ready() && self.client.is_logged_in()
    }

    /// True once the current connection delivered `Ready`.
    fn is_ready(&self) -> bool {
        self.events.iter().any(|e| matches!(e, Event::Ready { .. }))
    }

    fn connect(&mut self) {
        self.events.clear();
        self.closed = None;
        self.conn = Some(self.sim.open(self.now));
        self.client.connect(self.now);
    }

    /// Feeds `bytes` to the client as one binary WebSocket message from the server, then
    /// lets both sides answer each other.
    pub fn feed_raw(&mut self, bytes: &[u8]) {
        self.client.handle_data(self.now, bytes);
        self.drive();
    }

    /// Has the simulator encrypt `plaintext` as one transport frame to the client (so it
    /// reaches the node decoder and the stanza handlers), then lets both sides answer.
    pub fn feed_plaintext(&mut self, plaintext: &[u8]) {
        if let Some(c) = self.conn {
            self.sim.send_plaintext(c, plaintext);
        }
        self.drive();
    }

    /// The client under test.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The simulator (for admin calls; follow them with [`Self::settle`]).
    pub fn sim_mut(&mut self) -> &mut Sim {
        &mut self.sim
    }

    /// The virtual clock now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Lets both sides answer each other until neither has output (bounded).
    pub fn settle(&mut self) {
        self.drive();
    }

    /// Moves the virtual clock forward by `by`, firing every timer of both sides due on the
    /// way (bounded).
    pub fn advance(&mut self, by: std::time::Duration) {
        let until = self.now + by;
        for _ in 0..TIMER_JUMPS {
            self.drive();
            let next = [self.client.poll_timeout(), self.sim.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.sim.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
        self.client.handle_timeout(self.now);
        self.sim.handle_timeout(self.now);
        self.drive();
    }

    /// Why the current connection ended, if it did.
    pub fn closed(&self) -> Option<&DisconnectReason> {
        self.closed.as_ref()
    }

    /// Events of the current connection.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Moves bytes both ways until neither side has output (bounded).
    fn drive(&mut self) {
        for _ in 0..DRIVE_ROUNDS {
            let mut progressed = false;
            while let Some(o) = self.client.poll_output() {
                progressed = true;
                match o {
                    Output::Persist(_) => {}
                    Output::Send(b) => {
                        if let Some(c) = self.conn {
                            self.sim.handle_data(self.now, c, &b);
                        }
                    }
                    Output::Event(e) => self.events.push(e),
                    Output::Close(r) => {
                        self.closed.get_or_insert(r);
                        if let Some(c) = self.conn.take() {
                            self.sim.handle_closed(self.now, c);
                        }
                    }
                }
            }
            while let Some((c, o)) = self.sim.poll_output() {
                progressed = true;
                if Some(c) != self.conn {
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
    }

    /// Drives and jumps the virtual clock to the next deadline until `done` (bounded).
    fn run_until(&mut self, done: impl Fn(&Self) -> bool) {
        for _ in 0..TIMER_JUMPS {
            self.drive();
            if done(self) {
                return;
            }
            let next = [self.client.poll_timeout(), self.sim.poll_timeout()].into_iter().flatten().min();
            let Some(t) = next else { return };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.sim.handle_timeout(self.now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness reaches Ready, survives a relogin, and arbitrary plaintext stanzas reach
    /// the client's decoder: junk is skipped without closing the linked connection (issue
    /// 13: whatsmeow logs and continues), and a relogin still works.
    #[test]
    fn harness_goes_online_and_feeds_plaintext() {
        #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the virtual clock")]
        let now = Instant::now();
        let mut p = OnlinePair::new(5, now).expect("online");
        assert!(p.client().is_logged_in());
        assert!(p.relogin(6), "relogin reaches Ready");
        p.feed_plaintext(&[0x00, 0xff, 0xff]);
        assert_eq!(p.closed(), None);
        assert!(p.client().is_logged_in());
        assert!(p.relogin(7), "a new connection logs in");
    }
}
