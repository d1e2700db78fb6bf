//! Long-term Signal key material (protocol/10-signal.md §1–3): public keys and their `0x05`
//! wire form, the identity key pair and registration id, one-time prekeys (24-bit ids that wrap)
//! and the signed prekey (XEdDSA over `0x05 || public`), plus the bundle an initiator fetches.
//! Randomness is injected; nothing here stores anything.

use std::fmt;

use prost::Message as _;
use rand_core::CryptoRngCore;

use super::error::SignalError;
use super::storage;
use crate::wa::noise::{KeyPair, PrivateKey, xeddsa};
use crate::wa::proto;

/// Key-type byte of a Curve25519 ("DJB") public key in Signal's serialized form.
pub const KEY_TYPE_DJB: u8 = 0x05;

/// Largest one-time or signed prekey id: ids are 24-bit (3 bytes BE on the wire) and wrap to 1
/// (whatsapp-rust `MAX_PREKEY_ID`, WA Web; protocol/10-signal.md §3.1).
pub const MAX_PRE_KEY_ID: u32 = 0x00FF_FFFF;

/// Registration ids are drawn from 1..=16380 (Baileys' 14-bit form, accepted everywhere;
/// protocol/10-signal.md §2).
pub const MAX_REGISTRATION_ID: u32 = 16380;

/// A Curve25519 public key (Montgomery u-coordinate).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps the raw 32 bytes (the form binary nodes carry).
    pub fn from_raw(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses the 33-byte serialized form `0x05 || key` used inside Signal protobufs.
    ///
    /// # Errors
    /// [`SignalError::BadKey`] for another length or type byte.
    pub fn from_wire(what: &'static str, bytes: &[u8]) -> Result<Self, SignalError> {
        match bytes {
            [KEY_TYPE_DJB, rest @ ..] if rest.len() == 32 => Ok(Self(storage::key32(what, rest)?)),
            _ => Err(SignalError::BadKey { what, len: bytes.len() }),
        }
    }

    /// The raw 32 bytes.
    pub fn raw(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 33-byte serialized form `0x05 || key`.
    pub fn to_wire(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[0] = KEY_TYPE_DJB;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Checks an XEdDSA `signature` over `message` made by this key's private half.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        xeddsa::verify(&self.0, message, signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Our identity: the identity key pair and the registration id, both fixed at device creation.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    key_pair: KeyPair,
    registration_id: u32,
}

impl LocalIdentity {
    /// Draws a fresh identity key pair and registration id (once, at device creation).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let key_pair = KeyPair::generate(rng);
        Self { key_pair, registration_id: generate_registration_id(rng) }
    }

    /// Restores a stored identity.
    pub fn new(key_pair: KeyPair, registration_id: u32) -> Self {
        Self { key_pair, registration_id }
    }

    /// The identity key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// The public identity key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.key_pair.public())
    }

    /// The registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }
}

/// Draws a registration id in 1..=[`MAX_REGISTRATION_ID`].
pub fn generate_registration_id(rng: &mut impl CryptoRngCore) -> u32 {
    rng.next_u32() % MAX_REGISTRATION_ID + 1
}

/// The prekey id after `id`: 24-bit, wrapping from [`MAX_PRE_KEY_ID`] (or anything out of range) to 1.
pub fn next_pre_key_id(id: u32) -> u32 {
    if id == 0 || id >= MAX_PRE_KEY_ID { 1 } else { id + 1 }
}

/// A one-time prekey: a 24-bit id and an X25519 key pair.
#[derive(Clone, Debug)]
pub struct PreKeyRecord {
    id: u32,
    key_pair: KeyPair,
}

impl PreKeyRecord {
    /// Builds a record from its parts.
    pub fn new(id: u32, key_pair: KeyPair) -> Self {
        Self { id, key_pair }
    }

    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// Storage bytes (format byte + protobuf).
    pub fn encode(&self) -> Vec<u8> {
        let data = proto::PreKeyRecordData {
            id: Some(self.id),
            private_key: Some(self.key_pair.private().to_bytes().to_vec()),
        };
        storage::with_format(&data.encode_to_vec())
    }

    /// Parses [`PreKeyRecord::encode`] output.
    ///
    /// # Errors
    /// A typed error for a wrong format byte, a bad protobuf or a missing/short field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "prekey record";
        let data: proto::PreKeyRecordData = storage::decode_record(WHAT, bytes)?;
        let id = data.id.ok_or(SignalError::MissingField { what: WHAT, field: "id" })?;
        let private = storage::required_key(WHAT, "private_key", data.private_key.as_deref())?;
        Ok(Self { id, key_pair: KeyPair::from_private_bytes(private) })
    }
}

/// Generates `count` one-time prekeys with consecutive ids starting at `start_id` (wrapping at
/// [`MAX_PRE_KEY_ID`]). The caller persists them and advances its counter to
/// `next_pre_key_id(last id)` *before* uploading (protocol/13-what-to-persist.md §4.5).
pub fn generate_pre_keys(start_id: u32, count: u32, rng: &mut impl CryptoRngCore) -> Vec<PreKeyRecord> {
    let mut id = if start_id == 0 || start_id > MAX_PRE_KEY_ID { 1 } else { start_id };
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        out.push(PreKeyRecord { id, key_pair: KeyPair::generate(rng) });
        id = next_pre_key_id(id);
    }
    out
}

/// A signed prekey: id, key pair and the identity's XEdDSA signature over `0x05 || public`.
#[derive(Clone, Debug)]
pub struct SignedPreKeyRecord {
    id: u32,
    key_pair: KeyPair,
    signature: [u8; 64],
}

impl SignedPreKeyRecord {
    /// Generates signed prekey `id`, signed by `identity`.
    pub fn generate(identity: &LocalIdentity, id: u32, rng: &mut impl CryptoRngCore) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signed = PublicKey(*key_pair.public()).to_wire();
        let signature = xeddsa::sign_with_rng(identity.key_pair.private(), &signed, rng);
        Self { id, key_pair, signature }
    }

    /// Builds a record from stored parts.
    pub fn new(id: u32, key_pair: KeyPair, signature: [u8; 64]) -> Self {
        Self { id, key_pair, signature }
    }

    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key pair.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// The 64-byte signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Storage bytes (format byte + protobuf).
    pub fn encode(&self) -> Vec<u8> {
        let data = proto::SignedPreKeyRecordData {
            id: Some(self.id),
            private_key: Some(self.key_pair.private().to_bytes().to_vec()),
            signature: Some(self.signature.to_vec()),
        };
        storage::with_format(&data.encode_to_vec())
    }

    /// Parses [`SignedPreKeyRecord::encode`] output.
    ///
    /// # Errors
    /// A typed error for a wrong format byte, a bad protobuf or a missing/short field.
    pub fn decode(bytes: &[u8]) -> Result<Self, SignalError> {
        const WHAT: &str = "signed prekey record";
        let data: proto::SignedPreKeyRecordData = storage::decode_record(WHAT, bytes)?;
        let id = data.id.ok_or(SignalError::MissingField { what: WHAT, field: "id" })?;
        let private = storage::required_key(WHAT, "private_key", data.private_key.as_deref())?;
        let sig = data.signature.ok_or(SignalError::MissingField { what: WHAT, field: "signature" })?;
        let signature: [u8; 64] = sig
            .as_slice()
            .try_into()
            .map_err(|_| SignalError::BadKey { what: "signature", len: sig.len() })?;
        Ok(Self { id, key_pair: KeyPair::from_private_bytes(private), signature })
    }
}

/// What an initiator fetches for one remote device (protocol/10-signal.md §3.5).
#[derive(Clone, Debug)]
pub struct PreKeyBundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// The device's identity key.
    pub identity_key: PublicKey,
    /// Signed prekey id.
    pub signed_pre_key_id: u32,
    /// Signed prekey public key.
    pub signed_pre_key: PublicKey,
    /// Identity signature over `0x05 || signed_pre_key`.
    pub signed_pre_key_signature: [u8; 64],
    /// A one-time prekey `(id, public key)`, absent when the server's pool was empty.
    pub pre_key: Option<(u32, PublicKey)>,
}

impl PreKeyBundle {
    /// The bundle our own keys give (what the server hands out after an upload).
    pub fn from_local(
        identity: &LocalIdentity,
        signed: &SignedPreKeyRecord,
        one_time: Option<&PreKeyRecord>,
    ) -> Self {
        Self {
            registration_id: identity.registration_id,
            identity_key: identity.public_key(),
            signed_pre_key_id: signed.id,
            signed_pre_key: PublicKey(*signed.key_pair.public()),
            signed_pre_key_signature: signed.signature,
            pre_key: one_time.map(|p| (p.id, PublicKey(*p.key_pair.public()))),
        }
    }
}

/// X25519 agreement that refuses a low-order peer key.
pub(crate) fn agree(
    ours: &PrivateKey,
    theirs: &PublicKey,
    what: &'static str,
) -> Result<[u8; 32], SignalError> {
    ours.agree(&theirs.0).map(|s| *s).ok_or(SignalError::LowOrderKey { what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::noise::testing::SeededRng;

    /// Prekey ids are consecutive and wrap from 2^24-1 to 1, never 0.
    #[test]
    fn prekey_ids_wrap() {
        let mut rng = SeededRng::new(b"pk");
        let keys = generate_pre_keys(MAX_PRE_KEY_ID - 1, 4, &mut rng);
        let ids: Vec<u32> = keys.iter().map(PreKeyRecord::id).collect();
        assert_eq!(ids, vec![MAX_PRE_KEY_ID - 1, MAX_PRE_KEY_ID, 1, 2]);
        assert_eq!(next_pre_key_id(0), 1);
        assert_ne!(keys[0].key_pair().public(), keys[1].key_pair().public());
    }

    /// Registration ids stay in 1..=16380.
    #[test]
    fn registration_id_range() {
        let mut rng = SeededRng::new(b"reg");
        for _ in 0..2000 {
            let id = generate_registration_id(&mut rng);
            assert!((1..=MAX_REGISTRATION_ID).contains(&id));
        }
    }

    /// A generated signed prekey verifies over the 33-byte form under the identity key, and not
    /// over the bare 32 bytes.
    #[test]
    fn signed_prekey_signature() {
        let mut rng = SeededRng::new(b"spk");
        let id = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&id, 1, &mut rng);
        let public = PublicKey::from_raw(*spk.key_pair().public());
        assert!(id.public_key().verify(&public.to_wire(), spk.signature()));
        assert!(!id.public_key().verify(public.raw(), spk.signature()));
    }

    /// The 0x05 wire form round-trips; other lengths or type bytes are rejected.
    #[test]
    fn wire_form() {
        let k = PublicKey::from_raw([7; 32]);
        assert_eq!(PublicKey::from_wire("k", &k.to_wire()).unwrap(), k);
        assert!(PublicKey::from_wire("k", &k.to_wire()[1..]).is_err());
        let mut bad = k.to_wire();
        bad[0] = 0x06;
        assert!(matches!(PublicKey::from_wire("k", &bad), Err(SignalError::BadKey { len: 33, .. })));
    }

    /// Prekey and signed prekey records round-trip through storage bytes; junk is an error.
    #[test]
    fn records_round_trip() {
        let mut rng = SeededRng::new(b"rec");
        let id = LocalIdentity::generate(&mut rng);
        let pk = &generate_pre_keys(5, 1, &mut rng)[0];
        let back = PreKeyRecord::decode(&pk.encode()).unwrap();
        assert_eq!((back.id(), back.key_pair().public()), (5, pk.key_pair().public()));
        let spk = SignedPreKeyRecord::generate(&id, 3, &mut rng);
        let back = SignedPreKeyRecord::decode(&spk.encode()).unwrap();
        assert_eq!(
            (back.id(), back.signature(), back.key_pair().public()),
            (3, spk.signature(), spk.key_pair().public())
        );
        assert!(PreKeyRecord::decode(&[]).is_err());
        assert!(SignedPreKeyRecord::decode(&[1, 0xff]).is_err());
    }
}
