//! Scenario tests of the simulator's messaging: scripted companions (a Noise client, a login
//! payload and real `wa::signal` keys) talk to the sans-IO core on a virtual clock; the tests
//! assert the stanzas that come out (routing, receipts, the offline queue kept until answered
//! and redelivered on every login, usync and bundle answers, group fan-out, phone sends).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{ConnId, ConnOutput, Sim, SimConfig};
use crate::sim::Fault;
use crate::sim::prekeys::CompanionKeys;
use crate::wa::binary::{Node, marshal, unmarshal};
use crate::wa::frame::{self, FrameDecoder};
use crate::wa::jid::Jid;
use crate::wa::message::{
    DeviceCiphertext, EncType, GroupSend, MessageContent, decode_plaintext, device_sent, dm_stanza,
    encode_plaintext, group_stanza, parse_message, parse_prekey_result, prekey_fetch, skdm_message,
    text_message,
};
use crate::wa::noise::{ClientHandshake, ExpectServerHello, KeyPair, Transport, TrustAnchor};
use crate::wa::proto;
use crate::wa::signal::{
    LocalIdentity, PreKeyRecord, PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyName,
    SenderKeyRecord, SessionRecord, SignalAddress, SignedPreKeyRecord, create_distribution_message,
    decrypt_message, decrypt_prekey_message, encrypt, generate_pre_keys, group_decrypt, group_encrypt,
    process_bundle, process_distribution_message,
};

const UNIX0: u64 = 1_800_000_000;
const A: &str = "15550000001";
const B: &str = "15550000002";
const C: &str = "15550000003";

fn j(s: &str) -> Jid {
    s.parse().unwrap()
}

fn addr(jid: &Jid) -> SignalAddress {
    SignalAddress::new(jid.user.clone(), u32::from(jid.device))
}

impl Sim {
    /// Links a confirmed companion directly (tests skip the pairing dance).
    fn link_for_test(&mut self, phone: &str, noise_pub: [u8; 32], keys: CompanionKeys) -> u16 {
        let a = self.accounts.get_mut(phone).unwrap();
        let id = a.add_device(noise_pub, keys, UNIX0).unwrap().id;
        a.devices.get_mut(&id).unwrap().confirmed = true;
        id
    }
}

/// A scripted companion: Noise client + Signal keys + what it received.
struct Dev {
    jid: Jid,
    noise: KeyPair,
    conn: Option<ConnId>,
    hs: Option<ExpectServerHello>,
    transport: Option<Transport>,
    decoder: FrameDecoder,
    got: Vec<Node>,
    closed: bool,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    prekeys: HashMap<u32, PreKeyRecord>,
    sessions: HashMap<SignalAddress, SessionRecord>,
    sender_keys: HashMap<SenderKeyName, SenderKeyRecord>,
}

struct Net {
    sim: Sim,
    now: Instant,
    rng: StdRng,
    devs: Vec<Dev>,
    next_id: u64,
}

impl Net {
    fn new() -> Self {
        #[expect(clippy::disallowed_methods, reason = "an arbitrary origin for the virtual clock")]
        let now = Instant::now();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut sim = Sim::new(SimConfig::seeded(listen, 11), now, UNIX0);
        for p in [A, B, C] {
            sim.add_phone(p, "").unwrap();
        }
        Self { sim, now, rng: StdRng::seed_from_u64(12), devs: Vec::new(), next_id: 0 }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("T{}", self.next_id)
    }

    /// Adds a companion of `phone` with uploaded keys (signed prekey + 10 one-time keys).
    fn add_dev(&mut self, phone: &str) -> usize {
        let identity = LocalIdentity::generate(&mut self.rng);
        let signed = SignedPreKeyRecord::generate(&identity, 1, &mut self.rng);
        let prekeys = generate_pre_keys(1, 10, &mut self.rng);
        let noise = KeyPair::generate(&mut self.rng);
        let reg = proto::client_payload::DevicePairingRegistrationData {
            e_regid: Some(identity.registration_id().to_be_bytes().to_vec()),
            e_ident: Some(identity.public_key().raw().to_vec()),
            e_skey_id: Some(vec![0, 0, 1]),
            e_skey_val: Some(signed.key_pair().public().to_vec()),
            e_skey_sig: Some(signed.signature().to_vec()),
            ..Default::default()
        };
        let mut keys = CompanionKeys::from_registration(&reg).unwrap();
        let list = prekeys.iter().map(|k| {
            Node::new("key").children([
                Node::new("id").bytes(k.id().to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(k.key_pair().public().to_vec()),
            ])
        });
        let upload = Node::new("iq").children([
            Node::new("registration").bytes(identity.registration_id().to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(identity.public_key().raw().to_vec()),
            Node::new("list").children(list),
            Node::new("skey").children([
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(signed.key_pair().public().to_vec()),
                Node::new("signature").bytes(signed.signature().to_vec()),
            ]),
        ]);
        keys.apply_upload(&upload).unwrap();
        let device = self.sim.link_for_test(phone, *noise.public(), keys);
        self.devs.push(Dev {
            jid: Jid::new(phone, crate::wa::jid::Server::User).with_device(device),
            noise,
            conn: None,
            hs: None,
            transport: None,
            decoder: FrameDecoder::client(1 << 22),
            got: Vec::new(),
            closed: false,
            identity,
            signed,
            prekeys: prekeys.into_iter().map(|k| (k.id(), k)).collect(),
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
        });
        self.devs.len() - 1
    }

    /// Connects, logs in, goes active; returns what arrived after the passive iq's result.
    fn login(&mut self, i: usize) -> Vec<Node> {
        let conn = self.sim.open(self.now);
        let (hs, hello) =
            ClientHandshake::start_with_rng(self.devs[i].noise.clone(), &frame::INTRO, &mut self.rng);
        let d = &mut self.devs[i];
        d.conn = Some(conn);
        d.hs = Some(hs);
        d.transport = None;
        d.closed = false;
        d.decoder = FrameDecoder::client(1 << 22);
        d.got.clear();
        let mut first = frame::intro_header(None).unwrap();
        frame::encode_frame(&hello, &mut first).unwrap();
        self.sim.handle_data(self.now, conn, &first);
        self.pump();
        self.advance(Duration::from_millis(30));
        assert!(self.devs[i].got.iter().any(|n| n.tag == "success"), "login answered with success");
        self.devs[i].got.clear();
        let passive = Node::new("iq")
            .attr("id", "p1")
            .attr("type", "set")
            .attr("xmlns", "passive")
            .attr("to", "s.whatsapp.net")
            .children([Node::new("active")]);
        self.send(i, &passive);
        self.advance(Duration::from_millis(30));
        let got = self.take(i);
        assert_eq!(got.first().and_then(|n| n.attr_str("id")), Some("p1"), "{got:?}");
        got[1..].to_vec()
    }

    fn logout_socket(&mut self, i: usize) {
        if let Some(c) = self.devs[i].conn.take() {
            self.sim.handle_closed(self.now, c);
        }
    }

    fn send(&mut self, i: usize, node: &Node) {
        let d = &mut self.devs[i];
        let Some(conn) = d.conn else { return };
        let t = d.transport.as_mut().unwrap();
        let ct = t.send.encrypt(&marshal(node).unwrap()).unwrap();
        let bytes = frame::frame(&ct).unwrap();
        self.sim.handle_data(self.now, conn, &bytes);
        self.pump();
    }

    /// Moves every output of the simulator to its companion (bounded).
    fn pump(&mut self) {
        for _ in 0..1000 {
            let Some((conn, out)) = self.sim.poll_output() else { return };
            let Some(i) = self.devs.iter().position(|d| d.conn == Some(conn)) else { continue };
            match out {
                ConnOutput::Close => {
                    self.devs[i].closed = true;
                    self.devs[i].conn = None;
                    self.sim.handle_closed(self.now, conn);
                }
                ConnOutput::Send(bytes) => {
                    self.devs[i].decoder.push(&bytes);
                    while let Ok(Some(f)) = self.devs[i].decoder.next_frame() {
                        self.on_frame(i, conn, &f);
                    }
                }
            }
        }
        panic!("pump did not settle");
    }

    fn on_frame(&mut self, i: usize, conn: ConnId, f: &[u8]) {
        let root = self.sim.root_public_key();
        let d = &mut self.devs[i];
        if let Some(hs) = d.hs.take() {
            let anchor = TrustAnchor { root_public: root, root_serial: 0 };
            let finish = hs.handle_and_verify(f, &anchor, UNIX0).unwrap();
            let (user, device) = (d.jid.user.parse::<u64>().unwrap(), u32::from(d.jid.device));
            let payload =
                proto::ClientPayload { username: Some(user), device: Some(device), ..Default::default() };
            let done = finish.finish(&payload.encode_to_vec()).unwrap();
            d.transport = Some(done.transport);
            let bytes = frame::frame(&done.message).unwrap();
            self.sim.handle_data(self.now, conn, &bytes);
            return;
        }
        let pt = d.transport.as_mut().unwrap().recv.decrypt(f).unwrap();
        d.got.push(unmarshal(&pt).unwrap());
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        for _ in 0..100 {
            match self.sim.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.sim.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = until;
        self.pump();
    }

    fn take(&mut self, i: usize) -> Vec<Node> {
        std::mem::take(&mut self.devs[i].got)
    }

    /// Fetches bundles through the iq and starts sessions for `devices`.
    fn fetch_sessions(&mut self, i: usize, devices: &[Jid]) {
        let id = self.id();
        self.send(i, &prekey_fetch(&id, devices, None));
        let got = self.take(i);
        let answer = got.iter().find(|n| n.attr_str("id") == Some(id.as_str())).expect("bundle answer");
        for (jid, bundle) in parse_prekey_result(answer).unwrap() {
            let d = &mut self.devs[i];
            let (rec, _) = process_bundle(&d.identity, &addr(&jid), None, &bundle, &mut self.rng).unwrap();
            d.sessions.insert(addr(&jid), rec);
        }
    }

    fn encrypt_to(&mut self, i: usize, device: &Jid, msg: &proto::Message) -> DeviceCiphertext {
        let plain = encode_plaintext(msg, &mut self.rng);
        let d = &mut self.devs[i];
        let a = addr(device);
        let out = encrypt(&a, d.sessions.get(&a).unwrap(), &plain).unwrap();
        d.sessions.insert(a, out.record);
        DeviceCiphertext { device: device.clone(), kind: out.kind.into(), ciphertext: out.ciphertext }
    }

    /// A 1:1 text from companion `i` to `peer`'s devices (`targets`, sessions fetched first).
    fn send_dm(&mut self, i: usize, peer: &str, targets: &[Jid], text: &str) -> String {
        let missing: Vec<Jid> =
            targets.iter().filter(|t| !self.devs[i].sessions.contains_key(&addr(t))).cloned().collect();
        if !missing.is_empty() {
            self.fetch_sessions(i, &missing);
        }
        let to = Jid::new(peer, crate::wa::jid::Server::User);
        let own_user = self.devs[i].jid.user.clone();
        let entries: Vec<_> = targets
            .iter()
            .map(|t| {
                let m = text_message(text);
                let m = if t.user == own_user { device_sent(&m, &to) } else { m };
                self.encrypt_to(i, t, &m)
            })
            .collect();
        let id = self.id();
        self.send(i, &dm_stanza(&id, &to, &entries, Some(b"adv")));
        id
    }

    /// Decrypts every delivered `<message>` of companion `i`; returns `(id, text)` pairs.
    fn decrypt_all(&mut self, i: usize, nodes: &[Node]) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for n in nodes.iter().filter(|n| n.tag == "message") {
            let m = parse_message(n).unwrap();
            let sender = m.sender().clone();
            let mut text = None;
            for enc in &m.encs {
                let d = &mut self.devs[i];
                let a = addr(&sender);
                let plain = match enc.kind {
                    EncType::Pkmsg => {
                        let pk = PreKeySignalMessage::decode(&enc.ciphertext).unwrap();
                        let otk = pk.pre_key_id().and_then(|id| d.prekeys.get(&id));
                        decrypt_prekey_message(
                            &d.identity,
                            &a,
                            d.sessions.get(&a),
                            &pk,
                            Some(&d.signed),
                            otk,
                            &mut self.rng,
                        )
                        .map(|o| {
                            d.sessions.insert(a.clone(), o.record);
                            o.plaintext
                        })
                    }
                    EncType::Msg => {
                        decrypt_message(&a, d.sessions.get(&a).unwrap(), &enc.ciphertext, &mut self.rng).map(
                            |o| {
                                d.sessions.insert(a.clone(), o.record);
                                o.plaintext
                            },
                        )
                    }
                    EncType::Skmsg => {
                        let name = SenderKeyName::new(m.from.to_string(), a.clone());
                        match d.sender_keys.get(&name) {
                            Some(r) => group_decrypt(&name, r, &enc.ciphertext).map(|o| {
                                d.sender_keys.insert(name, o.record);
                                o.bytes
                            }),
                            None => Err(crate::wa::signal::SignalError::NoSenderKey { id: 0 }),
                        }
                    }
                };
                let Ok(plain) = plain else { continue };
                let dec = decode_plaintext(&plain).unwrap();
                if let Some((g, ax)) = &dec.skdm {
                    let name = SenderKeyName::new(g.clone(), a.clone());
                    let skdm = SenderKeyDistributionMessage::decode(ax).unwrap();
                    let (rec, _) = process_distribution_message(&name, d.sender_keys.get(&name), &skdm);
                    d.sender_keys.insert(name, rec);
                }
                if let MessageContent::Text(t) = dec.content {
                    text = Some(t);
                }
            }
            out.push((m.id.clone(), text));
        }
        out
    }
}

fn dev0(p: &str) -> Jid {
    Jid::new(p, crate::wa::jid::Server::User)
}

fn receipt_for(msg: &Node, kind: Option<&str>) -> Node {
    let mut r = Node::new("receipt").attr("id", msg.attr_str("id").unwrap());
    if let Some(p) = msg.attr_value("participant") {
        r.set_attr("to", msg.attr_value("from").unwrap().clone());
        r.set_attr("participant", p.clone());
    } else {
        r.set_attr("to", msg.attr_value("from").unwrap().clone());
    }
    if let Some(k) = kind {
        r.set_attr("type", k);
    }
    r
}

/// usync lists device 0 and linked companions (with key-index); bundle fetches hand out each
/// one-time prekey once and answer unknown devices with an error user.
#[test]
fn usync_and_bundle_answers() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    n.login(b1);
    let q = crate::wa::message::device_query("u1", "s1", &[dev0(A), dev0(C)]);
    n.send(b1, &q);
    let got = n.take(b1);
    let r = crate::wa::message::parse_device_result(&got[0]).unwrap();
    assert_eq!(r[0].devices, vec![dev0(A), n.devs[a1].jid.clone()]);
    assert_eq!(r[1].devices, vec![dev0(C)]);
    let a1j = n.devs[a1].jid.clone();
    n.send(b1, &prekey_fetch("k1", &[a1j.clone(), dev0(A), j("15559999999:3@s.whatsapp.net")], None));
    let got = n.take(b1);
    assert!(parse_prekey_result(&got[0]).is_err(), "an unknown device fails the whole answer");
    let list = got[0].child("list").unwrap();
    assert_eq!(list.children_with_tag("user").count(), 3);
    n.send(b1, &prekey_fetch("k2", &[a1j.clone(), dev0(A)], None));
    let second = parse_prekey_result(&n.take(b1)[0]).unwrap();
    let ids: Vec<_> = second.iter().map(|(_, b)| b.pre_key.map(|p| p.0)).collect();
    assert_eq!(ids, vec![Some(2), Some(2)], "first fetch consumed id 1 of both devices");
}

/// 1:1: the sender gets the message ack, the peer's companion and both phones get their own
/// copies (phones decrypt into their inbox and answer), and the companion's `inactive` receipt
/// reaches the sender without a type.
#[test]
fn one_to_one_routing_and_receipts() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    n.login(a1);
    n.login(b1);
    let targets = [dev0(A), dev0(B), n.devs[b1].jid.clone()];
    let id = n.send_dm(a1, B, &targets, "hello B");
    let at_a = n.take(a1);
    assert!(at_a.iter().any(|x| x.tag == "ack" && x.attr_str("class") == Some("message")), "{at_a:?}");
    let phone_receipts: Vec<_> = at_a.iter().filter(|x| x.tag == "receipt").collect();
    assert_eq!(phone_receipts.len(), 2, "both phones answered: {at_a:?}");
    assert!(
        phone_receipts.iter().any(|r| r.attr_str("type").is_none() && r.attr_jid("from") == Some(dev0(B)))
    );
    assert!(phone_receipts.iter().any(|r| r.attr_str("type") == Some("sender")));
    let at_b = n.take(b1);
    let texts = n.decrypt_all(b1, &at_b);
    assert_eq!(texts, vec![(id.clone(), Some("hello B".into()))]);
    assert_eq!(at_b[0].attr_jid("from"), Some(n.devs[a1].jid.clone()));
    let inbox = n.sim.phone_inbox(B).unwrap();
    assert_eq!((inbox[0].id.as_str(), inbox[0].text.as_deref()), (id.as_str(), Some("hello B")));
    assert_eq!(inbox[0].chat, dev0(A));
    let a_inbox = n.sim.phone_inbox(A).unwrap();
    assert_eq!(a_inbox[0].chat, dev0(B), "the own phone files the DSM under the peer's chat");
    n.send(b1, &receipt_for(&at_b[0], Some("inactive")));
    let at_a = n.take(a1);
    let r = at_a.iter().find(|x| x.tag == "receipt").expect("receipt forwarded");
    assert_eq!((r.attr_str("type"), r.attr_jid("from")), (None, Some(n.devs[b1].jid.clone())));
    assert_eq!(n.sim.queued(&n.devs[b1].jid.to_string()).unwrap(), 0, "receipted message left the queue");
    let s = n.sim.stats();
    assert_eq!((s.messages_routed, s.phone_decrypted, s.messages_delivered), (1, 2, 1));
}

/// Offline queue: a message for a device that is offline is kept until the device receipts
/// it, redelivered with `offline="1"` on every login (preview → batch → message → end after the
/// receipt), and gone after that.
#[test]
fn offline_queue_kept_until_receipt_and_redelivered() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    n.login(a1);
    let b1j = n.devs[b1].jid.clone();
    let id = n.send_dm(a1, B, &[dev0(B), b1j.clone()], "while you were away");
    assert_eq!(n.sim.stats().messages_queued, 1);
    for round in 0..2 {
        let got = n.login(b1);
        assert_eq!(
            got[0].child("offline_preview").and_then(|p| p.attr_str("message")),
            Some("1"),
            "round {round}"
        );
        n.send(b1, &crate::wa::message::offline_batch(100));
        let got = n.take(b1);
        assert_eq!(got.len(), 1, "the batch, no end marker before the receipt: {got:?}");
        assert_eq!((got[0].attr_str("offline"), got[0].attr_str("id")), (Some("1"), Some(id.as_str())));
        if round == 0 {
            n.logout_socket(b1); // no receipt: stays queued
        } else {
            assert_eq!(n.decrypt_all(b1, &got)[0].1.as_deref(), Some("while you were away"));
            n.send(b1, &receipt_for(&got[0], Some("inactive")));
            assert!(n.take(b1).is_empty(), "end marker waits {:?}", super::routing::OFFLINE_END_DELAY);
            n.advance(Duration::from_millis(60));
            let end = n.take(b1);
            assert_eq!(end[0].child("offline").and_then(|o| o.attr_str("count")), Some("1"));
        }
    }
    n.logout_socket(b1);
    let got = n.login(b1);
    assert_eq!(got[0].child("offline").and_then(|o| o.attr_str("count")), Some("0"), "{got:?}");
    assert!(n.take(a1).iter().any(|r| r.tag == "receipt" && r.attr_jid("from") == Some(b1j.clone())));
}

/// Groups: created through the admin API; a companion's skmsg + SKDM stanza reaches every
/// member device (companions decrypt, phones decrypt and keep the text), and the phone's own
/// group send reaches the companions.
#[test]
fn group_fan_out_both_ways() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    let c1 = n.add_dev(C);
    for d in [a1, b1, c1] {
        n.login(d);
    }
    let gid =
        n.sim.create_group(n.now, "team", &[A.into(), format!("{B}@s.whatsapp.net"), C.into()]).unwrap();
    n.pump();
    for d in [a1, b1, c1] {
        let note = n.take(d);
        assert_eq!(note[0].attr_str("type"), Some("w:gp2"), "every member companion hears of the group");
        n.send(d, &good_ack(&note[0]));
        assert_eq!(n.sim.queued(&n.devs[d].jid.to_string()).unwrap(), 0, "acked notification left the queue");
    }
    let group = j(&gid);
    n.send(
        b1,
        &Node::new("iq")
            .attr("id", "g1")
            .attr("type", "get")
            .attr("xmlns", "w:g2")
            .attr("to", group.clone())
            .children([Node::new("query").attr("request", "interactive")]),
    );
    let meta = n.take(b1);
    assert_eq!(meta[0].child("group").and_then(|g| g.attr_str("size")), Some("3"));
    // A:1 sends: SKDM to everyone else, skmsg once.
    let members = [dev0(A), dev0(B), n.devs[b1].jid.clone(), dev0(C), n.devs[c1].jid.clone()];
    n.fetch_sessions(a1, &members);
    let name = SenderKeyName::new(group.to_string(), addr(&n.devs[a1].jid));
    let (skdm, rec, _) = create_distribution_message(&name, None, &mut n.rng);
    let sk = group_encrypt(&name, &rec, &encode_plaintext(&text_message("hi team"), &mut n.rng), &mut n.rng)
        .unwrap();
    let entries: Vec<_> =
        members.iter().map(|m| n.encrypt_to(a1, m, &skdm_message(&group, &skdm.encode()))).collect();
    let stanza = group_stanza(&GroupSend {
        id: "G1",
        group: &group,
        addressing_mode: Some("pn"),
        skmsg: &sk.bytes,
        skdm: &entries,
        device_identity: Some(b"adv"),
    });
    n.send(a1, &stanza);
    for d in [b1, c1] {
        let got = n.take(d);
        assert_eq!(n.decrypt_all(d, &got), vec![("G1".to_owned(), Some("hi team".into()))]);
        assert_eq!(got[0].attr_jid("from"), Some(group.clone()));
    }
    for p in [B, C] {
        assert_eq!(n.sim.phone_inbox(p).unwrap()[0].chat, group);
    }
    // Phone C sends to the group.
    let id = n.sim.phone_send(n.now, C, &gid, "from phone C").unwrap();
    n.pump();
    for d in [a1, b1] {
        let got = n.take(d);
        let texts = n.decrypt_all(d, &got);
        assert!(texts.contains(&(id.clone(), Some("from phone C".into()))), "{texts:?}");
    }
    assert!(n.sim.phone_inbox(A).unwrap().iter().any(|m| m.id == id));
    let sent = &n.sim.phone_sent(C).unwrap()[0];
    assert_eq!(sent.devices.get(&dev0(A)), Some(&crate::sim::DeliveryState::Delivered));
}

/// Phones as full peers via the admin API: phone → phone lands in the inbox with a delivery
/// status; phone → user also reaches that user's companion and the sender's own companion (as
/// a device-sent copy).
#[test]
fn phone_sends_to_phone_and_companions() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    n.login(a1);
    n.login(b1);
    let id = n.sim.phone_send(n.now, A, B, "phone to B").unwrap();
    n.pump();
    let inbox = n.sim.phone_inbox(B).unwrap();
    assert_eq!(
        (inbox[0].id.as_str(), inbox[0].from.clone(), inbox[0].text.as_deref()),
        (id.as_str(), dev0(A), Some("phone to B"))
    );
    let at_b = n.take(b1);
    assert_eq!(n.decrypt_all(b1, &at_b), vec![(id.clone(), Some("phone to B".into()))]);
    assert_eq!(at_b[0].attr_jid("from"), Some(dev0(A)));
    let at_a = n.take(a1);
    assert_eq!(n.decrypt_all(a1, &at_a), vec![(id.clone(), Some("phone to B".into()))]);
    assert_eq!(at_a[0].attr_jid("recipient"), Some(dev0(B)), "own companion gets the DSM copy");
    n.send(b1, &receipt_for(&at_b[0], None));
    let sent = &n.sim.phone_sent(A).unwrap()[0];
    assert_eq!(sent.devices.get(&n.devs[b1].jid), Some(&crate::sim::DeliveryState::Delivered));
    assert_eq!(sent.devices.get(&dev0(B)), Some(&crate::sim::DeliveryState::Delivered));
    // Reply over the session the first message set up.
    let back = n.sim.phone_send(n.now, B, &format!("{A}@s.whatsapp.net"), "reply").unwrap();
    n.pump();
    assert!(n.sim.phone_inbox(A).unwrap().iter().any(|m| m.id == back && m.text.as_deref() == Some("reply")));
    assert!(matches!(
        n.sim.phone_send(n.now, A, "15559999999", "x"),
        Err(super::AdminError::UnknownRecipient)
    ));
}

/// A retry: the corrupt fault spoils the next message to a device, its decryption fails, its
/// retry receipt reaches the phone that sent it, and the phone's resend (fresh session) works.
#[test]
fn corrupt_fault_and_phone_retry() {
    let mut n = Net::new();
    let b1 = n.add_dev(B);
    n.login(b1);
    let b1j = n.devs[b1].jid.clone();
    n.sim.inject_fault(n.now, &b1j.to_string(), Fault::CorruptNextMessage).unwrap();
    let id = n.sim.phone_send(n.now, A, B, "first try").unwrap();
    n.pump();
    let got = n.take(b1);
    assert_eq!(n.decrypt_all(b1, &got), vec![(id.clone(), None)], "corrupted copy does not decrypt");
    let retry = receipt_for(&got[0], Some("retry")).children([
        Node::new("retry").attr("count", "1").attr("id", id.as_str()).attr("t", "1").attr("v", "1"),
        Node::new("registration").bytes(n.devs[b1].identity.registration_id().to_be_bytes().to_vec()),
    ]);
    n.devs[b1].sessions.clear();
    n.send(b1, &retry);
    let again = n.take(b1);
    assert_eq!(n.decrypt_all(b1, &again), vec![(id, Some("first try".into()))]);
    let s = n.sim.stats();
    assert_eq!((s.corrupted, s.retry_receipts), (1, 1));
}

/// Bad input closes only that connection: a malformed `<message>` ends the sender's socket,
/// the other device keeps working.
#[test]
fn malformed_message_closes_only_that_connection() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    let b1 = n.add_dev(B);
    n.login(a1);
    n.login(b1);
    n.send(a1, &Node::new("message").attr("id", "x").attr("to", dev0(B)));
    assert!(n.devs[a1].closed);
    let id = n.sim.phone_send(n.now, A, B, "still here").unwrap();
    n.pump();
    let got = n.take(b1);
    assert_eq!(n.decrypt_all(b1, &got), vec![(id, Some("still here".into()))]);
    assert!(!n.devs[b1].closed);
}

/// A phone that cannot decrypt asks the sending device for a resend (retry receipt with its
/// registration id), at most twice, and decrypts the resend.
#[test]
fn phone_asks_for_retry_and_decrypts_resend() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    n.login(a1);
    let junk = DeviceCiphertext { device: dev0(B), kind: EncType::Msg, ciphertext: vec![0x33; 40] };
    let to = dev0(B);
    n.send(a1, &dm_stanza("R1", &to, std::slice::from_ref(&junk), None));
    let got = n.take(a1);
    let retry = got.iter().find(|x| x.tag == "receipt").expect("retry receipt");
    assert_eq!((retry.attr_str("type"), retry.attr_jid("from")), (Some("retry"), Some(dev0(B))));
    assert_eq!(retry.child("retry").and_then(|r| r.attr_str("count")), Some("1"));
    assert!(retry.child("registration").is_some());
    for _ in 0..3 {
        n.send(a1, &dm_stanza("R1", &to, std::slice::from_ref(&junk), None));
    }
    let more = n.take(a1).into_iter().filter(|x| x.tag == "receipt").count();
    assert_eq!(more, 1, "one more retry, then the phone gives up");
    n.send_dm(a1, B, &[dev0(B)], "resent");
    assert!(n.sim.phone_inbox(B).unwrap().iter().any(|m| m.text.as_deref() == Some("resent")));
    assert_eq!(n.sim.stats().phone_decrypt_failures, 4);
}

/// `w:g2` create from a companion: the creator and the listed users become members, the
/// answer carries the `<group>` node, and unknown groups' metadata queries get a 404.
#[test]
fn group_create_iq_and_metadata() {
    let mut n = Net::new();
    let a1 = n.add_dev(A);
    n.login(a1);
    let create = Node::new("iq")
        .attr("id", "c1")
        .attr("type", "set")
        .attr("xmlns", "w:g2")
        .attr("to", "g.us")
        .children([Node::new("create")
            .attr("subject", "made by A1")
            .attr("key", "k")
            .children([Node::new("participant").attr("jid", dev0(B))])]);
    n.send(a1, &create);
    let got = n.take(a1);
    let answer = got.iter().find(|x| x.attr_str("id") == Some("c1")).expect("create answered");
    let g = answer.child("group").expect("group node");
    assert_eq!((g.attr_str("subject"), g.attr_str("size")), (Some("made by A1"), Some("2")));
    assert!(got.iter().any(|x| x.tag == "notification"), "the creator's device hears of it too");
    let query = |to: Jid| {
        Node::new("iq")
            .attr("id", "q1")
            .attr("type", "get")
            .attr("xmlns", "w:g2")
            .attr("to", to)
            .children([Node::new("query")])
    };
    n.send(a1, &query(j("120363999999999999@g.us")));
    let got = n.take(a1);
    assert_eq!(got[0].attr_str("type"), Some("error"));
}

/// The ack the references build for `stanza` (whatsmeow `sendAck`, Baileys `sendMessageAck`):
/// `class` = tag, `to` = its `from`, `participant` echoed.
fn good_ack(stanza: &Node) -> Node {
    let mut a = Node::new("ack")
        .attr("class", stanza.tag.as_str())
        .attr("id", stanza.attr_str("id").unwrap())
        .attr("to", stanza.attr_value("from").unwrap().clone());
    if let Some(p) = stanza.attr_value("participant") {
        a.set_attr("participant", p.clone());
    }
    a
}

/// Ack discipline: a notification stays pending until the device acks it the way the
/// references do. An ack to the server (`to="s.whatsapp.net"`, what staylinked sent before
/// issue 13) or without the participant clears nothing; after the ack timeout the server ends
/// the stream with `<stream:error><ack class id/>`, and the next login redelivers it; the
/// right ack clears it for good and no stream error follows.
#[test]
fn misaddressed_ack_leaves_stanza_pending_until_ack_stream_error() {
    let mut n = Net::new();
    let b1 = n.add_dev(B);
    let b1j = n.devs[b1].jid.clone();
    n.sim.set_ack_timeout(Duration::from_millis(500));
    n.login(b1);
    n.sim.create_group(n.now, "acks", &[A.into(), B.into()]).unwrap();
    n.pump();
    let got = n.take(b1);
    let note = got.iter().find(|x| x.tag == "notification").expect("w:gp2 notification").clone();
    assert!(note.attr_value("participant").is_some(), "{note}");
    let mut to_server = good_ack(&note);
    to_server.set_attr("to", "s.whatsapp.net");
    n.send(b1, &to_server);
    let mut no_participant = good_ack(&note);
    no_participant.attrs.retain(|(k, _)| k != "participant");
    n.send(b1, &no_participant);
    assert_eq!(n.sim.queued(&b1j.to_string()).unwrap(), 1, "mis-addressed acks clear nothing");
    assert_eq!(n.sim.stats().unacked, 1);
    n.advance(Duration::from_millis(600));
    let got = n.take(b1);
    let err = got.iter().find(|x| x.tag == "stream:error").expect("ack stream error");
    let child = err.child("ack").expect("<ack> child");
    assert_eq!((child.attr_str("class"), child.attr_str("id")), (Some("notification"), note.attr_str("id")));
    assert!(n.devs[b1].closed);
    let s = n.sim.stats();
    assert_eq!((s.ack_stream_errors, s.stream_errors.get("ack").copied()), (1, Some(1)));

    // Redelivered at the next login; the right ack clears it and the stream stays up.
    let got = n.login(b1);
    assert_eq!(got[0].child("offline_preview").and_then(|p| p.attr_str("notification")), Some("1"));
    n.send(b1, &crate::wa::message::offline_batch(100));
    let got = n.take(b1);
    let again = got.iter().find(|x| x.tag == "notification").expect("redelivered");
    assert_eq!((again.attr_str("id"), again.attr_str("offline")), (note.attr_str("id"), Some("1")));
    n.send(b1, &good_ack(&note));
    assert_eq!(n.sim.stats().unacked, 0);
    n.advance(Duration::from_secs(2));
    assert!(!n.devs[b1].closed, "{:?}", n.take(b1));
    assert_eq!(n.sim.stats().ack_stream_errors, 1);
}

/// Messages: a retry receipt does not clear a message and a nack 500 pins it (it times out
/// into the ack stream error); a delivery receipt or a plain ack clears it. A call rings
/// every companion of the callee (offer, then terminate), each pending until acked.
#[test]
fn retry_receipt_and_nack_500_do_not_clear_but_ack_does() {
    let mut n = Net::new();
    let b1 = n.add_dev(B);
    let b1j = n.devs[b1].jid.clone();
    n.sim.set_ack_timeout(Duration::from_secs(1));
    n.login(b1);
    let id = n.sim.phone_send(n.now, A, B, "one").unwrap();
    n.pump();
    let got = n.take(b1);
    let msg = got.iter().find(|x| x.tag == "message").unwrap().clone();
    let retry = receipt_for(&msg, Some("retry")).children([Node::new("retry")
        .attr("count", "1")
        .attr("id", id.as_str())
        .attr("t", "1")
        .attr("v", "1")]);
    n.send(b1, &retry);
    let mut nack = good_ack(&msg);
    nack.set_attr("error", "500");
    n.send(b1, &nack);
    // The original and the phone's resend (same id) are pending; one ack answers one copy.
    assert_eq!(n.sim.queued(&b1j.to_string()).unwrap(), 2, "a retry receipt and a nack 500 clear nothing");
    n.send(b1, &good_ack(&msg));
    assert_eq!(n.sim.queued(&b1j.to_string()).unwrap(), 1, "a plain ack clears the original");
    n.send(b1, &good_ack(&msg));
    assert_eq!(n.sim.queued(&b1j.to_string()).unwrap(), 0, "and the resend");
    n.take(b1);

    let (_, rang) = n.sim.phone_call(n.now, A, B).unwrap();
    assert_eq!(rang, 1);
    n.pump();
    let calls: Vec<Node> = n.take(b1).into_iter().filter(|x| x.tag == "call").collect();
    let kids: Vec<&str> = calls.iter().map(|c| c.child_nodes()[0].tag.as_str()).collect();
    assert_eq!(kids, ["offer", "terminate"]);
    assert_eq!(n.sim.stats().unacked, 2);
    n.send(b1, &good_ack(&calls[0]));
    n.advance(Duration::from_millis(1_500));
    assert!(n.devs[b1].closed, "the unacked terminate ends the stream");
    assert_eq!(n.sim.stats().ack_stream_errors, 1);
    let got = n.login(b1);
    assert_eq!(got[0].child("offline_preview").and_then(|p| p.attr_str("call")), Some("1"));
}

fn arb_stanza() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    let tag = prop::sample::select(vec![
        "message",
        "receipt",
        "ack",
        "ib",
        "iq",
        "enc",
        "to",
        "participants",
        "retry",
        "list",
        "item",
        "offline_batch",
        "key",
        "user",
        "usync",
        "create",
        "query",
        "participant",
    ]);
    let key = prop::sample::select(vec![
        "id",
        "to",
        "type",
        "class",
        "participant",
        "recipient",
        "category",
        "xmlns",
        "jid",
        "count",
        "v",
        "subject",
        "device_fanout",
        "addressing_mode",
    ]);
    let value = prop::sample::select(vec![
        "",
        "1",
        "x",
        "retry",
        "inactive",
        "sender",
        "message",
        "receipt",
        "notification",
        "peer",
        "pkmsg",
        "msg",
        "skmsg",
        "usync",
        "encrypt",
        "w:g2",
        "false",
        "15550000002@s.whatsapp.net",
        "15550000002:1@s.whatsapp.net",
        "15550000001@s.whatsapp.net",
        "120363000000000001@g.us",
        "@s.whatsapp.net",
        "g.us",
        "1:99@lid",
    ]);
    let leaf = (
        tag.clone(),
        prop::collection::vec((key.clone(), value.clone()), 0..5),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(t, attrs, bytes)| {
            let mut n = Node::new(t);
            for (k, v) in attrs {
                n.set_attr(k, v);
            }
            if bytes.is_empty() { n } else { n.bytes(bytes) }
        });
    leaf.prop_recursive(3, 24, 4, move |inner| {
        (
            tag.clone(),
            prop::collection::vec((key.clone(), value.clone()), 0..5),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(t, attrs, kids)| {
                let mut n = Node::new(t);
                for (k, v) in attrs {
                    n.set_attr(k, v);
                }
                n.children(kids)
            })
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Arbitrary stanzas from a logged-in companion never panic the simulator; at worst that
    /// one connection is closed and the other device keeps working.
    #[test]
    fn arbitrary_stanzas_never_panic(stanzas in proptest::collection::vec(arb_stanza(), 1..6)) {
        let mut n = Net::new();
        let a1 = n.add_dev(A);
        let b1 = n.add_dev(B);
        n.login(a1);
        n.login(b1);
        for s in &stanzas {
            n.send(a1, s);
        }
        n.advance(Duration::from_secs(5));
        let _ = n.take(b1);
        let id = n.sim.phone_send(n.now, A, B, "after junk").unwrap();
        n.pump();
        let got = n.take(b1);
        let texts = n.decrypt_all(b1, &got);
        proptest::prop_assert!(texts.contains(&(id, Some("after junk".into()))), "{texts:?}");
    }
}
