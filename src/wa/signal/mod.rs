//! The Signal protocol as WhatsApp uses it (protocol/10-signal.md): identity and prekeys,
//! X3DH, the double ratchet with bounded skipped keys and archived sessions, and sender keys for
//! groups — byte-compatible with libsignal-node (Baileys) and checked against its vectors.
//!
//! Sans-IO and persist-friendly: every operation takes the caller's records by reference and
//! returns new records plus [`SignalDelta`]s for the host to commit *before* it acks or sends
//! (ARCHITECTURE invariant 1). A failed operation changes nothing. Randomness is injected
//! (`&mut impl CryptoRngCore`). No IO, no clock, no OS RNG, no JID parsing here.
//!
//! Call order for the message layer (protocol/13-what-to-persist.md §4):
//! - device creation: [`LocalIdentity::generate`], [`SignedPreKeyRecord::generate`]; prekey
//!   refill: [`generate_pre_keys`] from the stored next id, persist, *then* upload;
//! - send 1:1: without a session, [`process_bundle`] with the fetched [`PreKeyBundle`]; then
//!   [`encrypt`] → commit `deltas` → send `<enc type=kind.enc_type()>`;
//! - receive `pkmsg`: [`PreKeySignalMessage::decode`] → load the signed prekey and the one-time
//!   prekey it names → [`decrypt_prekey_message`] → commit `deltas` (session put and prekey
//!   delete in one batch) → hand to the app → ack. `msg`: [`decrypt_message`], same commit rule;
//!   [`SignalError::is_duplicate`] marks redeliveries;
//! - groups: [`create_distribution_message`] (send the SKDM pairwise), [`group_encrypt`];
//!   receivers [`process_distribution_message`], [`group_decrypt`].

mod address;
mod delta;
mod error;
mod keys;
mod primitives;
mod ratchet;
mod record;
mod sender_key;
mod session;
mod storage;
#[doc(hidden)]
pub mod testing;
mod wire;
mod x3dh;

#[cfg(test)]
mod tests;

pub use address::{SenderKeyName, SignalAddress};
pub use delta::SignalDelta;
pub use error::SignalError;
pub use keys::{
    KEY_TYPE_DJB, LocalIdentity, MAX_PRE_KEY_ID, MAX_REGISTRATION_ID, PreKeyBundle, PreKeyRecord, PublicKey,
    SignedPreKeyRecord, generate_pre_keys, generate_registration_id, next_pre_key_id,
};
pub use ratchet::{MAX_FORWARD_JUMP, MAX_RECEIVING_CHAINS, MAX_SKIPPED_KEYS};
pub use record::{MAX_PREVIOUS_SESSIONS, SessionRecord};
pub use sender_key::{
    GroupOutput, MAX_SENDER_KEY_STATES, SenderKeyRecord, create_distribution_message, group_decrypt,
    group_encrypt, process_distribution_message,
};
pub use session::{
    Decrypted, Encrypted, MessageKind, decrypt_message, decrypt_prekey_message, encrypt, process_bundle,
};
pub use wire::{
    MAC_LEN, MESSAGE_VERSION, PreKeySignalMessage, SIGNATURE_LEN, SenderKeyDistributionMessage, VERSION_BYTE,
};
