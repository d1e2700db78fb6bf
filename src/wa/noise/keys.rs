//! X25519 key material used by the Noise handshake and the certificate chain: a private key
//! wrapper that never prints itself and is wiped on drop, and a key pair. No randomness is read
//! here: callers inject an RNG or pass explicit bytes.

use std::fmt;

use rand_core::CryptoRngCore;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Length of an X25519 public or private key in bytes.
pub const KEY_LEN: usize = 32;

/// An X25519 private key. `Debug` prints `[redacted]`; the bytes are zeroized on drop.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// Wraps 32 raw private-key bytes (as stored; X25519 clamps them when used).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self(StaticSecret::from(*bytes))
    }

    /// Draws a fresh private key from the injected RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(StaticSecret::random_from_rng(rng))
    }

    /// The matching public key (Montgomery u-coordinate).
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// The raw private-key bytes, for persistence; the copy is zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// X25519 with `their_public`. Returns `None` when the result is all zeros (a low-order
    /// public key), which the handshake refuses.
    pub(crate) fn agree(&self, their_public: &[u8; KEY_LEN]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let shared = self.0.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return None;
        }
        Some(Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// An X25519 key pair whose public half is derived from the private half.
#[derive(Clone)]
pub struct KeyPair {
    private: PrivateKey,
    public: [u8; KEY_LEN],
}

impl KeyPair {
    /// Builds the pair from a private key (the public key is computed).
    pub fn from_private(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self { private, public }
    }

    /// Builds the pair from raw private-key bytes.
    pub fn from_private_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self::from_private(PrivateKey::from_bytes(bytes))
    }

    /// Draws a fresh key pair from the injected RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// The private half.
    pub fn private(&self) -> &PrivateKey {
        &self.private
    }

    /// The public half (Montgomery u-coordinate).
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &HexKey(&self.public))
            .field("private", &"[redacted]")
            .finish()
    }
}

/// Prints a public key as lowercase hex in `Debug` output.
struct HexKey<'a>(&'a [u8; KEY_LEN]);

impl fmt::Debug for HexKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Compares two byte strings without an early exit on the first difference (length is public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug output of keys never contains the private bytes.
    #[test]
    fn debug_is_redacted() {
        let kp = KeyPair::from_private_bytes([0x41; 32]);
        let dbg = format!("{kp:?} {:?}", kp.private());
        assert!(dbg.contains("[redacted]"));
        assert!(!dbg.contains("4141"));
    }

    /// Both sides of X25519 agree, and a low-order public key is refused.
    #[test]
    fn agree_and_low_order() {
        let a = KeyPair::from_private_bytes([1; 32]);
        let b = KeyPair::from_private_bytes([2; 32]);
        assert_eq!(a.private().agree(b.public()).map(|s| *s), b.private().agree(a.public()).map(|s| *s));
        assert!(a.private().agree(&[0; 32]).is_none());
    }

    /// ct_eq matches ordinary equality, including length mismatches.
    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
