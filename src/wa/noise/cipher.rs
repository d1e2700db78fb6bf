//! AES-256-GCM as WhatsApp uses it, on snow's `Cipher` primitive: the post-handshake
//! [`TransportCipher`] (one per direction, 32-bit frame counter, empty AAD) and the shared
//! [`CipherError`]. No framing and no IO here.
//!
//! snow's nonce layout is 4 zero bytes + 64-bit big-endian counter; WA's is 8 zero bytes + 32-bit
//! big-endian counter. They are identical for counters below 2^32, which is all we allow
//! (protocol/01-transport.md §4.1, §4.2).

use std::fmt;

use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Cipher;
use zeroize::Zeroizing;

/// AES-GCM authentication tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Highest counter value a key may be used with (WA's IV carries a 32-bit counter).
const MAX_COUNTER: u64 = u32::MAX as u64;

/// Why an AES-GCM operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// All 2^32 nonces of this key are used up; the connection must be re-established
    /// (our side's limit, nobody misbehaved).
    #[error("cipher counter exhausted after {max} messages", max = u64::from(u32::MAX) + 1)]
    CounterExhausted,
    /// The peer sent a ciphertext shorter than the 16-byte tag (peer misbehaved or the frame
    /// was corrupted; close the connection).
    #[error("ciphertext of {len} bytes is shorter than the {TAG_LEN}-byte tag")]
    TooShort {
        /// Length of the rejected ciphertext.
        len: usize,
    },
    /// The tag did not verify under this key and counter (wrong key, tampering or a lost
    /// frame; close the connection).
    #[error("authentication tag mismatch at counter {counter}")]
    BadTag {
        /// Counter (nonce) the ciphertext was tried with.
        counter: u32,
    },
}

/// Returns snow's AES-256-GCM implementation.
pub(crate) fn aes_gcm() -> Box<dyn Cipher> {
    #[expect(clippy::expect_used, reason = "Cargo.toml enables snow's use-aes-gcm feature")]
    DefaultResolver.resolve_cipher(&snow::params::CipherChoice::AESGCM).expect("snow built with use-aes-gcm")
}

/// An AES-256-GCM key plus its nonce counter; wipes the key inside snow's cipher on drop.
pub(crate) struct KeyedCipher {
    cipher: Box<dyn Cipher>,
    /// Next counter to use; may reach `MAX_COUNTER + 1` (exhausted).
    counter: u64,
}

impl KeyedCipher {
    /// A cipher under `key` with the counter at 0.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut cipher = aes_gcm();
        cipher.set(key);
        Self { cipher, counter: 0 }
    }

    /// Replaces the key and resets the counter (Noise `MixKey`).
    pub(crate) fn rekey(&mut self, key: &[u8; 32]) {
        self.cipher.set(key);
        self.counter = 0;
    }

    /// Next counter value.
    pub(crate) fn counter(&self) -> u64 {
        self.counter
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, counter: u64) {
        self.counter = counter;
    }

    /// Seals `plaintext` with `ad` at the current counter, then advances it.
    pub(crate) fn seal(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        if self.counter > MAX_COUNTER {
            return Err(CipherError::CounterExhausted);
        }
        let mut out = vec![0u8; plaintext.len() + TAG_LEN];
        let written = self.cipher.encrypt(self.counter, ad, plaintext, &mut out);
        out.truncate(written);
        self.counter += 1;
        Ok(out)
    }

    /// Opens `ciphertext` with `ad` at the current counter. The counter advances on every
    /// attempt, successful or not: the peer spent that nonce on this frame (whatsmeow does the
    /// same; we close the connection on any failure anyway).
    pub(crate) fn open(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let Ok(counter) = u32::try_from(self.counter) else {
            return Err(CipherError::CounterExhausted);
        };
        self.counter += 1;
        let Some(pt_len) = ciphertext.len().checked_sub(TAG_LEN) else {
            return Err(CipherError::TooShort { len: ciphertext.len() });
        };
        // snow copies the ciphertext into `out` before checking the tag; the buffer is wiped on
        // failure so no unauthenticated bytes escape.
        let mut out = Zeroizing::new(vec![0u8; pt_len]);
        match self.cipher.decrypt(u64::from(counter), ad, ciphertext, &mut out) {
            Ok(n) if n == pt_len => Ok(std::mem::take(&mut *out)),
            _ => Err(CipherError::BadTag { counter }),
        }
    }
}

impl Drop for KeyedCipher {
    fn drop(&mut self) {
        // snow's cipher keeps a plain copy of the key and does not zeroize it.
        self.cipher.set(&[0u8; 32]);
    }
}

/// One direction of the post-handshake channel: AES-256-GCM with an empty AAD and a 32-bit
/// frame counter starting at 0 (protocol/01-transport.md §4.6). `Debug` never shows the key.
pub struct TransportCipher {
    inner: KeyedCipher,
}

impl TransportCipher {
    /// A transport cipher for `key` (from the handshake's split) with the counter at 0.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self { inner: KeyedCipher::new(key) }
    }

    /// Encrypts one frame payload (a stanza buffer); the result is `plaintext.len() + 16` bytes.
    ///
    /// # Errors
    /// [`CipherError::CounterExhausted`] after 2^32 frames.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        self.inner.seal(&[], plaintext)
    }

    /// Decrypts one received frame payload. The counter advances even when this fails; the
    /// caller must close the connection on any error.
    ///
    /// # Errors
    /// [`CipherError::TooShort`], [`CipherError::BadTag`] or [`CipherError::CounterExhausted`].
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        self.inner.open(&[], ciphertext)
    }

    /// Number of frames processed so far (the next counter value).
    pub fn counter(&self) -> u64 {
        self.inner.counter()
    }

    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, counter: u64) {
        self.inner.set_counter(counter);
    }
}

impl fmt::Debug for TransportCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportCipher")
            .field("counter", &self.counter())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Both directions of an established connection.
#[derive(Debug)]
pub struct Transport {
    /// Encrypts what this side sends.
    pub send: TransportCipher,
    /// Decrypts what this side receives.
    pub recv: TransportCipher,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TransportCipher, TransportCipher) {
        (TransportCipher::new(&[7; 32]), TransportCipher::new(&[7; 32]))
    }

    /// Frames round-trip in order and each one is 16 bytes longer than its plaintext.
    #[test]
    fn round_trip_in_order() {
        let (mut a, mut b) = pair();
        for i in 0..5u8 {
            let ct = a.encrypt(&[i; 10]).unwrap();
            assert_eq!(ct.len(), 26);
            assert_eq!(b.decrypt(&ct).unwrap(), vec![i; 10]);
        }
        assert_eq!(a.counter(), 5);
        assert_eq!(b.counter(), 5);
    }

    /// A flipped bit gives BadTag with the counter, and the read counter still advances.
    #[test]
    fn bad_tag_is_typed_and_counter_advances() {
        let (mut a, mut b) = pair();
        let mut ct = a.encrypt(b"hello").unwrap();
        ct[0] ^= 1;
        assert_eq!(b.decrypt(&ct), Err(CipherError::BadTag { counter: 0 }));
        assert_eq!(b.counter(), 1);
        assert_eq!(b.decrypt(&[1, 2, 3]), Err(CipherError::TooShort { len: 3 }));
        assert_eq!(b.counter(), 2);
    }

    /// Counter u32::MAX is the last usable one; afterwards both directions refuse.
    #[test]
    fn counter_exhaustion() {
        let (mut a, mut b) = pair();
        a.set_counter(u64::from(u32::MAX));
        b.set_counter(u64::from(u32::MAX));
        let ct = a.encrypt(b"last").unwrap();
        assert_eq!(b.decrypt(&ct).unwrap(), b"last");
        assert_eq!(a.encrypt(b"x"), Err(CipherError::CounterExhausted));
        assert_eq!(b.decrypt(&ct), Err(CipherError::CounterExhausted));
    }

    /// An empty plaintext encrypts to a bare 16-byte tag and decrypts back to nothing.
    #[test]
    fn empty_plaintext_is_just_a_tag() {
        let (mut a, mut b) = pair();
        let ct = a.encrypt(&[]).unwrap();
        assert_eq!(ct.len(), TAG_LEN);
        assert!(b.decrypt(&ct).unwrap().is_empty());
    }

    /// Debug output of a transport cipher does not leak key bytes.
    #[test]
    fn debug_redacted() {
        let (a, _) = pair();
        assert!(format!("{a:?}").contains("[redacted]"));
    }
}
