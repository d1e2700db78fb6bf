//! Pairwise Signal operations on a [`SessionRecord`]: start a session from a bundle, encrypt,
//! and decrypt `msg` / `pkmsg`. Each takes the caller's record by reference, works on a copy,
//! and returns the new record plus the [`SignalDelta`]s to commit; on error nothing changed.
//! Trust is on first use (like Baileys): a new identity key is reported as `IdentityPut`.

use rand_core::CryptoRngCore;

use super::address::SignalAddress;
use super::delta::SignalDelta;
use super::error::SignalError;
use super::keys::{LocalIdentity, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord};
use super::record::SessionRecord;
use super::wire::{PreKeySignalMessage, SignalMessage};
use super::x3dh;

/// Which `<enc type>` a ciphertext is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// `pkmsg`: a PreKeySignalMessage (the session is not yet acknowledged by the peer).
    PreKey,
    /// `msg`: a SignalMessage.
    Whisper,
}

impl MessageKind {
    /// The `type` attribute of `<enc>`.
    pub fn enc_type(self) -> &'static str {
        match self {
            Self::PreKey => "pkmsg",
            Self::Whisper => "msg",
        }
    }
}

/// Result of [`encrypt`].
pub struct Encrypted {
    /// `pkmsg` or `msg`.
    pub kind: MessageKind,
    /// The `<enc>` content.
    pub ciphertext: Vec<u8>,
    /// The advanced record (also inside `deltas`).
    pub record: SessionRecord,
    /// Commit before the ciphertext leaves the process.
    pub deltas: Vec<SignalDelta>,
}

/// Result of a decrypt.
pub struct Decrypted {
    /// The plaintext (still WA-padded; the message layer unpads).
    pub plaintext: Vec<u8>,
    /// The advanced record (also inside `deltas`).
    pub record: SessionRecord,
    /// Commit before acking the message or handing it to the application.
    pub deltas: Vec<SignalDelta>,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("kind", &self.kind)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("deltas", &self.deltas)
            .finish_non_exhaustive()
    }
}

/// Prints lengths only: plaintexts are personal data.
impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("deltas", &self.deltas)
            .finish_non_exhaustive()
    }
}

fn session_put(address: &SignalAddress, record: &SessionRecord) -> SignalDelta {
    SignalDelta::SessionPut { address: address.clone(), record: record.encode() }
}

/// Starts a session with `address` from its fetched bundle (X3DH initiator). An open session in
/// `record` is archived. Draws the base key then the first ratchet key from `rng`.
///
/// # Errors
/// [`SignalError::BadSignature`] when the signed prekey does not verify under the identity key;
/// [`SignalError::LowOrderKey`] for a degenerate key.
pub fn process_bundle(
    local: &LocalIdentity,
    address: &SignalAddress,
    record: Option<&SessionRecord>,
    bundle: &PreKeyBundle,
    rng: &mut impl CryptoRngCore,
) -> Result<(SessionRecord, Vec<SignalDelta>), SignalError> {
    let state = x3dh::initiate(local, bundle, rng)?;
    let mut next = record.cloned().unwrap_or_default();
    next.promote(state);
    let deltas = vec![
        SignalDelta::IdentityPut { address: address.clone(), key: bundle.identity_key },
        session_put(address, &next),
    ];
    Ok((next, deltas))
}

/// Encrypts `plaintext` for `address` with the current session: a `pkmsg` until the peer has
/// answered, then `msg`.
///
/// # Errors
/// [`SignalError::NoSession`] without a current session, [`SignalError::NoSendingChain`] for a
/// responder state that has not received yet.
pub fn encrypt(
    address: &SignalAddress,
    record: &SessionRecord,
    plaintext: &[u8],
) -> Result<Encrypted, SignalError> {
    let mut state = record.current.clone().ok_or(SignalError::NoSession)?;
    let msg = state.encrypt(plaintext)?;
    let (kind, ciphertext) = match &state.pending_pre_key {
        Some(p) => (
            MessageKind::PreKey,
            PreKeySignalMessage::encode(
                p.pre_key_id,
                p.signed_pre_key_id,
                state.local_registration_id,
                &p.base_key,
                &state.local_identity,
                msg.serialized(),
            ),
        ),
        None => (MessageKind::Whisper, msg.into_serialized()),
    };
    let next = SessionRecord { current: Some(state), previous: record.previous.clone() };
    let deltas = vec![session_put(address, &next)];
    Ok(Encrypted { kind, ciphertext, record: next, deltas })
}

/// Decrypts a `msg` (SignalMessage) from `address`, trying the current session and then the
/// archived ones. May draw one ratchet key from `rng`.
///
/// # Errors
/// A parse error, or [`SignalError::NoSession`] / [`SignalError::NoMatchingSession`] (whose
/// source is [`SignalError::Duplicate`] when any state already used this counter, else the
/// current session's error, e.g. [`SignalError::BadMac`]).
pub fn decrypt_message(
    address: &SignalAddress,
    record: &SessionRecord,
    ciphertext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Decrypted, SignalError> {
    let msg = SignalMessage::decode(ciphertext)?;
    let states = record.current.iter().chain(record.previous.iter());
    let mut first_err = None;
    let mut tried = 0;
    for (i, state) in states.enumerate() {
        tried += 1;
        let mut attempt = state.clone();
        match attempt.decrypt(&msg, rng) {
            Ok(plaintext) => {
                let mut next = record.clone();
                let slot = if record.current.is_some() { i.checked_sub(1) } else { Some(i) };
                match slot {
                    None => next.current = Some(attempt),
                    Some(j) => {
                        if let Some(s) = next.previous.get_mut(j) {
                            *s = attempt;
                        }
                    }
                }
                let deltas = vec![session_put(address, &next)];
                return Ok(Decrypted { plaintext, record: next, deltas });
            }
            // A state that already used this counter marks a redelivery, whatever the
            // other states say (the current one may have moved on after a newer session).
            Err(e) if e.is_duplicate() => first_err = Some(e),
            Err(e) => {
                if !first_err.as_ref().is_some_and(SignalError::is_duplicate) {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(SignalError::NoMatchingSession { tried, source: Box::new(e) }),
        None => Err(SignalError::NoSession),
    }
}

/// Decrypts a `pkmsg` from `address`. Parse it first ([`PreKeySignalMessage::decode`]) to load
/// the signed prekey and the one-time prekey it names. A pkmsg whose base key matches a known
/// session is decrypted with that session (a repeat before our reply); otherwise a new session
/// is built (X3DH responder), the old one archived, and the one-time prekey reported consumed
/// in the same delta batch as the session. Draws one ratchet key from `rng`.
///
/// # Errors
/// [`SignalError::SignedPreKeyMissing`] / [`SignalError::PreKeyMissing`] when the named keys
/// were not supplied, [`SignalError::MissingField`] for a first message without registration id,
/// and any decrypt error ([`SignalError::BadMac`], [`SignalError::Duplicate`], …).
pub fn decrypt_prekey_message(
    local: &LocalIdentity,
    address: &SignalAddress,
    record: Option<&SessionRecord>,
    msg: &PreKeySignalMessage,
    signed: Option<&SignedPreKeyRecord>,
    one_time: Option<&PreKeyRecord>,
    rng: &mut impl CryptoRngCore,
) -> Result<Decrypted, SignalError> {
    let existing = record
        .and_then(|r| r.current.iter().chain(r.previous.iter()).position(|s| s.base_key == msg.base_key));
    if let (Some(record), Some(_)) = (record, existing) {
        // A repeat of a pkmsg whose session we already built: same chains, no prekey needed.
        return decrypt_message(address, record, msg.message.serialized(), rng);
    }
    if record.is_none() && msg.registration_id.is_none() {
        return Err(SignalError::MissingField { what: "prekey signal message", field: "registration_id" });
    }
    let signed = signed
        .filter(|s| s.id() == msg.signed_pre_key_id)
        .ok_or(SignalError::SignedPreKeyMissing { id: msg.signed_pre_key_id })?;
    let one_time = match msg.pre_key_id {
        Some(id) => Some(one_time.filter(|p| p.id() == id).ok_or(SignalError::PreKeyMissing { id })?),
        None => None,
    };
    let mut state = x3dh::respond(local, msg, signed, one_time)?;
    let plaintext = state.decrypt(&msg.message, rng)?;
    let mut next = record.cloned().unwrap_or_default();
    next.promote(state);
    let mut deltas = vec![
        SignalDelta::IdentityPut { address: address.clone(), key: msg.identity_key },
        session_put(address, &next),
    ];
    if let Some(id) = msg.pre_key_id {
        deltas.push(SignalDelta::PreKeyConsumed { id });
    }
    Ok(Decrypted { plaintext, record: next, deltas })
}
