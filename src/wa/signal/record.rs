//! The session record of one remote device: the current session state plus up to
//! [`MAX_PREVIOUS_SESSIONS`] archived ones (tried on decrypt, newest first), and its storage
//! encoding (format byte + `SessionRecordData` protobuf). Decoding a corrupt record is a typed
//! error. No IO: the caller stores the bytes.

use std::collections::VecDeque;
use std::fmt;

use prost::Message as _;

use super::error::SignalError;
use super::keys::PublicKey;
use super::primitives::ChainKey;
use super::ratchet::{PendingPreKey, ReceivingChain, SessionState, SkippedKey};
use super::storage::{self, key32, required_key};
use crate::wa::noise::KeyPair;
use crate::wa::proto;

/// Archived session states kept per record (libsignal-node `CLOSED_SESSIONS_MAX`).
pub const MAX_PREVIOUS_SESSIONS: usize = 40;

const WHAT: &str = "session record";

/// All Signal sessions with one remote device. Values are immutable from the caller's point of
/// view: operations take `&SessionRecord` and return a new record on success.
#[derive(Clone, Default)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    /// Newest first.
    pub(crate) previous: VecDeque<SessionState>,
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("has_current", &self.current.is_some())
            .field("previous", &self.previous.len())
            .field("keys", &"[redacted]")
            .finish()
    }
}

impl SessionRecord {
    /// `true` when there is a current session to encrypt with.
    pub fn has_current_session(&self) -> bool {
        self.current.is_some()
    }

    /// The remote identity key of the current session.
    pub fn remote_identity(&self) -> Option<PublicKey> {
        self.current.as_ref().map(|s| s.remote_identity)
    }

    /// The remote registration id of the current session.
    pub fn remote_registration_id(&self) -> Option<u32> {
        self.current.as_ref().map(|s| s.remote_registration_id)
    }

    /// Number of archived session states.
    pub fn previous_session_count(&self) -> usize {
        self.previous.len()
    }

    /// Makes `state` current, archiving the old current state (oldest archives evicted).
    pub(crate) fn promote(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.previous.push_front(old);
            self.previous.truncate(MAX_PREVIOUS_SESSIONS);
        }
    }

    /// Storage bytes: format byte + protobuf.
    pub fn encode(&self) -> Vec<u8> {
        let data = proto::SessionRecordData {
            current: self.current.as_ref().map(state_to_data),
            previous: self.previous.iter().map(state_to_data).collect(),
        };
        let mut out = Vec::with_capacity(data.encoded_len() + 1);
        out.push(storage::RECORD_FORMAT);
        data.encode_raw(&mut out);
        out
    }

    /// Parses [`SessionRecord::encode`] output.
    ///
    /// # Errors
    /// A typed error for a wrong format byte, a bad protobuf, or a missing or malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        let data: proto::SessionRecordData = storage::decode_record(WHAT, bytes)?;
        let current = data.current.map(state_from_data).transpose()?;
        let mut previous = VecDeque::with_capacity(data.previous.len().min(MAX_PREVIOUS_SESSIONS));
        for s in data.previous.into_iter().take(MAX_PREVIOUS_SESSIONS) {
            previous.push_back(state_from_data(s)?);
        }
        Ok(Self { current, previous })
    }
}

fn skipped_to_data(k: &SkippedKey) -> proto::SkippedKeyData {
    proto::SkippedKeyData { index: Some(k.index), seed: Some(k.seed.to_vec()) }
}

pub(crate) fn skipped_from_data(k: proto::SkippedKeyData) -> Result<SkippedKey, SignalError> {
    Ok(SkippedKey {
        index: k.index.ok_or(SignalError::MissingField { what: "skipped key", field: "index" })?,
        seed: required_key("skipped key", "seed", k.seed.as_deref())?,
    })
}

fn state_to_data(s: &SessionState) -> proto::SessionStateData {
    proto::SessionStateData {
        version: Some(3),
        local_identity: Some(s.local_identity.raw().to_vec()),
        remote_identity: Some(s.remote_identity.raw().to_vec()),
        local_registration_id: Some(s.local_registration_id),
        remote_registration_id: Some(s.remote_registration_id),
        root_key: Some(s.root_key.to_vec()),
        our_ratchet_private: Some(s.our_ratchet.private().to_bytes().to_vec()),
        their_ratchet_key: Some(s.their_ratchet.raw().to_vec()),
        sending: s.sending.as_ref().map(|c| proto::SendingChainData {
            ratchet_private: None,
            chain_key: Some(c.key.to_vec()),
            next_index: Some(c.index),
        }),
        previous_counter: Some(s.previous_counter),
        receiving: s
            .receiving
            .iter()
            .map(|c| proto::ReceivingChainData {
                their_ratchet_key: Some(c.their_key.raw().to_vec()),
                chain_key: c.chain.as_ref().map(|k| k.key.to_vec()),
                next_index: Some(c.next_index),
                skipped: c.skipped.iter().map(skipped_to_data).collect(),
            })
            .collect(),
        pending_pre_key: s.pending_pre_key.as_ref().map(|p| proto::PendingPreKeyData {
            pre_key_id: p.pre_key_id,
            signed_pre_key_id: Some(p.signed_pre_key_id),
            base_key: Some(p.base_key.raw().to_vec()),
        }),
        base_key: Some(s.base_key.raw().to_vec()),
    }
}

fn public(field: &'static str, bytes: Option<&[u8]>) -> Result<PublicKey, SignalError> {
    required_key(WHAT, field, bytes).map(PublicKey::from_raw)
}

fn state_from_data(d: proto::SessionStateData) -> Result<SessionState, SignalError> {
    let mut receiving = Vec::with_capacity(d.receiving.len());
    for c in d.receiving {
        let next_index = c.next_index.unwrap_or(0);
        let chain = c.chain_key.as_deref().map(|k| key32("chain key", k)).transpose()?;
        let skipped = c.skipped.into_iter().map(skipped_from_data).collect::<Result<_, _>>()?;
        receiving.push(ReceivingChain {
            their_key: public("their_ratchet_key", c.their_ratchet_key.as_deref())?,
            chain: chain.map(|key| ChainKey { key, index: next_index }),
            next_index,
            skipped,
        });
    }
    let sending = match d.sending {
        Some(c) => Some(ChainKey {
            key: required_key(WHAT, "sending.chain_key", c.chain_key.as_deref())?,
            index: c.next_index.unwrap_or(0),
        }),
        None => None,
    };
    let pending_pre_key = match d.pending_pre_key {
        Some(p) => Some(PendingPreKey {
            pre_key_id: p.pre_key_id,
            signed_pre_key_id: p
                .signed_pre_key_id
                .ok_or(SignalError::MissingField { what: WHAT, field: "pending.signed_pre_key_id" })?,
            base_key: public("pending.base_key", p.base_key.as_deref())?,
        }),
        None => None,
    };
    Ok(SessionState {
        local_identity: public("local_identity", d.local_identity.as_deref())?,
        remote_identity: public("remote_identity", d.remote_identity.as_deref())?,
        local_registration_id: d.local_registration_id.unwrap_or(0),
        remote_registration_id: d.remote_registration_id.unwrap_or(0),
        root_key: required_key(WHAT, "root_key", d.root_key.as_deref())?,
        our_ratchet: KeyPair::from_private_bytes(required_key(
            WHAT,
            "our_ratchet_private",
            d.our_ratchet_private.as_deref(),
        )?),
        their_ratchet: public("their_ratchet_key", d.their_ratchet_key.as_deref())?,
        sending,
        previous_counter: d.previous_counter.unwrap_or(0),
        receiving,
        pending_pre_key,
        base_key: public("base_key", d.base_key.as_deref())?,
    })
}
