//! The error type of the Signal layer. Peer input, stored records and API misuse fail with typed,
//! matchable variants; nothing here panics on bytes from the network or the store.

use thiserror::Error;

/// Why a Signal operation failed. A failed operation never changes the caller's state: every
/// function takes records by reference and returns new ones only on success.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Peer input: the version byte is not `0x33` (WhatsApp uses Signal message version 3).
    #[error("unsupported {what} version byte {byte:#04x}")]
    Version {
        /// Which message was parsed.
        what: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// Peer input: the message is shorter than its fixed parts (version byte, MAC or signature).
    #[error("{what} truncated: {len} bytes")]
    Truncated {
        /// Which message was parsed.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Peer input: the protobuf body does not decode.
    #[error("{what} protobuf does not decode")]
    Protobuf {
        /// Which message was parsed.
        what: &'static str,
        /// The decoder's report.
        #[source]
        source: prost::DecodeError,
    },
    /// Peer input or stored record: a required field is absent.
    #[error("{what} lacks field {field}")]
    MissingField {
        /// Which message or record was parsed.
        what: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// Peer input or stored record: a key or secret has the wrong length or type byte.
    #[error("{what} is not a valid key ({len} bytes)")]
    BadKey {
        /// Which key.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// Peer input: an X25519 agreement with the peer's key gave all zeros (low-order point).
    #[error("key agreement with {what} gave a low-order result")]
    LowOrderKey {
        /// Which key.
        what: &'static str,
    },
    /// Peer input: a signed prekey or sender-key message signature does not verify.
    #[error("{what} signature does not verify")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
    /// Peer input or wrong session: the message MAC does not verify.
    #[error("message mac does not verify")]
    BadMac,
    /// Peer input: AES-CBC ciphertext has a bad length or padding.
    #[error("ciphertext of {len} bytes does not decrypt (length or padding)")]
    BadCiphertext {
        /// Ciphertext length.
        len: usize,
    },
    /// Caller state: there is no session with this device (fetch a bundle first).
    #[error("no session")]
    NoSession,
    /// Caller state: the current session cannot send yet (responder before the first message).
    #[error("session has no sending chain")]
    NoSendingChain,
    /// Peer input: no stored session decrypts this message (each one was tried).
    #[error("no session among {tried} decrypts the message")]
    NoMatchingSession {
        /// How many session states were tried.
        tried: usize,
        /// The error of the current session (the first one tried).
        #[source]
        source: Box<Self>,
    },
    /// Peer input: the message key for this counter was already used (a duplicate or replay).
    #[error("message counter {counter} already used (chain is at {next})")]
    Duplicate {
        /// Counter (or sender-key iteration) of the message.
        counter: u32,
        /// Next counter of the chain.
        next: u32,
    },
    /// Peer input: the message is further ahead of the chain than the skip bound allows.
    #[error("message counter {counter} is more than {max} ahead of {next}")]
    TooFarAhead {
        /// Counter (or sender-key iteration) of the message.
        counter: u32,
        /// Next counter of the chain.
        next: u32,
        /// The bound.
        max: u32,
    },
    /// Peer input: the chain of this ratchet key was closed by a later ratchet step and the
    /// counter was never skipped.
    #[error("message counter {counter} on a closed chain")]
    ChainClosed {
        /// Counter of the message.
        counter: u32,
    },
    /// Caller state: the prekey message names a one-time prekey the caller did not supply
    /// (already consumed, or unknown).
    #[error("one-time prekey {id} not available")]
    PreKeyMissing {
        /// The prekey id named by the message.
        id: u32,
    },
    /// Caller state: the prekey message names a signed prekey the caller did not supply.
    #[error("signed prekey {id} not available")]
    SignedPreKeyMissing {
        /// The signed prekey id named by the message.
        id: u32,
    },
    /// Caller state: there is no sender-key state with this id for the sender (no SKDM yet).
    #[error("no sender key state with id {id}")]
    NoSenderKey {
        /// Key id of the message.
        id: u32,
    },
    /// Caller state: encryption needs our own sender key, which carries a signing private key.
    #[error("no own sender key to encrypt with")]
    NoOwnSenderKey,
    /// Stored record: the format byte is not one this build reads.
    #[error("stored {what} has format byte {byte:#04x}, expected {expected:#04x}")]
    RecordFormat {
        /// Which record.
        what: &'static str,
        /// The byte found (0 for an empty blob).
        byte: u8,
        /// The byte this build writes.
        expected: u8,
    },
}

impl SignalError {
    /// `true` when the message was already decrypted once (a redelivery after a restart or a
    /// replay): callers may drop it silently (WA's nack code 496 "old counter").
    pub fn is_duplicate(&self) -> bool {
        match self {
            Self::Duplicate { .. } => true,
            Self::NoMatchingSession { source, .. } => source.is_duplicate(),
            _ => false,
        }
    }
}
