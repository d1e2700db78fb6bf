//! The simulator as one sans-IO state machine: every connection's protocol state, the account
//! registry, timers, faults and counters. Bytes, `now` and admin calls go in; per-connection
//! outputs (bytes to send, close) and a deadline come out.
//!
//! No sockets, no clocks, no tasks here (the tokio shell is `sim::server`); so the same core
//! runs in-process in tests with a virtual clock. Randomness comes from a seeded `StdRng`.
//!
//! This file holds the connection lifecycle (handshake, login, iq dispatch); the rest of the
//! `impl Sim` lives in `pairing` (QR and pair-code linking), `routing` (message fan-out,
//! queues, receipts, the offline handshake), `services` (usync, bundles, groups, phone sends)
//! and `accounts` (phones, devices, faults, counters).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::account::Account;
use super::faults::Stats;
use super::group::Group;
use super::phone::Phone;
use super::prekeys::CompanionKeys;
use super::queue::DeviceQueue;
use super::settings::Settings;
use crate::wa::binary::{Node, marshal, unmarshal};
use crate::wa::frame::{self, FrameDecoder};
use crate::wa::noise::{CertChainBuilder, ExpectClientFinish, KeyPair, ServerHandshake, Transport};
use crate::wa::proto;

pub mod provision;

/// Delay before the first stanza after a handshake: Baileys derives its transport keys
/// asynchronously after ClientFinish and loses a stanza that arrives within microseconds
/// (shared/oracle/README.md).
pub const FIRST_STANZA_DELAY: Duration = Duration::from_millis(20);
/// How long the first QR ref is valid (protocol/04 §1.3).
pub const FIRST_REF_TTL: Duration = Duration::from_secs(60);
/// How long each further ref is valid.
pub const NEXT_REF_TTL: Duration = Duration::from_secs(20);
/// Refs per `pair-device`.
pub const REF_COUNT: usize = 6;
/// An unpaired connection is closed this long after its refs were issued.
pub const PAIRING_WINDOW: Duration = Duration::from_secs(180);
/// Device number of an account's hosted (Cloud API) device.
pub const HOSTED_DEVICE: u16 = 99;
/// Largest accepted client frame.
const MAX_FRAME: usize = 1 << 20;

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Listen address (the tokio shell binds it; the core ignores it).
    pub listen: SocketAddr,
    /// RNG seed; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Runtime settings at start (`PUT /admin/config` changes them later).
    pub settings: Settings,
}

impl SimConfig {
    /// Defaults: random seed, default settings.
    pub fn new(listen: SocketAddr) -> Self {
        Self { listen, seed: None, settings: Settings::default() }
    }

    /// Defaults with a fixed seed.
    pub fn seeded(listen: SocketAddr, seed: u64) -> Self {
        Self { seed: Some(seed), ..Self::new(listen) }
    }
}

/// Identifies one WebSocket connection inside the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the IO shell must do for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnOutput {
    /// Send these bytes as one binary WebSocket message.
    Send(Vec<u8>),
    /// Close the socket (after everything queued before it).
    Close,
}

/// One row of `GET /admin/phones/{phone}/devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `phone:N@s.whatsapp.net`.
    pub device_jid: String,
    /// RFC 3339.
    pub linked_at: String,
    /// Has a live logged-in connection.
    pub online: bool,
    /// Successful logins.
    pub logins: u64,
    /// The last `<presence>` the device sent: `(type, name)`.
    pub presence: Option<(String, Option<String>)>,
}

/// Why an admin call failed (mapped to HTTP statuses by `sim::admin`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No such phone (404).
    #[error("unknown phone")]
    UnknownPhone,
    /// The QR's ref was never issued or is no longer pending (404).
    #[error("unknown qr ref")]
    UnknownRef,
    /// The QR's ref expired (410).
    #[error("qr ref expired")]
    ExpiredRef,
    /// The account already has the maximum number of companions (409).
    #[error("device limit reached")]
    DeviceLimit,
    /// No such device (404).
    #[error("unknown device")]
    UnknownDevice,
    /// The device has no live connection (409).
    #[error("device has no live connection")]
    NotOnline,
    /// No companion asked for a link code for this phone (404).
    #[error("no pending link-code request for this phone")]
    NoPendingLinkCode,
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The recipient (user or group) does not exist (404).
    #[error("unknown recipient")]
    UnknownRecipient,
}

mod accounts;
mod pairing;
mod routing;
mod services;
#[cfg(test)]
mod tests;

/// Something to do later on a connection.
#[derive(Debug)]
enum Delayed {
    Nodes(Vec<Node>),
    Close,
    /// The client did not ask for the offline batch in time: send it anyway.
    OfflineBatch,
    /// Send `<ib><offline count>` if the batch is still draining.
    OfflineEnd,
    /// The device must have answered queued item `seq` by now.
    AckDeadline(u64),
}

/// Where a logged-in connection is in the offline-queue handshake (transcript quirk 4).
#[derive(Debug, Default)]
enum OfflineFlow {
    /// Not active yet (before `<iq xmlns="passive"><active/>`): everything stays queued.
    #[default]
    Inactive,
    /// `<offline_preview>` sent; waiting for `<offline_batch>`.
    AwaitBatch,
    /// Queued stanzas sent with `offline="1"`; `<offline count>` follows once all of them
    /// were answered.
    Draining {
        /// Sequence numbers sent in the batch and not yet answered.
        outstanding: BTreeSet<u64>,
        /// How many stanzas the batch had.
        count: u64,
        /// An end marker is already scheduled.
        end_scheduled: bool,
    },
    /// Live: new stanzas go out at once.
    Live,
}

/// A companion in the middle of pairing on this connection.
#[derive(Debug)]
struct PendingPair {
    phone: String,
    device: u16,
    iq_id: String,
    details: Vec<u8>,
}

/// Link-code state of a registration connection.
#[derive(Debug)]
struct PendingLink {
    phone: String,
    reference: String,
    wrapped_companion_eph: Vec<u8>,
    /// Set once the phone entered the code.
    entered: Option<EnteredCode>,
}

#[derive(Debug)]
struct EnteredCode {
    primary_eph: KeyPair,
    companion_eph_pub: [u8; 32],
    device: u16,
}

#[derive(Debug)]
enum Phase {
    ExpectHello,
    ExpectFinish(Box<ExpectClientFinish>),
    Registration {
        noise_pub: [u8; 32],
        identity_pub: [u8; 32],
        keys: Box<CompanionKeys>,
        pairing: Option<PendingPair>,
        link: Option<Box<PendingLink>>,
    },
    Online {
        phone: String,
        device: u16,
    },
    /// Refused at login; waiting for the close.
    Refused,
}

#[derive(Debug)]
struct Conn {
    decoder: FrameDecoder,
    phase: Phase,
    transport: Option<Transport>,
    delayed: Vec<(Instant, Delayed)>,
    mute_pongs: bool,
    closed: bool,
    offline: OfflineFlow,
}

/// The whole simulated server.
pub struct Sim {
    rng: StdRng,
    identity: ServerIdentity,
    accounts: BTreeMap<String, Account>,
    conns: BTreeMap<ConnId, Conn>,
    live: HashMap<(String, u16), ConnId>,
    refs: HashMap<String, (ConnId, Instant)>,
    phones: BTreeMap<String, Phone>,
    /// Accounts' hosted (Cloud API) devices `phone:99@hosted`, full Signal peers like phones.
    hosted: BTreeMap<String, Phone>,
    groups: BTreeMap<String, Group>,
    queues: HashMap<(String, u16), DeviceQueue>,
    corrupt_next: HashSet<(String, u16)>,
    /// Devices whose next message is spoilt for good (every resend of it too).
    undecryptable_next: HashSet<(String, u16)>,
    /// `(phone, device, message id)` whose every copy to that device is spoilt.
    undecryptable: HashSet<(String, u16, String)>,
    stats: Stats,
    settings: Settings,
    outputs: VecDeque<(ConnId, ConnOutput)>,
    base: (Instant, u64),
    next_conn: u64,
    next_id: u64,
    next_lid: u64,
    next_seq: u64,
    next_group: u64,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("conns", &self.conns.len())
            .field("accounts", &self.accounts.len())
            .finish()
    }
}

fn server_jid() -> &'static str {
    "@s.whatsapp.net"
}

/// The simulator's own certificate hierarchy: root → intermediate → leaf (= Noise static key).
struct ServerIdentity {
    root_public: [u8; 32],
    static_key: KeyPair,
    cert_chain: Vec<u8>,
}

impl ServerIdentity {
    fn generate(rng: &mut StdRng, unix_now: u64) -> Self {
        let root = KeyPair::generate(rng);
        let intermediate = KeyPair::generate(rng);
        let static_key = KeyPair::generate(rng);
        // Valid from a day ago for ten years; intermediate issuer serial 0 explicitly on the wire.
        let chain = CertChainBuilder::new()
            .validity(unix_now.saturating_sub(86_400), unix_now + 10 * 365 * 86_400)
            .build(root.private(), &intermediate, static_key.public(), rng);
        Self { root_public: *root.public(), static_key, cert_chain: chain.encode_to_vec() }
    }

    fn root_public_key(&self) -> [u8; 32] {
        self.root_public
    }
}

/// The `userAgent.appVersion` of a `ClientPayload`, if it has all three parts.
fn client_version(p: &proto::ClientPayload) -> Option<crate::wa::version::WaVersion> {
    let v = p.user_agent.as_ref()?.app_version.as_ref()?;
    Some(crate::wa::version::WaVersion([v.primary?, v.secondary?, v.tertiary?]))
}

fn iq_result(id: &str) -> Node {
    Node::new("iq").attr("from", server_jid()).attr("type", "result").attr("id", id)
}

impl Sim {
    /// A simulator with fresh keys. `now` and `unix_now` anchor its clock: later unix times
    /// are derived from the `Instant`s passed in.
    pub fn new(config: SimConfig, now: Instant, unix_now: u64) -> Self {
        let mut rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        let identity = ServerIdentity::generate(&mut rng, unix_now);
        Self {
            rng,
            identity,
            accounts: BTreeMap::new(),
            conns: BTreeMap::new(),
            live: HashMap::new(),
            refs: HashMap::new(),
            phones: BTreeMap::new(),
            hosted: BTreeMap::new(),
            groups: BTreeMap::new(),
            queues: HashMap::new(),
            corrupt_next: HashSet::new(),
            undecryptable_next: HashSet::new(),
            undecryptable: HashSet::new(),
            stats: Stats::default(),
            settings: config.settings,
            outputs: VecDeque::new(),
            base: (now, unix_now),
            next_conn: 1,
            next_id: 1,
            next_lid: 100_000_000_000_001,
            next_seq: 1,
            next_group: 1,
        }
    }

    /// How long a device has to ack each stanza pushed to it (setting `ack_timeout_ms`);
    /// applies to stanzas sent from now on.
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.settings.ack_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
    }

    /// The current ack timeout.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.ack_timeout_ms.max(1))
    }

    /// The root public key clients must trust.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.identity.root_public_key()
    }

    fn unix(&self, now: Instant) -> u64 {
        self.base.1 + now.saturating_duration_since(self.base.0).as_secs()
    }

    fn next_stanza_id(&mut self) -> String {
        self.next_id += 1;
        format!("sim.{}", self.next_id)
    }

    // ---------------------------------------------------------------- connection lifecycle

    /// A new WebSocket connection was accepted.
    pub fn open(&mut self, _now: Instant) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                decoder: FrameDecoder::server(MAX_FRAME),
                phase: Phase::ExpectHello,
                transport: None,
                delayed: Vec::new(),
                mute_pongs: false,
                closed: false,
                offline: OfflineFlow::Inactive,
            },
        );
        self.stats.connections += 1;
        self.stats.open_connections = self.conns.len() as u64;
        id
    }

    /// The socket closed (either side). Frees everything the connection held.
    pub fn handle_closed(&mut self, _now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        self.stats.open_connections = self.conns.len() as u64;
        self.refs.retain(|_, (owner, _)| *owner != conn);
        self.live.retain(|_, owner| *owner != conn);
        if let Phase::Registration { pairing, link, .. } = c.phase {
            // A pairing that never confirmed frees its device slot.
            let mut drop_dev = |phone: &str, device: u16| {
                if let Some(a) = self.accounts.get_mut(phone)
                    && a.devices.get(&device).is_some_and(|d| !d.confirmed)
                {
                    a.devices.remove(&device);
                }
            };
            if let Some(p) = pairing {
                drop_dev(&p.phone, p.device);
            }
            if let Some(l) = link
                && let Some(e) = &l.entered
            {
                drop_dev(&l.phone, e.device);
            }
        }
    }

    /// The earliest instant at which [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().flat_map(|c| c.delayed.iter().map(|(t, _)| *t)).min()
    }

    /// Runs every delayed action due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(ConnId, Delayed)> = self
            .conns
            .iter_mut()
            .flat_map(|(id, c)| {
                let (ready, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut c.delayed).into_iter().partition(|(t, _)| *t <= now);
                c.delayed = later;
                ready.into_iter().map(move |(_, d)| (*id, d))
            })
            .collect();
        for (conn, d) in due {
            match d {
                Delayed::Nodes(nodes) => {
                    for n in nodes {
                        self.send_node(conn, &n);
                    }
                }
                Delayed::Close => self.close(conn),
                Delayed::OfflineBatch => self.send_offline_batch(now, conn),
                Delayed::OfflineEnd => self.send_offline_end(conn),
                Delayed::AckDeadline(seq) => self.ack_deadline(conn, seq),
            }
        }
    }

    /// The next output for some connection, in order.
    pub fn poll_output(&mut self) -> Option<(ConnId, ConnOutput)> {
        self.outputs.pop_front()
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn)
            && !c.closed
        {
            c.closed = true;
            c.delayed.clear();
            self.outputs.push_back((conn, ConnOutput::Close));
        }
    }

    fn reject(&mut self, conn: ConnId, why: &str) {
        tracing::warn!(conn_id = conn.0, reason = why, "sim closing connection after bad input");
        self.close(conn);
    }

    fn send_raw(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.outputs.push_back((conn, ConnOutput::Send(bytes)));
    }

    fn send_node(&mut self, conn: ConnId, node: &Node) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closed {
            return;
        }
        let Some(t) = c.transport.as_mut() else { return };
        tracing::trace!(conn_id = conn.0, stanza = %node, "sim ->");
        let sealed =
            marshal(node).ok().and_then(|pt| t.send.encrypt(&pt).ok()).and_then(|ct| frame::frame(&ct).ok());
        match sealed {
            Some(bytes) => self.send_raw(conn, bytes),
            None => self.reject(conn, "cannot encode outbound stanza"),
        }
    }

    /// Encrypts `plaintext` with `conn`'s transport and queues it as one frame, bypassing
    /// the node encoder: lets harnesses put arbitrary decrypted bytes in front of a client.
    /// Does nothing before the handshake completed or after the connection closed.
    #[doc(hidden)]
    pub fn send_plaintext(&mut self, conn: ConnId, plaintext: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closed {
            return;
        }
        let Some(t) = c.transport.as_mut() else { return };
        match t.send.encrypt(plaintext).ok().and_then(|ct| frame::frame(&ct).ok()) {
            Some(bytes) => self.send_raw(conn, bytes),
            None => self.reject(conn, "cannot seal injected plaintext"),
        }
    }

    fn later(&mut self, conn: ConnId, at: Instant, d: Delayed) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.delayed.push((at, d));
        }
    }

    fn stream_error(&mut self, conn: ConnId, node: Node, code: &str) {
        self.stats.count_error(code);
        self.send_node(conn, &node);
        self.close(conn);
    }

    // ---------------------------------------------------------------- inbound bytes

    /// Bytes of one binary WebSocket message from the client.
    pub fn handle_data(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.closed {
            return;
        }
        c.decoder.push(bytes);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.closed {
                return;
            }
            let f = match c.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => return self.reject(conn, &e.to_string()),
            };
            self.handle_frame(now, conn, &f);
        }
    }

    fn handle_frame(&mut self, now: Instant, conn: ConnId, f: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        match std::mem::replace(&mut c.phase, Phase::Refused) {
            Phase::ExpectHello => match ServerHandshake::start_with_rng(
                self.identity.static_key.clone(),
                self.identity.cert_chain.clone(),
                &frame::INTRO,
                &mut self.rng,
            )
            .handle(f)
            {
                Ok((next, reply)) => {
                    c.phase = Phase::ExpectFinish(Box::new(next));
                    match frame::frame(&reply) {
                        Ok(b) => self.send_raw(conn, b),
                        Err(e) => self.reject(conn, &e.to_string()),
                    }
                }
                Err(e) => self.reject(conn, &e.to_string()),
            },
            Phase::ExpectFinish(hs) => match hs.handle(f) {
                Ok(done) => {
                    c.transport = Some(done.transport);
                    self.stats.handshakes += 1;
                    self.after_handshake(now, conn, done.client_static, &done.client_payload);
                }
                Err(e) => self.reject(conn, &e.to_string()),
            },
            phase => {
                c.phase = phase;
                let Some(t) = c.transport.as_mut() else { return self.reject(conn, "no transport") };
                let node = match t.recv.decrypt(f) {
                    Ok(pt) => match unmarshal(&pt) {
                        Ok(n) => n,
                        Err(e) => return self.reject(conn, &e.to_string()),
                    },
                    Err(e) => return self.reject(conn, &e.to_string()),
                };
                tracing::trace!(conn_id = conn.0, stanza = %node, "sim <-");
                self.handle_node(now, conn, &node);
            }
        }
    }

    /// The runtime settings (`GET /admin/config`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Replaces the runtime settings (`PUT /admin/config`); they apply to later connections.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// `<failure reason="405">` then close: the client's version is below the floor.
    fn refuse_outdated(&mut self, now: Instant, conn: ConnId) {
        self.stats.count_error("405");
        if let Some(c) = self.conns.get_mut(&conn) {
            c.phase = Phase::Refused;
        }
        let failure = Node::new("failure").attr("reason", "405").attr("location", "sim");
        self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Nodes(vec![failure]));
        self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Close);
    }

    fn after_handshake(&mut self, now: Instant, conn: ConnId, client_static: [u8; 32], payload: &[u8]) {
        let Ok(p) = proto::ClientPayload::decode(payload) else {
            return self.reject(conn, "malformed ClientPayload");
        };
        if self.settings.refuses(client_version(&p)) {
            return self.refuse_outdated(now, conn);
        }
        if let Some(reg) = p.device_pairing_data.as_ref() {
            let Some(keys) = CompanionKeys::from_registration(reg) else {
                return self.reject(conn, "registration without a 32-byte identity key");
            };
            let identity_pub = *keys.identity().raw();
            if let Some(c) = self.conns.get_mut(&conn) {
                c.phase = Phase::Registration {
                    noise_pub: client_static,
                    identity_pub,
                    keys: Box::new(keys),
                    pairing: None,
                    link: None,
                };
            }
            let mut refs = Vec::with_capacity(REF_COUNT);
            let mut ttl = now + FIRST_STANZA_DELAY + FIRST_REF_TTL;
            for _ in 0..REF_COUNT {
                let mut r = [0u8; 18];
                self.rng.fill_bytes(&mut r);
                let s =
                    format!("2@{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, r));
                self.refs.insert(s.clone(), (conn, ttl));
                refs.push(Node::new("ref").bytes(s.into_bytes()));
                ttl += NEXT_REF_TTL;
            }
            let id = self.next_stanza_id();
            let iq = Node::new("iq")
                .attr("from", server_jid())
                .attr("type", "set")
                .attr("id", id)
                .attr("xmlns", "md")
                .children([Node::new("pair-device").children(refs)]);
            self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Nodes(vec![iq]));
            self.later(conn, now + PAIRING_WINDOW, Delayed::Close);
            return;
        }
        // Login.
        let phone = p.username.map(|u| u.to_string()).unwrap_or_default();
        let device = p.device.and_then(|d| u16::try_from(d).ok()).unwrap_or(0);
        let unix = self.unix(now);
        let verdict = match self.accounts.get_mut(&phone) {
            Some(a) if a.banned => Err("403"),
            Some(a) => match a.login_device(device, &client_static) {
                Some(d) => {
                    d.logins += 1;
                    Ok(a.device_lid(device))
                }
                None => Err("401"),
            },
            None => Err("401"),
        };
        match verdict {
            Err(code) => {
                self.stats.count_error(code);
                let failure = Node::new("failure").attr("reason", code).attr("location", "sim");
                self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Nodes(vec![failure]));
                self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Close);
            }
            Ok(lid) => {
                if let Some(old) = self.live.insert((phone.clone(), device), conn)
                    && old != conn
                {
                    self.stats.replaced += 1;
                    let e =
                        Node::new("stream:error").children([Node::new("conflict").attr("type", "replaced")]);
                    self.stream_error(old, e, "440");
                }
                self.stats.logins += 1;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.phase = Phase::Online { phone, device };
                }
                let success = Node::new("success")
                    .attr("t", unix.to_string())
                    .attr("props", "1")
                    .attr("abprops", "1")
                    .attr("location", "sim")
                    .attr("lid", lid.replacen(&format!(":{device}"), "", 1));
                self.later(conn, now + FIRST_STANZA_DELAY, Delayed::Nodes(vec![success]));
            }
        }
    }

    fn handle_node(&mut self, now: Instant, conn: ConnId, node: &Node) {
        let Some(c) = self.conns.get(&conn) else { return };
        let online = match &c.phase {
            Phase::Online { phone, device } => Some((phone.clone(), *device)),
            _ => None,
        };
        if node.tag != "iq" {
            if let Some((phone, device)) = online {
                self.handle_stanza(now, conn, &phone, device, node);
            }
            return; // before login: acks, receipts, presence have nothing to answer
        }
        let id = node.attr_str("id").unwrap_or_default().to_owned();
        let typ = node.attr_str("type").unwrap_or_default();
        let xmlns = node.attr_str("xmlns").unwrap_or_default();
        if typ == "result" {
            if let Some(sign) = node.child("pair-device-sign") {
                self.handle_pair_device_sign(now, conn, &id, sign);
            }
            return;
        }
        if typ == "error" {
            tracing::debug!(conn_id = conn.0, "client sent iq error");
            return;
        }
        if xmlns == "md"
            && let Some(reg) = node.child("link_code_companion_reg")
        {
            return self.handle_link_code_stanza(now, conn, &id, reg);
        }
        let Some((phone, device)) = online else {
            // Pre-login iqs (only ping makes sense): answer empty.
            return self.send_node(conn, &iq_result(&id));
        };
        match xmlns {
            "w:p" | "urn:xmpp:ping" => {
                if !self.conns.get(&conn).is_some_and(|c| c.mute_pongs) {
                    self.send_node(conn, &iq_result(&id));
                }
            }
            "encrypt" if node.child("count").is_some() => {
                let n = self
                    .accounts
                    .get(&phone)
                    .and_then(|a| a.devices.get(&device))
                    .map_or(0, |d| d.keys.pool_size());
                let reply = iq_result(&id).children([Node::new("count").attr("value", n.to_string())]);
                self.send_node(conn, &reply);
            }
            "encrypt" if node.child("list").is_some() => {
                let applied = self
                    .accounts
                    .get_mut(&phone)
                    .and_then(|a| a.devices.get_mut(&device))
                    .map(|d| d.keys.apply_upload(node));
                match applied {
                    Some(Err(e)) => self.reject(conn, &e.to_string()),
                    _ => self.send_node(conn, &iq_result(&id)),
                }
            }
            "encrypt" if node.child("key").is_some() => self.answer_bundle_fetch(conn, &id, node),
            "usync" => self.answer_usync(conn, &id, node),
            "w:g2" => self.answer_group_iq(now, conn, &phone, &id, node),
            "passive" => {
                self.send_node(conn, &iq_result(&id));
                if node.child("active").is_some() {
                    self.start_offline_flow(now, conn, &phone, device);
                }
            }
            "md" if node.child("remove-companion-device").is_some() => {
                self.send_node(conn, &iq_result(&id));
                self.unlink(&phone, device);
            }
            _ => self.send_node(conn, &iq_result(&id)),
        }
    }
}
