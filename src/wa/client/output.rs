//! What the client state machine asks its driver to do, in order: [`Output::Persist`] is a
//! barrier (commit it before acting on any later output), then frames, events and the close.
//!
//! Data only.

use super::creds::{Creds, PreKey};
use super::reason::DisconnectReason;

/// Something that must be durable before any later output is acted on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Delta {
    /// The whole credentials record changed (pairing, pair-code secret, pre-key counter).
    Creds(Box<Creds>),
    /// New one-time pre-keys (persist before they are uploaded).
    PreKeys(Vec<PreKey>),
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
