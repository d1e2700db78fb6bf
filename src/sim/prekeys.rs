//! The server's copy of a companion's public Signal keys: identity, registration id, signed
//! prekey (from the registration payload, replaced by every upload) and the pool of one-time
//! prekeys (from `<iq xmlns="encrypt" type="set">` uploads), handed out once each by bundle
//! fetches (protocol/11-messages.md §3.2).
//!
//! Public keys only; no private key material, no sockets, no clocks.

use std::collections::BTreeMap;

use crate::wa::binary::Node;
use crate::wa::message::StanzaError;
use crate::wa::message::prekeys::parse_bundle;
use crate::wa::proto::client_payload::DevicePairingRegistrationData;
use crate::wa::signal::{PreKeyBundle, PublicKey};

/// Most one-time prekeys the server keeps per device; a larger upload keeps the newest ones.
const MAX_POOL: usize = 812;

/// A companion's uploaded public keys.
#[derive(Debug, Clone)]
pub(crate) struct CompanionKeys {
    registration_id: u32,
    identity: PublicKey,
    signed: Option<SignedKey>,
    one_time: BTreeMap<u32, PublicKey>,
    /// Count reported to the companion when it holds no real pool (bench provisioning).
    assumed: usize,
}

#[derive(Debug, Clone)]
struct SignedKey {
    id: u32,
    key: PublicKey,
    signature: [u8; 64],
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

impl CompanionKeys {
    /// The keys of a registration payload. `None` unless the identity key is 32 bytes; a
    /// malformed signed prekey is dropped (the first upload brings one).
    pub(crate) fn from_registration(reg: &DevicePairingRegistrationData) -> Option<Self> {
        let identity = reg.e_ident.as_deref().and_then(|b| <[u8; 32]>::try_from(b).ok())?;
        let registration_id = reg.e_regid.as_deref().filter(|b| b.len() == 4).map_or(0, be);
        let signed = match (&reg.e_skey_id, &reg.e_skey_val, &reg.e_skey_sig) {
            (Some(id), Some(val), Some(sig)) if id.len() == 3 => {
                match (<[u8; 32]>::try_from(val.as_slice()), <[u8; 64]>::try_from(sig.as_slice())) {
                    (Ok(key), Ok(signature)) => {
                        Some(SignedKey { id: be(id), key: PublicKey::from_raw(key), signature })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        Some(Self {
            registration_id,
            identity: PublicKey::from_raw(identity),
            signed,
            one_time: BTreeMap::new(),
            assumed: 0,
        })
    }

    /// Keys known only by identity (a device linked without a registration payload: tests and
    /// bench provisioning). No bundle can be served until it uploads.
    pub(crate) fn identity_only(identity: [u8; 32]) -> Self {
        Self {
            registration_id: 0,
            identity: PublicKey::from_raw(identity),
            signed: None,
            one_time: BTreeMap::new(),
            assumed: 0,
        }
    }

    /// Makes the prekey count answer at least `n` even though no keys were uploaded (bench
    /// provisioning: skips the upload at login).
    pub(crate) fn assume_pool(&mut self, n: u32) {
        self.assumed = usize::try_from(n).unwrap_or(usize::MAX);
    }

    /// Applies a prekey upload iq (`<registration><type><identity><list><key>…</list><skey>`).
    /// Returns how many one-time keys it added.
    ///
    /// # Errors
    /// [`StanzaError`] when a required child is missing or has the wrong length; nothing changes.
    pub(crate) fn apply_upload(&mut self, iq: &Node) -> Result<usize, StanzaError> {
        let bundle = parse_bundle(iq, iq)?;
        let mut keys = Vec::new();
        if let Some(list) = iq.child("list") {
            for k in list.children_with_tag("key") {
                let id = fixed::<3>(k, "id")?;
                let value = fixed::<32>(k, "value")?;
                keys.push((be(&id), PublicKey::from_raw(value)));
            }
        }
        self.registration_id = bundle.registration_id;
        self.identity = bundle.identity_key;
        self.signed = Some(SignedKey {
            id: bundle.signed_pre_key_id,
            key: bundle.signed_pre_key,
            signature: bundle.signed_pre_key_signature,
        });
        let added = keys.len();
        self.one_time.extend(keys);
        while self.one_time.len() > MAX_POOL {
            self.one_time.pop_first();
        }
        Ok(added)
    }

    /// One-time prekeys still in the pool.
    pub(crate) fn pool_size(&self) -> usize {
        self.one_time.len().max(self.assumed)
    }

    /// The identity key.
    pub(crate) fn identity(&self) -> PublicKey {
        self.identity
    }

    /// A bundle for a fetch, consuming the lowest one-time prekey (none when the pool is
    /// empty). `None` until a signed prekey is known.
    pub(crate) fn take_bundle(&mut self) -> Option<PreKeyBundle> {
        let signed = self.signed.as_ref()?;
        let bundle = PreKeyBundle {
            registration_id: self.registration_id,
            identity_key: self.identity,
            signed_pre_key_id: signed.id,
            signed_pre_key: signed.key,
            signed_pre_key_signature: signed.signature,
            pre_key: None,
        };
        Some(PreKeyBundle { pre_key: self.one_time.pop_first(), ..bundle })
    }
}

fn fixed<const N: usize>(parent: &Node, tag: &'static str) -> Result<[u8; N], StanzaError> {
    let c = parent.child(tag).ok_or(StanzaError::MissingChild { parent: "key", child: tag })?;
    let b = c.content_bytes().ok_or(StanzaError::MissingBytes { tag })?;
    b.try_into().map_err(|_| StanzaError::BadLength { tag, len: b.len(), expected: N })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn upload(ids: &[u32]) -> Node {
        let keys = ids.iter().map(|id| {
            Node::new("key").children([
                Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
                Node::new("value").bytes(vec![*id as u8; 32]),
            ])
        });
        Node::new("iq").children([
            Node::new("registration").bytes(77u32.to_be_bytes().to_vec()),
            Node::new("type").bytes(vec![5]),
            Node::new("identity").bytes(vec![9; 32]),
            Node::new("list").children(keys),
            Node::new("skey").children([
                Node::new("id").bytes(vec![0, 0, 1]),
                Node::new("value").bytes(vec![3; 32]),
                Node::new("signature").bytes(vec![4; 64]),
            ]),
        ])
    }

    /// An upload fills the pool; each fetch hands out one distinct one-time key, then none.
    #[test]
    fn upload_then_fetch_consumes_one_time_keys() {
        let mut k = CompanionKeys::identity_only([1; 32]);
        assert!(k.take_bundle().is_none(), "no signed prekey yet");
        assert_eq!(k.apply_upload(&upload(&[5, 6])).unwrap(), 2);
        let b1 = k.take_bundle().unwrap();
        let b2 = k.take_bundle().unwrap();
        let b3 = k.take_bundle().unwrap();
        assert_eq!((b1.pre_key.map(|p| p.0), b2.pre_key.map(|p| p.0), b3.pre_key), (Some(5), Some(6), None));
        assert_eq!((b1.registration_id, b1.signed_pre_key_id, *b1.identity_key.raw()), (77, 1, [9; 32]));
        assert_eq!(k.pool_size(), 0);
    }

    /// The registration payload gives identity, registration id and signed prekey.
    #[test]
    fn registration_payload_keys() {
        let reg = DevicePairingRegistrationData {
            e_regid: Some(vec![0, 0, 1, 2]),
            e_ident: Some(vec![8; 32]),
            e_skey_id: Some(vec![0, 0, 7]),
            e_skey_val: Some(vec![6; 32]),
            e_skey_sig: Some(vec![5; 64]),
            ..Default::default()
        };
        let mut k = CompanionKeys::from_registration(&reg).unwrap();
        let b = k.take_bundle().unwrap();
        assert_eq!((b.registration_id, b.signed_pre_key_id, b.pre_key), (258, 7, None));
        assert!(CompanionKeys::from_registration(&DevicePairingRegistrationData::default()).is_none());
    }

    /// A malformed upload is a typed error and changes nothing.
    #[test]
    fn malformed_upload_changes_nothing() {
        let mut k = CompanionKeys::identity_only([1; 32]);
        assert!(k.apply_upload(&Node::new("iq")).is_err());
        assert!(k.take_bundle().is_none());
    }

    proptest! {
        /// Arbitrary upload nodes never panic.
        #[test]
        fn arbitrary_upload_never_panics(ids in proptest::collection::vec(any::<u32>(), 0..8), junk in any::<u8>()) {
            let mut k = CompanionKeys::identity_only([junk; 32]);
            let mut n = upload(&ids);
            if junk % 2 == 0 { n = Node::new("iq").children([Node::new("list").children([Node::new("key")])]); }
            let _ = k.apply_upload(&n);
        }
    }
}
