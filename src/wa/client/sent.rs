//! The durable record of messages we sent, kept to answer retry receipts that arrive after a
//! reconnect or a restart (a recipient's phone often asks hours later, when it comes online).
//!
//! Each record is a key-store entry ([`KeyId::SentMessage`]) written in the same
//! [`Delta::Keys`](super::Delta::Keys) batch as the ratchet state of the send, so it is durable
//! before the stanza leaves (invariant 1). Bounded: the newest [`SENT_KEPT`] per tenant, none
//! older than [`SENT_MAX_AGE`]. No IO, no clock: times come in as unix seconds.

use std::collections::VecDeque;
use std::time::Duration;

use prost::Message as _;

use super::keys::{KeyChange, KeyId, KeyValue};
use crate::wa::jid::Jid;
use crate::wa::proto;

/// Sent messages kept per tenant for retry receipts (whatsmeow keeps 256 in memory only; a
/// tenant at the default pacing of 20 a minute sends at most ~1200 an hour, and a gateway's
/// typical day is well below this).
pub const SENT_KEPT: usize = 2048;
/// Sent messages older than this are dropped (kept at least a day, as retry receipts from a
/// phone that was offline overnight still need them).
pub const SENT_MAX_AGE: Duration = Duration::from_secs(3 * 86_400);

/// The stored form of a sent message (prost-encoded key-store value).
#[derive(Clone, PartialEq, prost::Message)]
struct SentRecord {
    /// The chat (user or group JID).
    #[prost(string, tag = "1")]
    chat: String,
    /// When it was sent (unix seconds).
    #[prost(uint64, tag = "2")]
    at: u64,
    /// The `waE2E.Message` that was sent (before any device-sent wrapping).
    #[prost(bytes = "vec", tag = "3")]
    message: Vec<u8>,
}

/// A sent message kept for retry receipts.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) chat: Jid,
    pub(crate) message: proto::Message,
    /// Unix seconds.
    pub(crate) at: u64,
}

/// A stored sent-message entry that does not decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SentLoadError {
    /// Store corruption or a foreign writer: the record does not decode.
    #[error("sent-message record does not decode")]
    Record(#[source] prost::DecodeError),
    /// Store corruption: the chat is not a JID.
    #[error("sent-message record names no valid chat")]
    Chat,
}

/// The sent messages, oldest first.
#[derive(Debug, Default)]
pub(crate) struct SentStore {
    entries: VecDeque<(String, Sent)>,
}

impl SentStore {
    /// Number of records held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The message we sent with this id, if still kept.
    pub(crate) fn get(&self, id: &str) -> Option<&Sent> {
        self.entries.iter().rev().find(|(i, _)| i == id).map(|(_, s)| s)
    }

    /// Loads one stored record (hydration; any order).
    pub(crate) fn load(&mut self, id: &str, bytes: &[u8]) -> Result<(), SentLoadError> {
        let r = SentRecord::decode(bytes).map_err(SentLoadError::Record)?;
        let chat: Jid = r.chat.parse().map_err(|_| SentLoadError::Chat)?;
        let message = proto::Message::decode(r.message.as_slice()).map_err(SentLoadError::Record)?;
        self.entries.retain(|(i, _)| i != id);
        let at = r.at;
        let pos = self.entries.partition_point(|(_, s)| s.at <= at);
        self.entries.insert(pos, (id.to_owned(), Sent { chat, message, at }));
        Ok(())
    }

    /// Records a message sent at `now_unix` and drops what falls out of the bounds; the put and
    /// the deletes go to `out` (to be persisted with the send's ratchet state).
    pub(crate) fn remember(&mut self, id: &str, sent: Sent, now_unix: u64, out: &mut Vec<KeyChange>) {
        let record =
            SentRecord { chat: sent.chat.to_string(), at: sent.at, message: sent.message.encode_to_vec() };
        self.entries.retain(|(i, _)| i != id);
        self.entries.push_back((id.to_owned(), sent));
        out.push(KeyChange::Put {
            id: KeyId::SentMessage(id.to_owned()),
            value: KeyValue::new(record.encode_to_vec()),
        });
        let oldest = now_unix.saturating_sub(SENT_MAX_AGE.as_secs());
        while self.entries.len() > SENT_KEPT || self.entries.front().is_some_and(|(_, s)| s.at < oldest) {
            let Some((old, _)) = self.entries.pop_front() else { break };
            out.push(KeyChange::Delete(KeyId::SentMessage(old)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::message::text_message;

    fn sent(at: u64) -> Sent {
        Sent { chat: "1@s.whatsapp.net".parse().unwrap(), message: text_message("t"), at }
    }

    /// Records round-trip through their stored bytes in time order; the store stays within its
    /// count and age bounds, and every drop is a delete for the store.
    #[test]
    fn bounded_and_round_trips() {
        let mut s = SentStore::default();
        let mut out = Vec::new();
        let day = 86_400;
        s.remember("old", sent(1_000), 1_000, &mut out);
        s.remember("a", sent(1_000 + day), 1_000 + day, &mut out);
        assert_eq!(s.len(), 2, "a day old is kept");
        s.remember("b", sent(1_000 + 5 * day), 1_000 + 5 * day, &mut out);
        assert!(s.get("old").is_none() && s.get("a").is_none(), "older than the max age dropped");
        assert!(out.contains(&KeyChange::Delete(KeyId::SentMessage("old".into()))));
        let mut back = SentStore::default();
        for c in out.iter().rev() {
            if let KeyChange::Put { id: KeyId::SentMessage(id), value } = c
                && s.get(id).is_some()
            {
                back.load(id, value.expose()).unwrap();
            }
        }
        let b = back.get("b").unwrap();
        assert_eq!((b.at, b.chat.to_string()), (1_000 + 5 * day, "1@s.whatsapp.net".to_owned()));
        assert_eq!(b.message.conversation.as_deref(), Some("t"));
        assert!(back.load("x", &[0xff, 0xff]).is_err());
        let mut out = Vec::new();
        for i in 0..=SENT_KEPT {
            s.remember(&format!("n{i}"), sent(1_000 + 5 * day), 1_000 + 5 * day, &mut out);
        }
        assert_eq!(s.len(), SENT_KEPT);
        assert!(s.get("b").is_none() && s.get("n0").is_none() && s.get("n1").is_some());
    }
}
