//! WhatsApp's Noise symmetric state (protocol/01-transport.md §4.2): handshake hash `h`, chaining
//! key `ck`, one AES-GCM key with a single counter shared by encrypt and decrypt. Built on snow's
//! SHA-256/HKDF and AES-GCM primitives because WA's message 1 never hashes its empty payload, which
//! makes snow's `HandshakeState` incompatible. Knows nothing about messages or keys' roles.

use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Hash;
use zeroize::Zeroizing;

use super::cipher::{CipherError, KeyedCipher};

/// Protocol name, exactly 32 bytes, so it is used verbatim as the initial `h`
/// (whatsmeow `NoiseStartPattern`, Baileys `NOISE_MODE`).
pub(crate) const NOISE_XX_NAME: &[u8; 32] = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0";

/// Length of SHA-256 output, `h`, `ck` and the AES-256 key.
const HASH_LEN: usize = 32;

/// Returns snow's SHA-256 implementation.
fn sha256() -> Box<dyn Hash> {
    #[expect(clippy::expect_used, reason = "Cargo.toml enables snow's use-sha2 feature")]
    DefaultResolver.resolve_hash(&snow::params::HashChoice::SHA256).expect("snow built with use-sha2")
}

/// The handshake's symmetric state.
pub(crate) struct SymmetricState {
    hash: Box<dyn Hash>,
    h: [u8; HASH_LEN],
    ck: Zeroizing<[u8; HASH_LEN]>,
    cipher: KeyedCipher,
}

impl SymmetricState {
    /// `h = ck = k = name`, `n = 0` (the name is 32 bytes, so it is not hashed).
    pub(crate) fn new(name: &[u8; HASH_LEN]) -> Self {
        Self { hash: sha256(), h: *name, ck: Zeroizing::new(*name), cipher: KeyedCipher::new(name) }
    }

    /// `h = SHA256(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.hash.reset();
        self.hash.input(&self.h);
        self.hash.input(data);
        let mut out = [0u8; HASH_LEN];
        self.hash.result(&mut out);
        self.h = out;
    }

    /// `(ck, k) = HKDF(salt = ck, ikm, info = "", 64)`, `n = 0`.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = self.hkdf2(ikm);
        self.ck = ck;
        self.cipher.rekey(&k);
    }

    /// `c = AES-GCM(k, n, aad = h, pt)`, `n += 1`, `h = SHA256(h || c)`.
    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let ad = self.h;
        let ct = self.cipher.seal(&ad, plaintext)?;
        self.mix_hash(&ct);
        Ok(ct)
    }

    /// Opens `c` at `n` with `aad = h`, `n += 1`; on success `h = SHA256(h || c)`.
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let ad = self.h;
        let pt = self.cipher.open(&ad, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(pt)
    }

    /// `(k1, k2) = HKDF(salt = ck, ikm = "", 64)`: k1 is the initiator's write key, k2 its read key.
    pub(crate) fn split(mut self) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
        self.hkdf2(&[])
    }

    /// Current handshake hash.
    #[cfg(test)]
    pub(crate) fn handshake_hash(&self) -> &[u8; HASH_LEN] {
        &self.h
    }

    fn hkdf2(&mut self, ikm: &[u8]) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
        let mut out1 = Zeroizing::new([0u8; HASH_LEN]);
        let mut out2 = Zeroizing::new([0u8; HASH_LEN]);
        let ck = self.ck.clone();
        self.hash.hkdf(&ck[..], ikm, 2, &mut out1[..], &mut out2[..], &mut []);
        (out1, out2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The name is used verbatim and MixHash is plain SHA-256(h || data).
    #[test]
    fn init_and_mix_hash() {
        let mut s = SymmetricState::new(NOISE_XX_NAME);
        assert_eq!(s.handshake_hash(), NOISE_XX_NAME);
        s.mix_hash(b"WA\x06\x03");
        let want: [u8; 32] =
            Sha256::new().chain_update(NOISE_XX_NAME).chain_update(b"WA\x06\x03").finalize().into();
        assert_eq!(s.handshake_hash(), &want);
    }

    /// MixKey is RFC 5869 HKDF-SHA256 with salt = ck and empty info (checked against a direct
    /// HMAC computation).
    #[test]
    fn mix_key_is_rfc5869_hkdf() {
        fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
            let mut k = [0u8; 64];
            k[..key.len()].copy_from_slice(key);
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::new().chain_update(&ipad).chain_update(data).finalize();
            Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
        }
        let mut s = SymmetricState::new(NOISE_XX_NAME);
        s.mix_key(b"ikm");
        let prk = hmac(NOISE_XX_NAME, b"ikm");
        let t1 = hmac(&prk, &[1]);
        assert_eq!(*s.ck, t1);
        let (a, b) = s.split();
        let prk2 = hmac(&t1, &[]);
        let s1 = hmac(&prk2, &[1]);
        assert_eq!(*a, s1);
        assert_eq!(*b, hmac(&prk2, &[s1.as_slice(), &[2]].concat()));
    }

    /// Two states fed the same inputs stay in sync; a tampered ciphertext fails and leaves h.
    #[test]
    fn encrypt_decrypt_sync() {
        let mut a = SymmetricState::new(NOISE_XX_NAME);
        let mut b = SymmetricState::new(NOISE_XX_NAME);
        a.mix_key(b"x");
        b.mix_key(b"x");
        let c1 = a.encrypt_and_hash(b"one").unwrap();
        assert_eq!(b.decrypt_and_hash(&c1).unwrap(), b"one");
        let c2 = a.encrypt_and_hash(b"two").unwrap();
        let mut bad = c2.clone();
        bad[0] ^= 0x80;
        let h_before = *b.handshake_hash();
        assert!(matches!(b.decrypt_and_hash(&bad), Err(CipherError::BadTag { counter: 1 })));
        assert_eq!(b.handshake_hash(), &h_before);
        assert_eq!(a.handshake_hash(), &{
            let mut t = SymmetricState::new(NOISE_XX_NAME);
            t.h = h_before;
            t.mix_hash(&c2);
            t.h
        });
    }
}
