//! State changes produced by Signal operations. The caller (host) commits them atomically
//! before it acks a decrypted message or sends a ciphertext (ARCHITECTURE invariant 1); the
//! Signal layer never stores anything itself.

use super::address::{SenderKeyName, SignalAddress};
use super::keys::PublicKey;

/// One change to persist.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalDelta {
    /// Store (replace) the session record of `address`.
    SessionPut {
        /// The remote device.
        address: SignalAddress,
        /// [`super::SessionRecord::encode`] bytes.
        record: Vec<u8>,
    },
    /// Delete one-time prekey `id`: the session built from it is in the same batch.
    PreKeyConsumed {
        /// The prekey id.
        id: u32,
    },
    /// Store (replace) the identity key of `address` (trust on first use).
    IdentityPut {
        /// The remote device.
        address: SignalAddress,
        /// Its identity key.
        key: PublicKey,
    },
    /// Store (replace) the sender-key record of `name`.
    SenderKeyPut {
        /// Group and sender.
        name: SenderKeyName,
        /// [`super::SenderKeyRecord::encode`] bytes.
        record: Vec<u8>,
    },
}

impl std::fmt::Debug for SignalDelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SessionPut { address, record } => {
                write!(f, "SessionPut({address}, {} bytes [redacted])", record.len())
            }
            Self::PreKeyConsumed { id } => write!(f, "PreKeyConsumed({id})"),
            Self::IdentityPut { address, key } => write!(f, "IdentityPut({address}, {key:?})"),
            Self::SenderKeyPut { name, record } => {
                write!(f, "SenderKeyPut({name}, {} bytes [redacted])", record.len())
            }
        }
    }
}
