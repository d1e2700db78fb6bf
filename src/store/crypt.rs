//! Encryption at rest: AES-256-GCM envelopes under a master key, with the key id stored beside
//! each value (rotation via a keyring of older keys) and AAD binding tenant + storage key, so a
//! value copied into another document fails to open.
//!
//! Owns the envelope format and the master-key environment variables. Must not log keys or
//! plaintext.
//!
//! Envelope (bytes): `"SL"`, version `1`, key-id length `n`, key id (ASCII), 12-byte nonce,
//! ciphertext+tag. Plaintext envelopes (`"SL"`, version `0`, raw bytes) are written and read only
//! by a keyring built with [`Keyring::plaintext`] (`STAYLINKED_ALLOW_PLAINTEXT=1`).

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::StoreError;
use crate::types::TenantId;

/// Env var: the current master key, base64 of 32 bytes.
pub const ENV_MASTER_KEY: &str = "STAYLINKED_MASTER_KEY";
/// Env var: older master keys (comma-separated base64) that can still open values.
pub const ENV_MASTER_KEYS_OLD: &str = "STAYLINKED_MASTER_KEYS_OLD";
/// Env var: `1` lets the Firestore backend run without a master key (values unencrypted).
pub const ENV_ALLOW_PLAINTEXT: &str = "STAYLINKED_ALLOW_PLAINTEXT";

const MAGIC: &[u8; 2] = b"SL";
const V_PLAIN: u8 = 0;
const V_AES: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a sealed value does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptError {
    /// The bytes are not an envelope (truncated or foreign data).
    #[error("not a sealed value ({len} bytes)")]
    Malformed {
        /// Length of the bytes.
        len: usize,
    },
    /// The envelope names a key id the keyring does not hold.
    #[error("sealed with unknown key id {kid}")]
    UnknownKey {
        /// The key id in the envelope.
        kid: String,
    },
    /// Authentication failed: tampered, or moved to another tenant/key (AAD mismatch).
    #[error("authentication failed under key id {kid}")]
    Tampered {
        /// The key id in the envelope.
        kid: String,
    },
    /// A plaintext envelope was found but plaintext is not allowed.
    #[error("value is stored unencrypted but plaintext is not allowed")]
    PlaintextRefused,
}

/// A 32-byte AES-256 master key.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(kid={})", self.key_id())
    }
}

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        let raw = Zeroizing::new(
            B64.decode(text.trim().as_bytes())
                .map_err(|e| StoreError::Config { detail: format!("master key is not base64: {e}") })?,
        );
        let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| StoreError::Config {
            detail: format!("master key must be 32 bytes, got {}", raw.len()),
        })?;
        Ok(Self::from_bytes(arr))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut arr = [0u8; 32];
        arr.copy_from_slice(key.as_slice());
        Self::from_bytes(arr)
    }

    /// The key id: 16 hex chars of SHA-256 over a label and the key. Safe to store and log.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"staylinked master key id v1");
        h.update(self.0.as_slice());
        let d = h.finalize();
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.0.as_slice()))
    }
}

/// Opens and seals values. Holds the current key (new values) and older keys (reads only).
pub struct Keyring {
    current: Option<(String, Aes256Gcm)>,
    old: Vec<(String, Aes256Gcm)>,
    /// HMAC keys for key document ids: the current one first (the fixed
    /// [`PLAINTEXT_ID_KEY_LABEL`] key in plaintext mode), then one per old master key.
    id_keys: Vec<Zeroizing<[u8; 32]>>,
}

/// The documented input of the id key in plaintext mode (no master key): ids are still
/// hashed, which hides them from casual reading, but anyone can recompute them.
pub const PLAINTEXT_ID_KEY_LABEL: &[u8] = b"staylinked plaintext mode: no master key";

/// HKDF-SHA256 of `ikm` for the key document id HMAC key.
fn derive_id_key(ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hkdf::Hkdf::<Sha256>::new(Some(b"staylinked"), ikm)
        .expand(b"staylinked key document ids v1", out.as_mut_slice());
    out
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.as_ref().map(|(k, _)| k))
            .field("old", &self.old.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// Where the backend runs; decides what happens without a master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// Firestore: a master key is required unless `STAYLINKED_ALLOW_PLAINTEXT=1`.
    Remote,
    /// Embedded: without a master key, use (or create) a local key file.
    Local,
}

/// The additional authenticated data of a value: tenant + storage key.
pub(crate) fn aad(tenant: &TenantId, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + tenant.as_str().len() + name.len());
    v.extend_from_slice(b"staylinked/v1\0");
    v.extend_from_slice(tenant.as_str().as_bytes());
    v.push(0);
    v.extend_from_slice(name.as_bytes());
    v
}

fn cipher(k: &MasterKey) -> (String, Aes256Gcm) {
    (k.key_id(), Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(k.0.as_slice())))
}

impl Keyring {
    /// A keyring sealing with `current`, able to open values sealed with any of `old` too.
    pub fn new(current: &MasterKey, old: &[MasterKey]) -> Self {
        let id_keys = std::iter::once(current).chain(old).map(|k| derive_id_key(k.0.as_slice())).collect();
        Self { current: Some(cipher(current)), old: old.iter().map(cipher).collect(), id_keys }
    }

    /// The keyed hashes (hex, 128 bits) of a key document's real id for `tenant`: the current
    /// id key first, then one per old master key. Used as document ids so stored ids do not
    /// expose contacts' addresses.
    pub(crate) fn id_hashes(&self, tenant: &TenantId, real_id: &str) -> Vec<String> {
        use hmac::Mac as _;
        self.id_keys
            .iter()
            .map(|k| {
                let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(k.as_slice())
                    .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
                mac.update(tenant.as_str().as_bytes());
                mac.update(&[0]);
                mac.update(real_id.as_bytes());
                let d = mac.finalize().into_bytes();
                d.iter().take(16).map(|b| format!("{b:02x}")).collect()
            })
            .collect()
    }

    /// No encryption: values are stored in plaintext envelopes. Only for
    /// `STAYLINKED_ALLOW_PLAINTEXT=1` and tests.
    pub fn plaintext() -> Self {
        Self { current: None, old: Vec::new(), id_keys: vec![derive_id_key(PLAINTEXT_ID_KEY_LABEL)] }
    }

    /// Whether values are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.current.is_some()
    }

    /// The key id new values are sealed with (`None` in plaintext mode).
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|(k, _)| k.as_str())
    }

    /// Builds the keyring from the environment ([`ENV_MASTER_KEY`], [`ENV_MASTER_KEYS_OLD`],
    /// [`ENV_ALLOW_PLAINTEXT`]). With [`KeyPolicy::Local`] and no master key, a key file at
    /// `local_key_file` is used, created (mode 0600) if missing.
    pub fn from_env(policy: KeyPolicy, local_key_file: Option<&Path>) -> Result<Self, StoreError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let old = match var(ENV_MASTER_KEYS_OLD) {
            Some(list) => parse_key_list(&Zeroizing::new(list))?,
            None => Vec::new(),
        };
        if let Some(k) = var(ENV_MASTER_KEY) {
            let k = Zeroizing::new(k);
            return Ok(Self::new(&MasterKey::from_base64(&k)?, &old));
        }
        match (policy, local_key_file) {
            (KeyPolicy::Local, Some(path)) => Ok(Self::new(&load_or_create_key_file(path)?, &old)),
            _ if var(ENV_ALLOW_PLAINTEXT).as_deref() == Some("1") => Ok(Self::plaintext()),
            _ => Err(StoreError::Config {
                detail: format!(
                    "{ENV_MASTER_KEY} is not set; set it to base64 of 32 random bytes \
                     (or {ENV_ALLOW_PLAINTEXT}=1 to store secrets unencrypted)"
                ),
            }),
        }
    }

    /// Whether `sealed` must be re-sealed to be under the current key: an envelope naming
    /// another key id (or a plaintext envelope once a master key is configured). `false` in
    /// plaintext mode and for values already under the current key.
    pub fn is_stale(&self, sealed: &[u8]) -> bool {
        match self.current_key_id() {
            None => false,
            Some(cur) => Self::key_id_of(sealed) != Some(cur),
        }
    }

    /// Opens `sealed` (under any key of the ring) and seals it again under the current key:
    /// `Ok(None)` when it already is. Used by lazy rewrapping and `staylinked rekey`.
    pub fn reseal(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.is_stale(sealed) {
            return Ok(None);
        }
        let plain = self.open(tenant, name, sealed).map_err(|e| StoreError::corrupt(tenant, name, e))?;
        self.seal(tenant, name, &plain).map(Some)
    }

    /// Seals `plaintext` for storage key `name` of `tenant`.
    pub fn seal(&self, tenant: &TenantId, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let Some((kid, c)) = &self.current else {
            let mut out = Vec::with_capacity(3 + plaintext.len());
            out.extend_from_slice(MAGIC);
            out.push(V_PLAIN);
            out.extend_from_slice(plaintext);
            return Ok(out);
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad(tenant, name);
        let ct = c
            .encrypt(&nonce, Payload { msg: plaintext, aad: &aad })
            .map_err(|_| StoreError::backend("seal", "aes-gcm encryption failed"))?;
        let kid_len = u8::try_from(kid.len()).map_err(|_| StoreError::backend("seal", "key id too long"))?;
        let mut out = Vec::with_capacity(4 + kid.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.push(V_AES);
        out.push(kid_len);
        out.extend_from_slice(kid.as_bytes());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a value sealed for storage key `name` of `tenant`.
    pub fn open(
        &self,
        tenant: &TenantId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptError> {
        let malformed = || CryptError::Malformed { len: sealed.len() };
        let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(malformed)?;
        let (&version, rest) = rest.split_first().ok_or_else(malformed)?;
        match version {
            V_PLAIN if self.current.is_none() => Ok(Zeroizing::new(rest.to_vec())),
            V_PLAIN => Err(CryptError::PlaintextRefused),
            V_AES => {
                let (&kid_len, rest) = rest.split_first().ok_or_else(malformed)?;
                let (kid, rest) = rest.split_at_checked(usize::from(kid_len)).ok_or_else(malformed)?;
                let kid = std::str::from_utf8(kid).map_err(|_| malformed())?;
                let (nonce, ct) = rest.split_at_checked(NONCE_LEN).ok_or_else(malformed)?;
                let c = self
                    .current
                    .iter()
                    .chain(self.old.iter())
                    .find(|(k, _)| k == kid)
                    .map(|(_, c)| c)
                    .ok_or_else(|| CryptError::UnknownKey { kid: kid.to_owned() })?;
                let aad = aad(tenant, name);
                c.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                    .map(Zeroizing::new)
                    .map_err(|_| CryptError::Tampered { kid: kid.to_owned() })
            }
            _ => Err(malformed()),
        }
    }

    /// The key id a sealed value names (for console display), if any.
    pub fn key_id_of(sealed: &[u8]) -> Option<&str> {
        let rest = sealed.strip_prefix(MAGIC.as_slice())?;
        let (&v, rest) = rest.split_first()?;
        if v != V_AES {
            return None;
        }
        let (&n, rest) = rest.split_first()?;
        std::str::from_utf8(rest.get(..usize::from(n))?).ok()
    }
}

/// Parses a comma-separated list of base64 master keys (`STAYLINKED_MASTER_KEYS_OLD`); blank
/// entries are skipped.
pub fn parse_key_list(list: &str) -> Result<Vec<MasterKey>, StoreError> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(MasterKey::from_base64).collect()
}

/// Reads the local key file, or creates it with a fresh key (mode 0600, never overwritten).
pub fn load_or_create_key_file(path: &Path) -> Result<MasterKey, StoreError> {
    let cfg = |e: std::io::Error| StoreError::Config { detail: format!("key file {}: {e}", path.display()) };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            MasterKey::from_base64(&text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(cfg)?;
            }
            let key = MasterKey::generate();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            use std::io::Write;
            let mut f = opts.open(path).map_err(cfg)?;
            f.write_all(key.to_base64().as_bytes()).map_err(cfg)?;
            f.sync_all().map_err(cfg)?;
            tracing::info!(key_id = %key.key_id(), path = %path.display(), "created local master key file");
            Ok(key)
        }
        Err(e) => Err(cfg(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::new(s).unwrap()
    }

    /// A sealed value opens under the same tenant and key name.
    #[test]
    fn seal_open_roundtrip() {
        let k = Keyring::new(&MasterKey::generate(), &[]);
        let sealed = k.seal(&t("a"), "keys/session-x", b"ratchet").unwrap();
        assert_eq!(k.open(&t("a"), "keys/session-x", &sealed).unwrap().as_slice(), b"ratchet");
        assert!(!sealed.windows(7).any(|w| w == b"ratchet"), "plaintext visible in envelope");
    }

    /// Flipping any byte of the envelope makes it fail to open.
    #[test]
    fn tampered_value_fails() {
        let k = Keyring::new(&MasterKey::generate(), &[]);
        let sealed = k.seal(&t("a"), "creds/current", b"secret").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(k.open(&t("a"), "creds/current", &bad).is_err(), "byte {i} flip accepted");
        }
    }

    /// A value moved to another tenant or another key name fails to open (AAD binding).
    #[test]
    fn moved_value_fails() {
        let k = Keyring::new(&MasterKey::generate(), &[]);
        let sealed = k.seal(&t("a"), "keys/pre-key-1", b"x").unwrap();
        assert!(matches!(k.open(&t("b"), "keys/pre-key-1", &sealed), Err(CryptError::Tampered { .. })));
        assert!(matches!(k.open(&t("a"), "keys/pre-key-2", &sealed), Err(CryptError::Tampered { .. })));
    }

    /// After rotation, values sealed under the old key still open; new ones use the new key id.
    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let sealed_old = Keyring::new(&old, &[]).seal(&t("a"), "n", b"v1").unwrap();
        let ring = Keyring::new(&new, std::slice::from_ref(&old));
        assert_eq!(ring.open(&t("a"), "n", &sealed_old).unwrap().as_slice(), b"v1");
        let sealed_new = ring.seal(&t("a"), "n", b"v2").unwrap();
        assert_eq!(Keyring::key_id_of(&sealed_new), Some(new.key_id().as_str()));
        let without_old = Keyring::new(&new, &[]);
        assert!(matches!(without_old.open(&t("a"), "n", &sealed_old), Err(CryptError::UnknownKey { .. })));
    }

    /// Plaintext envelopes are refused by an encrypting keyring, and vice versa encrypted ones
    /// cannot be read without the key.
    #[test]
    fn plaintext_mode_is_explicit() {
        let plain = Keyring::plaintext();
        let sealed = plain.seal(&t("a"), "n", b"v").unwrap();
        assert_eq!(plain.open(&t("a"), "n", &sealed).unwrap().as_slice(), b"v");
        let enc = Keyring::new(&MasterKey::generate(), &[]);
        assert_eq!(enc.open(&t("a"), "n", &sealed), Err(CryptError::PlaintextRefused));
        let sealed_enc = enc.seal(&t("a"), "n", b"v").unwrap();
        assert!(plain.open(&t("a"), "n", &sealed_enc).is_err());
    }

    /// Key document id hashes depend on tenant, id and master key; plaintext mode hashes
    /// under a fixed key; a rotated ring yields the current hash first, then the old key's.
    #[test]
    fn id_hashes_are_keyed() {
        let (k1, k2) = (MasterKey::generate(), MasterKey::generate());
        let r1 = Keyring::new(&k1, &[]);
        let h = r1.id_hashes(&t("a"), "session-15551234567%2E0");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].len(), 32);
        assert_ne!(h, r1.id_hashes(&t("b"), "session-15551234567%2E0"), "tenant not bound");
        assert_ne!(h, Keyring::new(&k2, &[]).id_hashes(&t("a"), "session-15551234567%2E0"));
        let rotated =
            Keyring::new(&k2, std::slice::from_ref(&k1)).id_hashes(&t("a"), "session-15551234567%2E0");
        assert_eq!(rotated.get(1), h.first());
        let p = Keyring::plaintext().id_hashes(&t("a"), "x");
        assert_eq!(p, Keyring::plaintext().id_hashes(&t("a"), "x"));
    }

    /// Master keys parse only from base64 of exactly 32 bytes; Debug shows only the key id.
    #[test]
    fn master_key_parsing() {
        assert!(MasterKey::from_base64("AAAA").is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
        let k = MasterKey::from_base64(&B64.encode([7u8; 32])).unwrap();
        assert_eq!(k.key_id().len(), 16);
        assert!(!format!("{k:?}").contains("BwcH"));
    }

    /// The local key file is created 0600 once and then reused.
    #[test]
    fn local_key_file_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/staylinked.key");
        let a = load_or_create_key_file(&p).unwrap();
        let b = load_or_create_key_file(&p).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic `open`.
        #[test]
        fn open_arbitrary_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let k = Keyring::new(&MasterKey::from_bytes([1; 32]), &[]);
            let _ = k.open(&t("a"), "n", &bytes);
            let _ = Keyring::plaintext().open(&t("a"), "n", &bytes);
            let _ = Keyring::key_id_of(&bytes);
        }
    }
}
