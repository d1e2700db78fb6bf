//! A sans-IO messaging network for scenario tests: our [`Client`]s (logged in over in-memory
//! transports), scripted primary phones (bare `wa::signal` peers that decrypt what they get)
//! and a tiny server built from the server-side `wa::message` helpers (usync, bundles, relay +
//! delivery, receipts, group metadata, offline queue). Each client's outputs are logged in
//! order and its deltas applied to an in-memory key store, so tests can assert invariant 1
//! and rebuild a client from what was persisted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::super::*;
use crate::wa::binary::{Node, marshal, unmarshal};
use crate::wa::frame;
use crate::wa::jid::Jid;
use crate::wa::message::{
    DecodedMessage, EncType, InboundMessage, MessageContent, UserDevices, decode_plaintext, delivery_for,
    device_result, dm_stanza, encode_plaintext, offline_end, offline_preview, parse_device_query,
    parse_message, parse_prekey_fetch, parse_relay, peer_stanza, prekey_result, text_message,
};
use crate::wa::noise::testing::transport_pair;
use crate::wa::noise::{Transport, TrustAnchor};
use crate::wa::signal::{
    self, LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySignalMessage, PublicKey,
    SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord, SessionRecord, SignalAddress,
    SignedPreKeyRecord,
};

pub(super) const UNIX0: u64 = 1_800_000_000;

/// One entry of a client's output log.
#[derive(Debug, Clone)]
pub(super) enum Log {
    Persist(Delta),
    Send(Node),
    Event(Event),
}

/// One of our clients in the network.
pub(super) struct Dev {
    pub(super) jid: Jid,
    pub(super) client: Client,
    server: Transport,
    pub(super) log: Vec<Log>,
    /// The durable key store (what a restart hydrates from).
    pub(super) store: BTreeMap<KeyId, Vec<u8>>,
    pub(super) creds: Creds,
    pub(super) online: bool,
    /// Stanzas queued for this device while it was offline.
    queue: Vec<Node>,
    seed: u64,
}

/// A scripted primary phone (device 0): a Signal peer that decrypts and never answers.
pub(super) struct Phone {
    pub(super) jid: Jid,
    identity: LocalIdentity,
    spk: SignedPreKeyRecord,
    pre_keys: HashMap<u32, PreKeyRecord>,
    sessions: HashMap<SignalAddress, SessionRecord>,
    sender_keys: HashMap<SenderKeyName, SenderKeyRecord>,
    pub(super) received: Vec<(String, DecodedMessage)>,
    rng: StdRng,
}

/// What the server hands out for one device.
#[derive(Clone)]
struct Registered {
    registration_id: u32,
    identity: PublicKey,
    spk: (u32, PublicKey, [u8; 64]),
    pre_keys: VecDeque<(u32, PublicKey)>,
}

/// A hook that alters deliveries in flight.
pub(super) type Tamper = Box<dyn FnMut(&Jid, &mut Node)>;

enum Dest {
    Client(usize),
    Phone(String),
}

/// Everything in the test network.
pub(super) struct Net {
    pub(super) now: Instant,
    pub(super) devs: Vec<Dev>,
    pub(super) phones: HashMap<String, Phone>,
    registry: HashMap<Jid, Registered>,
    /// user JID → device numbers (usync).
    users: BTreeMap<Jid, Vec<u16>>,
    groups: HashMap<Jid, Vec<Jid>>,
    queue: VecDeque<(Dest, Node)>,
    /// Alters a delivery to a device before it arrives (corruption tests).
    pub(super) tamper: Option<Tamper>,
    /// Every stanza the server delivered, per target device.
    pub(super) delivered: Vec<(Jid, Node)>,
}

pub(super) fn j(s: &str) -> Jid {
    s.parse().unwrap()
}

fn config() -> ClientConfig {
    ClientConfig {
        url: "mem".into(),
        trust: TrustAnchor { root_public: [0; 32], root_serial: 0 },
        keepalive: Duration::from_secs(30),
        os_name: "test".into(),
        ..ClientConfig::default()
    }
}

impl Phone {
    fn new(user: &str, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let identity = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&identity, 1, &mut rng);
        let pre_keys = signal::generate_pre_keys(1, 20, &mut rng).into_iter().map(|p| (p.id(), p)).collect();
        Self {
            jid: j(&format!("{user}@s.whatsapp.net")),
            identity,
            spk,
            pre_keys,
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
            received: Vec::new(),
            rng,
        }
    }

    fn registered(&self) -> Registered {
        let mut ids: Vec<&u32> = self.pre_keys.keys().collect();
        ids.sort();
        Registered {
            registration_id: self.identity.registration_id(),
            identity: self.identity.public_key(),
            spk: (self.spk.id(), PublicKey::from_raw(*self.spk.key_pair().public()), *self.spk.signature()),
            pre_keys: ids
                .into_iter()
                .filter_map(|id| self.pre_keys.get(id))
                .map(|p| (p.id(), PublicKey::from_raw(*p.key_pair().public())))
                .collect(),
        }
    }

    /// Decrypts a delivered stanza like a real phone would (no receipts).
    fn receive(&mut self, node: &Node) {
        if node.tag != "message" {
            return;
        }
        let msg: InboundMessage = parse_message(node).unwrap();
        let addr = send::address_of(msg.sender());
        for enc in &msg.encs {
            let plain = match enc.kind {
                EncType::Pkmsg => {
                    let pk = PreKeySignalMessage::decode(&enc.ciphertext).unwrap();
                    let otk = pk.pre_key_id().and_then(|id| self.pre_keys.get(&id));
                    let d = signal::decrypt_prekey_message(
                        &self.identity,
                        &addr,
                        self.sessions.get(&addr),
                        &pk,
                        Some(&self.spk),
                        otk,
                        &mut self.rng,
                    );
                    let Ok(d) = d else { continue };
                    if let Some(id) = pk.pre_key_id() {
                        self.pre_keys.remove(&id);
                    }
                    self.sessions.insert(addr.clone(), d.record);
                    d.plaintext
                }
                EncType::Msg => {
                    let Some(rec) = self.sessions.get(&addr) else { continue };
                    let Ok(d) = signal::decrypt_message(&addr, rec, &enc.ciphertext, &mut self.rng) else {
                        continue;
                    };
                    self.sessions.insert(addr.clone(), d.record);
                    d.plaintext
                }
                _ => {
                    let name = SenderKeyName::new(msg.from.to_string(), addr.clone());
                    let Some(rec) = self.sender_keys.get(&name) else { continue };
                    let Ok(o) = signal::group_decrypt(&name, rec, &enc.ciphertext) else { continue };
                    self.sender_keys.insert(name, o.record);
                    o.bytes
                }
            };
            let d = decode_plaintext(&plain).unwrap();
            if let Some((g, bytes)) = &d.skdm {
                let skdm = SenderKeyDistributionMessage::decode(bytes).unwrap();
                let name = SenderKeyName::new(g.clone(), addr.clone());
                let (rec, _) =
                    signal::process_distribution_message(&name, self.sender_keys.get(&name), &skdm);
                self.sender_keys.insert(name, rec);
            }
            if d.content != MessageContent::Other {
                self.received.push((msg.id.clone(), d));
            }
        }
    }

    /// Texts stored so far.
    pub(super) fn texts(&self) -> Vec<String> {
        self.received
            .iter()
            .filter_map(|(_, d)| match &d.content {
                MessageContent::Text(t) => Some(t.clone()),
                MessageContent::Other => None,
            })
            .collect()
    }
}

impl Dev {
    /// Events emitted so far.
    pub(super) fn events(&self) -> Vec<Event> {
        self.log.iter().filter_map(|l| if let Log::Event(e) = l { Some(e.clone()) } else { None }).collect()
    }

    /// Texts of received messages, in order.
    pub(super) fn texts(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| if let Event::Message(m) = e { m.text.clone() } else { None })
            .collect()
    }

    /// Stanzas sent with tag `tag`.
    pub(super) fn sent(&self, tag: &str) -> Vec<Node> {
        self.log
            .iter()
            .filter_map(|l| if let Log::Send(n) = l { Some(n) } else { None })
            .filter(|n| n.tag == tag)
            .cloned()
            .collect()
    }

    fn apply(&mut self, d: &Delta) {
        let mut changes = |cs: &[KeyChange]| {
            for c in cs {
                match c {
                    KeyChange::Put { id, value } => {
                        self.store.insert(id.clone(), value.expose().to_vec());
                    }
                    KeyChange::Delete(id) => {
                        self.store.remove(id);
                    }
                }
            }
        };
        match d {
            Delta::Keys(cs) | Delta::Received { keys: cs, .. } => changes(cs),
            Delta::PreKeys(ks) => {
                for k in ks {
                    self.store.insert(KeyId::PreKey(k.id), k.key.private().to_bytes().to_vec());
                }
            }
            Delta::Creds(c) => self.creds = (**c).clone(),
        }
    }
}

fn online_client(creds: Creds, seed: u64, now: Instant, keys: KeyCache) -> (Client, Transport) {
    let mut c = Client::new(config(), creds, Box::new(StdRng::seed_from_u64(seed)), now, UNIX0);
    let (client_t, server_t) = transport_pair();
    c.transport = Some(client_t);
    c.state = State::Online;
    c.load_keys(keys);
    (c, server_t)
}

impl Net {
    pub(super) fn new() -> Self {
        #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the virtual clock")]
        let now = Instant::now();
        Self {
            now,
            devs: Vec::new(),
            phones: HashMap::new(),
            registry: HashMap::new(),
            users: BTreeMap::new(),
            groups: HashMap::new(),
            queue: VecDeque::new(),
            tamper: None,
            delivered: Vec::new(),
        }
    }

    fn unix(&self) -> u64 {
        UNIX0
    }

    /// Adds an account `user` with a phone (device 0) if it has none yet.
    pub(super) fn account(&mut self, user: &str) {
        if self.phones.contains_key(user) {
            return;
        }
        let seed = 1000 + self.phones.len() as u64;
        let phone = Phone::new(user, seed);
        self.registry.insert(phone.jid.clone(), phone.registered());
        self.users.entry(j(&format!("{user}@s.whatsapp.net"))).or_default().push(0);
        self.phones.insert(user.to_owned(), phone);
    }

    /// Adds a logged-in companion `user:device`, uploads its prekeys; returns its index.
    pub(super) fn companion(&mut self, user: &str, device: u16) -> usize {
        self.account(user);
        let seed = 7 + u64::from(device) * 31 + self.devs.len() as u64 * 101;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut creds = Creds::generate(&mut rng);
        let jid = j(&format!("{user}:{device}@s.whatsapp.net"));
        creds.me = Some(Me {
            jid: jid.to_string(),
            lid: None,
            account: vec![0xAD, device as u8],
            account_key: [1; 32],
            platform: None,
        });
        let (client, server) = online_client(creds.clone(), seed + 1, self.now, KeyCache::new());
        self.users.entry(jid.to_non_ad()).or_default().push(device);
        self.devs.push(Dev {
            jid,
            client,
            server,
            log: Vec::new(),
            store: BTreeMap::new(),
            creds,
            online: true,
            queue: Vec::new(),
            seed: seed + 1,
        });
        let i = self.devs.len() - 1;
        self.devs[i].client.upload_pre_keys(Pending::PreKeyUpload);
        self.drive();
        i
    }

    pub(super) fn group(&mut self, gid: &str, members: &[&str]) -> Jid {
        let g = j(gid);
        self.groups.insert(g.clone(), members.iter().map(|m| j(&format!("{m}@s.whatsapp.net"))).collect());
        g
    }

    /// Rebuilds client `i` from its persisted creds and keys only (a restart), online again.
    pub(super) fn restart(&mut self, i: usize) -> Vec<KeyLoadError> {
        let d = &self.devs[i];
        let (keys, errors) = KeyCache::from_entries(d.store.iter().map(|(k, v)| (k.clone(), v.as_slice())));
        let seed = d.seed.wrapping_mul(3) + 5;
        let (client, server) = online_client(d.creds.clone(), seed, self.now, keys);
        let d = &mut self.devs[i];
        d.client = client;
        d.server = server;
        d.seed = seed;
        errors
    }

    /// A new connection for client `i` as the host makes one: a new `Client` with the key cache
    /// carried over in memory (nothing re-read from the store).
    pub(super) fn new_connection(&mut self, i: usize) {
        let keys = self.devs[i].client.take_keys();
        let seed = self.devs[i].seed.wrapping_mul(5) + 3;
        let (client, server) = online_client(self.devs[i].creds.clone(), seed, self.now, keys);
        let d = &mut self.devs[i];
        d.client = client;
        d.server = server;
        d.seed = seed;
    }

    /// Takes client `i` offline (deliveries queue up).
    pub(super) fn offline(&mut self, i: usize) {
        self.devs[i].online = false;
    }

    /// Brings client `i` back with the offline-queue handshake (preview → batch → stanzas →
    /// end marker).
    pub(super) fn reconnect(&mut self, i: usize) {
        self.devs[i].online = true;
        let n = self.devs[i].queue.len() as u64;
        self.push_to_client(i, &offline_preview(n, 0, 0, 0));
        self.drive();
    }

    pub(super) fn send_text(&mut self, i: usize, id: &str, to: &str, text: &str) {
        let now = self.now;
        self.devs[i].client.send_text(now, id, to, text).unwrap();
        self.drive();
    }

    /// The phone of `from_user` sends `text` to the bare user `to_user` (all its devices).
    pub(super) fn phone_send(&mut self, from_user: &str, to_user: &str, id: &str, text: &str) {
        let to = j(&format!("{to_user}@s.whatsapp.net"));
        let devices: Vec<Jid> = self
            .users
            .get(&to)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|d| to.clone().with_device(d))
            .collect();
        let mut bundles = Vec::new();
        for d in &devices {
            bundles.push((d.clone(), self.take_bundle(d)));
        }
        let phone = self.phones.get_mut(from_user).unwrap();
        let body = encode_plaintext(&text_message(text), &mut phone.rng);
        let mut entries = Vec::new();
        for (d, b) in bundles {
            let addr = send::address_of(&d);
            if !phone.sessions.contains_key(&addr) {
                let (rec, _) =
                    signal::process_bundle(&phone.identity, &addr, None, &b, &mut phone.rng).unwrap();
                phone.sessions.insert(addr.clone(), rec);
            }
            let e = signal::encrypt(&addr, &phone.sessions[&addr], &body).unwrap();
            phone.sessions.insert(addr, e.record);
            entries.push(crate::wa::message::DeviceCiphertext {
                device: d,
                kind: e.kind.into(),
                ciphertext: e.ciphertext,
            });
        }
        let stanza = dm_stanza(id, &to, &entries, Some(&[1, 2]));
        let sender = phone.jid.clone();
        self.route_message(&sender, &stanza, None);
        self.drive();
    }

    /// The server hands `node` to client `i` (a stanza built by the test).
    pub(super) fn push(&mut self, i: usize, node: Node) {
        self.queue.push_back((Dest::Client(i), node));
        self.drive();
    }

    /// The phone of `user` sends `message` to client `i` alone as a peer message (it holds a
    /// session with it from an earlier pkmsg).
    pub(super) fn phone_peer_send(
        &mut self,
        user: &str,
        i: usize,
        id: &str,
        message: &crate::wa::proto::Message,
    ) {
        let dev = self.devs[i].jid.clone();
        let phone = self.phones.get_mut(user).unwrap();
        let addr = send::address_of(&dev);
        let body = encode_plaintext(message, &mut phone.rng);
        let e = signal::encrypt(&addr, &phone.sessions[&addr], &body).unwrap();
        phone.sessions.insert(addr, e.record);
        let stanza = peer_stanza(id, &phone.jid, e.kind.into(), &e.ciphertext, "high_force", None);
        let sender = phone.jid.clone();
        let node = delivery_for(&parse_relay(&stanza).unwrap(), &sender, &dev, UNIX0, false).unwrap();
        self.push(i, node);
    }

    fn take_bundle(&mut self, device: &Jid) -> PreKeyBundle {
        let r = self.registry.get_mut(device).unwrap_or_else(|| panic!("no bundle for {device}"));
        PreKeyBundle {
            registration_id: r.registration_id,
            identity_key: r.identity,
            signed_pre_key_id: r.spk.0,
            signed_pre_key: r.spk.1,
            signed_pre_key_signature: r.spk.2,
            pre_key: r.pre_keys.pop_front(),
        }
    }

    fn push_to_client(&mut self, i: usize, node: &Node) {
        let now = self.now;
        let d = &mut self.devs[i];
        let ct = d.server.send.encrypt(&marshal(node).unwrap()).unwrap();
        let bytes = frame::frame(&ct).unwrap();
        d.client.handle_data(now, &bytes);
    }

    fn deliver(&mut self, dest: Dest, mut node: Node) {
        match dest {
            Dest::Phone(user) => {
                if let Some(p) = self.phones.get_mut(&user) {
                    p.receive(&node);
                }
            }
            Dest::Client(i) => {
                if !self.devs[i].online {
                    node.set_attr("offline", "1");
                    self.devs[i].queue.push(node);
                    return;
                }
                self.push_to_client(i, &node);
            }
        }
    }

    fn dest_of(&self, device: &Jid) -> Option<Dest> {
        if let Some(i) = self.devs.iter().position(|d| d.jid == *device) {
            return Some(Dest::Client(i));
        }
        self.phones.iter().find(|(_, p)| p.jid == *device).map(|(u, _)| Dest::Phone(u.clone()))
    }

    /// Server: relays a `<message>` sent by `sender`.
    fn route_message(&mut self, sender: &Jid, node: &Node, from_client: Option<usize>) {
        let relay = parse_relay(node).unwrap();
        let t = self.unix();
        if let Some(i) = from_client {
            let ack = Node::new("ack")
                .attr("class", "message")
                .attr("id", relay.id.as_str())
                .attr("from", relay.to.clone())
                .attr("t", t.to_string());
            self.queue.push_back((Dest::Client(i), ack));
        }
        let devices: Vec<Jid> = if relay.to.is_group() {
            match &relay.participant {
                Some(p) => vec![p.clone()],
                None => self
                    .groups
                    .get(&relay.to)
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|u| {
                        self.users
                            .get(u)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|d| u.clone().with_device(d))
                    })
                    .filter(|d| d != sender)
                    .collect(),
            }
        } else if relay.category.as_deref() == Some("peer") {
            // A peer message goes to the sender's own phone only.
            vec![relay.to.to_non_ad().with_device(0)]
        } else if relay.no_fanout {
            vec![relay.to.clone()]
        } else {
            relay.targets.iter().map(|(d, _)| d.clone()).collect()
        };
        for d in devices {
            let Some(mut n) = delivery_for(&relay, sender, &d, t, false) else { continue };
            if let Some(f) = self.tamper.as_mut() {
                f(&d, &mut n);
            }
            self.delivered.push((d.clone(), n.clone()));
            if let Some(dest) = self.dest_of(&d) {
                self.queue.push_back((dest, n));
            }
        }
    }

    /// Server: forwards a client's receipt to the device it answers.
    fn route_receipt(&mut self, from: &Jid, node: &Node) {
        let to = node.attr_jid("to").unwrap();
        let t = self.unix().to_string();
        let mut fwd = Node::new("receipt");
        let target = if to.is_group() {
            fwd.set_attr("from", to.clone());
            fwd.set_attr("participant", from.clone());
            node.attr_jid("participant").unwrap()
        } else {
            fwd.set_attr("from", from.clone());
            to
        };
        fwd.set_attr("id", node.attr_str("id").unwrap());
        fwd.set_attr("t", t);
        match node.attr_str("type") {
            None | Some("inactive") => {}
            Some(k) => fwd.set_attr("type", k),
        }
        if let Some(r) = node.attr_value("recipient") {
            fwd.set_attr("recipient", r.clone());
        }
        let fwd = fwd.children(node.child_nodes().to_vec());
        if let Some(dest) = self.dest_of(&target) {
            self.queue.push_back((dest, fwd));
        }
    }

    fn handle_iq(&mut self, i: usize, node: &Node) {
        let id = node.attr_str("id").unwrap_or_default().to_owned();
        let result =
            || Node::new("iq").attr("type", "result").attr("id", id.clone()).attr("from", "s.whatsapp.net");
        let reply = match (node.attr_str("xmlns"), node.attr_str("type")) {
            (Some("usync"), _) => {
                let (sid, users) = parse_device_query(node).unwrap();
                let answer: Vec<UserDevices> = users
                    .iter()
                    .map(|u| UserDevices {
                        user: u.clone(),
                        devices: self
                            .users
                            .get(u)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|d| u.clone().with_device(d))
                            .collect(),
                    })
                    .collect();
                device_result(&id, &sid, &answer)
            }
            (Some("encrypt"), Some("get")) if node.child("key").is_some() => {
                let devices = parse_prekey_fetch(node).unwrap();
                match devices.iter().find(|d| !self.registry.contains_key(d)) {
                    // An unknown device: the whole answer carries a per-user error.
                    Some(unknown) => result().children([Node::new("list").children([Node::new("user")
                        .attr("jid", unknown.clone())
                        .children([Node::new("error")
                            .attr("code", "404")
                            .attr("text", "item-not-found")])])]),
                    None => {
                        let bundles: Vec<(Jid, PreKeyBundle)> =
                            devices.iter().map(|d| (d.clone(), self.take_bundle(d))).collect();
                        prekey_result(&id, &bundles)
                    }
                }
            }
            (Some("encrypt"), Some("set")) => {
                self.register_upload(i, node);
                result()
            }
            (Some("w:g2"), _) => {
                let gid = node.attr_jid("to").unwrap();
                let members = self.groups.get(&gid).cloned().unwrap_or_default();
                Node::new("iq")
                    .attr("type", "result")
                    .attr("id", id.clone())
                    .attr("from", gid.clone())
                    .children([Node::new("group")
                        .attr("id", gid.user.clone())
                        .attr("addressing_mode", "pn")
                        .children(members.iter().map(|m| Node::new("participant").attr("jid", m.clone())))])
            }
            _ => result(),
        };
        self.queue.push_back((Dest::Client(i), reply));
    }

    fn register_upload(&mut self, i: usize, node: &Node) {
        let b = |n: &Node, t: &str| n.child(t).and_then(Node::content_bytes).unwrap().to_vec();
        let be = |v: Vec<u8>| v.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x));
        let key32 = |v: Vec<u8>| PublicKey::from_raw(v.try_into().unwrap());
        let skey = node.child("skey").unwrap();
        let pre_keys = node
            .child("list")
            .unwrap()
            .children_with_tag("key")
            .map(|k| (be(b(k, "id")), key32(b(k, "value"))))
            .collect();
        let reg = Registered {
            registration_id: be(b(node, "registration")),
            identity: key32(b(node, "identity")),
            spk: (be(b(skey, "id")), key32(b(skey, "value")), b(skey, "signature").try_into().unwrap()),
            pre_keys,
        };
        self.registry.insert(self.devs[i].jid.clone(), reg);
    }

    /// Server side of one stanza from client `i`.
    fn server_handle(&mut self, i: usize, node: &Node) {
        let me = self.devs[i].jid.clone();
        match node.tag.as_str() {
            "iq" => self.handle_iq(i, node),
            "message" => self.route_message(&me, node, Some(i)),
            "receipt" => self.route_receipt(&me, node),
            "ib" if node.child("offline_batch").is_some() => {
                let queued = std::mem::take(&mut self.devs[i].queue);
                let n = queued.len() as u64;
                for q in queued {
                    self.queue.push_back((Dest::Client(i), q));
                }
                self.queue.push_back((Dest::Client(i), offline_end(n)));
            }
            _ => {}
        }
    }

    /// Moves outputs and stanzas until nothing moves. Bounded.
    pub(super) fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for i in 0..self.devs.len() {
                if !self.devs[i].online {
                    continue;
                }
                while let Some(o) = self.devs[i].client.poll_output() {
                    progressed = true;
                    match o {
                        Output::Persist(d) => {
                            self.devs[i].apply(&d);
                            self.devs[i].log.push(Log::Persist(d));
                        }
                        Output::Send(bytes) => {
                            let d = &mut self.devs[i];
                            let body = bytes.get(3..).unwrap();
                            let node = unmarshal(&d.server.recv.decrypt(body).unwrap()).unwrap();
                            d.log.push(Log::Send(node.clone()));
                            self.server_handle(i, &node);
                        }
                        Output::Event(e) => self.devs[i].log.push(Log::Event(e)),
                        Output::Close(r) => panic!("client {i} closed: {r}"),
                    }
                }
            }
            while let Some((dest, node)) = self.queue.pop_front() {
                progressed = true;
                self.deliver(dest, node);
            }
            if !progressed {
                return;
            }
        }
        panic!("livelock: the network did not settle");
    }

    /// Advances the virtual clock and fires due timers.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for d in &mut self.devs {
            if d.client.poll_timeout().is_some_and(|t| t <= now) {
                d.client.handle_timeout(now);
            }
        }
        self.drive();
    }
}

/// Invariant 1 over a client's log: every `Send` of a message or receipt and every
/// `Event::Message` is preceded by the `Persist` that covers its keys. Checked structurally:
/// each `<message>` send is directly preceded by a `Persist(Keys)`; each `Event::Message` is
/// directly preceded by `Persist(Received)` with the same message, and followed by its receipt.
pub(super) fn assert_persist_before_visible(log: &[Log]) {
    for (k, l) in log.iter().enumerate() {
        match l {
            Log::Send(n) if n.tag == "message" => {
                assert!(
                    matches!(k.checked_sub(1).and_then(|p| log.get(p)), Some(Log::Persist(Delta::Keys(_)))),
                    "message stanza {n} not directly after Persist(Keys)"
                );
            }
            Log::Event(Event::Message(m)) => {
                match k.checked_sub(1).and_then(|p| log.get(p)) {
                    Some(Log::Persist(Delta::Received { message, .. })) => assert_eq!(message, m),
                    other => panic!("Event::Message not directly after Persist(Received): {other:?}"),
                }
                match log.get(k + 1) {
                    Some(Log::Send(r)) => {
                        assert_eq!((r.tag.as_str(), r.attr_str("id")), ("receipt", Some(m.id.as_str())));
                    }
                    other => panic!("Event::Message not followed by its receipt: {other:?}"),
                }
            }
            Log::Persist(Delta::Keys(cs) | Delta::Received { keys: cs, .. }) => {
                // A consumed prekey is deleted only together with the session built from it.
                for c in cs {
                    if let KeyChange::Delete(KeyId::PreKey(_)) = c {
                        assert!(
                            cs.iter().any(|x| matches!(x, KeyChange::Put { id: KeyId::Session(_), .. })),
                            "prekey deletion without a session in the same batch"
                        );
                    }
                }
            }
            _ => {}
        }
    }
}
