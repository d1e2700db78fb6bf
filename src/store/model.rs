//! The persisted data model: [`Creds`], typed key references ([`KeyRef`]), the tenant
//! [`TenantStatus`] doc, outbox and inbox items, lifecycle events and the [`Delta`]/[`DeltaBatch`] the
//! core produces. Plain serde types; no IO and no encryption here (see `store::crypt`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

use crate::types::{FencingToken, TenantId};

/// Bytes that must never be logged: `Debug` prints `[redacted]`, memory is wiped on drop.
/// Serialises as standard base64.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps `bytes` (takes ownership, so no unwiped copy is left behind by us).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Do not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = B64.encode(&self.0);
        let r = s.serialize_str(&text);
        text.zeroize();
        r
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut text = String::deserialize(d)?;
        let r = B64.decode(text.as_bytes()).map(Self).map_err(serde::de::Error::custom);
        text.zeroize();
        r
    }
}

/// Serde helpers: `Vec<u8>` as base64 text (compact in JSON, readable in the console).
pub(crate) mod b64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }

    /// `Option<Vec<u8>>` as optional base64 text.
    pub(crate) mod opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&B64.encode(b)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            text.map(|t| B64.decode(t.as_bytes()).map_err(serde::de::Error::custom)).transpose()
        }
    }
}

/// An X25519 (or Curve25519 Signal) key pair; the private half is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// Public key bytes.
    pub public: Vec<u8>,
    /// Private key bytes.
    pub private: SecretBytes,
}

/// The current signed prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKey {
    /// Prekey id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key (64 bytes).
    pub signature: Vec<u8>,
}

/// Our own account identity after pairing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    /// Own device JID (phone-number form), as a string.
    pub jid: String,
    /// Own LID JID, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid: Option<String>,
}

/// Everything needed to reconnect without re-pairing (protocol/13 §1). Written rarely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Noise static key pair.
    pub noise_key: KeyPair,
    /// Signal identity key pair.
    pub identity_key: KeyPair,
    /// Signal registration id.
    pub registration_id: u32,
    /// Current signed prekey.
    pub signed_pre_key: SignedPreKey,
    /// ADV secret (32 bytes, HMAC key used while pairing).
    pub adv_secret: SecretBytes,
    /// Own JIDs, set at pair-success.
    pub me: Option<Me>,
    /// ADVSignedDeviceIdentity bytes (opaque; sent with every pkmsg).
    pub account: Option<Vec<u8>>,
    /// Platform reported at pairing.
    pub platform: Option<String>,
    /// Push name.
    pub push_name: Option<String>,
    /// Next one-time prekey id to generate.
    pub next_pre_key_id: u32,
    /// First prekey id not yet uploaded.
    pub first_unuploaded_pre_key_id: u32,
    /// Latest app-state sync key id (hex), if any.
    pub my_app_state_key_id: Option<String>,
    /// Edge routing info from the server (reconnect hint).
    pub routing_info: Option<Vec<u8>>,
    /// Last props hash.
    pub last_prop_hash: Option<String>,
}

/// The non-secret part of [`Creds`], stored as plain fields (readable in the console).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredsPublic {
    pub(crate) registration_id: u32,
    #[serde(with = "b64")]
    pub(crate) noise_public: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) identity_public: Vec<u8>,
    pub(crate) signed_pre_key_id: u32,
    #[serde(with = "b64")]
    pub(crate) signed_pre_key_public: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) signed_pre_key_signature: Vec<u8>,
    #[serde(default)]
    pub(crate) me: Option<Me>,
    #[serde(default, with = "b64::opt")]
    pub(crate) account: Option<Vec<u8>>,
    #[serde(default)]
    pub(crate) platform: Option<String>,
    #[serde(default)]
    pub(crate) push_name: Option<String>,
    pub(crate) next_pre_key_id: u32,
    pub(crate) first_unuploaded_pre_key_id: u32,
    #[serde(default)]
    pub(crate) my_app_state_key_id: Option<String>,
    #[serde(default, with = "b64::opt")]
    pub(crate) routing_info: Option<Vec<u8>>,
    #[serde(default)]
    pub(crate) last_prop_hash: Option<String>,
}

/// The secret part of [`Creds`]; serialised, then sealed as one encrypted field.
#[derive(Serialize, Deserialize)]
pub(crate) struct CredsSecret {
    pub(crate) noise_private: SecretBytes,
    pub(crate) identity_private: SecretBytes,
    pub(crate) signed_pre_key_private: SecretBytes,
    pub(crate) adv_secret: SecretBytes,
}

impl Creds {
    /// Splits into the plain part and the secret part.
    pub(crate) fn split(&self) -> (CredsPublic, CredsSecret) {
        (
            CredsPublic {
                registration_id: self.registration_id,
                noise_public: self.noise_key.public.clone(),
                identity_public: self.identity_key.public.clone(),
                signed_pre_key_id: self.signed_pre_key.id,
                signed_pre_key_public: self.signed_pre_key.key_pair.public.clone(),
                signed_pre_key_signature: self.signed_pre_key.signature.clone(),
                me: self.me.clone(),
                account: self.account.clone(),
                platform: self.platform.clone(),
                push_name: self.push_name.clone(),
                next_pre_key_id: self.next_pre_key_id,
                first_unuploaded_pre_key_id: self.first_unuploaded_pre_key_id,
                my_app_state_key_id: self.my_app_state_key_id.clone(),
                routing_info: self.routing_info.clone(),
                last_prop_hash: self.last_prop_hash.clone(),
            },
            CredsSecret {
                noise_private: self.noise_key.private.clone(),
                identity_private: self.identity_key.private.clone(),
                signed_pre_key_private: self.signed_pre_key.key_pair.private.clone(),
                adv_secret: self.adv_secret.clone(),
            },
        )
    }

    /// Joins the two stored parts back.
    pub(crate) fn join(p: CredsPublic, s: CredsSecret) -> Self {
        Self {
            noise_key: KeyPair { public: p.noise_public, private: s.noise_private },
            identity_key: KeyPair { public: p.identity_public, private: s.identity_private },
            registration_id: p.registration_id,
            signed_pre_key: SignedPreKey {
                id: p.signed_pre_key_id,
                key_pair: KeyPair { public: p.signed_pre_key_public, private: s.signed_pre_key_private },
                signature: p.signed_pre_key_signature,
            },
            adv_secret: s.adv_secret,
            me: p.me,
            account: p.account,
            platform: p.platform,
            push_name: p.push_name,
            next_pre_key_id: p.next_pre_key_id,
            first_unuploaded_pre_key_id: p.first_unuploaded_pre_key_id,
            my_app_state_key_id: p.my_app_state_key_id,
            routing_info: p.routing_info,
            last_prop_hash: p.last_prop_hash,
        }
    }
}

/// The kind of a key-store entry; its name is the doc-id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyKind {
    /// One-time prekey.
    PreKey,
    /// Signed prekey (kept after rotation).
    SignedPreKey,
    /// Pairwise Signal session.
    Session,
    /// Peer identity key.
    Identity,
    /// Group sender key.
    SenderKey,
    /// Devices that already hold our sender key for a group.
    SenderKeyMemory,
    /// App-state sync key.
    AppStateSyncKey,
    /// App-state collection version + LTHash.
    AppStateVersion,
    /// LID ↔ phone-number mapping.
    LidMapping,
    /// Cached device list of a user.
    DeviceList,
    /// Privacy (tc) token of a user.
    TcToken,
    /// A message we sent, kept for retry receipts (bounded by the core).
    SentMessage,
}

impl KeyKind {
    /// Every kind, longest name first within shared prefixes (used by the doc-id parser).
    pub const ALL: [Self; 12] = [
        Self::SenderKeyMemory,
        Self::SenderKey,
        Self::SignedPreKey,
        Self::PreKey,
        Self::Session,
        Self::Identity,
        Self::AppStateSyncKey,
        Self::AppStateVersion,
        Self::LidMapping,
        Self::DeviceList,
        Self::TcToken,
        Self::SentMessage,
    ];

    /// The stable storage name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreKey => "pre-key",
            Self::SignedPreKey => "signed-pre-key",
            Self::Session => "session",
            Self::Identity => "identity",
            Self::SenderKey => "sender-key",
            Self::SenderKeyMemory => "sender-key-memory",
            Self::AppStateSyncKey => "app-state-sync-key",
            Self::AppStateVersion => "app-state-version",
            Self::LidMapping => "lid-mapping",
            Self::DeviceList => "device-list",
            Self::TcToken => "tc-token",
            Self::SentMessage => "sent-message",
        }
    }
}

/// A typed reference to one key-store entry. Its [`doc_id`](Self::doc_id) is the stable
/// storage key `{kind}-{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyRef {
    /// One-time prekey by id.
    PreKey(u32),
    /// Signed prekey by id.
    SignedPreKey(u32),
    /// Session by Signal address (e.g. `123@lid.0`).
    Session(String),
    /// Identity key by Signal address.
    Identity(String),
    /// Sender key of `sender` (address) in `group`.
    SenderKey {
        /// Group JID.
        group: String,
        /// Sender's Signal address.
        sender: String,
    },
    /// Sender-key distribution memory of a group.
    SenderKeyMemory(String),
    /// App-state sync key by id (hex).
    AppStateSyncKey(String),
    /// App-state version of a collection.
    AppStateVersion(String),
    /// LID mapping by user.
    LidMapping(String),
    /// Device list by user.
    DeviceList(String),
    /// Privacy token by user.
    TcToken(String),
    /// A sent message by message id.
    SentMessage(String),
}

/// A doc id that does not name a known key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRefError {
    /// No known kind prefix (data written by a newer version, or tampering).
    #[error("doc id {0:?} has no known key kind")]
    UnknownKind(String),
    /// The id part does not decode.
    #[error("doc id {0:?} has a malformed id part")]
    BadId(String),
}

/// Bytes kept verbatim in doc ids; everything else becomes `%XX`. This keeps ids legal in
/// Firestore (no `/`, never `.`/`..`, never `__x__`) and makes escaping deterministic.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@' | b':' | b'+' | b'=' | b',')
}

/// Escapes one id component deterministically (`.` is escaped too, so `.`/`..` cannot occur).
pub(crate) fn escape_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`escape_component`]; `None` if malformed.
pub(crate) fn unescape_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if is_plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let text = String::from_utf8(out).ok()?;
    // Only the canonical form parses, so each KeyRef has exactly one doc id.
    (escape_component(&text) == s).then_some(text)
}

impl KeyRef {
    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::PreKey(_) => KeyKind::PreKey,
            Self::SignedPreKey(_) => KeyKind::SignedPreKey,
            Self::Session(_) => KeyKind::Session,
            Self::Identity(_) => KeyKind::Identity,
            Self::SenderKey { .. } => KeyKind::SenderKey,
            Self::SenderKeyMemory(_) => KeyKind::SenderKeyMemory,
            Self::AppStateSyncKey(_) => KeyKind::AppStateSyncKey,
            Self::AppStateVersion(_) => KeyKind::AppStateVersion,
            Self::LidMapping(_) => KeyKind::LidMapping,
            Self::DeviceList(_) => KeyKind::DeviceList,
            Self::TcToken(_) => KeyKind::TcToken,
            Self::SentMessage(_) => KeyKind::SentMessage,
        }
    }

    /// The id part (escaped), without the kind prefix.
    fn id_part(&self) -> String {
        match self {
            Self::PreKey(id) | Self::SignedPreKey(id) => id.to_string(),
            Self::SenderKey { group, sender } => {
                format!("{}~{}", escape_component(group), escape_component(sender))
            }
            Self::Session(s)
            | Self::Identity(s)
            | Self::SenderKeyMemory(s)
            | Self::AppStateSyncKey(s)
            | Self::AppStateVersion(s)
            | Self::LidMapping(s)
            | Self::DeviceList(s)
            | Self::TcToken(s)
            | Self::SentMessage(s) => escape_component(s),
        }
    }

    /// The stable document id / storage key: `{kind}-{escaped id}`.
    pub fn doc_id(&self) -> String {
        format!("{}-{}", self.kind().as_str(), self.id_part())
    }

    /// Parses a doc id produced by [`doc_id`](Self::doc_id).
    pub fn parse_doc_id(doc_id: &str) -> Result<Self, KeyRefError> {
        let (kind, rest) = KeyKind::ALL
            .iter()
            .find_map(|k| doc_id.strip_prefix(k.as_str()).and_then(|r| r.strip_prefix('-')).map(|r| (*k, r)))
            .ok_or_else(|| KeyRefError::UnknownKind(doc_id.to_owned()))?;
        let bad = || KeyRefError::BadId(doc_id.to_owned());
        let num = |r: &str| -> Result<u32, KeyRefError> {
            let n: u32 = r.parse().map_err(|_| bad())?;
            if n.to_string() == r { Ok(n) } else { Err(bad()) }
        };
        let text = |r: &str| unescape_component(r).ok_or_else(bad);
        Ok(match kind {
            KeyKind::PreKey => Self::PreKey(num(rest)?),
            KeyKind::SignedPreKey => Self::SignedPreKey(num(rest)?),
            KeyKind::Session => Self::Session(text(rest)?),
            KeyKind::Identity => Self::Identity(text(rest)?),
            KeyKind::SenderKey => {
                let (g, s) = rest.split_once('~').ok_or_else(bad)?;
                Self::SenderKey { group: text(g)?, sender: text(s)? }
            }
            KeyKind::SenderKeyMemory => Self::SenderKeyMemory(text(rest)?),
            KeyKind::AppStateSyncKey => Self::AppStateSyncKey(text(rest)?),
            KeyKind::AppStateVersion => Self::AppStateVersion(text(rest)?),
            KeyKind::LidMapping => Self::LidMapping(text(rest)?),
            KeyKind::DeviceList => Self::DeviceList(text(rest)?),
            KeyKind::TcToken => Self::TcToken(text(rest)?),
            KeyKind::SentMessage => Self::SentMessage(text(rest)?),
        })
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.doc_id())
    }
}

/// Lifecycle state shown in the status doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkState {
    /// Never linked (or keys cleared and no link requested).
    #[default]
    Unlinked,
    /// A link was requested; waiting for QR scan / pair code.
    Pairing,
    /// Linked; creds stored.
    Linked,
    /// Connected right now.
    Connected,
    /// Linked but disconnected.
    Disconnected,
    /// The phone removed the device (401); keys cleared.
    LoggedOut,
    /// The account is banned (403).
    Banned,
    /// Linked; a connection attempt is under way (host).
    Connecting,
    /// Linked; waiting before the next attempt (host reconnect policy).
    Backoff,
    /// Another process holds the lease (the host that does not own it never writes this; kept
    /// for completeness of the host's state names).
    HeldElsewhere,
    /// The tenant's state failed to load or the server refused it for good; see the events.
    Error,
    /// The server refused the client version (405); waits for a restart with a newer one.
    Outdated,
    /// A value written by a newer version.
    #[serde(other)]
    Unknown,
}

/// The presence a tenant announces after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceType {
    /// Online: the phone stops showing notifications while the gateway is connected.
    Available,
    /// Offline (default): the phone keeps its notifications.
    Unavailable,
}

/// The last disconnect of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDisconnect {
    /// Disconnect code (e.g. 401, 440, 515).
    pub code: u32,
    /// Reason text.
    pub reason: String,
    /// When (unix milliseconds).
    pub at: u64,
}

/// The human-readable status doc of a tenant (no secrets). The lease lives beside it but is
/// written only by the lease operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TenantStatus {
    /// Lifecycle state.
    #[serde(default)]
    pub state: LinkState,
    /// Own JID, if linked.
    #[serde(default)]
    pub me: Option<String>,
    /// Push name announced with `<presence>` after login (API field `push_name`; when absent,
    /// the name learned at pairing).
    #[serde(default)]
    pub push_name: Option<String>,
    /// Presence sent after login (API field `presence`; absent: `unavailable`).
    #[serde(default)]
    pub presence: Option<PresenceType>,
    /// When the tenant was linked (unix ms).
    #[serde(default)]
    pub linked_at: Option<u64>,
    /// Last successful connect (unix ms).
    #[serde(default)]
    pub last_connected_at: Option<u64>,
    /// Last disconnect.
    #[serde(default)]
    pub last_disconnect: Option<LastDisconnect>,
    /// Reconnect counter.
    #[serde(default)]
    pub reconnects: u64,
    /// Every device JID this tenant has ever registered (orphan detection).
    #[serde(default)]
    pub devices_registered: Vec<String>,
    /// Last update (unix ms).
    #[serde(default)]
    pub updated_at: u64,
    /// Where this tenant's events are posted (given at creation; an http/https URL).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of the tenant's webhook signatures (generated at creation, shown once).
    #[serde(default)]
    pub webhook_secret: Option<SecretBytes>,
    /// Per-tenant pacing overrides of the outbox (host defaults when absent).
    #[serde(default)]
    pub pacing: Option<Box<PacingOverride>>,
    /// A `DELETE` was accepted: the tenant is being logged out and purged. Written durably
    /// before the API answers; a restart finishes the purge (without reconnecting) instead of
    /// bringing the tenant back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

impl TenantStatus {
    /// Applies an operator-config patch to this status (the fields the patch names only).
    pub fn apply(&mut self, patch: &ConfigPatch) {
        if let Some(u) = &patch.webhook_url {
            self.webhook_url.clone_from(u);
        }
        if let Some(s) = &patch.webhook_secret {
            self.webhook_secret = Some(s.clone());
        }
        if let Some(p) = &patch.pacing {
            self.pacing = p.map(Box::new);
        }
        if let Some(n) = &patch.push_name {
            self.push_name.clone_from(n);
        }
        if let Some(p) = patch.presence {
            self.presence = Some(p);
        }
        if let Some(d) = patch.deleting {
            self.deleting = d;
        }
    }

    /// Copies the operator-config fields (webhook url and secret, pacing, presence, deleting)
    /// from `from`,
    /// keeping this status's runtime fields: what a runtime status write leaves untouched.
    pub fn keep_config_of(&mut self, from: &Self) {
        self.webhook_url.clone_from(&from.webhook_url);
        self.webhook_secret.clone_from(&from.webhook_secret);
        self.pacing.clone_from(&from.pacing);
        self.presence = from.presence;
        self.deleting = from.deleting;
    }
}

/// A change of a tenant's operator config (written only by API calls, never by the tenant's
/// actor): each `Some` field is set, each `None` field is left as stored, so two instances
/// patching different fields never undo each other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPatch {
    /// New webhook URL (`Some(None)` clears it).
    pub webhook_url: Option<Option<String>>,
    /// New webhook signing secret.
    pub webhook_secret: Option<SecretBytes>,
    /// New pacing overrides (`Some(None)` clears them).
    pub pacing: Option<Option<PacingOverride>>,
    /// New push name (`Some(None)`: back to the one learned at pairing). Also a runtime field
    /// (learned at pairing), so runtime writes carry it too.
    pub push_name: Option<Option<String>>,
    /// New presence announced after login.
    pub presence: Option<PresenceType>,
    /// Marks (or unmarks) the tenant as being deleted.
    pub deleting: Option<bool>,
}

impl ConfigPatch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.webhook_url.is_none()
            && self.webhook_secret.is_none()
            && self.pacing.is_none()
            && self.push_name.is_none()
            && self.presence.is_none()
            && self.deleting.is_none()
    }
}

/// What `Store::rekey` did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Sealed values found (creds, keys, outbox, inbox, webhook secret).
    pub values: usize,
    /// Values re-sealed under the current key by this run.
    pub resealed: usize,
    /// Stale values left as they were because they changed while being re-sealed (a rerun
    /// picks them up; a concurrent writer seals with its own current key).
    pub skipped: usize,
    /// Values found per key id before this run (`plaintext` for unencrypted envelopes).
    pub by_key_id: BTreeMap<String, usize>,
}

impl RekeyReport {
    /// Counts one value found with envelope `sealed`.
    pub(crate) fn saw(&mut self, sealed: &[u8]) {
        self.values += 1;
        let kid = super::crypt::Keyring::key_id_of(sealed).unwrap_or("plaintext").to_owned();
        *self.by_key_id.entry(kid).or_default() += 1;
    }
}

/// A tenant lease as stored: holder, epoch (= fencing token), expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Holder id (process instance); empty after release.
    pub holder: String,
    /// Epoch: the fencing token commits must carry.
    pub epoch: u64,
    /// Expiry (unix ms, the store's lease clock: Firestore's server time on Firestore, the
    /// host's wall clock on the single-process backends); 0 after release.
    pub expires_at: u64,
}

impl Lease {
    /// The fencing token of this lease.
    pub fn fence(&self) -> FencingToken {
        FencingToken::new(self.epoch, &self.holder)
    }

    /// Whether someone holds it at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.holder.is_empty() && self.expires_at > now_ms
    }
}

/// A queued outbound message that must survive restarts. The payload is sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Message id (unique per tenant).
    pub id: String,
    /// When it was queued (unix ms).
    pub created_at: u64,
    /// Opaque payload (the host's serialised send request).
    pub payload: SecretBytes,
}

/// An event not yet delivered to the application (the tenant's durable inbox, drained by the
/// webhook dispatcher). The payload is sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Item id (unique per tenant); ids sort in arrival order (the host generates them).
    pub id: String,
    /// When it was received (unix ms).
    pub created_at: u64,
    /// Opaque payload (the host's serialised tenant event).
    pub payload: SecretBytes,
}

/// A lifecycle event kept for humans (bounded history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// When (unix ms).
    pub at: u64,
    /// Short kind (`connected`, `logged_out`, ...).
    pub kind: String,
    /// Free text detail (no secrets, no phone numbers).
    pub detail: String,
}

/// Largest single stored value (sealed bytes) any backend accepts: Firestore's limit for one
/// field value. A bigger value is [`StoreError::Invalid`](super::StoreError::Invalid) on every
/// backend, checked before anything is written, so a batch that can never land fails the same
/// way everywhere.
pub const MAX_VALUE_BYTES: usize = 1_048_487;

/// How many events each tenant keeps.
pub const EVENTS_KEPT: usize = 50;

/// One change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delta {
    /// Replace the creds.
    CredsPut(Box<Creds>),
    /// Put one key-store value (opaque bytes serialised by the Signal layer).
    KeyPut {
        /// Which key.
        key: KeyRef,
        /// The value.
        value: SecretBytes,
    },
    /// Delete one key-store value (absent keys are fine).
    KeyDelete(KeyRef),
    /// Replace the status doc fields (the lease is untouched).
    StatusPut(TenantStatus),
    /// Queue an outbound item.
    OutboxPut(OutboxItem),
    /// Remove an outbound item by id.
    OutboxDelete(String),
    /// Add (or replace) an undelivered event in the inbox.
    InboxPut(InboxItem),
    /// Remove an inbox item by id (absent ids are fine).
    InboxDelete(String),
}

/// Deltas committed together: all or nothing, in order (a later delta on the same key wins).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeltaBatch {
    /// The deltas, in order.
    pub deltas: Vec<Delta>,
}

impl DeltaBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a delta (builder style).
    pub fn with(mut self, d: Delta) -> Self {
        self.deltas.push(d);
        self
    }

    /// Appends a delta.
    pub fn push(&mut self, d: Delta) {
        self.deltas.push(d);
    }

    /// Number of deltas.
    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }
}

/// Everything a tenant has in the store, as hydrated at start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantSnapshot {
    /// Status doc, if any.
    pub status: Option<TenantStatus>,
    /// Lease, if one was ever taken.
    pub lease: Option<Lease>,
    /// Creds, if linked.
    pub creds: Option<Creds>,
    /// All key-store entries.
    pub keys: BTreeMap<KeyRef, SecretBytes>,
    /// Queued outbound items, by id.
    pub outbox: BTreeMap<String, OutboxItem>,
    /// Undelivered events: id → stored size in bytes. Only ids and sizes: hydration never
    /// loads inbox payloads (page them with `Store::list_inbox_page` / `Store::get_inbox`), so
    /// a large inbox costs no memory at start.
    pub inbox: BTreeMap<String, u64>,
}

/// Per-tenant overrides of the host's pacing (API field `pacing`, stored in the status doc; applied by `host::outbox`);
/// every field is optional and falls back to the host default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingOverride {
    /// Sends per minute (1 ..= 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    /// Shortest gap in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_min_ms: Option<u64>,
    /// Longest gap in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_max_ms: Option<u64>,
    /// Warm-up after connect in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<u64>,
    /// Typing presence before each message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typing: Option<bool>,
}

/// One tenant's hydration result (see `Store::hydrate_all`).
pub type Hydrated = (TenantId, Result<TenantSnapshot, super::StoreError>);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Secrets never show in Debug output, even nested in creds and deltas.
    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretBytes::new(vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(format!("{s:?}"), "[redacted]");
        let d = Delta::KeyPut { key: KeyRef::Session("1@s.whatsapp.net.0".into()), value: s };
        let text = format!("{d:?}");
        assert!(text.contains("[redacted]") && !text.contains("222"), "{text}");
    }

    /// Doc ids are `{kind}-{id}`, escape illegal characters and parse back.
    #[test]
    fn doc_ids_are_stable() {
        assert_eq!(KeyRef::PreKey(7).doc_id(), "pre-key-7");
        assert_eq!(KeyRef::SignedPreKey(1).doc_id(), "signed-pre-key-1");
        assert_eq!(KeyRef::Session("123@lid.0:1".into()).doc_id(), "session-123@lid%2E0:1");
        assert_eq!(KeyRef::Session("a/b".into()).doc_id(), "session-a%2Fb");
        let sk = KeyRef::SenderKey { group: "1203@g.us".into(), sender: "5@lid.2".into() };
        assert_eq!(sk.doc_id(), "sender-key-1203@g%2Eus~5@lid%2E2");
        assert_eq!(KeyRef::parse_doc_id(&sk.doc_id()), Ok(sk));
        assert_eq!(KeyRef::parse_doc_id("sender-key-memory-g"), Ok(KeyRef::SenderKeyMemory("g".into())));
        assert!(KeyRef::parse_doc_id("pre-key-07").is_err());
        assert!(KeyRef::parse_doc_id("bogus-1").is_err());
        assert_eq!(KeyRef::SentMessage("3EB0.A".into()).doc_id(), "sent-message-3EB0%2EA");
        assert!(KeyRef::parse_doc_id("session-a.b").is_err());
    }

    fn arb_key() -> impl Strategy<Value = KeyRef> {
        let s = any::<String>();
        prop_oneof![
            any::<u32>().prop_map(KeyRef::PreKey),
            any::<u32>().prop_map(KeyRef::SignedPreKey),
            s.prop_map(KeyRef::Session),
            s.prop_map(KeyRef::Identity),
            (s, s).prop_map(|(group, sender)| KeyRef::SenderKey { group, sender }),
            s.prop_map(KeyRef::SenderKeyMemory),
            s.prop_map(KeyRef::AppStateSyncKey),
            s.prop_map(KeyRef::AppStateVersion),
            s.prop_map(KeyRef::LidMapping),
            s.prop_map(KeyRef::DeviceList),
            s.prop_map(KeyRef::TcToken),
            s.prop_map(KeyRef::SentMessage),
        ]
    }

    proptest! {
        /// Every key round-trips through its doc id, and the id is Firestore-legal.
        #[test]
        fn doc_id_roundtrip(k in arb_key()) {
            let id = k.doc_id();
            prop_assert!(!id.contains('/') && id != "." && id != ".." && !id.starts_with("__"));
            prop_assert_eq!(KeyRef::parse_doc_id(&id), Ok(k));
        }

        /// Arbitrary doc ids never panic the parser.
        #[test]
        fn parse_arbitrary_never_panics(s in any::<String>()) {
            let _ = KeyRef::parse_doc_id(&s);
        }
    }
}
