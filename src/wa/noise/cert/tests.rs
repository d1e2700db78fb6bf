//! Certificate-chain unit tests: each check of protocol/01-transport.md §5.4 fails with its
//! typed error, builder output verifies, and arbitrary bytes never panic.

use proptest::prelude::*;

use super::*;
use crate::wa::noise::testing::SeededRng;

struct Fixture {
    root: KeyPair,
    intermediate: KeyPair,
    leaf: KeyPair,
}

impl Fixture {
    fn new() -> Self {
        let mut rng = SeededRng::new(b"cert-fixture");
        Self {
            root: KeyPair::generate(&mut rng),
            intermediate: KeyPair::generate(&mut rng),
            leaf: KeyPair::generate(&mut rng),
        }
    }
    fn anchor(&self) -> TrustAnchor {
        TrustAnchor { root_public: *self.root.public(), root_serial: 0 }
    }
    fn chain(&self, b: CertChainBuilder) -> CertChain {
        b.build_deterministic(self.root.private(), &self.intermediate, self.leaf.public())
    }
    fn verify(&self, chain: &CertChain) -> Result<VerifiedCertChain, CertError> {
        verify_cert_chain(chain, self.leaf.public(), &self.anchor(), 50)
    }
    /// Re-signs `details` of the given role with the right issuer key.
    fn resign(&self, chain: &mut CertChain, role: CertRole, details: Details) {
        let bytes = details.encode_to_vec();
        let (cert, key) = match role {
            CertRole::Intermediate => (chain.intermediate.as_mut().unwrap(), self.root.private()),
            CertRole::Leaf => (chain.leaf.as_mut().unwrap(), self.intermediate.private()),
        };
        cert.signature = Some(xeddsa::sign_deterministic(key, &bytes).to_vec());
        cert.details = Some(bytes);
    }
}

/// The anchor constant equals the documented WhatsApp root key, serial 0.
#[test]
fn whatsapp_anchor() {
    let a = TrustAnchor::whatsapp();
    assert_eq!(
        hex::encode(a.root_public),
        "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b"
    );
    assert_eq!(a.root_serial, 0);
}

/// A builder chain verifies, and the intermediate's issuer serial 0 is present on the wire.
#[test]
fn built_chain_verifies() {
    let f = Fixture::new();
    let mut rng = SeededRng::new(b"sig");
    let chain = CertChainBuilder::new().validity(10, 100).build(
        f.root.private(),
        &f.intermediate,
        f.leaf.public(),
        &mut rng,
    );
    let v = f.verify(&chain).unwrap();
    assert_eq!(v.intermediate.key, *f.intermediate.public());
    assert_eq!((v.leaf.not_before, v.leaf.not_after), (10, 100));
    let int_details = chain.intermediate.unwrap().details.unwrap();
    assert_eq!(&int_details[..4], &[0x08, 0x01, 0x10, 0x00], "serial 1 then explicit issuer_serial 0");
}

/// Check 1: missing certificates, details, signatures and wrong signature lengths.
#[test]
fn check1_presence() {
    let f = Fixture::new();
    let good = f.chain(CertChainBuilder::new());
    let mut c = good.clone();
    c.leaf = None;
    assert_eq!(f.verify(&c), Err(CertError::MissingCertificate { role: CertRole::Leaf }));
    let mut c = good.clone();
    c.intermediate.as_mut().unwrap().details = None;
    assert_eq!(f.verify(&c), Err(CertError::MissingDetails { role: CertRole::Intermediate }));
    let mut c = good.clone();
    c.leaf.as_mut().unwrap().signature = None;
    assert_eq!(f.verify(&c), Err(CertError::MissingSignature { role: CertRole::Leaf }));
    let mut c = good;
    c.intermediate.as_mut().unwrap().signature = Some(vec![0; 63]);
    assert_eq!(f.verify(&c), Err(CertError::SignatureLength { role: CertRole::Intermediate, len: 63 }));
}

/// Checks 2 and 5: tampered details break the matching signature.
#[test]
fn check2_and_5_signatures() {
    let f = Fixture::new();
    let good = f.chain(CertChainBuilder::new());
    let mut c = good.clone();
    c.intermediate.as_mut().unwrap().details.as_mut().unwrap()[1] ^= 1;
    assert_eq!(f.verify(&c), Err(CertError::BadSignature { role: CertRole::Intermediate }));
    let mut c = good;
    c.leaf.as_mut().unwrap().details.as_mut().unwrap()[1] ^= 1;
    assert_eq!(f.verify(&c), Err(CertError::BadSignature { role: CertRole::Leaf }));
}

/// Check 4: an intermediate key that is not 32 bytes; also undecodable (but signed) details.
#[test]
fn check4_key_length_and_decode() {
    let f = Fixture::new();
    let mut c = f.chain(CertChainBuilder::new());
    let d = Details { serial: Some(1), issuer_serial: Some(0), key: Some(vec![1; 31]), ..Default::default() };
    f.resign(&mut c, CertRole::Intermediate, d);
    assert_eq!(f.verify(&c), Err(CertError::IntermediateKeyLength { len: 31 }));
    let mut c = f.chain(CertChainBuilder::new());
    let garbage = vec![0xff, 0xff, 0xff];
    c.intermediate.as_mut().unwrap().signature =
        Some(xeddsa::sign_deterministic(f.root.private(), &garbage).to_vec());
    c.intermediate.as_mut().unwrap().details = Some(garbage);
    assert!(matches!(f.verify(&c), Err(CertError::Decode { what: "intermediate details", .. })));
}

/// Checks 6 and 9: windows are inclusive at both ends; absent not_after reads as expired.
#[test]
fn checks6_and_9_windows() {
    let f = Fixture::new();
    let anchor = f.anchor();
    let c = f.chain(CertChainBuilder::new().validity(10, 20));
    let at = |now| verify_cert_chain(&c, f.leaf.public(), &anchor, now);
    assert!(at(10).is_ok());
    assert!(at(20).is_ok());
    assert_eq!(at(9), Err(CertError::NotYetValid { role: CertRole::Intermediate, not_before: 10, now: 9 }));
    let mut c = f.chain(CertChainBuilder::new());
    let d = Details {
        serial: Some(2),
        issuer_serial: Some(1),
        key: Some(f.leaf.public().to_vec()),
        ..Default::default()
    };
    f.resign(&mut c, CertRole::Leaf, d);
    assert_eq!(f.verify(&c), Err(CertError::Expired { role: CertRole::Leaf, not_after: 0, now: 50 }));
}

/// Checks 7 and 8: leaf issuer serial and leaf key.
#[test]
fn checks7_and_8() {
    let f = Fixture::new();
    let c = f.chain(CertChainBuilder::new().serials(5, 6).leaf_issuer_serial(4));
    assert_eq!(f.verify(&c), Err(CertError::LeafIssuerSerial { expected: 5, actual: 4 }));
    let c = f.chain(CertChainBuilder::new());
    assert_eq!(verify_cert_chain(&c, &[7; 32], &f.anchor(), 0), Err(CertError::LeafKeyMismatch));
}

/// Error messages are lowercase and carry the facts.
#[test]
fn error_messages() {
    assert_eq!(
        CertError::Expired { role: CertRole::Leaf, not_after: 5, now: 6 }.to_string(),
        "leaf certificate expired at 5 (now 6)"
    );
}

proptest! {
    /// Arbitrary bytes never panic the chain decoder or verifier.
    #[test]
    fn arbitrary_chain_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(chain) = decode_cert_chain(&data) {
            let _ = verify_cert_chain(&chain, &[1; 32], &TrustAnchor::whatsapp(), 0);
        }
    }
}
