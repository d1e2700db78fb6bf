//! The symmetric primitives Signal uses (protocol/10-signal.md §5, §7): HMAC-SHA256, RFC 5869
//! HKDF-SHA256 with an absent (= zero) salt, chain-key steps, message-key derivation and
//! AES-256-CBC with PKCS#7. Pure functions over byte arrays; no state, no randomness.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::SignalError;

type HmacSha256 = Hmac<Sha256>;

/// AES block size; CBC ciphertexts are a non-zero multiple of it.
const BLOCK: usize = 16;

/// HMAC-SHA256 with a 32-byte key over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // RFC 2104 pads a short key with zeros to the 64-byte block: doing it here makes the
    // constructor infallible (`new_from_slice` would return a never-taken error).
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&(*block).into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256 extract-and-expand; `salt = None` means 32 zero bytes (libsignal's `Buffer.alloc(32)`).
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let zero = [0u8; 32];
    let hk = Hkdf::<Sha256>::new(Some(salt.unwrap_or(&zero)), ikm);
    // Outputs here are at most 80 bytes, far below HKDF's 255 * 32 limit.
    if hk.expand(info, out).is_err() {
        unreachable!("hkdf output length is a small constant");
    }
}

/// A symmetric chain key with its index (pairwise chains and sender-key chains alike).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainKey {
    pub(crate) key: [u8; 32],
    pub(crate) index: u32,
}

impl ChainKey {
    /// Seed of the message key at `self.index`: `HMAC(chainKey, 0x01)`.
    pub(crate) fn message_seed(&self) -> [u8; 32] {
        hmac(&self.key, &[&[1]])
    }

    /// The chain key at `index + 1`: `HMAC(chainKey, 0x02)`.
    pub(crate) fn next(&self) -> Self {
        Self { key: hmac(&self.key, &[&[2]]), index: self.index.wrapping_add(1) }
    }
}

/// Pairwise message keys: `HKDF(seed, "WhisperMessageKeys", 80)` → cipher key, MAC key, IV.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct MessageKeys {
    pub(crate) cipher: [u8; 32],
    pub(crate) mac: [u8; 32],
    pub(crate) iv: [u8; 16],
}

impl MessageKeys {
    pub(crate) fn derive(seed: &[u8; 32]) -> Self {
        let mut okm = [0u8; 80];
        hkdf(None, seed, b"WhisperMessageKeys", &mut okm);
        let mut keys = Self { cipher: [0; 32], mac: [0; 32], iv: [0; 16] };
        keys.cipher.copy_from_slice(&okm[..32]);
        keys.mac.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..80]);
        okm.zeroize();
        keys
    }
}

/// Sender-key message keys: `HKDF(seed, "WhisperGroup", 48)` → IV first, then cipher key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct GroupMessageKeys {
    pub(crate) iv: [u8; 16],
    pub(crate) cipher: [u8; 32],
}

impl GroupMessageKeys {
    pub(crate) fn derive(seed: &[u8; 32]) -> Self {
        let mut okm = [0u8; 48];
        hkdf(None, seed, b"WhisperGroup", &mut okm);
        let mut keys = Self { iv: [0; 16], cipher: [0; 32] };
        keys.iv.copy_from_slice(&okm[..16]);
        keys.cipher.copy_from_slice(&okm[16..48]);
        okm.zeroize();
        keys
    }
}

/// AES-256-CBC encryption with PKCS#7 padding.
pub(crate) fn aes_cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

/// AES-256-CBC decryption; a bad length or bad padding is an error.
pub(crate) fn aes_cbc_decrypt(
    key: &[u8; 32],
    iv: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SignalError> {
    let len = ciphertext.len();
    if len == 0 || !len.is_multiple_of(BLOCK) {
        return Err(SignalError::BadCiphertext { len });
    }
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| SignalError::BadCiphertext { len })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AES-256-CBC matches NIST SP 800-38A F.2.5 (first block; padding adds one block).
    #[test]
    fn cbc_nist_vector() {
        let key: [u8; 32] = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap().try_into().unwrap();
        let pt = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        let ct = aes_cbc_encrypt(&key, &iv, &pt);
        assert_eq!(hex::encode(&ct[..16]), "f58c4c04d6e5f1ba779eabfb5f7bfbd6");
        assert_eq!(ct.len(), 32);
        assert_eq!(aes_cbc_decrypt(&key, &iv, &ct).unwrap(), pt);
    }

    /// Bad lengths and bad padding are typed errors.
    #[test]
    fn cbc_rejects_bad_input() {
        let (k, iv) = ([1u8; 32], [2u8; 16]);
        assert!(matches!(aes_cbc_decrypt(&k, &iv, &[]), Err(SignalError::BadCiphertext { len: 0 })));
        assert!(matches!(aes_cbc_decrypt(&k, &iv, &[0; 15]), Err(SignalError::BadCiphertext { .. })));
        let mut ct = aes_cbc_encrypt(&k, &iv, b"hello");
        ct[15] ^= 1;
        assert!(aes_cbc_decrypt(&k, &iv, &ct).is_err());
    }

    /// HKDF with no salt equals HKDF with 32 zero bytes of salt (RFC 5869 HMAC key padding).
    #[test]
    fn hkdf_no_salt_is_zero_salt() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        hkdf(None, b"ikm", b"info", &mut a);
        let hk = Hkdf::<Sha256>::new(None, b"ikm");
        hk.expand(b"info", &mut b).unwrap();
        assert_eq!(a, b);
    }
}
