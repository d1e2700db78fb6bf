//! The server certificate chain (protocol/01-transport.md §5): the trust anchor, verification of
//! root → intermediate → leaf with every check whatsmeow makes (§5.4, items 1–9), and a builder
//! that mints correctly signed chains for the simulator. Time is passed in as unix seconds; this
//! module reads no clock and no OS RNG.

use std::fmt;

use prost::Message as _;

use super::keys::{KEY_LEN, KeyPair, PrivateKey, ct_eq};
use super::xeddsa::{self, SIGNATURE_LEN};
use crate::wa::proto::CertChain;
use crate::wa::proto::cert_chain::NoiseCertificate;
use crate::wa::proto::cert_chain::noise_certificate::Details;

/// The key (and its serial) that must have signed the intermediate certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustAnchor {
    /// Root public key, Curve25519 (Montgomery) form.
    pub root_public: [u8; KEY_LEN],
    /// Serial the intermediate's `issuer_serial` must carry.
    pub root_serial: u32,
}

impl TrustAnchor {
    /// WhatsApp's production root (whatsmeow `WACertPubKey`, Baileys `WA_CERT_DETAILS`, serial 0).
    pub const fn whatsapp() -> Self {
        Self {
            root_public: [
                0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64,
                0x37, 0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8,
                0xee, 0x6b,
            ],
            root_serial: 0,
        }
    }
}

/// Which certificate of the chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertRole {
    /// Signed by the root, signs the leaf.
    Intermediate,
    /// Certifies the server's static Noise key.
    Leaf,
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Intermediate => "intermediate",
            Self::Leaf => "leaf",
        })
    }
}

/// Why a server certificate chain was rejected. Every variant means the server (or someone in
/// between) sent a chain we must not trust: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a valid protobuf of the named structure.
    #[error("{what} is not a valid protobuf")]
    Decode {
        /// Which structure failed to decode.
        what: &'static str,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// Check 1: a certificate is absent from the chain.
    #[error("{role} certificate is missing")]
    MissingCertificate {
        /// The absent certificate.
        role: CertRole,
    },
    /// Check 1: a certificate has no details.
    #[error("{role} certificate has no details")]
    MissingDetails {
        /// The incomplete certificate.
        role: CertRole,
    },
    /// Check 1: a certificate has no signature.
    #[error("{role} certificate has no signature")]
    MissingSignature {
        /// The incomplete certificate.
        role: CertRole,
    },
    /// Check 1: a signature is not 64 bytes.
    #[error("{role} signature is {len} bytes, expected {SIGNATURE_LEN}")]
    SignatureLength {
        /// The certificate with the malformed signature.
        role: CertRole,
        /// Its length.
        len: usize,
    },
    /// Checks 2 and 5: the intermediate does not verify under the root key, or the leaf does not
    /// verify under the intermediate key.
    #[error("{role} signature does not verify")]
    BadSignature {
        /// The certificate whose signature failed.
        role: CertRole,
    },
    /// Check 3: the intermediate names another issuer than the trust anchor.
    #[error("intermediate issuer serial is {actual}, expected {expected}")]
    IntermediateIssuerSerial {
        /// The anchor's serial.
        expected: u32,
        /// What the intermediate carries (absent reads as 0).
        actual: u32,
    },
    /// Check 4: the intermediate key is not 32 bytes.
    #[error("intermediate key is {len} bytes, expected {KEY_LEN}")]
    IntermediateKeyLength {
        /// Its length.
        len: usize,
    },
    /// Checks 6 and 9: the certificate's `not_before` is in the future.
    #[error("{role} certificate not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The certificate.
        role: CertRole,
        /// Its start of validity, unix seconds.
        not_before: u64,
        /// The time we checked against, unix seconds.
        now: u64,
    },
    /// Checks 6 and 9: the certificate's `not_after` is in the past (absent reads as 0).
    #[error("{role} certificate expired at {not_after} (now {now})")]
    Expired {
        /// The certificate.
        role: CertRole,
        /// Its end of validity, unix seconds.
        not_after: u64,
        /// The time we checked against, unix seconds.
        now: u64,
    },
    /// Check 7: the leaf was not issued by this intermediate.
    #[error("leaf issuer serial is {actual}, expected intermediate serial {expected}")]
    LeafIssuerSerial {
        /// The intermediate's serial.
        expected: u32,
        /// What the leaf carries.
        actual: u32,
    },
    /// Check 8: the leaf certifies another key than the static key the server used.
    #[error("leaf key does not match the server static key")]
    LeafKeyMismatch,
}

/// The facts of one verified certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertFacts {
    /// Its serial.
    pub serial: u32,
    /// Its issuer's serial.
    pub issuer_serial: u32,
    /// The certified key.
    pub key: [u8; KEY_LEN],
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
}

/// A chain that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedCertChain {
    /// The intermediate certificate.
    pub intermediate: CertFacts,
    /// The leaf certificate (its key is the server static key).
    pub leaf: CertFacts,
}

/// Returns the details bytes and the 64-byte signature of `cert` (check 1).
fn parts(cert: Option<&NoiseCertificate>, role: CertRole) -> Result<(&[u8], [u8; SIGNATURE_LEN]), CertError> {
    let cert = cert.ok_or(CertError::MissingCertificate { role })?;
    let details = cert.details.as_deref().ok_or(CertError::MissingDetails { role })?;
    let sig = cert.signature.as_deref().ok_or(CertError::MissingSignature { role })?;
    let sig = <[u8; SIGNATURE_LEN]>::try_from(sig)
        .map_err(|_| CertError::SignatureLength { role, len: sig.len() })?;
    Ok((details, sig))
}

fn decode_details(bytes: &[u8], what: &'static str) -> Result<Details, CertError> {
    Details::decode(bytes).map_err(|source| CertError::Decode { what, source })
}

fn check_window(role: CertRole, d: &Details, now: u64) -> Result<(), CertError> {
    let (not_before, not_after) = (d.not_before(), d.not_after());
    if now < not_before {
        return Err(CertError::NotYetValid { role, not_before, now });
    }
    if now > not_after {
        return Err(CertError::Expired { role, not_after, now });
    }
    Ok(())
}

/// Decodes a serialized `CertChain` (the decrypted ServerHello payload).
///
/// # Errors
/// [`CertError::Decode`] when the bytes are not a `CertChain` protobuf.
pub fn decode_cert_chain(bytes: &[u8]) -> Result<CertChain, CertError> {
    CertChain::decode(bytes).map_err(|source| CertError::Decode { what: "certificate chain", source })
}

/// Verifies `chain` for the server static key `server_static` against `anchor` at `now_unix`
/// (checks 1–9 of protocol/01-transport.md §5.4, in that order).
///
/// # Errors
/// The first failed check, as a [`CertError`].
pub fn verify_cert_chain(
    chain: &CertChain,
    server_static: &[u8; KEY_LEN],
    anchor: &TrustAnchor,
    now_unix: u64,
) -> Result<VerifiedCertChain, CertError> {
    use CertRole::{Intermediate, Leaf};
    // 1. presence and signature lengths
    let (int_bytes, int_sig) = parts(chain.intermediate.as_ref(), Intermediate)?;
    let (leaf_bytes, leaf_sig) = parts(chain.leaf.as_ref(), Leaf)?;
    // 2. intermediate signed by the root (over the exact bytes, before parsing them)
    if !xeddsa::verify(&anchor.root_public, int_bytes, &int_sig) {
        return Err(CertError::BadSignature { role: Intermediate });
    }
    let int = decode_details(int_bytes, "intermediate details")?;
    // 3. issued by the anchor
    if int.issuer_serial() != anchor.root_serial {
        return Err(CertError::IntermediateIssuerSerial {
            expected: anchor.root_serial,
            actual: int.issuer_serial(),
        });
    }
    // 4. intermediate key length
    let int_key = <[u8; KEY_LEN]>::try_from(int.key())
        .map_err(|_| CertError::IntermediateKeyLength { len: int.key().len() })?;
    // 5. leaf signed by the intermediate
    if !xeddsa::verify(&int_key, leaf_bytes, &leaf_sig) {
        return Err(CertError::BadSignature { role: Leaf });
    }
    let leaf = decode_details(leaf_bytes, "leaf details")?;
    // 6. intermediate validity
    check_window(Intermediate, &int, now_unix)?;
    // 7. leaf issued by this intermediate
    if leaf.issuer_serial() != int.serial() {
        return Err(CertError::LeafIssuerSerial { expected: int.serial(), actual: leaf.issuer_serial() });
    }
    // 8. leaf certifies the static key the server proved possession of
    if !ct_eq(leaf.key(), server_static) {
        return Err(CertError::LeafKeyMismatch);
    }
    // 9. leaf validity
    check_window(Leaf, &leaf, now_unix)?;
    let facts = |d: &Details, key: [u8; KEY_LEN]| CertFacts {
        serial: d.serial(),
        issuer_serial: d.issuer_serial(),
        key,
        not_before: d.not_before(),
        not_after: d.not_after(),
    };
    Ok(VerifiedCertChain { intermediate: facts(&int, int_key), leaf: facts(&leaf, *server_static) })
}

/// Mints root → intermediate → leaf chains with real signatures, for the simulator and tests.
/// Defaults: root serial 0, intermediate serial 1, leaf serial 2 (issuer 1), both certificates
/// valid for all time. The intermediate's `issuer_serial` is always written, even when 0
/// (Baileys rejects an absent one, protocol/03-proto-messages.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChainBuilder {
    root_serial: u32,
    intermediate_serial: u32,
    leaf_serial: u32,
    leaf_issuer_serial: Option<u32>,
    intermediate_validity: (u64, u64),
    leaf_validity: (u64, u64),
}

impl Default for CertChainBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CertChainBuilder {
    /// The default chain shape (see the type's docs).
    pub fn new() -> Self {
        Self {
            root_serial: 0,
            intermediate_serial: 1,
            leaf_serial: 2,
            leaf_issuer_serial: None,
            intermediate_validity: (0, u64::MAX),
            leaf_validity: (0, u64::MAX),
        }
    }

    /// Serial of the root, written as the intermediate's issuer serial.
    pub fn root_serial(mut self, serial: u32) -> Self {
        self.root_serial = serial;
        self
    }

    /// Serials of the intermediate and the leaf.
    pub fn serials(mut self, intermediate: u32, leaf: u32) -> Self {
        self.intermediate_serial = intermediate;
        self.leaf_serial = leaf;
        self
    }

    /// Writes another issuer serial into the leaf than the intermediate's serial (fault injection).
    pub fn leaf_issuer_serial(mut self, serial: u32) -> Self {
        self.leaf_issuer_serial = Some(serial);
        self
    }

    /// Validity window `[not_before, not_after]` (unix seconds) of both certificates.
    pub fn validity(self, not_before: u64, not_after: u64) -> Self {
        self.intermediate_validity(not_before, not_after).leaf_validity(not_before, not_after)
    }

    /// Validity window of the intermediate.
    pub fn intermediate_validity(mut self, not_before: u64, not_after: u64) -> Self {
        self.intermediate_validity = (not_before, not_after);
        self
    }

    /// Validity window of the leaf.
    pub fn leaf_validity(mut self, not_before: u64, not_after: u64) -> Self {
        self.leaf_validity = (not_before, not_after);
        self
    }

    /// Builds a chain certifying `leaf_key`, signing with randomness from `rng`.
    pub fn build(
        &self,
        root: &PrivateKey,
        intermediate: &KeyPair,
        leaf_key: &[u8; KEY_LEN],
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> CertChain {
        self.build_inner(root, intermediate, leaf_key, &mut |key, details| {
            xeddsa::sign_with_rng(key, details, rng)
        })
    }

    /// Builds a chain with libsignal-node's deterministic signatures (reproducible bytes; this is
    /// what `curve.calculateSignature` would produce).
    pub fn build_deterministic(
        &self,
        root: &PrivateKey,
        intermediate: &KeyPair,
        leaf_key: &[u8; KEY_LEN],
    ) -> CertChain {
        self.build_inner(root, intermediate, leaf_key, &mut xeddsa::sign_deterministic)
    }

    fn build_inner(
        &self,
        root: &PrivateKey,
        intermediate: &KeyPair,
        leaf_key: &[u8; KEY_LEN],
        signer: &mut dyn FnMut(&PrivateKey, &[u8]) -> [u8; SIGNATURE_LEN],
    ) -> CertChain {
        let mut sign = |key: &PrivateKey, details: Vec<u8>| {
            let signature = signer(key, &details);
            NoiseCertificate { details: Some(details), signature: Some(signature.to_vec()) }
        };
        let int_details = Details {
            serial: Some(self.intermediate_serial),
            issuer_serial: Some(self.root_serial),
            key: Some(intermediate.public().to_vec()),
            not_before: Some(self.intermediate_validity.0),
            not_after: Some(self.intermediate_validity.1),
        };
        let leaf_details = Details {
            serial: Some(self.leaf_serial),
            issuer_serial: Some(self.leaf_issuer_serial.unwrap_or(self.intermediate_serial)),
            key: Some(leaf_key.to_vec()),
            not_before: Some(self.leaf_validity.0),
            not_after: Some(self.leaf_validity.1),
        };
        let intermediate_cert = sign(root, int_details.encode_to_vec());
        let leaf_cert = sign(intermediate.private(), leaf_details.encode_to_vec());
        CertChain { leaf: Some(leaf_cert), intermediate: Some(intermediate_cert) }
    }
}

#[cfg(test)]
mod tests;
