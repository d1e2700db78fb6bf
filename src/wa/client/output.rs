//! What the client state machine asks its driver to do, in order: [`Output::Persist`] is a
//! barrier (commit it before acting on any later output), then frames, events and the close.
//!
//! Data only.

use super::creds::{Creds, PreKey};
use super::keys::KeyChange;
use super::reason::DisconnectReason;

/// Something that must be durable before any later output is acted on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Delta {
    /// The whole credentials record changed (pairing, pair-code secret, pre-key counter).
    Creds(Box<Creds>),
    /// New one-time pre-keys (persist before they are uploaded).
    PreKeys(Vec<PreKey>),
    /// Signal key changes in one atomic batch: sessions, peer identities, consumed one-time
    /// prekeys (always in the same batch as the session built from them), sender keys,
    /// sender-key memory and device lists. Precedes any ciphertext that depends on them.
    Keys(Vec<KeyChange>),
    /// A decrypted message and the key changes that decrypted it, durable in ONE commit
    /// before the [`Event::Message`] and the delivery receipt that follow it.
    Received {
        /// The ratchet/prekey/sender-key changes of the decryption.
        keys: Vec<KeyChange>,
        /// The message as the application will see it.
        message: Box<ReceivedMessage>,
    },
}

/// An event for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A QR string to show; a new one follows each time the ref rotates.
    Qr(String),
    /// A pair code to type on the phone, grouped `XXXX-XXXX`.
    PairCode(String),
    /// Pairing completed (creds already persisted); a 515 restart follows.
    Paired {
        /// Our new device JID.
        jid: String,
    },
    /// `<success>`: logged in.
    LoggedIn,
    /// The offline queue was delivered (`<ib><offline count=…/>`); the connection is ready.
    Ready {
        /// Stanzas the server had queued.
        offline: u32,
    },
    /// A message was decrypted and is already durable (it was in the preceding
    /// `Delta::Received`, added with the messaging path); the receipt follows.
    Message(Box<ReceivedMessage>),
    /// A message we sent changed status (server ack, delivery/read receipt, failure).
    Status(StatusUpdate),
    /// The stanza of message `id` (started by `Client::send_text`) was handed to the driver
    /// just before this event; its ratchet state was persisted before it.
    Relayed {
        /// Our message id.
        id: String,
        /// The chat it went to.
        chat: String,
    },
    /// A send could not finish for a passing reason (the server did not answer in time, the
    /// connection is not logged in): nothing left; the caller should try again later with the
    /// same id. No [`Event::Status`] follows.
    SendDeferred {
        /// Our message id.
        id: String,
    },
}

/// A decrypted inbound message as the application sees it (serialised into webhooks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceivedMessage {
    /// WhatsApp message id (unique per sender).
    pub id: String,
    /// The chat: the peer's user JID for 1:1, the group JID for groups.
    pub chat: String,
    /// The sending device JID (`user:device@server`; our own for messages sent from our phone).
    pub sender: String,
    /// True when one of our own devices sent it (a device-sent copy).
    pub from_me: bool,
    /// The text (conversation or extended text); `None` for content we do not render yet.
    pub text: Option<String>,
    /// Server timestamp (unix seconds).
    pub timestamp: u64,
    /// Delivered from the offline queue.
    pub offline: bool,
    /// The sender's push name, when the stanza carried one.
    pub push_name: Option<String>,
}

/// Where a message we sent stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
#[non_exhaustive]
pub enum MessageStatus {
    /// The server accepted the stanza (`<ack class=message>` without error).
    Sent,
    /// A recipient device received it.
    Delivered,
    /// A recipient read it.
    Read,
    /// A recipient played it (voice/video).
    Played,
    /// The server or the protocol refused it for good; the text says why.
    Failed(String),
}

/// A status change of one message we sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatusUpdate {
    /// Our message id.
    pub id: String,
    /// The chat it was sent to.
    pub chat: String,
    /// The device that reported it (receipts), if any.
    pub from: Option<String>,
    /// The new status.
    pub status: MessageStatus,
}

/// One instruction for the driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Output {
    /// Commit this before handling any later output (STYLE §3 barrier).
    Persist(Delta),
    /// Send these bytes as one binary WebSocket message.
    Send(Vec<u8>),
    /// Tell the application.
    Event(Event),
    /// Close the socket; the connection is over for this reason.
    Close(DisconnectReason),
}
