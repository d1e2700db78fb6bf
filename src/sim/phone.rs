//! A simulated primary phone (device 0 of an account) as a full Signal peer: its identity is
//! the account key, with a signed prekey and a pool of one-time prekeys the server hands out.
//! It decrypts what is routed to it (`pkmsg`/`msg`/`skmsg`, SKDMs), keeps an inbox (deduped
//! by sender and id), encrypts 1:1 and group sends, and tracks per-device delivery of what it
//! sent.
//!
//! Pure state: the simulator core routes its stanzas; no sockets, no clocks (times come in as
//! unix seconds), randomness injected.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use prost::Message as _;
use rand_core::CryptoRngCore;

use crate::wa::binary::Node;
use crate::wa::jid::Jid;
use crate::wa::message::{
    DecodedMessage, DeviceCiphertext, EncType, GroupSend, InboundMessage, MessageContent, decode_plaintext,
    device_sent, dm_stanza, encode_plaintext, group_stanza, skdm_message, text_message,
};
use crate::wa::noise::KeyPair;
use crate::wa::proto;
use crate::wa::signal::{
    LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySignalMessage, SenderKeyDistributionMessage,
    SenderKeyName, SenderKeyRecord, SessionRecord, SignalAddress, SignalDelta, SignalError,
    SignedPreKeyRecord, create_distribution_message, decrypt_message, decrypt_prekey_message, encrypt,
    generate_pre_keys, group_decrypt, group_encrypt, process_bundle, process_distribution_message,
};

/// `PeerDataOperationRequestType.PLACEHOLDER_MESSAGE_RESEND` (waE2E).
const PLACEHOLDER_RESEND: i32 = proto::PeerDataOperationRequestType::PlaceholderMessageResend as i32;
/// `ProtocolMessage.Type.PEER_DATA_OPERATION_REQUEST_RESPONSE_MESSAGE` (waE2E).
const PDO_RESPONSE: i32 =
    proto::message::protocol_message::Type::PeerDataOperationRequestResponseMessage as i32;
/// One-time prekeys generated per refill.
const REFILL: u32 = 20;
/// Refill when fewer unserved one-time prekeys remain.
const LOW_WATER: usize = 5;
/// Most inbox entries kept per phone (oldest dropped first).
const MAX_INBOX: usize = 10_000;
/// Most (sender, id) pairs remembered for deduplication before the memory is reset.
const MAX_SEEN: usize = 100_000;
/// Most sent entries kept per phone (oldest dropped first).
const MAX_SENT: usize = 10_000;

/// A message the phone decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Message id.
    pub id: String,
    /// The sending device.
    pub from: Jid,
    /// The chat: the group, the peer user, or (for a copy of an own message) its destination.
    pub chat: Jid,
    /// The text (`None` for content other than text).
    pub text: Option<String>,
    /// Server timestamp (unix seconds).
    pub t: u64,
}

/// Delivery state of one target device of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Handed to the server, no receipt yet.
    Sent,
    /// The device sent a delivery receipt.
    Delivered,
    /// The device sent a read receipt.
    Read,
    /// The device asked for a resend (retry receipt).
    Retry,
}

impl DeliveryState {
    /// Lowercase name for the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Retry => "retry",
        }
    }
}

/// A message the phone sent, with per-device delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEntry {
    /// Message id.
    pub id: String,
    /// The chat (user or group).
    pub to: Jid,
    /// The text.
    pub text: String,
    /// Server timestamp (unix seconds).
    pub t: u64,
    /// State per target device.
    pub devices: BTreeMap<Jid, DeliveryState>,
}

/// What happened to a routed message at the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// Decrypted (an inbox entry was added when it carried text).
    New,
    /// Seen before (same sender and id): not decrypted again.
    Duplicate,
    /// Some `<enc>` failed to decrypt.
    Failed,
}

/// The simulated primary device of one account.
pub(crate) struct Phone {
    jid: Jid,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    one_time: BTreeMap<u32, PreKeyRecord>,
    served: BTreeSet<u32>,
    next_pre_key: u32,
    sessions: HashMap<SignalAddress, SessionRecord>,
    sender_keys: HashMap<SenderKeyName, SenderKeyRecord>,
    skdm_sent: HashMap<Jid, BTreeSet<Jid>>,
    inbox: Vec<InboxEntry>,
    seen: HashSet<(Jid, String)>,
    retries: HashMap<(Jid, String), u32>,
    sent: Vec<SentEntry>,
    /// Placeholder-resend requests from the phone's companions, not answered yet.
    placeholder_requests: Vec<PlaceholderRequest>,
    /// Decrypt failures so far.
    pub(crate) failures: u64,
}

/// A companion of this account asked for the content of messages it got as `<unavailable>`.
#[derive(Debug, Clone)]
pub(crate) struct PlaceholderRequest {
    /// The asking companion device.
    pub(crate) from: Jid,
    /// The id of its request message (echoed as `stanza_id`).
    pub(crate) request_id: String,
    /// The messages asked for.
    pub(crate) keys: Vec<proto::MessageKey>,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone")
            .field("jid", &self.jid)
            .field("inbox", &self.inbox.len())
            .finish_non_exhaustive()
    }
}

fn addr(jid: &Jid) -> SignalAddress {
    SignalAddress::new(jid.user.clone(), u32::from(jid.device))
}

impl Phone {
    /// A phone for `user_jid` whose identity key pair is the account key.
    pub(crate) fn new(user_jid: Jid, identity_priv: [u8; 32], rng: &mut impl CryptoRngCore) -> Self {
        let identity = LocalIdentity::new(KeyPair::from_private_bytes(identity_priv), {
            crate::wa::signal::generate_registration_id(rng)
        });
        let signed = SignedPreKeyRecord::generate(&identity, 1, rng);
        let mut p = Self {
            jid: user_jid,
            identity,
            signed,
            one_time: BTreeMap::new(),
            served: BTreeSet::new(),
            next_pre_key: 1,
            sessions: HashMap::new(),
            sender_keys: HashMap::new(),
            skdm_sent: HashMap::new(),
            inbox: Vec::new(),
            seen: HashSet::new(),
            retries: HashMap::new(),
            sent: Vec::new(),
            placeholder_requests: Vec::new(),
            failures: 0,
        };
        p.refill(rng);
        p
    }

    fn refill(&mut self, rng: &mut impl CryptoRngCore) {
        for k in generate_pre_keys(self.next_pre_key, REFILL, rng) {
            self.next_pre_key = crate::wa::signal::next_pre_key_id(k.id());
            self.one_time.insert(k.id(), k);
        }
    }

    /// The phone's bundle for a fetch: hands out one one-time prekey not served before
    /// (generating more when the pool runs low).
    pub(crate) fn take_bundle(&mut self, rng: &mut impl CryptoRngCore) -> PreKeyBundle {
        if self.one_time.keys().filter(|id| !self.served.contains(id)).count() < LOW_WATER {
            self.refill(rng);
        }
        let pick = self.one_time.iter().find(|(id, _)| !self.served.contains(id)).map(|(id, k)| (*id, k));
        if let Some((id, _)) = pick {
            self.served.insert(id);
        }
        PreKeyBundle::from_local(&self.identity, &self.signed, pick.map(|(_, k)| k))
    }

    /// The phone's registration id (sent in its retry receipts).
    pub(crate) fn registration_id(&self) -> u32 {
        self.identity.registration_id()
    }

    /// Counts one more retry request for message `id` from `sender`; returns the new count.
    pub(crate) fn next_retry(&mut self, sender: &Jid, id: &str) -> u32 {
        if self.retries.len() >= MAX_INBOX {
            self.retries.clear();
        }
        let n = self.retries.entry((sender.clone(), id.to_owned())).or_default();
        *n += 1;
        *n
    }

    /// Devices among `devices` the phone has no session with.
    pub(crate) fn missing_sessions(&self, devices: &[Jid]) -> Vec<Jid> {
        devices.iter().filter(|d| !self.sessions.contains_key(&addr(d))).cloned().collect()
    }

    /// Devices of `group` that still need the phone's sender key.
    pub(crate) fn needs_skdm(&self, group: &Jid, devices: &[Jid]) -> Vec<Jid> {
        let had = self.skdm_sent.get(group);
        devices.iter().filter(|d| !had.is_some_and(|s| s.contains(d))).cloned().collect()
    }

    /// Starts (or replaces) a session with `device` from its fetched bundle.
    ///
    /// # Errors
    /// [`SignalError`] for a bad bundle signature or key.
    pub(crate) fn start_session(
        &mut self,
        device: &Jid,
        bundle: &PreKeyBundle,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(), SignalError> {
        let a = addr(device);
        let (record, _) = process_bundle(&self.identity, &a, self.sessions.get(&a), bundle, rng)?;
        self.sessions.insert(a, record);
        Ok(())
    }

    /// Forgets that `device` has the phone's sender key for `group` (after a retry receipt).
    pub(crate) fn forget_skdm(&mut self, group: &Jid, device: &Jid) {
        if let Some(s) = self.skdm_sent.get_mut(group) {
            s.remove(device);
        }
    }

    fn encrypt_for(&mut self, device: &Jid, plaintext: &[u8]) -> Result<DeviceCiphertext, SignalError> {
        let a = addr(device);
        let record = self.sessions.get(&a).ok_or(SignalError::NoSession)?;
        let out = encrypt(&a, record, plaintext)?;
        self.sessions.insert(a, out.record);
        Ok(DeviceCiphertext { device: device.clone(), kind: out.kind.into(), ciphertext: out.ciphertext })
    }

    /// A 1:1 text to `to` (a user) for `targets` (devices with sessions; the phone's own
    /// companions get the device-sent copy). Devices without a session are skipped.
    pub(crate) fn encrypt_dm(
        &mut self,
        id: &str,
        to: &Jid,
        targets: &[Jid],
        text: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Node {
        let message = text_message(text);
        let dsm = device_sent(&message, to);
        let mut entries = Vec::new();
        for d in targets {
            let own = d.user == self.jid.user && d.server == self.jid.server && to.user != self.jid.user;
            let plain = encode_plaintext(if own { &dsm } else { &message }, rng);
            if let Ok(c) = self.encrypt_for(d, &plain) {
                entries.push(c);
            }
        }
        dm_stanza(id, &to.to_non_ad(), &entries, None)
    }

    /// A group text: `skmsg` for everyone plus the SKDM pairwise for `skdm_to` (devices with
    /// sessions that lack the phone's sender key).
    ///
    /// # Errors
    /// [`SignalError`] when the sender key cannot encrypt (internal bug).
    pub(crate) fn encrypt_group(
        &mut self,
        id: &str,
        group: &Jid,
        skdm_to: &[Jid],
        text: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Node, SignalError> {
        let name = SenderKeyName::new(group.to_string(), addr(&self.jid));
        let (skdm, record, _) = create_distribution_message(&name, self.sender_keys.get(&name), rng);
        let out = group_encrypt(&name, &record, &encode_plaintext(&text_message(text), rng), rng)?;
        self.sender_keys.insert(name, out.record);
        let carrier = skdm_message(group, &skdm.encode());
        let mut entries = Vec::new();
        for d in skdm_to {
            let plain = encode_plaintext(&carrier, rng);
            if let Ok(c) = self.encrypt_for(d, &plain) {
                self.skdm_sent.entry(group.clone()).or_default().insert(d.clone());
                entries.push(c);
            }
        }
        Ok(group_stanza(&GroupSend {
            id,
            group,
            addressing_mode: Some("pn"),
            skmsg: &out.bytes,
            skdm: &entries,
            device_identity: None,
        }))
    }

    /// Records a sent message and its target devices.
    pub(crate) fn record_sent(&mut self, id: &str, to: &Jid, text: &str, t: u64, devices: &[Jid]) {
        if self.sent.len() >= MAX_SENT {
            self.sent.remove(0);
        }
        self.sent.push(SentEntry {
            id: id.to_owned(),
            to: to.clone(),
            text: text.to_owned(),
            t,
            devices: devices.iter().map(|d| (d.clone(), DeliveryState::Sent)).collect(),
        });
    }

    /// The sent message with this id, if the phone sent it.
    pub(crate) fn sent_message(&self, id: &str) -> Option<&SentEntry> {
        self.sent.iter().rev().find(|s| s.id == id)
    }

    /// A receipt from `device` for message `id` the phone sent. Never downgrades Read.
    pub(crate) fn on_receipt(&mut self, id: &str, device: &Jid, state: DeliveryState) {
        let Some(s) = self.sent.iter_mut().rev().find(|s| s.id == id) else { return };
        let slot = s.devices.entry(device.clone()).or_insert(DeliveryState::Sent);
        if *slot != DeliveryState::Read {
            *slot = state;
        }
    }

    fn note_placeholder_request(&mut self, from: &Jid, request_id: &str, m: &proto::Message) {
        let Some(req) = m
            .protocol_message
            .as_deref()
            .and_then(|p| p.peer_data_operation_request_message.as_ref())
            .filter(|r| r.peer_data_operation_request_type == Some(PLACEHOLDER_RESEND))
        else {
            return;
        };
        let keys: Vec<proto::MessageKey> =
            req.placeholder_message_resend_request.iter().filter_map(|r| r.message_key.clone()).collect();
        if self.placeholder_requests.len() < MAX_INBOX {
            self.placeholder_requests.push(PlaceholderRequest {
                from: from.clone(),
                request_id: request_id.to_owned(),
                keys,
            });
        }
    }

    /// Placeholder requests received since the last call.
    pub(crate) fn take_placeholder_requests(&mut self) -> Vec<PlaceholderRequest> {
        std::mem::take(&mut self.placeholder_requests)
    }

    /// The phone's answer to a placeholder request: every asked message it holds, as a
    /// `WebMessageInfo` inside a `PEER_DATA_OPERATION_REQUEST_RESPONSE_MESSAGE`, encrypted for
    /// the asking companion. `None` when it holds none of them or has no session.
    pub(crate) fn placeholder_answer(
        &mut self,
        req: &PlaceholderRequest,
        push_name: &str,
        rng: &mut impl CryptoRngCore,
    ) -> Option<DeviceCiphertext> {
        use proto::peer_data_operation_request_response_message::PeerDataOperationResult;
        use proto::peer_data_operation_request_response_message::peer_data_operation_result::PlaceholderMessageResendResponse;
        let mut results = Vec::new();
        for key in &req.keys {
            let Some(entry) = self.inbox.iter().rev().find(|e| key.id.as_deref() == Some(e.id.as_str()))
            else {
                continue;
            };
            let info = proto::WebMessageInfo {
                key: Some(key.clone()),
                message: entry.text.as_deref().map(text_message),
                message_timestamp: Some(entry.t),
                participant: None,
                push_name: Some(push_name.to_owned()).filter(|n| !n.is_empty()),
            };
            results.push(PeerDataOperationResult {
                placeholder_message_resend_response: Some(PlaceholderMessageResendResponse {
                    web_message_info_bytes: Some(info.encode_to_vec()),
                }),
            });
        }
        if results.is_empty() {
            return None;
        }
        let answer = proto::Message {
            protocol_message: Some(Box::new(proto::message::ProtocolMessage {
                r#type: Some(PDO_RESPONSE),
                peer_data_operation_request_response_message: Some(
                    proto::PeerDataOperationRequestResponseMessage {
                        peer_data_operation_request_type: Some(PLACEHOLDER_RESEND),
                        stanza_id: Some(req.request_id.clone()),
                        peer_data_operation_result: results,
                    },
                ),
                ..Default::default()
            })),
            ..Default::default()
        };
        self.encrypt_for(&req.from, &encode_plaintext(&answer, rng)).ok()
    }

    /// Forgets that the phone decrypted message `id` (drops it from the inbox and from the
    /// duplicate memory), as a phone that asks for a resend does; returns the forgotten entry.
    pub(crate) fn forget_received(&mut self, id: &str) -> Option<InboxEntry> {
        let pos = self.inbox.iter().rposition(|e| e.id == id)?;
        let entry = self.inbox.remove(pos);
        self.seen.remove(&(entry.from.clone(), entry.id.clone()));
        Some(entry)
    }

    /// What the phone decrypted, oldest first.
    pub(crate) fn inbox(&self) -> &[InboxEntry] {
        &self.inbox
    }

    /// What the phone sent, oldest first.
    pub(crate) fn sent(&self) -> &[SentEntry] {
        &self.sent
    }

    /// Decrypts a message routed to the phone, records text in the inbox.
    pub(crate) fn receive(&mut self, msg: &InboundMessage, rng: &mut impl CryptoRngCore) -> Received {
        let sender = msg.sender().clone();
        let key = (sender.clone(), msg.id.clone());
        if self.seen.contains(&key) {
            return Received::Duplicate;
        }
        let mut text = None;
        let mut chat = if msg.is_group_like() { msg.from.clone() } else { sender.to_non_ad() };
        let mut failed = false;
        for enc in &msg.encs {
            let plain = match enc.kind {
                EncType::Pkmsg => self.decrypt_pkmsg(&sender, &enc.ciphertext, rng),
                EncType::Msg => self.decrypt_msg(&sender, &enc.ciphertext, rng),
                EncType::Skmsg => self.decrypt_skmsg(&msg.from, &sender, &enc.ciphertext),
            };
            let decoded = match plain.map(|p| decode_plaintext(&p)) {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    tracing::debug!(msg_id = %msg.id, kind = ?enc.kind, error = %e, "sim phone: bad plaintext");
                    failed = true;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(msg_id = %msg.id, kind = ?enc.kind, error = %e, "sim phone: decrypt failed");
                    failed = true;
                    continue;
                }
            };
            self.absorb_skdm(&sender, &decoded);
            if msg.is_peer() && sender.user == self.jid.user {
                self.note_placeholder_request(&sender, &msg.id, &decoded.message);
            }
            if let Some(dest) = decoded.device_sent_to.as_deref().and_then(|d| d.parse::<Jid>().ok()) {
                chat = dest;
            }
            if let MessageContent::Text(t) = decoded.content {
                text = Some(t);
            }
        }
        if failed {
            self.failures += 1;
            return Received::Failed;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(key);
        if text.is_some() && !msg.is_peer() {
            if self.inbox.len() >= MAX_INBOX {
                self.inbox.remove(0);
            }
            self.inbox.push(InboxEntry { id: msg.id.clone(), from: sender, chat, text, t: msg.t });
        }
        Received::New
    }

    fn absorb_skdm(&mut self, sender: &Jid, decoded: &DecodedMessage) {
        let Some((group, axolotl)) = &decoded.skdm else { return };
        let Ok(skdm) = SenderKeyDistributionMessage::decode(axolotl) else { return };
        let name = SenderKeyName::new(group.clone(), addr(sender));
        let (record, _) = process_distribution_message(&name, self.sender_keys.get(&name), &skdm);
        self.sender_keys.insert(name, record);
    }

    fn decrypt_pkmsg(
        &mut self,
        sender: &Jid,
        ct: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SignalError> {
        let a = addr(sender);
        let pk = PreKeySignalMessage::decode(ct)?;
        let one_time = pk.pre_key_id().and_then(|id| self.one_time.get(&id));
        let out = decrypt_prekey_message(
            &self.identity,
            &a,
            self.sessions.get(&a),
            &pk,
            Some(&self.signed),
            one_time,
            rng,
        )?;
        for d in &out.deltas {
            if let SignalDelta::PreKeyConsumed { id } = d {
                self.one_time.remove(id);
                self.served.remove(id);
            }
        }
        self.sessions.insert(a, out.record);
        Ok(out.plaintext)
    }

    fn decrypt_msg(
        &mut self,
        sender: &Jid,
        ct: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, SignalError> {
        let a = addr(sender);
        let record = self.sessions.get(&a).ok_or(SignalError::NoSession)?;
        let out = decrypt_message(&a, record, ct, rng)?;
        self.sessions.insert(a, out.record);
        Ok(out.plaintext)
    }

    fn decrypt_skmsg(&mut self, group: &Jid, sender: &Jid, ct: &[u8]) -> Result<Vec<u8>, SignalError> {
        let name = SenderKeyName::new(group.to_string(), addr(sender));
        let record = self.sender_keys.get(&name).ok_or(SignalError::NoSenderKey { id: 0 })?;
        let out = group_decrypt(&name, record, ct)?;
        self.sender_keys.insert(name, out.record);
        Ok(out.bytes)
    }
}
