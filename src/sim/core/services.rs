//! Server services around messaging, inside the sans-IO core: usync device lists, prekey
//! bundle fetches (one-time prekeys consumed), the `w:g2` group create/metadata iqs, and the
//! admin calls that make a simulated phone send (1:1, own-device copies, groups), resend on
//! a retry receipt, and report its inbox and sent messages.
//!
//! No sockets, no clocks.

use std::time::Instant;

use super::routing::device_jid;
use super::{AdminError, ConnId, Sim, iq_result};
use crate::sim::group::Group;
use crate::sim::phone::{InboxEntry, SentEntry};
use crate::sim::queue::Class;
use crate::wa::binary::{Content, Node};
use crate::wa::jid::{Jid, Server};
use crate::wa::message::{
    UserDevices, device_result, new_message_id, parse_device_query, parse_prekey_fetch, parse_relay,
    prekey_result,
};
use crate::wa::signal::PreKeyBundle;

/// Most groups the simulator holds.
const MAX_GROUPS: usize = 10_000;
/// Most members per group.
const MAX_MEMBERS: usize = 1_024;

/// The digits of a phone given as digits or as a user JID.
fn phone_of(s: &str) -> Option<String> {
    let user = match s.parse::<Jid>() {
        Ok(j) if j.server == Server::User => j.user,
        Ok(_) => return None,
        Err(_) => s.to_owned(),
    };
    (!user.is_empty() && user.bytes().all(|b| b.is_ascii_digit())).then_some(user)
}

impl Sim {
    /// A bundle for `device`, consuming one of its one-time prekeys. `None` for an unknown
    /// device or a companion that never gave a signed prekey.
    pub(super) fn take_bundle(&mut self, device: &Jid) -> Option<PreKeyBundle> {
        if device.server == Server::Hosted && device.device == super::HOSTED_DEVICE {
            let Self { hosted, rng, .. } = self;
            return hosted.get_mut(&device.user).map(|p| p.take_bundle(rng));
        }
        if device.server != Server::User {
            return None;
        }
        if device.device == 0 {
            let Self { phones, rng, .. } = self;
            return phones.get_mut(&device.user).map(|p| p.take_bundle(rng));
        }
        self.accounts
            .get_mut(&device.user)?
            .devices
            .get_mut(&device.device)
            .filter(|d| d.confirmed)?
            .keys
            .take_bundle()
    }

    /// `<iq xmlns="encrypt" type="get"><key><user jid>…`: one bundle per known device, an
    /// `<error code="404">` user for the others (Baileys then fails that send, as for real).
    pub(super) fn answer_bundle_fetch(&mut self, conn: ConnId, id: &str, node: &Node) {
        let devices = match parse_prekey_fetch(node) {
            Ok(d) => d,
            Err(e) => return self.reject(conn, &e.to_string()),
        };
        let mut found = Vec::new();
        let mut unknown = Vec::new();
        for d in devices {
            match self.take_bundle(&d) {
                Some(b) => found.push((d, b)),
                None => unknown.push(d),
            }
        }
        let mut reply = prekey_result(id, &found);
        if let Content::Nodes(kids) = &mut reply.content
            && let Some(list) = kids.iter_mut().find(|k| k.tag == "list")
            && let Content::Nodes(users) = &mut list.content
        {
            for d in unknown {
                users.push(
                    Node::new("user")
                        .attr("jid", d)
                        .children([Node::new("error").attr("code", "404").attr("text", "item-not-found")]),
                );
            }
        }
        self.send_node(conn, &reply);
    }

    /// `<iq xmlns="usync">` device query: device 0 plus linked companions per known user.
    pub(super) fn answer_usync(&mut self, conn: ConnId, id: &str, node: &Node) {
        let (sid, users) = match parse_device_query(node) {
            Ok(q) => q,
            Err(e) => return self.reject(conn, &e.to_string()),
        };
        let answer: Vec<UserDevices> = users
            .into_iter()
            .map(|u| {
                let mut devices =
                    if u.server == Server::User { self.user_devices(&u.user) } else { Vec::new() };
                if u.server == Server::User && self.hosted.contains_key(&u.user) {
                    devices.push(Jid::new(u.user.as_str(), Server::Hosted).with_device(super::HOSTED_DEVICE));
                }
                UserDevices { user: u, devices }
            })
            .collect();
        self.send_node(conn, &device_result(id, &sid, &answer));
    }

    /// `w:g2`: `<create subject><participant jid/>…</create>` and `<query>` metadata.
    pub(super) fn answer_group_iq(&mut self, now: Instant, conn: ConnId, phone: &str, id: &str, node: &Node) {
        let from_groups = Jid::server_jid(Server::Group);
        if let Some(create) = node.child("create") {
            let subject = create.attr_str("subject").unwrap_or_default().to_owned();
            let mut members = vec![phone.to_owned()];
            for p in create.children_with_tag("participant") {
                if let Some(m) = p.attr_jid("jid").and_then(|j| phone_of(&j.to_string())) {
                    members.push(m);
                }
            }
            return match self.add_group(now, &subject, &members) {
                Ok(gid) => {
                    let g = self.groups.get(&gid).map(Group::node);
                    let reply = iq_result(id).attr("from", from_groups).children(g);
                    self.send_node(conn, &reply);
                }
                Err(_) => {
                    let err = Node::new("iq")
                        .attr("from", from_groups)
                        .attr("type", "error")
                        .attr("id", id)
                        .children([Node::new("error").attr("code", "400").attr("text", "bad-request")]);
                    self.send_node(conn, &err);
                }
            };
        }
        if node.child("query").is_some() {
            let to = node.attr_jid("to").filter(Jid::is_group);
            let g = to.as_ref().and_then(|t| self.groups.get(&t.user)).map(Group::node);
            let reply = match (g, to) {
                (Some(g), Some(to)) => {
                    Node::new("iq").attr("from", to).attr("type", "result").attr("id", id).children([g])
                }
                _ => Node::new("iq")
                    .attr("from", from_groups)
                    .attr("type", "error")
                    .attr("id", id)
                    .children([Node::new("error").attr("code", "404").attr("text", "item-not-found")]),
            };
            return self.send_node(conn, &reply);
        }
        self.send_node(conn, &iq_result(id));
    }

    fn add_group(&mut self, now: Instant, subject: &str, members: &[String]) -> Result<String, AdminError> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(AdminError::BadRequest("too many groups".into()));
        }
        let mut list: Vec<String> = Vec::new();
        for m in members {
            if !self.accounts.contains_key(m) {
                return Err(AdminError::UnknownRecipient);
            }
            if !list.contains(m) {
                list.push(m.clone());
            }
        }
        let Some(creator) = list.first().cloned() else {
            return Err(AdminError::BadRequest("a group needs at least one participant".into()));
        };
        if list.len() > MAX_MEMBERS {
            return Err(AdminError::BadRequest(format!("at most {MAX_MEMBERS} participants")));
        }
        let id = format!("120363{:012}", self.next_group);
        self.next_group += 1;
        let creation = self.unix(now);
        let group = Group { id: id.clone(), subject: subject.to_owned(), creator, creation, members: list };
        self.notify_group_created(now, &group, creation);
        self.groups.insert(id.clone(), group);
        Ok(id)
    }

    /// `<notification type="w:gp2"><create><group …/></create>` to every member companion
    /// (queued like messages; Baileys emits `groups.upsert` from it).
    fn notify_group_created(&mut self, now: Instant, group: &Group, t: u64) {
        let id = self.next_stanza_id();
        let node = Node::new("notification")
            .attr("from", group.jid())
            .attr("type", "w:gp2")
            .attr("id", id.as_str())
            .attr("participant", Jid::new(group.creator.clone(), Server::User))
            .attr("t", t.to_string())
            .children([Node::new("create").children([group.node()])]);
        let devices: Vec<Jid> =
            group.members.iter().flat_map(|m| self.user_devices(m)).filter(|d| d.device != 0).collect();
        for d in devices {
            self.enqueue(now, &d.user, d.device, Class::Notification, &id, node.clone());
        }
    }

    /// `<notification type="devices"><add><device jid/></add>` about a newly linked companion of
    /// `phone` to every other confirmed companion (queued like messages): contacts drop their
    /// cached device list of that user, so their next send reaches the new device too.
    pub(super) fn notify_device_added(&mut self, now: Instant, phone: &str, device: u16) {
        let id = self.next_stanza_id();
        let node = Node::new("notification")
            .attr("from", Jid::new(phone, Server::User))
            .attr("type", "devices")
            .attr("id", id.as_str())
            .attr("t", self.unix(now).to_string())
            .children([
                Node::new("add").children([Node::new("device").attr("jid", device_jid(phone, device))])
            ]);
        let targets: Vec<(String, u16)> = self
            .accounts
            .iter()
            .flat_map(|(p, a)| a.devices.values().filter(|d| d.confirmed).map(move |d| (p.clone(), d.id)))
            .filter(|(p, d)| !(p == phone && *d == device))
            .collect();
        for (p, d) in targets {
            self.enqueue(now, &p, d, Class::Notification, &id, node.clone());
        }
    }

    // ---------------------------------------------------------------- phones (admin)

    /// Creates a group (`participants`: phones or user JIDs, the first is the creator).
    /// Returns the group JID.
    ///
    /// # Errors
    /// [`AdminError::UnknownRecipient`] for a participant without an account,
    /// [`AdminError::BadRequest`] for a malformed or empty list.
    pub fn create_group(
        &mut self,
        now: Instant,
        subject: &str,
        participants: &[String],
    ) -> Result<String, AdminError> {
        let members = participants
            .iter()
            .map(|p| {
                phone_of(p).ok_or_else(|| AdminError::BadRequest(format!("not a phone or user jid: {p:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let id = self.add_group(now, subject, &members)?;
        Ok(self.groups.get(&id).map_or_else(|| format!("{id}@g.us"), |g| g.jid().to_string()))
    }

    /// The phone of `phone` sends `text` to `to` (a user JID or phone, or a group JID): 1:1
    /// to every device of the user plus device-sent copies to the phone's companions, or a
    /// group send (`skmsg`, SKDM to members that lack it). Returns the message id.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`], [`AdminError::UnknownRecipient`], or
    /// [`AdminError::BadRequest`] for a malformed recipient or a group the phone is not in.
    pub fn phone_send(
        &mut self,
        now: Instant,
        phone: &str,
        to: &str,
        text: &str,
    ) -> Result<String, AdminError> {
        self.phone_send_with(now, phone, to, text, None)
    }

    /// Like [`Self::phone_send`], as a view-once message: phones get the content, companions
    /// get `<unavailable type="view_once"/>` and no `<enc>`, as from the real server; a
    /// companion has to ask its own phone for the content (placeholder resend).
    ///
    /// # Errors
    /// As [`Self::phone_send`].
    pub fn phone_send_view_once(
        &mut self,
        now: Instant,
        phone: &str,
        to: &str,
        text: &str,
    ) -> Result<String, AdminError> {
        self.phone_send_with(now, phone, to, text, Some("view_once"))
    }

    fn phone_send_with(
        &mut self,
        now: Instant,
        phone: &str,
        to: &str,
        text: &str,
        unavailable: Option<&str>,
    ) -> Result<String, AdminError> {
        if !self.phones.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let to_jid = match to.parse::<Jid>() {
            Ok(j) if j.is_group() => j,
            _ => Jid::new(
                phone_of(to).ok_or_else(|| AdminError::BadRequest(format!("bad recipient {to:?}")))?,
                Server::User,
            ),
        };
        let me = Jid::new(phone, Server::User);
        let t = self.unix(now);
        let id = new_message_id(t, Some(phone), &mut self.rng);
        let (node, targets) = if to_jid.is_group() {
            let g = self.groups.get(&to_jid.user).ok_or(AdminError::UnknownRecipient)?;
            if !g.has(phone) {
                return Err(AdminError::BadRequest("the phone is not a member of that group".into()));
            }
            let devices: Vec<Jid> =
                self.group_devices(&to_jid.user).into_iter().filter(|d| *d != me).collect();
            let skdm_to = self.phones.get(phone).map(|p| p.needs_skdm(&to_jid, &devices)).unwrap_or_default();
            self.ensure_sessions(phone, &skdm_to);
            let Self { phones, rng, .. } = self;
            let p = phones.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
            let node = p
                .encrypt_group(&id, &to_jid, &skdm_to, text, rng)
                .map_err(|e| AdminError::BadRequest(format!("group encryption failed: {e}")))?;
            (node, devices)
        } else {
            if !self.accounts.contains_key(&to_jid.user) {
                return Err(AdminError::UnknownRecipient);
            }
            let mut devices: Vec<Jid> = self.user_devices(phone).into_iter().filter(|d| *d != me).collect();
            if to_jid.user != phone {
                devices.extend(self.user_devices(&to_jid.user));
            }
            self.ensure_sessions(phone, &devices);
            let Self { phones, rng, .. } = self;
            let p = phones.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
            (p.encrypt_dm(&id, &to_jid, &devices, text, rng), devices)
        };
        let relay =
            parse_relay(&node).map_err(|e| AdminError::BadRequest(format!("nothing to send: {e}")))?;
        if let Some(p) = self.phones.get_mut(phone) {
            p.record_sent(&id, &to_jid, text, t, &targets);
        }
        self.stats.phone_sent += 1;
        self.route_with(now, &me, &relay, unavailable);
        Ok(id)
    }

    /// The phone of `phone` calls `to` (a phone or user JID): every confirmed companion of
    /// `to` gets a `<call>` with an `<offer>`, then one with a `<terminate>` (the caller gave
    /// up), each queued until that device acks it like any other stanza. Returns the call id
    /// and how many devices rang.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`], [`AdminError::UnknownRecipient`], or
    /// [`AdminError::BadRequest`] for a malformed recipient.
    pub fn phone_call(&mut self, now: Instant, phone: &str, to: &str) -> Result<(String, usize), AdminError> {
        if !self.phones.contains_key(phone) {
            return Err(AdminError::UnknownPhone);
        }
        let callee = phone_of(to).ok_or_else(|| AdminError::BadRequest(format!("bad recipient {to:?}")))?;
        if !self.accounts.contains_key(&callee) {
            return Err(AdminError::UnknownRecipient);
        }
        let t = self.unix(now);
        let call_id = new_message_id(t, None, &mut self.rng);
        let caller = Jid::new(phone, Server::User);
        let name = self.accounts.get(phone).map(|a| a.name.clone()).unwrap_or_default();
        let targets: Vec<u16> =
            self.user_devices(&callee).iter().map(|d| d.device).filter(|d| *d != 0).collect();
        let stanza = |id: String, child: Node| {
            Node::new("call")
                .attr("from", caller.clone())
                .attr("id", id)
                .attr("t", t.to_string())
                .attr("notify", name.as_str())
                .attr("platform", "android")
                .attr("version", "2.25.1.1")
                .children([child])
        };
        let offer = Node::new("offer")
            .attr("call-id", call_id.as_str())
            .attr("call-creator", caller.clone())
            .children([
                Node::new("audio").attr("enc", "opus").attr("rate", "16000"),
                Node::new("audio").attr("enc", "opus").attr("rate", "8000"),
                Node::new("net").attr("medium", "3"),
                Node::new("encopt").attr("keygen", "2"),
            ]);
        let terminate = Node::new("terminate")
            .attr("call-id", call_id.as_str())
            .attr("call-creator", caller.clone())
            .attr("reason", "timeout");
        for child in [offer, terminate] {
            let id = self.next_stanza_id();
            let node = stanza(id.clone(), child);
            for &d in &targets {
                self.enqueue(now, &callee, d, Class::Call, &id, node.clone());
            }
        }
        self.stats.calls += 1;
        Ok((call_id, targets.len()))
    }

    /// `POST /admin/phones/{phone}/retry`: the phone asks the sender of message `id` (which it
    /// received) for a resend with a retry receipt (`<retry count id t v>` + `<registration>`,
    /// plus `<keys>` from the second retry of the same message on, as the references send
    /// them), and forgets it so the resend is decrypted and lands in its inbox again. Returns
    /// the device the receipt went to.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`]; [`AdminError::BadRequest`] when the phone has no such
    /// message.
    pub fn phone_request_retry(&mut self, now: Instant, phone: &str, id: &str) -> Result<Jid, AdminError> {
        let p = self.phones.get_mut(phone).ok_or(AdminError::UnknownPhone)?;
        let entry = p
            .forget_received(id)
            .ok_or_else(|| AdminError::BadRequest(format!("the phone received no message {id:?}")))?;
        let count = p.next_retry(&entry.from, id);
        let registration_id = p.registration_id();
        // From the second retry on, the references attach the receiver's keys (a one-time
        // prekey, the signed prekey, the identity) so the sender builds a fresh session.
        let keys = (count >= 2).then(|| p.take_bundle(&mut self.rng)).and_then(|b| {
            Some(crate::wa::message::RetryKeys {
                identity: b.identity_key,
                pre_key: b.pre_key?,
                signed_pre_key_id: b.signed_pre_key_id,
                signed_pre_key: b.signed_pre_key,
                signed_pre_key_signature: b.signed_pre_key_signature,
                device_identity: Vec::new(),
            })
        });
        let group = entry.chat.is_group().then(|| entry.chat.clone());
        let receipt = super::routing::OutReceipt {
            id: id.to_owned(),
            to: group.clone().unwrap_or_else(|| entry.from.clone()),
            participant: group.map(|_| entry.from.clone()),
            recipient: None,
            kind: crate::wa::message::ReceiptType::Retry,
            children: vec![
                Node::new("retry")
                    .attr("count", count.to_string())
                    .attr("id", id)
                    .attr("t", entry.t.to_string())
                    .attr("v", "1"),
                Node::new("registration").bytes(registration_id.to_be_bytes().to_vec()),
            ]
            .into_iter()
            .chain(keys.as_ref().map(crate::wa::message::retry_keys_node))
            .collect(),
        };
        self.forward_receipt(now, &Jid::new(phone, Server::User), &receipt);
        Ok(entry.from)
    }

    /// Fetches bundles for the devices `phone` has no session with and starts sessions.
    fn ensure_sessions(&mut self, phone: &str, devices: &[Jid]) {
        let missing = self.phones.get(phone).map(|p| p.missing_sessions(devices)).unwrap_or_default();
        for d in missing {
            let Some(bundle) = self.take_bundle(&d) else { continue };
            let Self { phones, rng, .. } = self;
            if let Some(p) = phones.get_mut(phone)
                && let Err(error) = p.start_session(&d, &bundle, rng)
            {
                tracing::debug!(%error, "sim phone could not start a session");
            }
        }
    }

    /// A retry receipt for a message the phone sent: fetch a fresh bundle of the requesting
    /// device, rebuild the session and resend to that device only (group: fresh skmsg + SKDM).
    pub(super) fn phone_retry(
        &mut self,
        now: Instant,
        phone: &str,
        device: &Jid,
        id: &str,
        group: Option<&Jid>,
    ) {
        let Some(sent) = self.phones.get(phone).and_then(|p| p.sent_message(id)).cloned() else { return };
        let Some(bundle) = self.take_bundle(device) else { return };
        let me = Jid::new(phone, Server::User);
        let Self { phones, rng, .. } = self;
        let Some(p) = phones.get_mut(phone) else { return };
        if p.start_session(device, &bundle, rng).is_err() {
            return;
        }
        let node = match group {
            Some(g) => {
                p.forget_skdm(g, device);
                match p.encrypt_group(id, g, std::slice::from_ref(device), &sent.text, rng) {
                    Ok(mut n) => {
                        n.set_attr("participant", device.clone());
                        n
                    }
                    Err(_) => return,
                }
            }
            None => p.encrypt_dm(id, &sent.to, std::slice::from_ref(device), &sent.text, rng),
        };
        if let Ok(relay) = parse_relay(&node) {
            self.route(now, &me, &relay);
        }
    }

    /// What the phone of `phone` decrypted, oldest first.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`].
    pub fn phone_inbox(&self, phone: &str) -> Result<Vec<InboxEntry>, AdminError> {
        self.phones.get(phone).map(|p| p.inbox().to_vec()).ok_or(AdminError::UnknownPhone)
    }

    /// What the phone of `phone` sent, with per-device delivery, oldest first.
    ///
    /// # Errors
    /// [`AdminError::UnknownPhone`].
    pub fn phone_sent(&self, phone: &str) -> Result<Vec<SentEntry>, AdminError> {
        self.phones.get(phone).map(|p| p.sent().to_vec()).ok_or(AdminError::UnknownPhone)
    }

    /// Stanzas waiting in the queue of `device_jid` (delivered or not, not yet answered).
    ///
    /// # Errors
    /// [`AdminError::UnknownDevice`].
    pub fn queued(&self, device_jid: &str) -> Result<usize, AdminError> {
        let (phone, device) =
            crate::sim::account::parse_device_jid(device_jid).ok_or(AdminError::UnknownDevice)?;
        Ok(self.queues.get(&(phone, device)).map_or(0, |q| q.len()))
    }
}
