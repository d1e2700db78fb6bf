//! Test-only access to the golden vectors in `tests/vectors/*.json` (Baileys oracle).

use serde_json::Value;

use super::keys::KeyPair;

/// Loads `tests/vectors/<name>`.
pub(crate) fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Hex-decodes `v[key]`.
pub(crate) fn bytes(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))).unwrap()
}

/// Hex-decodes a 32-byte `v[key]`.
pub(crate) fn arr32(v: &Value, key: &str) -> [u8; 32] {
    bytes(v, key).try_into().unwrap()
}

/// The key pair stored as `{priv, pub}` under `v[key]`, checking the public half.
pub(crate) fn key_pair(v: &Value, key: &str) -> KeyPair {
    let kp = KeyPair::from_private_bytes(arr32(&v[key], "priv"));
    assert_eq!(kp.public(), &arr32(&v[key], "pub"), "{key}.pub");
    kp
}
