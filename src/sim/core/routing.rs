//! Message routing inside the simulator core: client `<message>` stanzas fanned out per
//! device (companions get their copy through their queue, phones decrypt in place), the
//! `<ack class="message">` to the sender, receipts forwarded to the sender's devices, queue
//! answers, and the offline handshake (`offline_preview` → `offline_batch` → queued stanzas
//! with `offline="1"` → `<offline count>` once the batch was answered; transcript quirk 4).
//!
//! Part of the sans-IO core: no sockets, no clocks.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{Delayed, OfflineFlow, Phase, Sim};
use crate::sim::phone::{DeliveryState, Received};
use crate::sim::queue::{Class, DeviceAck, Queued};
use crate::wa::binary::{Content, Node};
use crate::wa::jid::{Jid, Server};
use crate::wa::message::{
    ReceiptType, RelayMessage, delivery_for, offline_end, offline_preview, parse_message, parse_relay,
    peer_stanza,
};

/// Delay between the last answer to an offline batch and the `<offline count>` marker.
pub(super) const OFFLINE_END_DELAY: Duration = Duration::from_millis(50);
/// How long to wait for `<offline_batch>` before sending the batch anyway.
pub(super) const BATCH_WAIT: Duration = Duration::from_secs(2);
/// How long a batch may stay unanswered before the end marker goes out anyway.
pub(super) const DRAIN_WAIT: Duration = Duration::from_secs(3);
/// Retry receipts a phone sends per undecryptable message.
const MAX_PHONE_RETRIES: u32 = 2;

/// A receipt as a client (or a phone) sends it.
#[derive(Debug, Clone)]
pub(super) struct OutReceipt {
    pub(super) id: String,
    pub(super) to: Jid,
    pub(super) participant: Option<Jid>,
    pub(super) recipient: Option<Jid>,
    pub(super) kind: ReceiptType,
    pub(super) children: Vec<Node>,
}

impl OutReceipt {
    fn parse(node: &Node) -> Option<Self> {
        Some(Self {
            id: node.attr_str("id")?.to_owned(),
            to: node.attr_jid("to")?,
            participant: node.attr_jid("participant"),
            recipient: node.attr_jid("recipient"),
            kind: ReceiptType::from_attr(node.attr_str("type")),
            children: node.child_nodes().to_vec(),
        })
    }

    /// Every message id this receipt names (`id` plus `<list><item id>`).
    fn ids(&self) -> Vec<String> {
        let mut ids = vec![self.id.clone()];
        for l in self.children.iter().filter(|c| c.tag == "list") {
            ids.extend(l.children_with_tag("item").filter_map(|i| i.attr_str("id")).map(str::to_owned));
        }
        ids
    }
}

pub(super) fn device_jid(phone: &str, device: u16) -> Jid {
    Jid::new(phone, Server::User).with_device(device)
}

impl Sim {
    /// A non-iq stanza from a logged-in device.
    pub(super) fn handle_stanza(
        &mut self,
        now: Instant,
        conn: super::ConnId,
        phone: &str,
        device: u16,
        node: &Node,
    ) {
        match node.tag.as_str() {
            "message" => match parse_relay(node) {
                Ok(relay) => {
                    let ack = Node::new("ack")
                        .attr("class", "message")
                        .attr("id", relay.id.as_str())
                        .attr("from", relay.to.clone())
                        .attr("t", self.unix(now).to_string());
                    self.send_node(conn, &ack);
                    self.route(now, &device_jid(phone, device), &relay);
                }
                Err(e) => self.reject(conn, &e.to_string()),
            },
            "receipt" => match OutReceipt::parse(node) {
                Some(r) => {
                    let from = device_jid(phone, device);
                    // A retry receipt asks for a resend; it does not clear the message.
                    if r.kind != ReceiptType::Retry {
                        for id in r.ids() {
                            let key = (phone.to_owned(), device);
                            let gone = self
                                .queues
                                .get_mut(&key)
                                .map(|q| q.answer(Class::Message, &id))
                                .unwrap_or_default();
                            self.answered(now, phone, device, Class::Message, &gone);
                        }
                    }
                    self.forward_receipt(now, &from, &r);
                }
                None => self.reject(conn, "receipt without id or to"),
            },
            "ack" => {
                let class = node.attr_str("class").and_then(Class::parse);
                if let (Some(class), Some(id)) = (class, node.attr_str("id")) {
                    let text = |k: &str| node.attr_value(k).map(ToString::to_string);
                    let (to, participant, error) = (text("to"), text("participant"), text("error"));
                    let ack = DeviceAck {
                        class,
                        id,
                        to: to.as_deref(),
                        participant: participant.as_deref(),
                        error: error.as_deref(),
                    };
                    let key = (phone.to_owned(), device);
                    let gone = self.queues.get_mut(&key).map(|q| q.ack(&ack)).unwrap_or_default();
                    if gone.is_empty() {
                        tracing::debug!(
                            conn_id = conn.0,
                            class = class.tag(),
                            "sim: ack answers nothing pending"
                        );
                    }
                    self.answered(now, phone, device, class, &gone);
                }
            }
            "ib" if node.child("offline_batch").is_some() => self.send_offline_batch(now, conn),
            "presence" => {
                // Remembered per device (admin `GET /phones/{phone}/devices`); not fanned out.
                let seen = (
                    node.attr_str("type").unwrap_or("available").to_owned(),
                    node.attr_str("name").map(str::to_owned),
                );
                if let Some(d) = self.accounts.get_mut(phone).and_then(|a| a.devices.get_mut(&device)) {
                    d.presence = Some(seen);
                }
            }
            _ => {} // chatstate, …: nothing to route
        }
    }

    /// Fans a relayed message out to every target device.
    pub(super) fn route(&mut self, now: Instant, sender: &Jid, relay: &RelayMessage) {
        self.route_with(now, sender, relay, None);
    }

    /// Fans a relayed message out; with `unavailable` (e.g. `view_once`), companions get the
    /// stanza with `<unavailable type>` instead of any `<enc>` (the real server does this for
    /// content it does not fan out to companions: view-once media, ad leads, hosted/bot
    /// fan-out); phones get the content.
    pub(super) fn route_with(
        &mut self,
        now: Instant,
        sender: &Jid,
        relay: &RelayMessage,
        unavailable: Option<&str>,
    ) {
        self.stats.messages_routed += 1;
        tracing::debug!(msg_id = %relay.id, targets = relay.targets.len(), "sim routing message");
        let t = self.unix(now);
        if relay.to.is_group() {
            // Group copies addressed to hosted (Cloud API) devices: clients must not send them.
            let hosted =
                relay.targets.iter().filter(|(j, _)| matches!(j.server, Server::Hosted | Server::HostedLid));
            self.stats.hosted_group_copies += hosted.count() as u64;
        }
        let targets: Vec<Jid> = if relay.to.is_group() {
            match &relay.participant {
                Some(p) => vec![p.clone()],
                None => self.group_devices(&relay.to.user),
            }
        } else if relay.category.as_deref() == Some("peer") {
            // Quirk 6: a peer message goes to the sender's own phone only.
            vec![sender.to_non_ad()]
        } else {
            relay.targets.iter().map(|(j, _)| j.clone()).collect()
        };
        let mut seen = BTreeSet::new();
        for d in targets {
            if d == *sender || !seen.insert(d.clone()) {
                continue;
            }
            if d.server == Server::Hosted && d.device == super::HOSTED_DEVICE {
                if let Some(node) = delivery_for(relay, sender, &d, t, false) {
                    self.deliver_to_hosted(&d.user, &node);
                }
                continue;
            }
            if d.server != Server::User {
                continue;
            }
            let Some(mut node) = delivery_for(relay, sender, &d, t, false) else { continue };
            if let Some(kind) = unavailable.filter(|_| d.device != 0) {
                node.content = Content::Nodes(vec![Node::new("unavailable").attr("type", kind)]);
            }
            if d.device == 0 {
                self.deliver_to_phone(now, &d.user, &node);
            } else if self
                .accounts
                .get(&d.user)
                .and_then(|a| a.devices.get(&d.device))
                .is_some_and(|x| x.confirmed)
            {
                self.stats.messages_to_devices += 1;
                self.enqueue(now, &d.user, d.device, Class::Message, &relay.id, node);
            }
        }
    }

    /// Devices of every member of group `gid` (phones and confirmed companions).
    pub(super) fn group_devices(&self, gid: &str) -> Vec<Jid> {
        let Some(g) = self.groups.get(gid) else { return Vec::new() };
        g.members.iter().flat_map(|m| self.user_devices(m)).collect()
    }

    /// Device 0 plus the confirmed companions of `phone` (empty for an unknown phone).
    pub(super) fn user_devices(&self, phone: &str) -> Vec<Jid> {
        let Some(a) = self.accounts.get(phone) else { return Vec::new() };
        std::iter::once(device_jid(phone, 0))
            .chain(a.devices.values().filter(|d| d.confirmed).map(|d| device_jid(phone, d.id)))
            .collect()
    }

    /// Queues `node` for a companion and sends it at once when its connection is live (the
    /// device then has `ack_timeout` to answer it).
    pub(super) fn enqueue(
        &mut self,
        now: Instant,
        phone: &str,
        device: u16,
        class: Class,
        id: &str,
        mut node: Node,
    ) {
        let key = (phone.to_owned(), device);
        if class == Class::Message {
            let sticky = (key.0.clone(), key.1, id.to_owned());
            if self.undecryptable_next.remove(&key) {
                self.undecryptable.insert(sticky.clone());
            }
            if self.corrupt_next.remove(&key) || self.undecryptable.contains(&sticky) {
                corrupt_last_enc(&mut node);
                self.stats.corrupted += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let live = self.live.get(&key).copied().filter(|c| {
            self.conns
                .get(c)
                .is_some_and(|c| matches!(c.offline, OfflineFlow::Live | OfflineFlow::Draining { .. }))
        });
        if live.is_none() && class == Class::Message {
            self.stats.messages_queued += 1;
        }
        let q = self.queues.entry(key).or_default();
        q.push(Queued { seq, class, id: id.to_owned(), node: node.clone() });
        if let Some(conn) = live {
            self.send_node(conn, &node);
            self.expect_ack(now, conn, seq);
        }
    }

    /// Queued item `seq` went out on `conn`: it must be answered within `ack_timeout`.
    pub(super) fn expect_ack(&mut self, now: Instant, conn: super::ConnId, seq: u64) {
        let at = now + self.ack_timeout();
        self.later(conn, at, Delayed::AckDeadline(seq));
    }

    /// `ack_timeout` after queued item `seq` went out on `conn`: if the device has not
    /// answered it, the server ends the stream with `<stream:error><ack class id/>` (the item
    /// stays queued for the next login).
    pub(super) fn ack_deadline(&mut self, conn: super::ConnId, seq: u64) {
        let Some(Phase::Online { phone, device }) = self.conns.get(&conn).map(|c| &c.phase) else { return };
        let key = (phone.clone(), *device);
        if self.live.get(&key) != Some(&conn) {
            return;
        }
        let Some(item) = self.queues.get(&key).and_then(|q| q.get(seq)) else { return };
        let child = Node::new("ack").attr("class", item.class.tag()).attr("id", item.id.as_str());
        tracing::info!(
            conn_id = conn.0,
            class = item.class.tag(),
            "sim: stanza not acked in time; stream error"
        );
        self.stats.ack_stream_errors += 1;
        self.stream_error(conn, Node::new("stream:error").children([child]), "ack");
    }

    /// The device answered the queued items `gone` (of `class`): count them, and finish the
    /// offline batch when that was its last outstanding item.
    fn answered(&mut self, now: Instant, phone: &str, device: u16, class: Class, gone: &[u64]) {
        let key = (phone.to_owned(), device);
        if gone.is_empty() {
            return;
        }
        if class == Class::Message {
            self.stats.messages_delivered += gone.len() as u64;
        }
        let Some(conn) = self.live.get(&key).copied() else { return };
        let mut schedule = false;
        if let Some(c) = self.conns.get_mut(&conn)
            && let OfflineFlow::Draining { outstanding, end_scheduled, .. } = &mut c.offline
        {
            for s in gone {
                outstanding.remove(s);
            }
            if outstanding.is_empty() && !*end_scheduled {
                *end_scheduled = true;
                schedule = true;
            }
        }
        if schedule {
            self.later(conn, now + OFFLINE_END_DELAY, Delayed::OfflineEnd);
        }
    }

    /// An account's hosted (Cloud API) device gets its copy: decrypt and record (its inbox).
    fn deliver_to_hosted(&mut self, user: &str, node: &Node) {
        let Ok(msg) = parse_message(node) else { return };
        let Some(peer) = self.hosted.get_mut(user) else { return };
        match peer.receive(&msg, &mut self.rng) {
            Received::New => self.stats.hosted_decrypted += 1,
            Received::Duplicate => {}
            Received::Failed => self.stats.phone_decrypt_failures += 1,
        }
    }

    /// A phone gets its copy: decrypt, record, answer with a delivery receipt.
    fn deliver_to_phone(&mut self, now: Instant, user: &str, node: &Node) {
        let Ok(msg) = parse_message(node) else { return };
        let Some(phone) = self.phones.get_mut(user) else { return };
        let outcome = phone.receive(&msg, &mut self.rng);
        let retry = match outcome {
            Received::New => {
                self.stats.phone_decrypted += 1;
                None
            }
            Received::Duplicate => None,
            Received::Failed => {
                self.stats.phone_decrypt_failures += 1;
                let count = phone.next_retry(msg.sender(), &msg.id);
                Some((count, phone.registration_id()))
            }
        };
        if msg.is_peer() {
            return self.answer_placeholders(now, user);
        }
        let own = msg.sender().user == user;
        let (to, participant) = if msg.is_group_like() {
            (msg.from.clone(), msg.participant.clone())
        } else {
            (msg.from.clone(), None)
        };
        let mut receipt = OutReceipt {
            id: msg.id.clone(),
            to,
            participant,
            recipient: msg.recipient.clone().filter(|_| !msg.is_group_like()),
            kind: if own { ReceiptType::Sender } else { ReceiptType::Delivery },
            children: Vec::new(),
        };
        if let Some((count, registration_id)) = retry {
            // Ask the sender for a resend, at most MAX_PHONE_RETRIES times per message.
            if count > MAX_PHONE_RETRIES {
                return;
            }
            receipt.kind = ReceiptType::Retry;
            receipt.children = vec![
                Node::new("retry")
                    .attr("count", count.to_string())
                    .attr("id", msg.id.as_str())
                    .attr("t", msg.t.to_string())
                    .attr("v", "1"),
                Node::new("registration").bytes(registration_id.to_be_bytes().to_vec()),
            ];
        }
        self.forward_receipt(now, &Jid::new(user, Server::User), &receipt);
    }

    /// The phone of `user` answers its companions' placeholder-resend requests with a peer
    /// message carrying what it holds (its push name as the sender's).
    fn answer_placeholders(&mut self, now: Instant, user: &str) {
        let requests = self.phones.get_mut(user).map(|p| p.take_placeholder_requests()).unwrap_or_default();
        let t = self.unix(now);
        let phone_jid = Jid::new(user, Server::User);
        for req in requests {
            let push_name = String::new();
            let Self { phones, rng, .. } = self;
            let Some(answer) = phones.get_mut(user).and_then(|p| p.placeholder_answer(&req, &push_name, rng))
            else {
                continue;
            };
            let id = crate::wa::message::new_message_id(t, Some(user), &mut self.rng);
            let stanza = peer_stanza(&id, &phone_jid, answer.kind, &answer.ciphertext, "high_force", None);
            let Ok(relay) = parse_relay(&stanza) else { continue };
            let Some(node) = delivery_for(&relay, &phone_jid, &req.from, t, false) else { continue };
            self.enqueue(now, &req.from.user, req.from.device, Class::Message, &id, node);
        }
    }

    /// Forwards a receipt from device `from` to the devices of the message's sender (only the
    /// sending device for a retry receipt). `inactive` loses its type (Baileys counts only a
    /// type-less receipt as delivery).
    pub(super) fn forward_receipt(&mut self, now: Instant, from: &Jid, r: &OutReceipt) {
        let group = r.to.is_group().then(|| r.to.clone());
        let sender = match &group {
            Some(_) => match &r.participant {
                Some(p) => p.clone(),
                None => return,
            },
            None => r.to.clone(),
        };
        if sender.server != Server::User {
            return;
        }
        self.stats.receipts_forwarded += 1;
        let kind = match &r.kind {
            ReceiptType::Inactive => ReceiptType::Delivery,
            k => k.clone(),
        };
        let mut out = Node::new("receipt");
        match &group {
            Some(g) => {
                out.set_attr("from", g.clone());
                out.set_attr("participant", from.clone());
            }
            None => out.set_attr("from", from.clone()),
        }
        out.set_attr("id", r.id.as_str());
        out.set_attr("t", self.unix(now).to_string());
        if let Some(k) = kind.as_attr() {
            out.set_attr("type", k);
        }
        if group.is_none()
            && let Some(rc) = &r.recipient
        {
            out.set_attr("recipient", rc.clone());
        }
        let out = out.children(r.children.clone());
        let targets = if kind == ReceiptType::Retry {
            self.stats.retry_receipts += 1;
            vec![sender.clone()]
        } else {
            self.user_devices(&sender.user)
        };
        let state = match kind {
            ReceiptType::Read | ReceiptType::ReadSelf | ReceiptType::Played => Some(DeliveryState::Read),
            ReceiptType::Retry => Some(DeliveryState::Retry),
            ReceiptType::Delivery | ReceiptType::Sender => Some(DeliveryState::Delivered),
            _ => None,
        };
        for d in targets {
            if d == *from {
                continue;
            }
            if d.device == 0 {
                if let (Some(p), Some(state)) = (self.phones.get_mut(&d.user), state) {
                    for id in r.ids() {
                        p.on_receipt(&id, from, state);
                    }
                }
                if kind == ReceiptType::Retry {
                    self.phone_retry(now, &d.user, from, &r.id, group.as_ref());
                }
            } else {
                self.enqueue(now, &d.user, d.device, Class::Receipt, &r.id, out.clone());
            }
        }
    }

    // ---------------------------------------------------------------- offline handshake

    /// After `<active/>`: `<offline count="0">` for an empty queue, else the preview.
    pub(super) fn start_offline_flow(&mut self, now: Instant, conn: super::ConnId, phone: &str, device: u16) {
        let (m, r, n, calls) =
            self.queues.get(&(phone.to_owned(), device)).map_or((0, 0, 0, 0), |q| q.counts());
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if m + r + n + calls == 0 {
            c.offline = OfflineFlow::Live;
            self.later(conn, now + super::FIRST_STANZA_DELAY, Delayed::Nodes(vec![offline_end(0)]));
        } else {
            c.offline = OfflineFlow::AwaitBatch;
            self.later(
                conn,
                now + super::FIRST_STANZA_DELAY,
                Delayed::Nodes(vec![offline_preview(m, r, n, calls)]),
            );
            self.later(conn, now + BATCH_WAIT, Delayed::OfflineBatch);
        }
    }

    /// Sends every queued stanza with `offline="1"` (once per login).
    pub(super) fn send_offline_batch(&mut self, now: Instant, conn: super::ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        let (Phase::Online { phone, device }, OfflineFlow::AwaitBatch) = (&c.phase, &c.offline) else {
            return;
        };
        let key = (phone.clone(), *device);
        let items: Vec<(u64, Node)> = self
            .queues
            .get(&key)
            .map(|q| q.items().map(|i| (i.seq, i.node.clone())).collect())
            .unwrap_or_default();
        let outstanding: BTreeSet<u64> = items.iter().map(|(s, _)| *s).collect();
        let count = items.len() as u64;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.offline = OfflineFlow::Draining { outstanding, count, end_scheduled: count == 0 };
        }
        for (seq, mut node) in items {
            node.set_attr("offline", "1");
            self.stats.offline_redelivered += 1;
            self.send_node(conn, &node);
            self.expect_ack(now, conn, seq);
        }
        let wait = if count == 0 { OFFLINE_END_DELAY } else { DRAIN_WAIT };
        self.later(conn, now + wait, Delayed::OfflineEnd);
    }

    /// `<ib><offline count>` if the connection is still draining its batch.
    pub(super) fn send_offline_end(&mut self, conn: super::ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let OfflineFlow::Draining { count, .. } = c.offline else { return };
        c.offline = OfflineFlow::Live;
        self.send_node(conn, &offline_end(count));
    }
}

/// Flips the last byte of the last `<enc>` (the pairwise MAC of a `msg`, the signature of a
/// `skmsg`), so the receiver's decryption fails.
fn corrupt_last_enc(node: &mut Node) {
    if let Content::Nodes(kids) = &mut node.content
        && let Some(enc) = kids.iter_mut().rev().find(|k| k.tag == "enc")
        && let Content::Bytes(b) = &mut enc.content
        && let Some(last) = b.last_mut()
    {
        *last ^= 0x01;
    }
}
