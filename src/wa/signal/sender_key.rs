//! Sender keys for groups (protocol/10-signal.md §6.3–6.4, §7): our own sender key and its
//! distribution message, processing a member's distribution message, and SenderKeyMessage
//! encrypt (signed with XEdDSA) / decrypt (signature checked, bounded forward jump, bounded
//! skipped-key cache, duplicates rejected). Like the pairwise API, every function takes the
//! caller's record by reference and returns a new one plus a [`SignalDelta`].

use std::collections::VecDeque;
use std::fmt;

use prost::Message as _;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::address::SenderKeyName;
use super::delta::SignalDelta;
use super::error::SignalError;
use super::keys::PublicKey;
use super::primitives::{ChainKey, GroupMessageKeys, aes_cbc_decrypt, aes_cbc_encrypt};
use super::ratchet::{MAX_FORWARD_JUMP, MAX_SKIPPED_KEYS, SkippedKey};
use super::record::skipped_from_data;
use super::storage::{self, key32, required_key};
use super::wire::{SenderKeyDistributionMessage, SenderKeyMessage};
use crate::wa::noise::{KeyPair, PrivateKey};
use crate::wa::proto;

/// Sender-key states kept per (group, sender) (Baileys `MAX_STATES`, whatsapp-rust
/// `MAX_SENDER_KEY_STATES`).
pub const MAX_SENDER_KEY_STATES: usize = 5;

const WHAT: &str = "sender key record";

/// One sender-key chain.
#[derive(Clone)]
struct SenderKeyState {
    key_id: u32,
    chain: ChainKey,
    signing_public: PublicKey,
    signing_private: Option<PrivateKey>,
    /// Ascending iterations, at most [`MAX_SKIPPED_KEYS`].
    skipped: VecDeque<SkippedKey>,
}

impl SenderKeyState {
    /// The message-key seed for `iteration`, consuming it.
    fn take_seed(&mut self, iteration: u32) -> Result<[u8; 32], SignalError> {
        let next = self.chain.index;
        if iteration < next {
            let pos = self.skipped.iter().position(|k| k.index == iteration);
            return match pos.and_then(|p| self.skipped.remove(p)) {
                Some(k) => Ok(k.seed),
                None => Err(SignalError::Duplicate { counter: iteration, next }),
            };
        }
        if iteration - next > MAX_FORWARD_JUMP {
            return Err(SignalError::TooFarAhead { counter: iteration, next, max: MAX_FORWARD_JUMP });
        }
        while self.chain.index < iteration {
            self.skipped.push_back(SkippedKey { index: self.chain.index, seed: self.chain.message_seed() });
            self.chain = self.chain.next();
        }
        while self.skipped.len() > MAX_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        let seed = self.chain.message_seed();
        self.chain = self.chain.next();
        Ok(seed)
    }
}

/// All sender-key states of one sender in one group (newest first). For our own sender key
/// the newest state carries the signing private key.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

impl fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyRecord")
            .field("key_ids", &self.states.iter().map(|s| s.key_id).collect::<Vec<_>>())
            .field("keys", &"[redacted]")
            .finish()
    }
}

impl SenderKeyRecord {
    /// `true` when no state is stored.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    fn add_state(&mut self, state: SenderKeyState) {
        self.states.retain(|s| s.key_id != state.key_id);
        self.states.push_front(state);
        self.states.truncate(MAX_SENDER_KEY_STATES);
    }

    /// Storage bytes: format byte + protobuf.
    pub fn encode(&self) -> Vec<u8> {
        let data = proto::SenderKeyRecordData {
            states: self
                .states
                .iter()
                .map(|s| proto::SenderKeyStateData {
                    key_id: Some(s.key_id),
                    iteration: Some(s.chain.index),
                    chain_key: Some(s.chain.key.to_vec()),
                    signing_public: Some(s.signing_public.raw().to_vec()),
                    signing_private: s.signing_private.as_ref().map(|p| p.to_bytes().to_vec()),
                    skipped: s
                        .skipped
                        .iter()
                        .map(|k| proto::SkippedKeyData { index: Some(k.index), seed: Some(k.seed.to_vec()) })
                        .collect(),
                })
                .collect(),
        };
        let mut out = Vec::with_capacity(data.encoded_len() + 1);
        out.push(storage::RECORD_FORMAT);
        data.encode_raw(&mut out);
        out
    }

    /// Parses [`SenderKeyRecord::encode`] output.
    ///
    /// # Errors
    /// A typed error for a wrong format byte, a bad protobuf, or a missing or malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        let data: proto::SenderKeyRecordData = storage::decode_record(WHAT, bytes)?;
        let mut states = VecDeque::with_capacity(data.states.len().min(MAX_SENDER_KEY_STATES));
        for s in data.states.into_iter().take(MAX_SENDER_KEY_STATES) {
            let signing_private =
                s.signing_private.as_deref().map(|p| key32("signing_private", p)).transpose()?;
            states.push_back(SenderKeyState {
                key_id: s.key_id.ok_or(SignalError::MissingField { what: WHAT, field: "key_id" })?,
                chain: ChainKey {
                    key: required_key(WHAT, "chain_key", s.chain_key.as_deref())?,
                    index: s.iteration.unwrap_or(0),
                },
                signing_public: PublicKey::from_raw(required_key(
                    WHAT,
                    "signing_public",
                    s.signing_public.as_deref(),
                )?),
                signing_private: signing_private.map(PrivateKey::from_bytes),
                skipped: s.skipped.into_iter().map(skipped_from_data).collect::<Result<_, _>>()?,
            });
        }
        Ok(Self { states })
    }
}

/// Our sender key for `name` (creating it when `record` has none of ours) and the distribution
/// message to send pairwise to members that lack it. A new key gets a random 31-bit id, a random
/// chain key at iteration 0 and a fresh signing key pair.
pub fn create_distribution_message(
    name: &SenderKeyName,
    record: Option<&SenderKeyRecord>,
    rng: &mut impl CryptoRngCore,
) -> (SenderKeyDistributionMessage, SenderKeyRecord, Vec<SignalDelta>) {
    let mut next = record.cloned().unwrap_or_default();
    let own = next.states.front().filter(|s| s.signing_private.is_some()).cloned();
    let state = match own {
        Some(s) => s,
        None => {
            let key_id = rng.next_u32() & 0x7FFF_FFFF;
            let mut key = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut key[..]);
            let signing = KeyPair::generate(rng);
            let state = SenderKeyState {
                key_id,
                chain: ChainKey { key: *key, index: 0 },
                signing_public: PublicKey::from_raw(*signing.public()),
                signing_private: Some(signing.private().clone()),
                skipped: VecDeque::new(),
            };
            next.add_state(state.clone());
            state
        }
    };
    let skdm = SenderKeyDistributionMessage {
        key_id: state.key_id,
        iteration: state.chain.index,
        chain_key: state.chain.key,
        signing_key: state.signing_public,
    };
    let deltas = vec![SignalDelta::SenderKeyPut { name: name.clone(), record: next.encode() }];
    (skdm, next, deltas)
}

/// Stores a member's sender key from its distribution message (replacing a state with the same
/// key id; at most [`MAX_SENDER_KEY_STATES`] kept).
pub fn process_distribution_message(
    name: &SenderKeyName,
    record: Option<&SenderKeyRecord>,
    skdm: &SenderKeyDistributionMessage,
) -> (SenderKeyRecord, Vec<SignalDelta>) {
    let mut next = record.cloned().unwrap_or_default();
    next.add_state(SenderKeyState {
        key_id: skdm.key_id,
        chain: ChainKey { key: skdm.chain_key, index: skdm.iteration },
        signing_public: skdm.signing_key,
        signing_private: None,
        skipped: VecDeque::new(),
    });
    let deltas = vec![SignalDelta::SenderKeyPut { name: name.clone(), record: next.encode() }];
    (next, deltas)
}

/// Result of a group encrypt or decrypt.
pub struct GroupOutput {
    /// Ciphertext (`skmsg` content) after encrypt; plaintext after decrypt.
    pub bytes: Vec<u8>,
    /// The advanced record (also inside `deltas`).
    pub record: SenderKeyRecord,
    /// Commit before the ciphertext leaves / before the message is acked.
    pub deltas: Vec<SignalDelta>,
}

/// Prints lengths only: plaintexts are personal data.
impl fmt::Debug for GroupOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupOutput")
            .field("bytes_len", &self.bytes.len())
            .field("deltas", &self.deltas)
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` with our sender key for `name` (iterations are consecutive; Baileys'
/// skip-one quirk is not copied). Draws 64 bytes of signature randomness from `rng`.
///
/// # Errors
/// [`SignalError::NoOwnSenderKey`] when `record` holds no state with a signing private key.
pub fn group_encrypt(
    name: &SenderKeyName,
    record: &SenderKeyRecord,
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<GroupOutput, SignalError> {
    let mut next = record.clone();
    let state = next.states.front_mut().ok_or(SignalError::NoOwnSenderKey)?;
    let signing = state.signing_private.clone().ok_or(SignalError::NoOwnSenderKey)?;
    let iteration = state.chain.index;
    let keys = GroupMessageKeys::derive(&state.chain.message_seed());
    state.chain = state.chain.next();
    let ciphertext = aes_cbc_encrypt(&keys.cipher, &keys.iv, plaintext);
    let mut random = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut random[..]);
    let msg = SenderKeyMessage::build(&signing, state.key_id, iteration, ciphertext, &random);
    let deltas = vec![SignalDelta::SenderKeyPut { name: name.clone(), record: next.encode() }];
    Ok(GroupOutput { bytes: msg.into_serialized(), record: next, deltas })
}

/// Decrypts a `skmsg` from the sender of `name`.
///
/// # Errors
/// A parse error, [`SignalError::NoSenderKey`] (no distribution message for that key id yet),
/// [`SignalError::BadSignature`], [`SignalError::Duplicate`], [`SignalError::TooFarAhead`] or a
/// ciphertext error. The record is unchanged on error.
pub fn group_decrypt(
    name: &SenderKeyName,
    record: &SenderKeyRecord,
    ciphertext: &[u8],
) -> Result<GroupOutput, SignalError> {
    let msg = SenderKeyMessage::decode(ciphertext)?;
    let mut next = record.clone();
    let state = next
        .states
        .iter_mut()
        .find(|s| s.key_id == msg.key_id)
        .ok_or(SignalError::NoSenderKey { id: msg.key_id })?;
    if !msg.verify(&state.signing_public) {
        return Err(SignalError::BadSignature { what: "sender key message" });
    }
    let seed = state.take_seed(msg.iteration)?;
    let keys = GroupMessageKeys::derive(&seed);
    let plaintext = aes_cbc_decrypt(&keys.cipher, &keys.iv, &msg.ciphertext)?;
    let deltas = vec![SignalDelta::SenderKeyPut { name: name.clone(), record: next.encode() }];
    Ok(GroupOutput { bytes: plaintext, record: next, deltas })
}
