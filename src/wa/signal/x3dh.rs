//! X3DH session agreement, both sides (protocol/10-signal.md §4): the initiator's state from a
//! fetched [`PreKeyBundle`], and the responder's state from a [`PreKeySignalMessage`] plus its
//! signed and (optional) one-time prekey. Key generation order matches libsignal-node (base key
//! first, then the first ratchet key), so seeded RNGs replay its vectors.

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use super::error::SignalError;
use super::keys::{LocalIdentity, PreKeyBundle, PreKeyRecord, PublicKey, SignedPreKeyRecord, agree};
use super::primitives::{ChainKey, hkdf};
use super::ratchet::{PendingPreKey, SessionState, root_step};
use super::wire::PreKeySignalMessage;
use crate::wa::noise::KeyPair;

/// `HKDF(salt = none, ikm = 0xFF*32 || DH1..DH4[5], info = "WhisperText", 64)` → root key. The
/// second half (the X3DH chain key) is not needed: the initiator steps the root immediately and
/// the responder cannot send before receiving (same choice as libsignal-node).
fn derive_root(agreements: &[[u8; 32]]) -> [u8; 32] {
    let mut secret = Zeroizing::new(Vec::with_capacity(32 * (agreements.len() + 1)));
    secret.extend_from_slice(&[0xFF; 32]);
    for a in agreements {
        secret.extend_from_slice(a);
    }
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(None, &secret, b"WhisperText", &mut okm[..]);
    let mut root = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    root
}

/// Initiator side: verifies the signed prekey, generates the base key then the first ratchet
/// key, and returns a state that sends prekey messages until the first reply.
pub(crate) fn initiate(
    local: &LocalIdentity,
    bundle: &PreKeyBundle,
    rng: &mut impl CryptoRngCore,
) -> Result<SessionState, SignalError> {
    if !bundle.identity_key.verify(&bundle.signed_pre_key.to_wire(), &bundle.signed_pre_key_signature) {
        return Err(SignalError::BadSignature { what: "signed prekey" });
    }
    let base = KeyPair::generate(rng);
    let ratchet = KeyPair::generate(rng);
    let spk = &bundle.signed_pre_key;
    let mut agreements = Zeroizing::new(vec![
        agree(local.key_pair().private(), spk, "signed prekey")?,
        agree(base.private(), &bundle.identity_key, "identity key")?,
        agree(base.private(), spk, "signed prekey")?,
    ]);
    if let Some((_, opk)) = &bundle.pre_key {
        agreements.push(agree(base.private(), opk, "one-time prekey")?);
    }
    let root = Zeroizing::new(derive_root(&agreements));
    let (root, send) = root_step(&root, ratchet.private(), spk)?;
    let base_key = PublicKey::from_raw(*base.public());
    Ok(SessionState {
        local_identity: local.public_key(),
        remote_identity: bundle.identity_key,
        local_registration_id: local.registration_id(),
        remote_registration_id: bundle.registration_id,
        root_key: root,
        our_ratchet: ratchet,
        their_ratchet: *spk,
        sending: Some(ChainKey { key: send, index: 0 }),
        previous_counter: 0,
        receiving: Vec::new(),
        pending_pre_key: Some(PendingPreKey {
            pre_key_id: bundle.pre_key.as_ref().map(|(id, _)| *id),
            signed_pre_key_id: bundle.signed_pre_key_id,
            base_key,
        }),
        base_key,
    })
}

/// Responder side: the state before the first message is decrypted (its ratchet key is the
/// signed prekey; the first decrypt performs the DH-ratchet step).
pub(crate) fn respond(
    local: &LocalIdentity,
    msg: &PreKeySignalMessage,
    signed: &SignedPreKeyRecord,
    one_time: Option<&PreKeyRecord>,
) -> Result<SessionState, SignalError> {
    let spk = signed.key_pair().private();
    let mut agreements = Zeroizing::new(vec![
        agree(spk, &msg.identity_key, "identity key")?,
        agree(local.key_pair().private(), &msg.base_key, "base key")?,
        agree(spk, &msg.base_key, "base key")?,
    ]);
    if let Some(opk) = one_time {
        agreements.push(agree(opk.key_pair().private(), &msg.base_key, "base key")?);
    }
    Ok(SessionState {
        local_identity: local.public_key(),
        remote_identity: msg.identity_key,
        local_registration_id: local.registration_id(),
        remote_registration_id: msg.registration_id.unwrap_or(0),
        root_key: derive_root(&agreements),
        our_ratchet: signed.key_pair().clone(),
        their_ratchet: msg.base_key,
        sending: None,
        previous_counter: 0,
        receiving: Vec::new(),
        pending_pre_key: None,
        base_key: msg.base_key,
    })
}
