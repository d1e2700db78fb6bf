//! The client's connection state machine (sans-IO): Noise handshake, registration with QR or
//! pair code, pair-success verification, 515, login, post-login iqs, keepalive, logout and the
//! classification of every way a connection ends.
//!
//! No sockets, clocks or OS randomness here: the driver feeds bytes, `now` and commands, and
//! drains [`Output`]s in order (a [`Output::Persist`] is a barrier) plus [`Client::poll_timeout`].

mod chatstate;
pub mod creds;
pub mod keys;
#[cfg(test)]
mod msgtests;
pub mod output;
mod payload;
mod placeholder;
pub mod reason;
mod recv;
pub mod send;
pub mod sent;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;

pub use creds::{Creds, Me, PreKey};
pub use keys::{KeyCache, KeyChange, KeyId, KeyLoadError, KeyValue};
pub use output::{Delta, Event, MessageStatus, Output, ReceivedMessage, StatusUpdate};
pub use reason::{DisconnectReason, ProtocolError};
pub use send::SendError;

use crate::wa::binary::{Node, marshal, unmarshal};
use crate::wa::frame::{self, FrameDecoder};
use crate::wa::message::ack_for;
use crate::wa::noise::{ClientHandshake, ExpectServerHello, KeyPair, Transport, TrustAnchor};
use crate::wa::pair::adv;
use crate::wa::pair::code::{BundleRandom, PairCode, companion_bundle};
use crate::wa::pair::qr::QrData;

/// Keepalive interval (Baileys `keepAliveIntervalMs`; WA Web pings every 15–30 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Time to receive the server hello (all three reference clients use 20 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// First QR ref is shown 60 s, later ones 20 s (protocol/04 §1.3).
pub const FIRST_QR_TTL: Duration = Duration::from_secs(60);
/// Display time of each further QR ref.
pub const NEXT_QR_TTL: Duration = Duration::from_secs(20);
/// Upload pre-keys when the server holds fewer than this (all clients use 5).
pub const MIN_PRE_KEYS: u32 = 5;
/// Pre-keys per upload (whatsmeow's later-upload batch).
pub const PRE_KEY_BATCH: u32 = 30;
/// Largest accepted server frame.
const MAX_FRAME: usize = 16 << 20;

/// Client configuration. Production defaults point at WhatsApp; tests swap the URL and trust.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// WebSocket URL (the driver dials it; the core only carries it).
    pub url: String,
    /// Root key the server certificate chain must chain to.
    pub trust: TrustAnchor,
    /// Keepalive interval; a dead socket is detected within two intervals.
    pub keepalive: Duration,
    /// OS name shown on the phone's linked-devices list (`DeviceProps.os`; the browser is
    /// `platform`): the phone shows `Browser (OS)`.
    pub os_name: String,
    /// `DeviceProps.platformType` (the browser of the device name).
    pub platform: crate::wa::proto::device_props::PlatformType,
    /// The WA Web version announced in every `ClientPayload`.
    pub version: crate::wa::version::WaVersion,
    /// Push name to announce with `<presence>` after login (wins over the one from pairing).
    pub push_name: Option<String>,
    /// Presence sent after login: `available` (true) or `unavailable` (false: the phone keeps
    /// its notifications).
    pub presence_available: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let name = crate::wa::version::DeviceName::default();
        Self {
            url: "wss://web.whatsapp.com/ws/chat".into(),
            trust: TrustAnchor::whatsapp(),
            keepalive: KEEPALIVE_INTERVAL,
            os_name: name.os,
            platform: name.platform,
            version: crate::wa::version::WaVersion::DEFAULT,
            push_name: None,
            presence_available: false,
        }
    }
}

/// Timers as data: which deadline fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Handshake,
    KeepAlive,
    QrRotate,
    /// The earliest deadline of a pending send job.
    Jobs,
}

/// Connection lifecycle: one enum, data per variant.
#[derive(Debug)]
enum State {
    /// No connection.
    Idle,
    /// Client hello sent.
    Handshaking(Box<ExpectServerHello>),
    /// Handshake done; waiting for `<success>`, `<failure>` or `<pair-device>`.
    Authenticating,
    /// Showing QR refs / doing pair-code.
    Pairing { refs: Vec<String>, next_ref: usize },
    /// Logged in.
    Online,
    /// The connection ended.
    Closed(DisconnectReason),
}

/// What an outstanding iq we sent is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    PreKeyCount,
    PreKeyUpload,
    Active,
    Ping,
    Logout,
    CompanionHello,
    CompanionFinish,
    /// Prekey upload after a low-count notification (no follow-up iq).
    PreKeyRefill,
    /// An iq of send job `n` (messaging).
    Msg(u64, send::Step),
}

#[derive(Debug)]
struct PairCodeState {
    code: PairCode,
    phone: String,
    ephemeral: KeyPair,
}

/// The companion's connection state machine.
///
/// Call order per connection: [`Client::connect`] → feed every inbound binary message to
/// [`Client::handle_data`], call [`Client::handle_timeout`] when [`Client::poll_timeout`] is
/// reached and [`Client::handle_closed`] when the socket closes; after each call drain
/// [`Client::poll_output`] in order, committing each [`Output::Persist`] before going on.
/// After `Close(reason)` the socket must be closed; call `connect` again for a new attempt
/// (at once after [`DisconnectReason::RestartRequired`]). `now` must never go backwards.
pub struct Client {
    config: ClientConfig,
    creds: Creds,
    rng: Box<dyn CryptoRngCore + Send>,
    state: State,
    decoder: FrameDecoder,
    transport: Option<Transport>,
    timers: [(Timer, Option<Instant>); 4],
    last_recv: Option<Instant>,
    outputs: VecDeque<Output>,
    pending: HashMap<String, Pending>,
    next_id: u64,
    id_prefix: String,
    base: (Instant, u64),
    pair_code: Option<PairCodeState>,
    msg: send::Messaging,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

fn server() -> &'static str {
    "@s.whatsapp.net"
}

impl Client {
    /// A client for `creds` (fresh ones register, paired ones log in). `now`/`unix_now` anchor
    /// wall time for certificate validity; `rng` is the only source of randomness.
    pub fn new(
        config: ClientConfig,
        creds: Creds,
        mut rng: Box<dyn CryptoRngCore + Send>,
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let id_prefix = format!("{}.{}-", rng.next_u32() % 1000, rng.next_u32() % 1000);
        Self {
            config,
            creds,
            rng,
            state: State::Idle,
            decoder: FrameDecoder::client(MAX_FRAME),
            transport: None,
            timers: [
                (Timer::Handshake, None),
                (Timer::KeepAlive, None),
                (Timer::QrRotate, None),
                (Timer::Jobs, None),
            ],
            last_recv: None,
            outputs: VecDeque::new(),
            pending: HashMap::new(),
            next_id: 1,
            id_prefix,
            base: (now, unix_now),
            pair_code: None,
            msg: send::Messaging::default(),
        }
    }

    // ------------------------------------------------------------------ getters

    /// The current credentials.
    pub fn creds(&self) -> &Creds {
        &self.creds
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The device name shown on the phone (`Browser (OS)`).
    pub fn device_name(&self) -> crate::wa::version::DeviceName {
        crate::wa::version::DeviceName { os: self.config.os_name.clone(), platform: self.config.platform }
    }

    /// True after `<success>` on the current connection.
    pub fn is_logged_in(&self) -> bool {
        matches!(self.state, State::Online)
    }

    /// Why the last connection ended, if it did.
    pub fn close_reason(&self) -> Option<&DisconnectReason> {
        match &self.state {
            State::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// The next output, in order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest deadline; call [`Client::handle_timeout`] when it is reached.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().filter_map(|(_, t)| *t).min()
    }

    // ------------------------------------------------------------------ helpers

    fn unix(&self, now: Instant) -> u64 {
        self.base.1 + now.saturating_duration_since(self.base.0).as_secs()
    }

    fn set_timer(&mut self, which: Timer, at: Option<Instant>) {
        for (t, slot) in &mut self.timers {
            if *t == which {
                *slot = at;
            }
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.id_prefix, self.next_id)
    }

    fn random64(&mut self) -> [u8; 64] {
        let mut r = [0u8; 64];
        self.rng.fill_bytes(&mut r);
        r
    }

    fn send_node(&mut self, node: &Node) {
        let Some(t) = self.transport.as_mut() else { return };
        let sealed =
            marshal(node).ok().and_then(|pt| t.send.encrypt(&pt).ok()).and_then(|ct| frame::frame(&ct).ok());
        match sealed {
            Some(b) => self.outputs.push_back(Output::Send(b)),
            None => self
                .close(DisconnectReason::Protocol(ProtocolError::Unexpected("cannot encode stanza".into()))),
        }
    }

    fn send_iq(&mut self, typ: &str, xmlns: &str, children: Vec<Node>, pending: Pending) -> String {
        let id = self.new_id();
        let iq = Node::new("iq")
            .attr("id", id.clone())
            .attr("to", server())
            .attr("type", typ)
            .attr("xmlns", xmlns);
        let iq = if children.is_empty() { iq } else { iq.children(children) };
        self.pending.insert(id.clone(), pending);
        self.send_node(&iq);
        id
    }

    fn close(&mut self, reason: DisconnectReason) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        tracing::info!(reason = %reason, code = reason.code(), "connection closed");
        self.timers.iter_mut().for_each(|(_, t)| *t = None);
        self.transport = None;
        self.pending.clear();
        self.msg.reset_connection();
        self.state = State::Closed(reason.clone());
        self.outputs.push_back(Output::Close(reason));
    }

    // ------------------------------------------------------------------ commands

    /// Starts a new connection attempt: emits the intro header and client hello.
    pub fn connect(&mut self, now: Instant) {
        self.decoder = FrameDecoder::client(MAX_FRAME);
        self.transport = None;
        self.pending.clear();
        self.msg.reset_connection();
        self.timers.iter_mut().for_each(|(_, t)| *t = None);
        self.pair_code = None;
        let (state, hello) =
            ClientHandshake::start_with_rng(self.creds.noise_key.clone(), &frame::INTRO, &mut self.rng);
        let mut bytes = frame::INTRO.to_vec();
        if let Err(e) = frame::encode_frame(&hello, &mut bytes) {
            return self.close(DisconnectReason::Protocol(ProtocolError::Frame(e.to_string())));
        }
        self.state = State::Handshaking(Box::new(state));
        self.last_recv = Some(now);
        self.set_timer(Timer::Handshake, Some(now + HANDSHAKE_TIMEOUT));
        self.outputs.push_back(Output::Send(bytes));
    }

    /// Asks the server to unlink this device (`remove-companion-device`); the connection
    /// ends with [`DisconnectReason::LocalLogout`] when the server confirms.
    pub fn logout(&mut self, _now: Instant) {
        let Some(me) = self.creds.me.clone() else { return };
        if !self.is_logged_in() {
            return self.close(DisconnectReason::LocalLogout);
        }
        let child = Node::new("remove-companion-device").attr("jid", me.jid).attr("reason", "user_initiated");
        self.send_iq("set", "md", vec![child], Pending::Logout);
    }

    /// Closes the connection on the application's request.
    pub fn disconnect(&mut self, _now: Instant) {
        self.close(DisconnectReason::LocalClose);
    }

    /// Requests a pair code for `phone` (digits) while the QR refs are showing; emits
    /// [`Event::PairCode`]. Returns the grouped code, or `None` if not currently pairing.
    pub fn request_pair_code(&mut self, _now: Instant, phone: &str) -> Option<String> {
        if !matches!(self.state, State::Pairing { .. }) {
            return None;
        }
        let code = PairCode::generate(&mut self.rng);
        let ephemeral = KeyPair::generate(&mut self.rng);
        let (mut salt, mut iv) = ([0u8; 32], [0u8; 16]);
        self.rng.fill_bytes(&mut salt);
        self.rng.fill_bytes(&mut iv);
        let wrapped = code.wrap_ephemeral(ephemeral.public(), &salt, &iv);
        let reg = Node::new("link_code_companion_reg")
            .attr("jid", format!("{phone}@s.whatsapp.net"))
            .attr("stage", "companion_hello")
            .attr("should_show_push_notification", "true")
            .children([
                Node::new("link_code_pairing_wrapped_companion_ephemeral_pub").bytes(wrapped.to_vec()),
                Node::new("companion_server_auth_key_pub").bytes(self.creds.noise_key.public().to_vec()),
                Node::new("companion_platform_id")
                    .bytes((self.config.platform as i32).to_string().into_bytes()),
                Node::new("companion_platform_display").bytes(self.device_name().to_string().into_bytes()),
                Node::new("link_code_pairing_nonce").bytes(vec![0]),
            ]);
        self.send_iq("set", "md", vec![reg], Pending::CompanionHello);
        let grouped = code.grouped();
        self.pair_code = Some(PairCodeState { code, phone: phone.to_owned(), ephemeral });
        self.outputs.push_back(Output::Event(Event::PairCode(grouped.clone())));
        Some(grouped)
    }

    // ------------------------------------------------------------------ inputs

    /// The socket closed (without a stanza saying why, or after one).
    pub fn handle_closed(&mut self, _now: Instant) {
        self.close(DisconnectReason::ConnectionClosed);
    }

    /// A timer deadline was reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Timer> =
            self.timers.iter().filter(|(_, t)| t.is_some_and(|t| t <= now)).map(|(k, _)| *k).collect();
        for t in due {
            self.set_timer(t, None);
            match t {
                Timer::Handshake => self.close(DisconnectReason::ConnectTimeout),
                Timer::QrRotate => self.rotate_qr(now),
                Timer::KeepAlive => self.keepalive(now),
                Timer::Jobs => self.expire_jobs(now),
            }
        }
    }

    fn keepalive(&mut self, now: Instant) {
        if matches!(self.state, State::Closed(_) | State::Idle) {
            return;
        }
        let interval = self.config.keepalive;
        let grace = (interval / 2).min(Duration::from_secs(5));
        if self.last_recv.is_some_and(|t| now.saturating_duration_since(t) > interval + grace) {
            return self.close(DisconnectReason::ConnectionLost);
        }
        self.send_iq("get", "w:p", vec![Node::new("ping")], Pending::Ping);
        self.set_timer(Timer::KeepAlive, Some(now + interval));
    }

    fn rotate_qr(&mut self, now: Instant) {
        let State::Pairing { refs, next_ref } = &mut self.state else { return };
        let Some(r) = refs.get(*next_ref).cloned() else {
            return self.close(DisconnectReason::QrTimeout);
        };
        *next_ref += 1;
        let qr = self.qr_for(&r);
        self.set_timer(Timer::QrRotate, Some(now + NEXT_QR_TTL));
        self.outputs.push_back(Output::Event(Event::Qr(qr)));
    }

    fn qr_for(&self, reference: &str) -> String {
        QrData {
            reference: reference.to_owned(),
            noise_pub: *self.creds.noise_key.public(),
            identity_pub: *self.creds.identity_key.public(),
            adv_secret: *self.creds.adv_secret,
            client_type: Some('1'),
        }
        .render()
    }

    /// One binary WebSocket message from the server.
    pub fn handle_data(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::Closed(_) | State::Idle) {
            return;
        }
        self.last_recv = Some(now);
        self.decoder.push(bytes);
        loop {
            if matches!(self.state, State::Closed(_)) {
                return;
            }
            match self.decoder.next_frame() {
                Ok(Some(f)) => self.handle_frame(now, &f),
                Ok(None) => return,
                Err(e) => return self.close(DisconnectReason::Protocol(ProtocolError::Frame(e.to_string()))),
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, f: &[u8]) {
        if let State::Handshaking(_) = self.state {
            let State::Handshaking(hs) = std::mem::replace(&mut self.state, State::Authenticating) else {
                return;
            };
            return self.finish_handshake(now, *hs, f);
        }
        let Some(t) = self.transport.as_mut() else { return };
        let node = match t.recv.decrypt(f) {
            Ok(pt) => match unmarshal(&pt) {
                Ok(n) => n,
                Err(e) => {
                    // One stanza we cannot decode is skipped, as whatsmeow's handleFrame does:
                    // closing would reconnect into the same stanza if it is queued offline.
                    tracing::warn!(error = %e, len = pt.len(), "undecodable stanza skipped");
                    return;
                }
            },
            Err(_) => return self.close(DisconnectReason::Protocol(ProtocolError::Decrypt)),
        };
        tracing::debug!(stanza = %node, "recv");
        self.handle_node(now, &node);
    }

    fn finish_handshake(&mut self, now: Instant, hs: ExpectServerHello, f: &[u8]) {
        let unix = self.unix(now);
        let payload = payload::client_payload(&self.creds, &self.config);
        let done =
            hs.handle(f).and_then(|r| r.verify(&self.config.trust, unix)).and_then(|s| s.finish(&payload));
        let done = match done {
            Ok(d) => d,
            Err(e) => return self.close(DisconnectReason::Protocol(ProtocolError::Handshake(e.to_string()))),
        };
        let Ok(bytes) = frame::frame(&done.message) else {
            return self
                .close(DisconnectReason::Protocol(ProtocolError::Frame("client finish too large".into())));
        };
        self.transport = Some(done.transport);
        self.outputs.push_back(Output::Send(bytes));
        self.set_timer(Timer::Handshake, Some(now + HANDSHAKE_TIMEOUT));
        self.set_timer(Timer::KeepAlive, Some(now + self.config.keepalive));
    }

    fn handle_node(&mut self, now: Instant, node: &Node) {
        match node.tag.as_str() {
            "iq" => self.handle_iq(now, node),
            "success" => self.handle_success(node),
            "failure" => {
                let mut r = DisconnectReason::from_failure(
                    node.attr_str("reason"),
                    node.attr_str("code"),
                    node.attr_str("expire"),
                );
                // `from_failure` assumes the login-time carrier; a `<failure>` on a stream that
                // already had `<success>` (e.g. a ban) did not happen at connect.
                if let DisconnectReason::LoggedOut { on_connect, .. } = &mut r {
                    *on_connect = !matches!(self.state, State::Online);
                }
                self.close(r);
            }
            "stream:error" => {
                let child = node.child_nodes().first().map(|c| (c.tag.as_str(), c.attr_str("type")));
                self.close(DisconnectReason::from_stream_error(node.attr_str("code"), child));
            }
            "xmlstreamend" => self.close(DisconnectReason::StreamEnd),
            "message" => self.handle_message(now, node),
            "receipt" => self.handle_receipt(now, node),
            "ack" => self.handle_ack(node),
            "ib" => {
                if node.child("downgrade_webclient").is_some() {
                    return self.close(DisconnectReason::MultideviceMismatch);
                }
                if node.child("offline_preview").is_some() {
                    self.handle_offline_preview();
                }
                if let Some(off) = node.child("offline") {
                    let n = off.attr_str("count").and_then(|c| c.parse().ok()).unwrap_or(0);
                    self.outputs.push_back(Output::Event(Event::Ready { offline: n }));
                }
            }
            "notification" => self.handle_notification(node),
            // Calls (offer, terminate, …), app data and status stanzas: nothing to do here but
            // the ack every server-pushed stanza needs (whatsmeow `call.go`, Baileys
            // `handleCall`); unacked they stay pending and the server ends the stream.
            "call" | "appdata" | "status" => self.ack_stanza(node),
            _ => {}
        }
    }

    /// Acks `node` like the references: `class` = its tag, `to` = its `from`,
    /// `participant`/`recipient`/`type` copied.
    fn ack_stanza(&mut self, node: &Node) {
        match ack_for(node) {
            Ok(ack) => self.send_node(&ack),
            Err(e) => tracing::warn!(tag = %node.tag, error = %e, "cannot ack stanza"),
        }
    }

    fn handle_iq(&mut self, now: Instant, node: &Node) {
        let id = node.attr_str("id").unwrap_or_default().to_owned();
        let typ = node.attr_str("type").unwrap_or_default();
        if typ == "result" || typ == "error" {
            let Some(p) = self.pending.remove(&id) else { return };
            return self.handle_response(now, p, typ == "result", node);
        }
        if let Some(pd) = node.child("pair-device") {
            return self.handle_pair_device(now, &id, pd);
        }
        if let Some(ps) = node.child("pair-success") {
            return self.handle_pair_success(&id, ps);
        }
        if typ == "get" && matches!(node.attr_str("xmlns"), Some("urn:xmpp:ping")) {
            let reply = Node::new("iq").attr("to", server()).attr("id", id).attr("type", "result");
            self.send_node(&reply);
        }
    }

    fn handle_pair_device(&mut self, now: Instant, id: &str, pd: &Node) {
        let ack = Node::new("iq").attr("to", server()).attr("id", id).attr("type", "result");
        self.send_node(&ack);
        if self.creds.is_paired() {
            // Never a reason to drop a linked connection (or to show a QR): answer, go on.
            tracing::warn!("pair-device on a linked connection; ignored");
            return;
        }
        let refs: Vec<String> = pd
            .children_with_tag("ref")
            .filter_map(|r| {
                r.content_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .or_else(|| r.content_str().map(str::to_owned))
            })
            .collect();
        let Some(first) = refs.first().cloned() else {
            return self.close(DisconnectReason::Protocol(ProtocolError::Pairing(
                "pair-device without refs".into(),
            )));
        };
        self.set_timer(Timer::Handshake, None);
        let qr = self.qr_for(&first);
        self.state = State::Pairing { refs, next_ref: 1 };
        self.set_timer(Timer::QrRotate, Some(now + FIRST_QR_TTL));
        self.outputs.push_back(Output::Event(Event::Qr(qr)));
    }

    fn handle_pair_success(&mut self, id: &str, ps: &Node) {
        let Some(identity) = ps.child("device-identity").and_then(Node::content_bytes) else {
            return self
                .close(DisconnectReason::Protocol(ProtocolError::Pairing("no device-identity".into())));
        };
        let Some(jid) = ps.child("device").and_then(|d| d.attr_jid("jid")) else {
            return self.close(DisconnectReason::Protocol(ProtocolError::Pairing("no device jid".into())));
        };
        let lid = ps.child("device").and_then(|d| d.attr_jid("lid")).map(|j| j.to_string());
        let random = self.random64();
        let verified = match adv::verify_pair_success(
            identity,
            &self.creds.adv_secret,
            self.creds.identity_key.private(),
            &random,
        ) {
            Ok(v) => v,
            Err(e) => {
                let (code, text) = match e {
                    adv::AdvError::HmacMismatch => ("401", "hmac-mismatch"),
                    adv::AdvError::SignatureMismatch => ("401", "signature-mismatch"),
                    _ => ("500", "internal-error"),
                };
                let err = Node::new("iq")
                    .attr("to", server())
                    .attr("type", "error")
                    .attr("id", id)
                    .children([Node::new("error").attr("code", code).attr("text", text)]);
                self.send_node(&err);
                return self.close(DisconnectReason::Protocol(ProtocolError::Pairing(e.to_string())));
            }
        };
        let jid_s = jid.to_string();
        self.creds.me = Some(Me {
            jid: jid_s.clone(),
            lid,
            account: verified.account.clone(),
            account_key: verified.account_key,
            platform: ps.child("platform").and_then(|p| p.attr_str("name")).map(str::to_owned),
        });
        // The account's name as the server knows it (Baileys takes `<biz name>` as `me.name`).
        if let Some(name) = ps.child("biz").and_then(|b| b.attr_str("name")).filter(|n| !n.trim().is_empty())
        {
            self.creds.push_name = Some(name.to_owned());
        }
        // Invariant 1: the new creds are durable before the reply that completes pairing.
        self.outputs.push_back(Output::Persist(Delta::Creds(Box::new(self.creds.clone()))));
        let reply =
            Node::new("iq").attr("to", server()).attr("type", "result").attr("id", id).children([Node::new(
                "pair-device-sign",
            )
            .children([Node::new("device-identity")
                .attr("key-index", verified.key_index.to_string())
                .bytes(verified.reply)])]);
        self.send_node(&reply);
        self.set_timer(Timer::QrRotate, None);
        self.outputs.push_back(Output::Event(Event::Paired { jid: jid_s }));
    }

    fn handle_success(&mut self, _node: &Node) {
        if !self.creds.is_paired() {
            return self.close(DisconnectReason::Protocol(ProtocolError::Unexpected(
                "success while unpaired".into(),
            )));
        }
        self.set_timer(Timer::Handshake, None);
        self.state = State::Online;
        self.outputs.push_back(Output::Event(Event::LoggedIn));
        self.send_iq("get", "encrypt", vec![Node::new("count")], Pending::PreKeyCount);
        self.send_presence();
    }

    /// The push name announced with `<presence>`: the configured one, else the one learned at
    /// pairing.
    pub fn push_name(&self) -> Option<&str> {
        self.config.push_name.as_deref().or(self.creds.push_name.as_deref()).filter(|n| !n.trim().is_empty())
    }

    /// Changes the push name / presence type; sent at once when logged in, else at the next
    /// login.
    pub fn set_presence(&mut self, push_name: Option<String>, available: bool) {
        self.config.push_name = push_name;
        self.config.presence_available = available;
        if self.is_logged_in() {
            self.send_presence();
        }
    }

    /// `<presence type="available|unavailable" name="…"/>`, so the server has our push name
    /// (otherwise contacts see "-"; whatsmeow `SendPresence`, Baileys `sendPresenceUpdate`).
    /// Nothing is sent while no name is known (the references refuse too).
    fn send_presence(&mut self) {
        let Some(name) = self.push_name().map(|n| n.replace('@', "")) else { return };
        let typ = if self.config.presence_available { "available" } else { "unavailable" };
        self.send_node(&Node::new("presence").attr("type", typ).attr("name", name));
    }

    fn handle_response(&mut self, now: Instant, p: Pending, ok: bool, node: &Node) {
        match p {
            Pending::Msg(n, step) => self.handle_job_iq(now, n, step, node),
            Pending::PreKeyRefill => {}
            Pending::PreKeyCount => {
                let count =
                    node.child("count").and_then(|c| c.attr_str("value")).and_then(|v| v.parse::<u32>().ok());
                if ok && count.unwrap_or(0) < MIN_PRE_KEYS {
                    self.upload_pre_keys(Pending::PreKeyUpload);
                } else {
                    self.send_iq("set", "passive", vec![Node::new("active")], Pending::Active);
                }
            }
            Pending::PreKeyUpload => {
                self.send_iq("set", "passive", vec![Node::new("active")], Pending::Active);
            }
            Pending::Logout => self.close(DisconnectReason::LocalLogout),
            Pending::Active | Pending::Ping | Pending::CompanionHello | Pending::CompanionFinish => {}
        }
    }

    fn upload_pre_keys(&mut self, pending: Pending) {
        let start = self.creds.next_pre_key_id;
        let keys: Vec<PreKey> = (0..PRE_KEY_BATCH)
            .map(|i| PreKey { id: start + i, key: KeyPair::generate(&mut self.rng) })
            .collect();
        self.creds.next_pre_key_id = start + PRE_KEY_BATCH;
        self.msg.keys.add_pre_keys(&keys);
        // Persist the keys and the advanced counter before anyone can see them.
        self.outputs.push_back(Output::Persist(Delta::PreKeys(keys.clone())));
        self.outputs.push_back(Output::Persist(Delta::Creds(Box::new(self.creds.clone()))));
        let id3 = |id: u32| id.to_be_bytes()[1..].to_vec();
        let list = keys.iter().map(|k| {
            Node::new("key").children([
                Node::new("id").bytes(id3(k.id)),
                Node::new("value").bytes(k.key.public().to_vec()),
            ])
        });
        let spk = &self.creds.signed_pre_key;
        let children = vec![
            Node::new("registration").bytes(self.creds.registration_id.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(self.creds.identity_key.public().to_vec()),
            Node::new("list").children(list),
            Node::new("skey").children([
                Node::new("id").bytes(id3(spk.key.id)),
                Node::new("value").bytes(spk.key.key.public().to_vec()),
                Node::new("signature").bytes(spk.signature.to_vec()),
            ]),
        ];
        self.send_iq("set", "encrypt", children, pending);
    }

    fn handle_notification(&mut self, node: &Node) {
        if node.attr_str("type") == Some("link_code_companion_reg")
            && let Some(reg) = node.child("link_code_companion_reg")
        {
            self.handle_primary_hello(reg);
        }
        self.handle_key_notification(node);
        // To the notification's `from` (a group, a contact, our own JID or the server),
        // with `participant`/`type` echoed; an ack to the server alone does not clear it.
        self.ack_stanza(node);
    }

    fn handle_primary_hello(&mut self, reg: &Node) {
        let Some(pc) = self.pair_code.take() else { return };
        let get = |t: &str| reg.child(t).and_then(Node::content_bytes);
        let (Some(wrapped), Some(primary_identity), Some(reference)) = (
            get("link_code_pairing_wrapped_primary_ephemeral_pub"),
            get("primary_identity_pub").and_then(|b| <[u8; 32]>::try_from(b).ok()),
            get("link_code_pairing_ref"),
        ) else {
            return self.close(DisconnectReason::Protocol(ProtocolError::Pairing(
                "incomplete primary_hello".into(),
            )));
        };
        let primary_eph = match pc.code.unwrap_ephemeral(wrapped) {
            Ok(k) => k,
            Err(e) => return self.close(DisconnectReason::Protocol(ProtocolError::Pairing(e.to_string()))),
        };
        let random = BundleRandom::generate(&mut self.rng);
        let (bundle, secret) = companion_bundle(
            &pc.ephemeral.private().to_bytes(),
            &primary_eph,
            &self.creds.identity_key.private().to_bytes(),
            self.creds.identity_key.public(),
            &primary_identity,
            &random,
        );
        self.creds.adv_secret = secret;
        let finish = Node::new("link_code_companion_reg")
            .attr("jid", format!("{}@s.whatsapp.net", pc.phone))
            .attr("stage", "companion_finish")
            .children([
                Node::new("link_code_pairing_wrapped_key_bundle").bytes(bundle.to_vec()),
                Node::new("companion_identity_public").bytes(self.creds.identity_key.public().to_vec()),
                Node::new("link_code_pairing_ref").bytes(reference.to_vec()),
            ]);
        self.send_iq("set", "md", vec![finish], Pending::CompanionFinish);
    }
}
