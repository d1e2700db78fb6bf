//! Test helpers: libsignal-node's seeded key pairs and an RNG that replays them in order.

use std::collections::VecDeque;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::wa::noise::KeyPair;
use crate::wa::signal::{LocalIdentity, PreKeyRecord, PublicKey, SignedPreKeyRecord};

/// `seededKeyPair(seed)` of scripts/interop/vectors.js: private = clamp(sha256(seed)).
pub(crate) fn seeded(seed: &str) -> KeyPair {
    let mut p: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    p[0] &= 248;
    p[31] &= 127;
    p[31] |= 64;
    KeyPair::from_private_bytes(p)
}

/// An RNG that returns the private keys of `ratchet-N` (N from `start`) 32 bytes at a time, so
/// each `KeyPair::generate` gets the key libsignal-node generated at that point. Any other draw
/// (or running out of script) fails the test.
pub(crate) struct ScriptedRng {
    bytes: VecDeque<u8>,
}

impl ScriptedRng {
    pub(crate) fn ratchets(start: usize, count: usize) -> Self {
        let mut bytes = VecDeque::new();
        for n in start..start + count {
            bytes.extend(seeded(&format!("ratchet-{n}")).private().to_bytes().iter().copied());
        }
        Self { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

impl rand_core::RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        panic!("scripted rng: unexpected next_u32")
    }
    fn next_u64(&mut self) -> u64 {
        panic!("scripted rng: unexpected next_u64")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert_eq!(dest.len(), 32, "scripted rng serves whole keys only");
        for b in dest {
            *b = self.bytes.pop_front().expect("scripted rng exhausted");
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for ScriptedRng {}

pub(crate) fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}")))
        .unwrap()
}

pub(crate) fn hex_of(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).unwrap()
}

/// The key pair `{priv, pub}` (pub 33 bytes with 0x05) stored at `v[key]`.
pub(crate) fn pair(v: &Value, key: &str) -> KeyPair {
    let kp = KeyPair::from_private_bytes(hex_of(&v[key], "priv").try_into().unwrap());
    assert_eq!(PublicKey::from_raw(*kp.public()).to_wire().to_vec(), hex_of(&v[key], "pub"), "{key}.pub");
    kp
}

/// Alice and Bob of the vectors: identities, Bob's one-time prekey 1 and signed prekey 1.
pub(crate) struct Parties {
    pub(crate) alice: LocalIdentity,
    pub(crate) bob: LocalIdentity,
    pub(crate) bob_pre_key: PreKeyRecord,
    pub(crate) bob_signed: SignedPreKeyRecord,
}

pub(crate) fn parties(s: &Value) -> Parties {
    let alice = LocalIdentity::new(
        pair(s, "alice_identity"),
        s["alice_registration_id"].as_u64().unwrap_or(1111) as u32,
    );
    let bob =
        LocalIdentity::new(pair(s, "bob_identity"), s["bob_registration_id"].as_u64().unwrap_or(2222) as u32);
    let sig: [u8; 64] = hex_of(&s["bob_signed_prekey_1"], "signature").try_into().unwrap();
    Parties {
        alice,
        bob,
        bob_pre_key: PreKeyRecord::new(1, pair(s, "bob_prekey_1")),
        bob_signed: SignedPreKeyRecord::new(1, pair(s, "bob_signed_prekey_1"), sig),
    }
}
