//! What the outbox stores per message (the sealed payload of a `store::OutboxItem`) and what
//! the API shows of it. Status only moves forward (queued → sent → delivered → read/played);
//! `failed` is final.
//!
//! Data and conversions only; no IO.

use serde::{Deserialize, Serialize};

use crate::host::clock;
use crate::store::{OutboxItem, SecretBytes};
use crate::wa::client::MessageStatus;

/// Where a queued message stands (API `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SendStatus {
    /// Waiting for its turn (pacing, connection).
    Queued,
    /// Handed to the connection / accepted by the server.
    Sent,
    /// A recipient device received it.
    Delivered,
    /// A recipient read it.
    Read,
    /// A recipient played it (voice/video).
    Played,
    /// Refused for good; `reason` says why.
    Failed,
}

impl SendStatus {
    /// Whether nothing can change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Read | Self::Played | Self::Failed)
    }
}

/// The stored payload of one outbox item (JSON, sealed at rest by the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Recipient as given (normalised phone digits or a JID).
    pub(crate) to: String,
    /// The text; emptied once the message left the queue (nothing to resend, less kept).
    pub(crate) text: String,
    /// Queue order among items with the same `created_at`.
    pub(crate) seq: u64,
    /// Current status.
    pub(crate) status: SendStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Hand-offs tried so far.
    #[serde(default)]
    pub(crate) attempts: u32,
    /// Last change (unix ms).
    pub(crate) updated_at: u64,
}

/// One outbox entry in memory: the store item's id and creation time plus its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) created_at: u64,
    pub(crate) record: Record,
    /// Handed to the connection on this connection, waiting for the server's ack (in memory
    /// only: after a restart or a reconnect an unacked message goes again, with the same id).
    pub(crate) relayed: bool,
}

impl Entry {
    /// Decodes a stored item; `None` when the payload is not ours (logged by the caller).
    pub(crate) fn from_item(item: &OutboxItem) -> Result<Self, serde_json::Error> {
        let record: Record = serde_json::from_slice(item.payload.expose())?;
        Ok(Self { id: item.id.clone(), created_at: item.created_at, record, relayed: false })
    }

    /// The store item for this entry.
    pub(crate) fn to_item(&self) -> Result<OutboxItem, serde_json::Error> {
        Ok(OutboxItem {
            id: self.id.clone(),
            created_at: self.created_at,
            payload: SecretBytes::new(serde_json::to_vec(&self.record)?),
        })
    }

    /// Queue order: oldest first.
    pub(crate) fn order(&self) -> (u64, u64) {
        (self.created_at, self.record.seq)
    }

    /// Applies a status reported by the connection; false when nothing changed (a status
    /// never moves backwards, and a final one never changes).
    pub(crate) fn apply(&mut self, status: &MessageStatus) -> bool {
        if self.record.status.is_final() {
            return false;
        }
        let (next, reason) = match status {
            MessageStatus::Sent => (SendStatus::Sent, None),
            MessageStatus::Delivered => (SendStatus::Delivered, None),
            MessageStatus::Read => (SendStatus::Read, None),
            MessageStatus::Played => (SendStatus::Played, None),
            MessageStatus::Failed(r) => (SendStatus::Failed, Some(r.clone())),
        };
        if next != SendStatus::Failed && next <= self.record.status {
            return false;
        }
        self.set(next, reason);
        true
    }

    /// Moves to `status` now.
    pub(crate) fn set(&mut self, status: SendStatus, reason: Option<String>) {
        self.record.status = status;
        self.record.reason = reason;
        self.record.updated_at = clock::unix_ms();
        if status != SendStatus::Queued {
            self.record.text.clear();
        }
    }

    /// The API view.
    pub(crate) fn view(&self) -> MessageView {
        MessageView {
            id: self.id.clone(),
            to: self.record.to.clone(),
            status: self.record.status,
            reason: self.record.reason.clone(),
            attempts: self.record.attempts,
            created_at: clock::rfc3339(self.created_at),
            updated_at: clock::rfc3339(self.record.updated_at),
        }
    }
}

/// A message as the API shows it (`GET /v1/tenants/{id}/messages/{msg}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// Message id (the same on every attempt and on the wire).
    pub id: String,
    /// Recipient.
    pub to: String,
    /// Status.
    pub status: SendStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hand-offs tried so far.
    pub attempts: u32,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// Last status change (RFC 3339).
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let record = Record {
            to: "15550001".into(),
            text: "hi".into(),
            seq: 1,
            status: SendStatus::Queued,
            reason: None,
            attempts: 0,
            updated_at: 0,
        };
        Entry { id: "3EB0AA".into(), created_at: 5, record, relayed: false }
    }

    /// Statuses only move forward; a final one never changes; the text goes once sent.
    #[test]
    fn status_moves_forward_only() {
        let mut e = entry();
        assert!(e.apply(&MessageStatus::Delivered));
        assert!(e.record.text.is_empty());
        assert!(!e.apply(&MessageStatus::Sent), "no step back");
        assert!(e.apply(&MessageStatus::Read));
        assert!(!e.apply(&MessageStatus::Failed("late".into())), "read is final");
        let mut f = entry();
        assert!(f.apply(&MessageStatus::Failed("nope".into())));
        assert_eq!((f.record.status, f.record.reason.as_deref()), (SendStatus::Failed, Some("nope")));
    }

    /// The stored item round-trips (what a restart reads back is what was written).
    #[test]
    fn item_round_trip() {
        let e = entry();
        let back = Entry::from_item(&e.to_item().unwrap()).unwrap();
        assert_eq!(back, e);
        let bad = OutboxItem { id: "x".into(), created_at: 0, payload: SecretBytes::new(b"{".to_vec()) };
        assert!(Entry::from_item(&bad).is_err());
    }
}
