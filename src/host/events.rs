//! What tenant actors tell the rest of the host about a tenant (connection changes, QR and
//! pair codes, received messages, message status): the [`TenantEvent`] type and the
//! [`EventSink`] it is published to (the webhook dispatcher in production, a recorder in tests).
//!
//! Contract: [`EventSink::publish`] never blocks and never fails the caller; an actor publishes
//! after the state behind the event is durable (a received message is in the store's inbox
//! before [`TenantEvent::MessageReceived`] is published). No protocol or storage logic here.

use serde::Serialize;

use super::state::TenantState;
use crate::types::TenantId;
use crate::wa::client::{ReceivedMessage, StatusUpdate};

/// One thing that happened to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", content = "data")]
#[non_exhaustive]
pub enum TenantEvent {
    /// The tenant's lifecycle state changed.
    #[serde(rename = "connection.update")]
    Connection {
        /// The new state.
        state: TenantState,
        /// Why (disconnect reason, error), when there is one.
        detail: Option<String>,
    },
    /// A new QR string to show.
    #[serde(rename = "qr.updated")]
    Qr {
        /// The QR payload.
        qr: String,
    },
    /// A pair code to type on the phone.
    #[serde(rename = "pair_code.updated")]
    PairCode {
        /// `XXXX-XXXX`.
        code: String,
    },
    /// A message was received and is durable in the tenant's inbox under `inbox_id`.
    #[serde(rename = "message.received")]
    MessageReceived {
        /// The inbox item holding it (delete it once delivered).
        inbox_id: String,
        /// The message.
        message: ReceivedMessage,
    },
    /// A message we sent changed status.
    #[serde(rename = "message.status")]
    MessageStatus(StatusUpdate),
    /// A received message could not be stored for good (the store rejected it, e.g. over a
    /// size limit): it was acknowledged to WhatsApp so it is not redelivered forever, and it is
    /// lost with `reason`. Not in the inbox (delivered best effort, like `connection.update`).
    #[serde(rename = "message.failed")]
    MessageFailed {
        /// WhatsApp message id.
        id: String,
        /// Chat JID.
        chat: String,
        /// Sender JID.
        sender: String,
        /// Message time (unix seconds).
        timestamp: u64,
        /// Why it could not be kept.
        reason: String,
    },
    /// The tenant's durable inbox reached its cap: new inbound messages are not acknowledged
    /// (WhatsApp keeps and redelivers them) until deliveries or acks free space.
    #[serde(rename = "tenant.inbox_full")]
    InboxFull {
        /// Undelivered items now.
        messages: u64,
        /// Their stored bytes.
        bytes: u64,
        /// The item cap.
        max_messages: u64,
        /// The byte cap.
        max_bytes: u64,
    },
}

impl TenantEvent {
    /// The event name (the webhook body's `event`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connection { .. } => "connection.update",
            Self::Qr { .. } => "qr.updated",
            Self::PairCode { .. } => "pair_code.updated",
            Self::MessageReceived { .. } => "message.received",
            Self::MessageStatus(_) => "message.status",
            Self::MessageFailed { .. } => "message.failed",
            Self::InboxFull { .. } => "tenant.inbox_full",
        }
    }
}

/// Where tenant events go. Implementations must return at once (queue internally).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Publishes one event of `tenant`.
    fn publish(&self, tenant: &TenantId, event: TenantEvent);
}

/// The default sink: events are only logged at debug level.
#[derive(Debug, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn publish(&self, tenant: &TenantId, event: TenantEvent) {
        tracing::debug!(tenant = %tenant, event = event.name(), "tenant event");
    }
}
