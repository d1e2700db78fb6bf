//! libsignal-compatible "Curve25519 signatures" (XEdDSA-style) over X25519 keys: sign with an
//! X25519 private key, verify with a Montgomery public key; the Edwards sign bit of the signer's
//! key travels in the high bit of signature byte 63 (protocol/01-transport.md §5.3). Used for the
//! server certificate chain and, later, ADV and signed-prekey signatures. Pure functions: no RNG is
//! read here, randomness is passed in.
//!
//! Two nonce derivations exist in the libsignal family and both are provided:
//! [`sign`] (`r = SHA-512(0xFE || 0xFF*31 || a || M || Z)`, libsignal's Rust/Java form and
//! curve25519-js with 64 random bytes `Z`) and [`sign_deterministic`] (`r = SHA-512(a || M)`,
//! what libsignal-node's `calculateSignature` — hence Baileys — produces). Both verify with
//! [`verify`].

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::keys::{PrivateKey, ct_eq};

/// Length of a signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Signs `message` with the X25519 `private` key, mixing 64 bytes of caller-supplied
/// `random` into the nonce (libsignal Rust/Java and curve25519-js `sign(sk, msg, random)`).
pub fn sign(private: &PrivateKey, message: &[u8], random: &[u8; 64]) -> [u8; SIGNATURE_LEN] {
    let mut prefix = [0xFFu8; 32];
    prefix[0] = 0xFE;
    sign_with(private, message, |a, h| {
        h.update(prefix);
        h.update(a);
        h.update(message);
        h.update(random);
    })
}

/// Signs `message` with the X25519 `private` key using libsignal-node's deterministic nonce
/// (`curve.calculateSignature`): the same key and message always give the same signature.
pub fn sign_deterministic(private: &PrivateKey, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    sign_with(private, message, |a, h| {
        h.update(a);
        h.update(message);
    })
}

/// Draws 64 random bytes from the injected RNG and signs with [`sign`].
pub fn sign_with_rng(
    private: &PrivateKey,
    message: &[u8],
    rng: &mut impl rand_core::CryptoRngCore,
) -> [u8; SIGNATURE_LEN] {
    let mut random = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut random[..]);
    sign(private, message, &random)
}

fn sign_with(
    private: &PrivateKey,
    message: &[u8],
    nonce_input: impl FnOnce(&[u8; 32], &mut Sha512),
) -> [u8; SIGNATURE_LEN] {
    let mut a_bytes = private.to_bytes();
    // X25519 clamping; the clamped bytes are what both libsignal variants hash.
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Zeroizing::new(Scalar::from_bytes_mod_order(*a_bytes));
    let public = EdwardsPoint::mul_base(&a).compress();
    let sign_bit = public.as_bytes()[31] & 0x80;

    let mut nonce_hash = Sha512::new();
    nonce_input(&a_bytes, &mut nonce_hash);
    let nonce_wide = Zeroizing::new(<[u8; 64]>::from(nonce_hash.finalize()));
    let r = Zeroizing::new(Scalar::from_bytes_mod_order_wide(&nonce_wide));
    let big_r = EdwardsPoint::mul_base(&r).compress();

    let h = challenge(big_r.as_bytes(), public.as_bytes(), message);
    let s = h * *a + *r;

    let mut sig = [0u8; SIGNATURE_LEN];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig[63] = (sig[63] & 0x7F) | sign_bit;
    sig
}

/// `h = SHA-512(R || A || M) mod L`.
fn challenge(big_r: &[u8; 32], public: &[u8; 32], message: &[u8]) -> Scalar {
    let digest = Sha512::new().chain_update(big_r).chain_update(public).chain_update(message).finalize();
    Scalar::from_bytes_mod_order_wide(&digest.into())
}

/// Verifies `signature` over `message` against the X25519 (Montgomery) `public` key.
/// Returns `false` for any malformed input (non-canonical `s`, a key with no Edwards
/// equivalent) as well as for a wrong signature.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
    let Some(ed_public) = MontgomeryPoint(*public).to_edwards(signature[63] >> 7) else {
        return false;
    };
    let compressed_public = ed_public.compress();
    let mut big_r = [0u8; 32];
    big_r.copy_from_slice(&signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    s_bytes[31] &= 0x7F;
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let h = challenge(&big_r, compressed_public.as_bytes(), message);
    // R' = s·B − h·A must equal R.
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &(-ed_public), &s).compress();
    ct_eq(check.as_bytes(), CompressedEdwardsY(big_r).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> PrivateKey {
        PrivateKey::from_bytes([b; 32])
    }

    /// Randomized and deterministic signatures verify with the Montgomery public key.
    #[test]
    fn sign_then_verify() {
        for seed in 1..20u8 {
            let k = key(seed);
            let pubk = k.public_key();
            let s1 = sign(&k, b"hello", &[seed; 64]);
            let s2 = sign_deterministic(&k, b"hello");
            assert!(verify(&pubk, b"hello", &s1));
            assert!(verify(&pubk, b"hello", &s2));
            assert!(!verify(&pubk, b"hellp", &s1));
            assert!(!verify(&key(seed + 100).public_key(), b"hello", &s2));
        }
    }

    /// Deterministic signing is a function of key and message; randomness changes `sign`.
    #[test]
    fn determinism() {
        let k = key(9);
        assert_eq!(sign_deterministic(&k, b"m"), sign_deterministic(&k, b"m"));
        assert_eq!(sign(&k, b"m", &[1; 64]), sign(&k, b"m", &[1; 64]));
        assert_ne!(sign(&k, b"m", &[1; 64]), sign(&k, b"m", &[2; 64]));
    }

    /// Flipping the sign bit, or making s non-canonical, breaks verification.
    #[test]
    fn malleability_rejected() {
        let k = key(3);
        let mut sig = sign_deterministic(&k, b"msg");
        sig[63] ^= 0x80;
        assert!(!verify(&k.public_key(), b"msg", &sig));
        let mut sig = sign_deterministic(&k, b"msg");
        sig[63] |= 0x70;
        assert!(!verify(&k.public_key(), b"msg", &sig));
        assert!(!verify(&k.public_key(), b"msg", &[0; 64]));
    }

    /// Our signatures equal libsignal-node's `calculateSignature` (deterministic) and
    /// curve25519-js `sign` with the same 64 random bytes, byte for byte; all verify.
    #[test]
    fn matches_libsignal_vectors() {
        let v = crate::wa::noise::vectors::load("baileys-signed.json");
        let x = &v["xeddsa"];
        let signer = crate::wa::noise::vectors::key_pair(x, "signer");
        let cases = x["cases"].as_array().unwrap();
        assert!(cases.len() >= 4);
        for c in cases {
            let msg = crate::wa::noise::vectors::bytes(c, "message_hex");
            let det: [u8; 64] = crate::wa::noise::vectors::bytes(c, "deterministic_sig").try_into().unwrap();
            let rnd: [u8; 64] = crate::wa::noise::vectors::bytes(c, "randomized_sig").try_into().unwrap();
            let random: [u8; 64] = crate::wa::noise::vectors::bytes(c, "random_hex").try_into().unwrap();
            assert_eq!(c["deterministic_repeatable"], true);
            assert_eq!(sign_deterministic(signer.private(), &msg), det);
            assert_eq!(sign(signer.private(), &msg, &random), rnd);
            assert!(verify(signer.public(), &msg, &det));
            assert!(verify(signer.public(), &msg, &rnd));
        }
    }

    /// The signed-prekey signature in the Baileys Signal vector (libsignal over the 33-byte
    /// prefixed key) is reproduced and verifies.
    #[test]
    fn matches_signal_prekey_signature() {
        let v = crate::wa::noise::vectors::load("baileys.json");
        let s = &v["signal"];
        let id = PrivateKey::from_bytes(crate::wa::noise::vectors::arr32(&s["bob_identity"], "priv"));
        let id_pub: [u8; 32] =
            crate::wa::noise::vectors::bytes(&s["bob_identity"], "pub")[1..].try_into().unwrap();
        let spk = crate::wa::noise::vectors::bytes(&s["bob_signed_prekey_1"], "pub");
        let sig: [u8; 64] =
            crate::wa::noise::vectors::bytes(&s["bob_signed_prekey_1"], "signature").try_into().unwrap();
        assert_eq!(sign_deterministic(&id, &spk), sig);
        assert!(verify(&id_pub, &spk, &sig));
    }

    proptest! {
        /// Arbitrary keys, messages and signatures never panic in verify.
        #[test]
        fn verify_never_panics(pk in any::<[u8; 32]>(), msg in proptest::collection::vec(any::<u8>(), 0..64),
                               sig in proptest::collection::vec(any::<u8>(), 64)) {
            let mut s = [0u8; 64];
            s.copy_from_slice(&sig);
            let _ = verify(&pk, &msg, &s);
        }
    }
}
