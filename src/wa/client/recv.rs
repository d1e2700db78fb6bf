//! Inbound messaging of the client: decrypts `<message>` stanzas (pkmsg / msg / skmsg, the
//! SKDM carried pairwise before its skmsg), answers with the delivery receipt or a retry
//! receipt, turns server acks and receipts into status events (and retry receipts into
//! resends), asks for the offline queue and refills prekeys on a low-count notification.
//!
//! Order per decrypted message (invariant 1): `Persist(Delta::Received)` (keys and message in
//! one commit) → `Event::Message` → the receipt. A failed decrypt never acks silently: it gets a
//! retry receipt (after persisting whatever did decrypt). No IO, no clock.

use std::time::Instant;

use super::keys::KeyChange;
use super::placeholder::placeholder_answers;
use super::send::address_of;
use super::{
    Client, Delta, Event, MIN_PRE_KEYS, MessageStatus, Output, Pending, PreKey, ReceivedMessage, StatusUpdate,
};
use crate::wa::binary::Node;
use crate::wa::message::ack::NACK_PARSING_ERROR;
use crate::wa::message::offline::OFFLINE_BATCH;
use crate::wa::message::{
    DecodedMessage, Enc, EncType, InboundMessage, MessageContent, ReceiptType, RetryKeys, ack_for,
    decode_plaintext, delivery_receipt, offline_batch, parse_ack, parse_message, parse_receipt,
    retry_receipt,
};
use crate::wa::noise::KeyPair;
use crate::wa::signal::{
    self, PreKeySignalMessage, PublicKey, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord,
    SignalDelta, SignalError, next_pre_key_id,
};

/// Retry receipts sent per message before giving up with a nack (Baileys and whatsmeow: 5).
pub(crate) const MAX_RETRY_RECEIPTS: u32 = 5;
/// Inbound retry counters kept (bounded; the count is also recovered from `<enc count>`).
const RETRY_COUNTERS: usize = 1024;

/// A `<message>` of a kind this client does not decode (rather than a malformed one): it
/// carries `<plaintext>` (newsletters) or an `<enc>` of an unknown type.
fn unhandled_kind(node: &Node) -> bool {
    node.child("plaintext").is_some()
        || node
            .children_with_tag("enc")
            .any(|e| e.attr_str("type").is_some_and(|t| EncType::from_attr(t).is_none()))
}

/// What decrypting one stanza gave.
#[derive(Default)]
struct Outcome {
    changes: Vec<KeyChange>,
    content: Option<DecodedMessage>,
    duplicate: bool,
    failure: Option<String>,
}

impl Client {
    /// A `<message>` from the server.
    pub(crate) fn handle_message(&mut self, now: Instant, node: &Node) {
        let msg = match parse_message(node) {
            Ok(m) => m,
            Err(e) => {
                // Kinds we have no decoder for (an unknown `enc` type such as Meta AI's
                // `msmsg`, a `<plaintext>` newsletter message) are acked so the server drops
                // them, as Baileys acks `msmsg`; only a malformed stanza is nacked.
                let unhandled = unhandled_kind(node);
                tracing::warn!(unhandled, "message stanza we cannot parse; acked");
                tracing::debug!(error = %e, "unparsed message stanza");
                if let Ok(mut ack) = ack_for(node) {
                    if !unhandled {
                        ack.set_attr("error", NACK_PARSING_ERROR.to_string());
                    }
                    self.send_node(&ack);
                }
                return;
            }
        };
        let Some(own) = self.own_jid() else { return };
        if msg.encs.is_empty() {
            // `<unavailable>`: nothing to decrypt here; the phone holds the content.
            if let Ok(ack) = ack_for(node) {
                self.send_node(&ack);
            }
            if msg.unavailable.is_some() {
                self.request_placeholder(now, &msg, &own);
            }
            return;
        }
        let out = self.decrypt_all(&msg);
        if let Some(reason) = out.failure {
            tracing::warn!(msg_id = %msg.id, reason, offline = msg.offline, "message decrypt failed; retry receipt");
            self.send_retry_receipt(&msg, out.changes);
            // Then a plain ack, as whatsmeow does (message.go decryptMessages): the retry
            // receipt alone leaves the stanza pending on the server, which redelivers it at
            // every login and ends the stream over it; a resend comes back with the same id.
            if let Ok(ack) = ack_for(node) {
                self.send_node(&ack);
            }
            return;
        }
        // Our phone's answer to a placeholder request: the messages it carries, as received.
        let from_own_phone =
            msg.sender().user == own.user && msg.sender().server == own.server && msg.sender().device == 0;
        let answers = match out.content.as_ref() {
            Some(d) if from_own_phone => placeholder_answers(&d.message),
            _ => Vec::new(),
        };
        if !answers.is_empty() {
            let mut keys = Some(out.changes);
            for message in self.placeholder_messages(answers) {
                self.outputs.push_back(Output::Persist(Delta::Received {
                    keys: keys.take().unwrap_or_default(),
                    message: Box::new(message.clone()),
                }));
                self.outputs.push_back(Output::Event(Event::Message(Box::new(message))));
            }
            if let Some(k) = keys.filter(|k| !k.is_empty()) {
                self.outputs.push_back(Output::Persist(Delta::Keys(k)));
            }
            self.msg.keys.retries_in.remove(&msg.id);
            return self.send_node(&delivery_receipt(&msg, &own, false));
        }
        let text = match out.content.as_ref().map(|d| &d.content) {
            Some(MessageContent::Text(t)) => Some(t.clone()),
            _ => None,
        };
        match (text, out.content) {
            (Some(text), Some(decoded)) => {
                let sender = msg.sender().clone();
                let from_me = sender.user == own.user && sender.server == own.server;
                let chat = if msg.is_group_like() {
                    msg.from.to_string()
                } else if from_me {
                    decoded
                        .device_sent_to
                        .clone()
                        .filter(|c| !c.is_empty())
                        .or_else(|| msg.recipient.as_ref().map(ToString::to_string))
                        .unwrap_or_else(|| own.to_non_ad().to_string())
                } else {
                    msg.from.to_non_ad().to_string()
                };
                let message = ReceivedMessage {
                    id: msg.id.clone(),
                    chat,
                    sender: sender.to_string(),
                    from_me,
                    text: Some(text),
                    timestamp: msg.t,
                    offline: msg.offline,
                    push_name: msg.notify.clone(),
                };
                // Invariant 1: keys and message durable in one commit, then the app, then the ack.
                self.outputs.push_back(Output::Persist(Delta::Received {
                    keys: out.changes,
                    message: Box::new(message.clone()),
                }));
                self.outputs.push_back(Output::Event(Event::Message(Box::new(message))));
            }
            _ => {
                if out.duplicate {
                    tracing::debug!(msg_id = %msg.id, "redelivered message; receipt again");
                }
                if !out.changes.is_empty() {
                    self.outputs.push_back(Output::Persist(Delta::Keys(out.changes)));
                }
            }
        }
        self.msg.keys.retries_in.remove(&msg.id);
        self.send_node(&delivery_receipt(&msg, &own, false));
    }

    /// Decrypts every `<enc>` in order (a pairwise SKDM before the skmsg it enables).
    fn decrypt_all(&mut self, msg: &InboundMessage) -> Outcome {
        let mut out = Outcome::default();
        for enc in &msg.encs {
            if enc.version != 2 {
                out.failure = Some(format!("unsupported enc version {}", enc.version));
                break;
            }
            match self.decrypt_enc(msg, enc, &mut out.changes) {
                Ok(plain) => match decode_plaintext(&plain) {
                    Ok(d) => {
                        if let Some((group, bytes)) = &d.skdm {
                            self.process_skdm(msg, group, bytes, &mut out.changes);
                        }
                        let only_skdm = d.skdm.is_some() && d.content == MessageContent::Other;
                        if !only_skdm {
                            out.content = Some(d);
                        }
                    }
                    Err(e) => {
                        out.failure = Some(format!("plaintext: {e}"));
                        break;
                    }
                },
                Err(e) if e.is_duplicate() => out.duplicate = true,
                Err(e) => {
                    out.failure = Some(format!("{} decrypt: {e}", enc.kind));
                    break;
                }
            }
        }
        out
    }

    fn decrypt_enc(
        &mut self,
        msg: &InboundMessage,
        enc: &Enc,
        changes: &mut Vec<KeyChange>,
    ) -> Result<Vec<u8>, SignalError> {
        let addr = address_of(msg.sender());
        match enc.kind {
            EncType::Pkmsg => {
                let pk = PreKeySignalMessage::decode(&enc.ciphertext)?;
                let local = self.local_identity();
                let spk = self.signed_pre_key_record();
                let keys = &self.msg.keys;
                let had_session = keys.has_session(&addr);
                let one_time = pk.pre_key_id().and_then(|id| keys.pre_keys.get(&id));
                let d = signal::decrypt_prekey_message(
                    &local,
                    &addr,
                    keys.sessions.get(&addr),
                    &pk,
                    Some(&spk),
                    one_time,
                    &mut self.rng,
                )?;
                let rebuilt =
                    had_session && d.deltas.iter().any(|x| matches!(x, SignalDelta::IdentityPut { .. }));
                self.msg.keys.apply_signal(d.deltas, changes);
                self.msg.keys.sessions.insert(addr, d.record);
                if rebuilt {
                    self.msg.keys.forget_skdm_device(&msg.sender().to_string(), changes);
                }
                Ok(d.plaintext)
            }
            EncType::Msg => {
                let record = self.msg.keys.sessions.get(&addr).ok_or(SignalError::NoSession)?;
                let d = signal::decrypt_message(&addr, record, &enc.ciphertext, &mut self.rng)?;
                self.msg.keys.apply_signal(d.deltas, changes);
                self.msg.keys.sessions.insert(addr, d.record);
                Ok(d.plaintext)
            }
            _ => {
                let name = SenderKeyName::new(msg.from.to_string(), addr);
                let empty = SenderKeyRecord::default();
                let record = self.msg.keys.sender_keys.get(&name).unwrap_or(&empty);
                let out = signal::group_decrypt(&name, record, &enc.ciphertext)?;
                self.msg.keys.apply_signal(out.deltas, changes);
                self.msg.keys.sender_keys.insert(name, out.record);
                Ok(out.bytes)
            }
        }
    }

    fn process_skdm(
        &mut self,
        msg: &InboundMessage,
        group: &str,
        bytes: &[u8],
        changes: &mut Vec<KeyChange>,
    ) {
        let skdm = match SenderKeyDistributionMessage::decode(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(msg_id = %msg.id, error = %e, "bad sender key distribution message");
                return;
            }
        };
        let name = SenderKeyName::new(group, address_of(msg.sender()));
        let (record, deltas) =
            signal::process_distribution_message(&name, self.msg.keys.sender_keys.get(&name), &skdm);
        self.msg.keys.apply_signal(deltas, changes);
        self.msg.keys.sender_keys.insert(name, record);
    }

    fn send_retry_receipt(&mut self, msg: &InboundMessage, changes: Vec<KeyChange>) {
        if !changes.is_empty() {
            self.outputs.push_back(Output::Persist(Delta::Keys(changes)));
        }
        let prior = msg.encs.iter().filter_map(|e| e.count).max().unwrap_or(0);
        if self.msg.keys.retries_in.len() > RETRY_COUNTERS {
            self.msg.keys.retries_in.clear();
        }
        let counter = self.msg.keys.retries_in.entry(msg.id.clone()).or_insert(0);
        *counter = (*counter).max(prior) + 1;
        let count = *counter;
        if count > MAX_RETRY_RECEIPTS {
            // The counter stays (bounded): a redelivery on a later connection gets the final
            // answer again instead of starting over at count 1. No nack 500: the server keeps a
            // nacked stanza pending and withholds the rest of the offline queue behind it
            // (Baileys#2779); the caller's plain ack drops it.
            tracing::warn!(msg_id = %msg.id, "message stays undecryptable; giving up");
            return;
        }
        let keys = if count >= 2 { self.retry_keys() } else { None };
        let receipt = retry_receipt(msg, count, self.creds.registration_id, keys.as_ref());
        self.send_node(&receipt);
    }

    /// A fresh one-time prekey plus our signed prekey and identity for a retry receipt; the
    /// prekey and the advanced counter are persisted before the receipt leaves.
    fn retry_keys(&mut self) -> Option<RetryKeys> {
        let account = self.creds.me.as_ref()?.account.clone();
        let id = self.creds.next_pre_key_id;
        let pk = PreKey { id, key: KeyPair::generate(&mut self.rng) };
        self.creds.next_pre_key_id = next_pre_key_id(id);
        self.msg.keys.add_pre_keys(std::slice::from_ref(&pk));
        let public = PublicKey::from_raw(*pk.key.public());
        self.outputs.push_back(Output::Persist(Delta::PreKeys(vec![pk])));
        self.outputs.push_back(Output::Persist(Delta::Creds(Box::new(self.creds.clone()))));
        let spk = &self.creds.signed_pre_key;
        Some(RetryKeys {
            identity: PublicKey::from_raw(*self.creds.identity_key.public()),
            pre_key: (id, public),
            signed_pre_key_id: spk.key.id,
            signed_pre_key: PublicKey::from_raw(*spk.key.key.public()),
            signed_pre_key_signature: spk.signature,
            device_identity: account,
        })
    }

    /// A `<receipt>` from the server: status events, retry resends; always acked.
    pub(crate) fn handle_receipt(&mut self, now: Instant, node: &Node) {
        let ack = ack_for(node);
        match parse_receipt(node) {
            Err(e) => tracing::debug!(error = %e, "undecodable receipt"),
            Ok(r) => {
                let own = self.own_jid();
                let from_own =
                    own.as_ref().is_some_and(|o| r.sender().user == o.user && r.sender().server == o.server);
                let status = match r.kind {
                    ReceiptType::Delivery | ReceiptType::Inactive => Some(MessageStatus::Delivered),
                    ReceiptType::Read | ReceiptType::ReadSelf => Some(MessageStatus::Read),
                    ReceiptType::Played => Some(MessageStatus::Played),
                    _ => None,
                };
                if let (Some(status), false) = (status, from_own) {
                    for id in std::iter::once(&r.id).chain(r.more_ids.iter()) {
                        let chat = self
                            .msg
                            .recent(id)
                            .map_or_else(|| r.from.to_non_ad().to_string(), |s| s.chat.to_string());
                        self.outputs.push_back(Output::Event(Event::Status(StatusUpdate {
                            id: id.clone(),
                            chat,
                            from: Some(r.sender().to_string()),
                            status: status.clone(),
                        })));
                    }
                }
                if let (ReceiptType::Retry, Some(req)) = (&r.kind, &r.retry) {
                    let device = r.sender().clone();
                    self.resend(now, &r.id, device, req.bundle.as_ref());
                }
            }
        }
        if let Ok(a) = ack {
            self.send_node(&a);
        }
    }

    /// An `<ack>` from the server: the status of a message we sent.
    pub(crate) fn handle_ack(&mut self, node: &Node) {
        let Ok(a) = parse_ack(node) else { return };
        if a.class != "message" {
            return;
        }
        let Some(chat) = self.msg.recent(&a.id).map(|s| s.chat.to_string()) else { return };
        let status = match a.error {
            Some(code) => {
                tracing::warn!(msg_id = %a.id, code = %code, "server rejected message");
                MessageStatus::Failed(format!("server error {code}"))
            }
            None => MessageStatus::Sent,
        };
        self.outputs.push_back(Output::Event(Event::Status(StatusUpdate {
            id: a.id,
            chat,
            from: None,
            status,
        })));
    }

    /// `<ib><offline_preview/></ib>`: ask for the queued stanzas.
    pub(crate) fn handle_offline_preview(&mut self) {
        self.send_node(&offline_batch(OFFLINE_BATCH));
    }

    /// Messaging side of a `<notification>`: prekey refill on a low count, device-list
    /// invalidation on a `devices` change.
    pub(crate) fn handle_key_notification(&mut self, node: &Node) {
        match node.attr_str("type") {
            Some("encrypt") => {
                let count =
                    node.child("count").and_then(|c| c.attr_str("value")).and_then(|v| v.parse::<u32>().ok());
                if count.is_some_and(|c| c < MIN_PRE_KEYS) && self.is_logged_in() {
                    self.upload_pre_keys(Pending::PreKeyRefill);
                }
            }
            Some("devices") => {
                if let Some(user) = node.attr_jid("from") {
                    self.msg.keys.device_lists.remove(&user.to_non_ad().to_string());
                }
            }
            _ => {}
        }
    }
}
