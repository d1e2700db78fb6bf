//! Wire codecs of the four Signal ciphertext shapes (protocol/10-signal.md §6): `0x33 ||
//! SignalMessage || MAC(8)`, `0x33 || PreKeySignalMessage`, `0x33 || SenderKeyMessage ||
//! signature(64)` and `0x33 || SenderKeyDistributionMessage`. Parsing checks lengths, the
//! version byte and key forms; MAC and signature *checks* happen where the keys are known.

use prost::Message as _;

use super::error::SignalError;
use super::keys::PublicKey;
use super::primitives::hmac;
use super::storage::key32;
use crate::wa::noise::{PrivateKey, xeddsa};
use crate::wa::proto;

/// Signal message version WhatsApp uses (libsignal "v3").
pub const MESSAGE_VERSION: u8 = 3;
/// The version byte `(3 << 4) | 3` that starts every Signal ciphertext.
pub const VERSION_BYTE: u8 = (MESSAGE_VERSION << 4) | MESSAGE_VERSION;
/// Length of the truncated HMAC-SHA256 after a SignalMessage.
pub const MAC_LEN: usize = 8;
/// Length of the XEdDSA signature after a SenderKeyMessage.
pub const SIGNATURE_LEN: usize = 64;

/// Checks the version byte: the high nibble (the message's version) must be 3.
fn check_version(what: &'static str, bytes: &[u8]) -> Result<(), SignalError> {
    match bytes.first() {
        Some(&b) if b >> 4 == MESSAGE_VERSION => Ok(()),
        Some(&byte) => Err(SignalError::Version { what, byte }),
        None => Err(SignalError::Truncated { what, len: 0 }),
    }
}

fn missing(what: &'static str, field: &'static str) -> SignalError {
    SignalError::MissingField { what, field }
}

/// A pairwise ratchet message (`<enc type="msg">`), parsed or freshly built.
#[derive(Clone, Debug)]
pub(crate) struct SignalMessage {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) counter: u32,
    pub(crate) previous_counter: u32,
    pub(crate) ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SignalMessage {
    const WHAT: &'static str = "signal message";

    /// Builds and MACs a message; `sender`/`receiver` are the two identity keys.
    pub(crate) fn build(
        mac_key: &[u8; 32],
        sender: &PublicKey,
        receiver: &PublicKey,
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        ciphertext: Vec<u8>,
    ) -> Self {
        // libsignal-node writes counter and previousCounter even when 0; Some(0) does the same.
        let body = proto::SignalMessage {
            ratchet_key: Some(ratchet_key.to_wire().to_vec()),
            counter: Some(counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext.clone()),
        };
        let mut serialized = Vec::with_capacity(body.encoded_len() + 1 + MAC_LEN);
        serialized.push(VERSION_BYTE);
        body.encode_raw(&mut serialized);
        let mac = mac(mac_key, sender, receiver, &serialized);
        serialized.extend_from_slice(&mac);
        Self { ratchet_key, counter, previous_counter, ciphertext, serialized }
    }

    /// Parses `0x33 || protobuf || mac`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(Self::WHAT, bytes)?;
        if bytes.len() < 1 + MAC_LEN {
            return Err(SignalError::Truncated { what: Self::WHAT, len: bytes.len() });
        }
        let body = bytes.get(1..bytes.len() - MAC_LEN).unwrap_or_default();
        let m = proto::SignalMessage::decode(body)
            .map_err(|source| SignalError::Protobuf { what: Self::WHAT, source })?;
        let ratchet_key = m.ratchet_key.ok_or_else(|| missing(Self::WHAT, "ratchet_key"))?;
        Ok(Self {
            ratchet_key: PublicKey::from_wire("ratchet key", &ratchet_key)?,
            counter: m.counter.unwrap_or(0),
            previous_counter: m.previous_counter.unwrap_or(0),
            ciphertext: m.ciphertext.ok_or_else(|| missing(Self::WHAT, "ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }

    /// Checks the trailing MAC in constant time.
    pub(crate) fn verify_mac(&self, mac_key: &[u8; 32], sender: &PublicKey, receiver: &PublicKey) -> bool {
        let split = self.serialized.len().saturating_sub(MAC_LEN);
        let (signed, theirs) = self.serialized.split_at(split);
        let ours = mac(mac_key, sender, receiver, signed);
        crate::wa::noise::ct_eq(&ours, theirs)
    }

    /// The complete wire bytes.
    pub(crate) fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    pub(crate) fn into_serialized(self) -> Vec<u8> {
        self.serialized
    }
}

/// `HMAC-SHA256(macKey, sender33 || receiver33 || versionByte || protobuf)[..8]`.
fn mac(mac_key: &[u8; 32], sender: &PublicKey, receiver: &PublicKey, signed: &[u8]) -> [u8; MAC_LEN] {
    let full = hmac(mac_key, &[&sender.to_wire(), &receiver.to_wire(), signed]);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// The first message(s) of a session (`<enc type="pkmsg">`): the initiator's X3DH header
/// around a complete [`SignalMessage`]. Parse it first to learn which prekeys to load.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    pub(crate) pre_key_id: Option<u32>,
    pub(crate) signed_pre_key_id: u32,
    pub(crate) registration_id: Option<u32>,
    pub(crate) base_key: PublicKey,
    pub(crate) identity_key: PublicKey,
    pub(crate) message: SignalMessage,
}

impl PreKeySignalMessage {
    const WHAT: &'static str = "prekey signal message";

    /// Parses `0x33 || protobuf`, including the inner SignalMessage.
    ///
    /// # Errors
    /// A typed error for a bad version byte, protobuf, key or missing field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(Self::WHAT, bytes)?;
        let m = proto::PreKeySignalMessage::decode(bytes.get(1..).unwrap_or_default())
            .map_err(|source| SignalError::Protobuf { what: Self::WHAT, source })?;
        let base_key = m.base_key.ok_or_else(|| missing(Self::WHAT, "base_key"))?;
        let identity_key = m.identity_key.ok_or_else(|| missing(Self::WHAT, "identity_key"))?;
        let message = m.message.ok_or_else(|| missing(Self::WHAT, "message"))?;
        Ok(Self {
            pre_key_id: m.pre_key_id,
            signed_pre_key_id: m.signed_pre_key_id.ok_or_else(|| missing(Self::WHAT, "signed_pre_key_id"))?,
            registration_id: m.registration_id,
            base_key: PublicKey::from_wire("base key", &base_key)?,
            identity_key: PublicKey::from_wire("identity key", &identity_key)?,
            message: SignalMessage::decode(&message)?,
        })
    }

    pub(crate) fn encode(
        pre_key_id: Option<u32>,
        signed_pre_key_id: u32,
        registration_id: u32,
        base_key: &PublicKey,
        identity_key: &PublicKey,
        message: &[u8],
    ) -> Vec<u8> {
        let m = proto::PreKeySignalMessage {
            pre_key_id,
            base_key: Some(base_key.to_wire().to_vec()),
            identity_key: Some(identity_key.to_wire().to_vec()),
            message: Some(message.to_vec()),
            registration_id: Some(registration_id),
            signed_pre_key_id: Some(signed_pre_key_id),
            kyber_pre_key_id: None,
            kyber_ciphertext: None,
        };
        let mut out = Vec::with_capacity(m.encoded_len() + 1);
        out.push(VERSION_BYTE);
        m.encode_raw(&mut out);
        out
    }

    /// The one-time prekey id the sender used, if any (load it before decrypting).
    pub fn pre_key_id(&self) -> Option<u32> {
        self.pre_key_id
    }

    /// The signed prekey id the sender used (load it before decrypting).
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }

    /// The sender's registration id.
    pub fn registration_id(&self) -> Option<u32> {
        self.registration_id
    }

    /// The sender's identity key (trust decisions happen before decrypting).
    pub fn identity_key(&self) -> &PublicKey {
        &self.identity_key
    }

    /// The sender's X3DH base key (identifies the session it starts).
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }
}

/// A group message (`<enc type="skmsg">`), parsed or freshly built.
#[derive(Clone, Debug)]
pub(crate) struct SenderKeyMessage {
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    pub(crate) ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SenderKeyMessage {
    const WHAT: &'static str = "sender key message";

    pub(crate) fn build(
        signing: &PrivateKey,
        key_id: u32,
        iteration: u32,
        ciphertext: Vec<u8>,
        random: &[u8; 64],
    ) -> Self {
        let body = proto::SenderKeyMessage {
            id: Some(key_id),
            iteration: Some(iteration),
            ciphertext: Some(ciphertext.clone()),
        };
        let mut serialized = Vec::with_capacity(body.encoded_len() + 1 + SIGNATURE_LEN);
        serialized.push(VERSION_BYTE);
        body.encode_raw(&mut serialized);
        let sig = xeddsa::sign(signing, &serialized, random);
        serialized.extend_from_slice(&sig);
        Self { key_id, iteration, ciphertext, serialized }
    }

    /// Parses `0x33 || protobuf || signature`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(Self::WHAT, bytes)?;
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(SignalError::Truncated { what: Self::WHAT, len: bytes.len() });
        }
        let body = bytes.get(1..bytes.len() - SIGNATURE_LEN).unwrap_or_default();
        let m = proto::SenderKeyMessage::decode(body)
            .map_err(|source| SignalError::Protobuf { what: Self::WHAT, source })?;
        Ok(Self {
            key_id: m.id.ok_or_else(|| missing(Self::WHAT, "id"))?,
            iteration: m.iteration.unwrap_or(0),
            ciphertext: m.ciphertext.ok_or_else(|| missing(Self::WHAT, "ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }

    pub(crate) fn verify(&self, signing: &PublicKey) -> bool {
        let split = self.serialized.len().saturating_sub(SIGNATURE_LEN);
        let (signed, sig) = self.serialized.split_at(split);
        let Ok(sig) = <&[u8; SIGNATURE_LEN]>::try_from(sig) else { return false };
        signing.verify(signed, sig)
    }

    pub(crate) fn into_serialized(self) -> Vec<u8> {
        self.serialized
    }
}

/// A sender key handed to a group member (inside `Message.senderKeyDistributionMessage`,
/// itself sent pairwise): the chain at `iteration` and the signing public key.
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: [u8; 32],
    pub(crate) signing_key: PublicKey,
}

impl SenderKeyDistributionMessage {
    const WHAT: &'static str = "sender key distribution message";

    /// Parses `0x33 || protobuf`.
    ///
    /// # Errors
    /// A typed error for a bad version byte, protobuf, key or missing field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(Self::WHAT, bytes)?;
        let m = proto::SenderKeyDistributionMessage::decode(bytes.get(1..).unwrap_or_default())
            .map_err(|source| SignalError::Protobuf { what: Self::WHAT, source })?;
        let chain_key = m.chain_key.ok_or_else(|| missing(Self::WHAT, "chain_key"))?;
        let signing_key = m.signing_key.ok_or_else(|| missing(Self::WHAT, "signing_key"))?;
        Ok(Self {
            key_id: m.id.ok_or_else(|| missing(Self::WHAT, "id"))?,
            iteration: m.iteration.unwrap_or(0),
            chain_key: key32("chain key", &chain_key)?,
            signing_key: PublicKey::from_wire("signing key", &signing_key)?,
        })
    }

    /// `0x33 || protobuf`, the bytes for `axolotlSenderKeyDistributionMessage`.
    pub fn encode(&self) -> Vec<u8> {
        let m = proto::SenderKeyDistributionMessage {
            id: Some(self.key_id),
            iteration: Some(self.iteration),
            chain_key: Some(self.chain_key.to_vec()),
            signing_key: Some(self.signing_key.to_wire().to_vec()),
        };
        let mut out = Vec::with_capacity(m.encoded_len() + 1);
        out.push(VERSION_BYTE);
        m.encode_raw(&mut out);
        out
    }

    /// The sender-key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The chain iteration this message hands over.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }
}

impl Drop for SenderKeyDistributionMessage {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.chain_key);
    }
}

impl std::fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"[redacted]")
            .field("signing_key", &self.signing_key)
            .finish()
    }
}
