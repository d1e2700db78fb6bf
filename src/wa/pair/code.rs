//! Phone-number pairing ("link code") crypto, both sides (protocol/04-pairing-login.md §2):
//! the 8-character code, PBKDF2 + AES-256-CTR wrapping of the pairing ephemerals, the
//! HKDF/AES-GCM key bundle and the `adv_secret` derivation.
//!
//! Pure functions over byte arrays; randomness comes in as arguments. No IO, no stanzas.

use aes::Aes256;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Alphabet of the 8-character code: base32 without `0`, `I`, `O`, `U`
/// (whatsmeow `linkingBase32`, Baileys `bytesToCrockford`).
pub const CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
/// PBKDF2-HMAC-SHA256 rounds for the code key (`2 << 16`, all three clients).
pub const PBKDF2_ROUNDS: u32 = 131_072;
/// Length of a wrapped ephemeral: salt(32) ‖ iv(16) ‖ ciphertext(32).
pub const WRAPPED_EPHEMERAL_LEN: usize = 80;
/// Length of the wrapped key bundle: salt(32) ‖ nonce(12) ‖ AES-GCM(96 B) + tag(16).
pub const WRAPPED_BUNDLE_LEN: usize = 156;
/// HKDF info of the key-bundle encryption key.
const BUNDLE_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// HKDF info of the derived ADV secret.
const ADV_INFO: &[u8] = b"adv_secret";

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Everything that can go wrong in link-code crypto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairCodeError {
    /// The code is not 8 characters (after removing a `-`). Caller error.
    #[error("pair code must be 8 characters, got {len}")]
    BadCodeLength {
        /// Characters found.
        len: usize,
    },
    /// A wrapped blob has the wrong length. The peer misbehaved.
    #[error("wrapped {what} must be {want} bytes, got {got}")]
    BadLength {
        /// Which blob.
        what: &'static str,
        /// Expected length.
        want: usize,
        /// Received length.
        got: usize,
    },
    /// The key bundle did not decrypt (wrong code or tampered). The peer misbehaved.
    #[error("key bundle did not decrypt")]
    BundleDecrypt,
    /// The bundle's identity keys are not the expected ones.
    #[error("key bundle names identity keys other than the expected ones")]
    BundleIdentityMismatch,
}

/// An 8-character pairing code, stored without the dash.
#[derive(Clone, PartialEq, Eq)]
pub struct PairCode(String);

impl std::fmt::Debug for PairCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairCode([redacted])")
    }
}

impl PairCode {
    /// A fresh code from 5 random bytes (40 bits → 8 base32 characters).
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut b = [0u8; 5];
        rng.fill_bytes(&mut b);
        let v = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        let s = (0..8)
            .map(|i| {
                let idx = ((v >> (35 - 5 * i)) & 0x1f) as usize;
                char::from(CODE_ALPHABET.get(idx).copied().unwrap_or(b'1'))
            })
            .collect();
        Self(s)
    }

    /// Parses what a user typed: `ABCD-EFGH` or `ABCDEFGH`, case-insensitive.
    ///
    /// # Errors
    /// [`PairCodeError::BadCodeLength`] unless exactly 8 characters remain.
    pub fn parse(s: &str) -> Result<Self, PairCodeError> {
        let c: String =
            s.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_uppercase();
        if c.chars().count() != 8 {
            return Err(PairCodeError::BadCodeLength { len: c.chars().count() });
        }
        Ok(Self(c))
    }

    /// The 8 characters without a dash (what goes into PBKDF2, and what Baileys returns).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code grouped for display, `XXXX-XXXX`.
    pub fn grouped(&self) -> String {
        let (a, b) = self.0.split_at(self.0.len().min(4));
        format!("{a}-{b}")
    }

    fn key(&self, salt: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        pbkdf2::pbkdf2_hmac::<Sha256>(self.0.as_bytes(), salt, PBKDF2_ROUNDS, key.as_mut());
        key
    }

    /// Wraps a pairing ephemeral public key: `salt ‖ iv ‖ AES-256-CTR(PBKDF2(code, salt), iv, pub)`.
    pub fn wrap_ephemeral(
        &self,
        eph_pub: &[u8; 32],
        salt: &[u8; 32],
        iv: &[u8; 16],
    ) -> [u8; WRAPPED_EPHEMERAL_LEN] {
        let key = self.key(salt);
        let mut ct = *eph_pub;
        Aes256Ctr::new(key.as_ref().into(), iv.into()).apply_keystream(&mut ct);
        let mut out = [0u8; WRAPPED_EPHEMERAL_LEN];
        out[..32].copy_from_slice(salt);
        out[32..48].copy_from_slice(iv);
        out[48..].copy_from_slice(&ct);
        out
    }

    /// Unwraps the peer's 80-byte wrapped ephemeral public key.
    ///
    /// # Errors
    /// [`PairCodeError::BadLength`] if `wrapped` is not 80 bytes. (A wrong code is not
    /// detectable here; it shows later as a bundle that does not decrypt.)
    pub fn unwrap_ephemeral(&self, wrapped: &[u8]) -> Result<[u8; 32], PairCodeError> {
        let w: &[u8; WRAPPED_EPHEMERAL_LEN] = wrapped.try_into().map_err(|_| PairCodeError::BadLength {
            what: "ephemeral",
            want: WRAPPED_EPHEMERAL_LEN,
            got: wrapped.len(),
        })?;
        let (salt, rest) = w.split_at(32);
        let (iv, ct) = rest.split_at(16);
        let key = self.key(salt);
        let mut pt = [0u8; 32];
        pt.copy_from_slice(ct);
        Aes256Ctr::new(key.as_ref().into(), iv.into()).apply_keystream(&mut pt);
        Ok(pt)
    }
}

/// The random inputs of [`companion_bundle`], drawn by the caller.
#[derive(Clone)]
pub struct BundleRandom {
    /// HKDF salt of the bundle key.
    pub salt: [u8; 32],
    /// AES-GCM nonce.
    pub nonce: [u8; 12],
    /// Mixed into the ADV secret.
    pub adv_random: [u8; 32],
}

impl BundleRandom {
    /// Draws all three from `rng`.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut r = Self { salt: [0; 32], nonce: [0; 12], adv_random: [0; 32] };
        rng.fill_bytes(&mut r.salt);
        rng.fill_bytes(&mut r.nonce);
        rng.fill_bytes(&mut r.adv_random);
        r
    }
}

fn hkdf32(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand(info, out.as_mut());
    out
}

fn adv_secret(
    eph_shared: &[u8; 32],
    identity_shared: &[u8; 32],
    adv_random: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(eph_shared);
    ikm[32..64].copy_from_slice(identity_shared);
    ikm[64..].copy_from_slice(adv_random);
    hkdf32(ikm.as_ref(), None, ADV_INFO)
}

fn dh(private: &[u8; 32], public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(StaticSecret::from(*private).diffie_hellman(&PublicKey::from(*public)).to_bytes())
}

/// Companion side of `primary_hello` (§2.3 steps 3–9): returns the 156-byte wrapped key
/// bundle to send in `companion_finish` and the new ADV secret to persist.
pub fn companion_bundle(
    companion_eph_priv: &[u8; 32],
    primary_eph_pub: &[u8; 32],
    companion_identity_priv: &[u8; 32],
    companion_identity_pub: &[u8; 32],
    primary_identity_pub: &[u8; 32],
    random: &BundleRandom,
) -> ([u8; WRAPPED_BUNDLE_LEN], Zeroizing<[u8; 32]>) {
    let eph_shared = dh(companion_eph_priv, primary_eph_pub);
    let key = hkdf32(eph_shared.as_ref(), Some(&random.salt), BUNDLE_INFO);
    let mut pt = Zeroizing::new([0u8; 96]);
    pt[..32].copy_from_slice(companion_identity_pub);
    pt[32..64].copy_from_slice(primary_identity_pub);
    pt[64..].copy_from_slice(&random.adv_random);
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let mut out = [0u8; WRAPPED_BUNDLE_LEN];
    out[..32].copy_from_slice(&random.salt);
    out[32..44].copy_from_slice(&random.nonce);
    // AES-GCM over 96 bytes with a 12-byte nonce cannot fail (length limits are ~64 GiB).
    if let Ok(ct) = cipher.encrypt(Nonce::from_slice(&random.nonce), pt.as_ref())
        && let Some(dst) = out.get_mut(44..44 + ct.len())
    {
        dst.copy_from_slice(&ct);
    }
    let identity_shared = dh(companion_identity_priv, primary_identity_pub);
    let secret = adv_secret(&eph_shared, &identity_shared, &random.adv_random);
    (out, secret)
}

/// Primary (phone) side: opens the companion's wrapped key bundle, checks it names the
/// expected identity keys and derives the same ADV secret as [`companion_bundle`].
///
/// # Errors
/// Wrong length, bundle that does not decrypt, or identity keys that do not match.
pub fn primary_open_bundle(
    primary_eph_priv: &[u8; 32],
    companion_eph_pub: &[u8; 32],
    primary_identity_priv: &[u8; 32],
    primary_identity_pub: &[u8; 32],
    companion_identity_pub: &[u8; 32],
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, PairCodeError> {
    if wrapped.len() != WRAPPED_BUNDLE_LEN {
        return Err(PairCodeError::BadLength {
            what: "key bundle",
            want: WRAPPED_BUNDLE_LEN,
            got: wrapped.len(),
        });
    }
    let (salt, rest) = wrapped.split_at(32);
    let (nonce, ct) = rest.split_at(12);
    let eph_shared = dh(primary_eph_priv, companion_eph_pub);
    let key = hkdf32(eph_shared.as_ref(), Some(salt), BUNDLE_INFO);
    let pt = Zeroizing::new(
        Aes256Gcm::new(key.as_ref().into())
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| PairCodeError::BundleDecrypt)?,
    );
    let (Some(c_id), Some(p_id), Some(adv_random)) = (pt.get(..32), pt.get(32..64), pt.get(64..96)) else {
        return Err(PairCodeError::BundleDecrypt);
    };
    if c_id != companion_identity_pub || p_id != primary_identity_pub {
        return Err(PairCodeError::BundleIdentityMismatch);
    }
    let mut ar = [0u8; 32];
    ar.copy_from_slice(adv_random);
    let identity_shared = dh(primary_identity_priv, companion_identity_pub);
    Ok(adv_secret(&eph_shared, &identity_shared, &ar))
}

/// Public key of an X25519 private key (helper for both sides).
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn key(rng: &mut StdRng) -> ([u8; 32], [u8; 32]) {
        let mut p = [0u8; 32];
        rand::RngCore::fill_bytes(rng, &mut p);
        (p, x25519_public(&p))
    }

    /// Codes are 8 characters from the WA alphabet and display as XXXX-XXXX; parse accepts both.
    #[test]
    fn code_format() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let c = PairCode::generate(&mut rng);
            assert_eq!(c.as_str().len(), 8);
            assert!(c.as_str().bytes().all(|b| CODE_ALPHABET.contains(&b)));
            let g = c.grouped();
            assert_eq!(g.len(), 9);
            assert_eq!(&g[4..5], "-");
            assert_eq!(PairCode::parse(&g).unwrap(), c);
            assert_eq!(PairCode::parse(&g.to_lowercase()).unwrap(), c);
        }
        assert!(matches!(PairCode::parse("ABC"), Err(PairCodeError::BadCodeLength { len: 3 })));
    }

    /// Both sides of the exchange derive the same ADV secret, and a wrong code fails to open the bundle.
    #[test]
    fn full_exchange_agrees() {
        let mut rng = StdRng::seed_from_u64(7);
        let code = PairCode::generate(&mut rng);
        let (c_eph, c_eph_pub) = key(&mut rng);
        let (p_eph, p_eph_pub) = key(&mut rng);
        let (c_id, c_id_pub) = key(&mut rng);
        let (p_id, p_id_pub) = key(&mut rng);
        // companion wraps its ephemeral; primary unwraps with the code
        let w = code.wrap_ephemeral(&c_eph_pub, &[1; 32], &[2; 16]);
        assert_eq!(code.unwrap_ephemeral(&w).unwrap(), c_eph_pub);
        let w2 = code.wrap_ephemeral(&p_eph_pub, &[3; 32], &[4; 16]);
        let got_p_eph = code.unwrap_ephemeral(&w2).unwrap();
        let rand = BundleRandom::generate(&mut rng);
        let (bundle, secret_c) = companion_bundle(&c_eph, &got_p_eph, &c_id, &c_id_pub, &p_id_pub, &rand);
        let secret_p = primary_open_bundle(&p_eph, &c_eph_pub, &p_id, &p_id_pub, &c_id_pub, &bundle).unwrap();
        assert_eq!(*secret_c, *secret_p);
        let mut bad = bundle;
        bad[100] ^= 1;
        assert_eq!(
            primary_open_bundle(&p_eph, &c_eph_pub, &p_id, &p_id_pub, &c_id_pub, &bad),
            Err(PairCodeError::BundleDecrypt)
        );
        // a wrong code yields a different ephemeral
        let other = PairCode::parse("ZZZZ-ZZZZ").unwrap();
        assert_ne!(other.unwrap_ephemeral(&w).unwrap(), c_eph_pub);
    }
}
