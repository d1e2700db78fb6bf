//! What the outside world sees of a tenant and may ask of it: [`TenantState`], the
//! [`TenantView`] published on the actor's `watch` channel, and the [`TenantCommand`]s sent on
//! its bounded `mpsc`.
//!
//! Data only; the actor (`host::tenant`) owns every transition.

use serde::Serialize;
use tokio::sync::oneshot;

use crate::store::SecretBytes;
use crate::store::model::{LinkState, PacingOverride, PresenceType};
use crate::types::TenantId;

/// A tenant's lifecycle state (API `state` field; the status doc's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TenantState {
    /// No creds; waits for a link request.
    Unlinked,
    /// A link was requested: showing QR refs / waiting for the pair code.
    Linking,
    /// Linked; dialing or logging in.
    Connecting,
    /// Logged in.
    Connected,
    /// Linked; waiting before the next attempt.
    Backoff,
    /// Another live process holds the lease; not connected here.
    HeldElsewhere,
    /// The device was unlinked (401) or logged out; keys cleared; waits for a link request.
    LoggedOut,
    /// The account is banned; stopped.
    Banned,
    /// The server refused our WA Web version (405 "client outdated"); stopped until a restart
    /// with a newer `STAYLINKED_WA_VERSION` (or `auto`).
    Outdated,
    /// The tenant's state failed to load, or the server refused it for good; see `error`.
    Error,
}

impl TenantState {
    /// Every state, in API order (for metrics).
    pub const ALL: [Self; 10] = [
        Self::Unlinked,
        Self::Linking,
        Self::Connecting,
        Self::Connected,
        Self::Backoff,
        Self::HeldElsewhere,
        Self::LoggedOut,
        Self::Banned,
        Self::Outdated,
        Self::Error,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlinked => "unlinked",
            Self::Linking => "linking",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Backoff => "backoff",
            Self::HeldElsewhere => "held_elsewhere",
            Self::LoggedOut => "logged_out",
            Self::Banned => "banned",
            Self::Outdated => "outdated",
            Self::Error => "error",
        }
    }

    /// The status-doc state.
    pub fn link_state(self) -> LinkState {
        match self {
            Self::Unlinked => LinkState::Unlinked,
            Self::Linking => LinkState::Pairing,
            Self::Connecting => LinkState::Connecting,
            Self::Connected => LinkState::Connected,
            Self::Backoff => LinkState::Backoff,
            Self::HeldElsewhere => LinkState::HeldElsewhere,
            Self::LoggedOut => LinkState::LoggedOut,
            Self::Banned => LinkState::Banned,
            Self::Outdated => LinkState::Outdated,
            Self::Error => LinkState::Error,
        }
    }
}

/// The last disconnect as shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisconnectView {
    /// Code (Baileys numbering: 401, 428, 440, 515, ...).
    pub code: u16,
    /// Reason text.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// The QR currently showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrView {
    /// The raw QR string (`ref,noise,identity,adv[,type]`).
    pub qr: String,
    /// When the phone stops accepting it (unix ms).
    pub expires_at_ms: u64,
}

/// A tenant as published by its actor (cheap to clone; read by the API without touching the
/// actor or the store).
#[derive(Debug, Clone, Serialize)]
pub struct TenantView {
    /// Tenant id.
    pub id: TenantId,
    /// Lifecycle state.
    pub state: TenantState,
    /// Our device JID once linked.
    pub me: Option<String>,
    /// Webhook URL given at creation.
    pub webhook_url: Option<String>,
    /// Last disconnect.
    pub last_disconnect: Option<DisconnectView>,
    /// Last successful login (RFC 3339).
    pub last_connected_at: Option<String>,
    /// Holder of the lease when it is not us (state `held_elsewhere`), or our holder id.
    pub lease_holder: Option<String>,
    /// Our lease epoch while we hold it.
    pub lease_epoch: Option<u64>,
    /// Reconnects (logins after the first one of this tenant's history).
    pub reconnects: u64,
    /// Every device JID this tenant ever registered (orphans show up here).
    pub devices_registered: Vec<String>,
    /// Why the tenant is in `error` (or what blocks it).
    pub error: Option<String>,
    /// When the next attempt is due (state `backoff` / `held_elsewhere`), RFC 3339.
    pub retry_at: Option<String>,
    /// Next attempt due in this many milliseconds (from when the view was published).
    pub retry_in_ms: Option<u64>,
    /// Store commits that failed for this tenant (progress blocked meanwhile).
    pub commit_failures: u64,
    /// The durable inbox is at its cap: inbound messages wait at WhatsApp (not acknowledged)
    /// until deliveries or `POST /inbox/ack` free space.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inbox_full: bool,
    /// QR showing now (served by `/qr`, not in the status body).
    #[serde(skip)]
    pub qr: Option<QrView>,
    /// Pair code showing now (served by `/pair-code`).
    #[serde(skip)]
    pub pair_code: Option<String>,
    /// Per-tenant outbox pacing overrides (host defaults apply where absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<PacingOverride>,
    /// Configured push name (announced with `<presence>` after login; absent: the name
    /// learned at pairing, if any).
    pub push_name: Option<String>,
    /// Presence announced after login.
    pub presence: PresenceType,
    /// The webhook signing secret (never serialised; returned once at creation).
    #[serde(skip)]
    pub webhook_secret: Option<SecretBytes>,
}

impl TenantView {
    /// The fencing token of the lease this process holds for the tenant (epoch and holder),
    /// if it holds one.
    pub fn fence(&self) -> Option<crate::types::FencingToken> {
        Some(crate::types::FencingToken::new(self.lease_epoch?, self.lease_holder.as_deref()?))
    }

    /// A fresh view in `state`.
    pub fn new(id: TenantId, state: TenantState) -> Self {
        Self {
            id,
            state,
            me: None,
            webhook_url: None,
            last_disconnect: None,
            last_connected_at: None,
            lease_holder: None,
            lease_epoch: None,
            reconnects: 0,
            devices_registered: Vec::new(),
            error: None,
            retry_at: None,
            retry_in_ms: None,
            commit_failures: 0,
            inbox_full: false,
            qr: None,
            pair_code: None,
            pacing: None,
            push_name: None,
            presence: PresenceType::Unavailable,
            webhook_secret: None,
        }
    }
}

/// How to link a device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkMethod {
    /// Show QR codes (`GET /qr`).
    Qr,
    /// Request a pair code for this phone number (digits only).
    Code {
        /// Phone number, digits only.
        phone: String,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The tenant already has creds: linking again would create a second device.
    #[error("tenant already has a linked device")]
    AlreadyLinked,
    /// The tenant has no creds.
    #[error("tenant is not linked")]
    NotLinked,
    /// Another process holds the tenant's lease.
    #[error("tenant lease is held by {holder}")]
    LeaseHeld {
        /// The holder.
        holder: String,
    },
    /// The host is shutting down.
    #[error("host is shutting down")]
    ShuttingDown,
    /// The store failed; nothing changed.
    #[error("store failed: {0}")]
    Store(String),
    /// The tenant is not logged in right now (transient: retry later).
    #[error("tenant is not connected")]
    NotConnected,
    /// The recipient can never be sent to (permanent).
    #[error("invalid recipient: {0}")]
    InvalidRecipient(String),
}

/// A request to a tenant actor.
#[derive(Debug)]
#[non_exhaustive]
pub enum TenantCommand {
    /// Link a device (refused with [`CommandError::AlreadyLinked`] when creds exist).
    Link {
        /// QR or pair code.
        method: LinkMethod,
        /// Answered once the request is accepted (linking continues in the background).
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Unlink the device (server-side when connected) and clear keys.
    Logout {
        /// Answered when the keys are cleared.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Send a text message with a caller-chosen id (the outbox assigns it once, so a resend
    /// after a restart reuses it). Answered `Ok` once the stanza has been handed to the socket
    /// (its ratchet state already durable); [`CommandError::NotConnected`] when the tenant is not
    /// online (retry later); [`CommandError::InvalidRecipient`] for a recipient that can never work.
    SendText {
        /// Message id (see `wa::message::new_message_id`).
        id: String,
        /// Recipient: a user JID, a bare phone number or a group JID.
        to: String,
        /// The text.
        text: String,
        /// Outcome of the hand-off.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Show (or clear) the typing indicator in the chat with `to` (the outbox's optional typing
    /// presence before a message). [`CommandError::NotConnected`] when not online.
    Typing {
        /// Recipient, as for [`TenantCommand::SendText`].
        to: String,
        /// `true`: typing; `false`: stopped.
        composing: bool,
        /// Answered once the stanza is queued.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Change the tenant's webhook URL, webhook secret or pacing overrides (each `Some`
    /// replaces the stored value; the status doc is rewritten). Refused with
    /// [`CommandError::LeaseHeld`] while another process owns the tenant.
    Configure {
        /// New webhook URL (`Some(None)` removes it).
        webhook_url: Option<Option<String>>,
        /// New webhook secret.
        webhook_secret: Option<SecretBytes>,
        /// New pacing overrides (`Some(None)` returns to the host defaults).
        pacing: Option<Option<PacingOverride>>,
        /// New push name (`Some(None)`: back to the one learned at pairing); sent with
        /// `<presence>` at once when connected.
        push_name: Option<Option<String>>,
        /// New presence type sent after login.
        presence: Option<PresenceType>,
        /// Answered once the status doc is written.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Log out, clear keys and stop the actor (the tenant is then removed from the host).
    Delete {
        /// Answered when done.
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
}
