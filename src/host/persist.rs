//! The one place where the protocol core's persistence types meet the store's: converts
//! [`wa::client::Creds`](crate::wa::client::Creds) / [`wa::client::Delta`](crate::wa::client::Delta)
//! to and from [`store::Creds`] / [`store::DeltaBatch`],
//! and commits each delta with the tenant's fencing token ([`StorePersister`], which also
//! implements [`conn::Persister`](crate::conn::Persister)).
//!
//! The two `Creds` types were written separately (the core's holds typed keys, the store's
//! holds opaque bytes); nothing else in the crate converts between them. No policy here: a
//! failed commit is returned to the caller, which decides to retry or stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use zeroize::Zeroizing;

use super::events::TenantEvent;
use super::metrics::Metrics;
use crate::conn::{PersistError, Persister};
use crate::store::model::InboxItem;
use crate::store::{self, DeltaBatch, KeyRef, SecretBytes, Store, StoreError};
use crate::types::{FencingToken, TenantId};
use crate::wa::client::{self as wa, KeyCache, KeyChange, KeyId, KeyLoadError, creds::SignedPreKey};
use crate::wa::noise::KeyPair;
use crate::wa::signal::{SenderKeyName, SignalAddress};

/// Stored credentials that cannot be turned back into the core's creds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredsError {
    /// A key field has the wrong length (store corruption or a foreign writer).
    #[error("stored {field} is {len} bytes, expected {want}")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The required length.
        want: usize,
    },
    /// A stored public key does not match its private key.
    #[error("stored {field} public key does not match its private key")]
    KeyMismatch {
        /// Which key pair.
        field: &'static str,
    },
    /// The stored account identity does not decode (or carries no account key).
    #[error("stored account identity is unusable: {detail}")]
    Account {
        /// What is wrong.
        detail: String,
    },
}

fn arr<const N: usize>(field: &'static str, b: &[u8]) -> Result<[u8; N], CredsError> {
    <[u8; N]>::try_from(b).map_err(|_| CredsError::BadLength { field, len: b.len(), want: N })
}

fn key_pair_to_store(k: &KeyPair) -> store::model::KeyPair {
    store::model::KeyPair {
        public: k.public().to_vec(),
        private: SecretBytes::new(k.private().to_bytes().to_vec()),
    }
}

fn key_pair_from_store(field: &'static str, k: &store::model::KeyPair) -> Result<KeyPair, CredsError> {
    let private = Zeroizing::new(arr::<32>(field, k.private.expose())?);
    let pair = KeyPair::from_private_bytes(*private);
    if pair.public().as_slice() != k.public.as_slice() {
        return Err(CredsError::KeyMismatch { field });
    }
    Ok(pair)
}

/// The core's creds as the store's record.
pub fn creds_to_store(c: &wa::Creds) -> store::Creds {
    store::Creds {
        noise_key: key_pair_to_store(&c.noise_key),
        identity_key: key_pair_to_store(&c.identity_key),
        registration_id: c.registration_id,
        signed_pre_key: store::model::SignedPreKey {
            id: c.signed_pre_key.key.id,
            key_pair: key_pair_to_store(&c.signed_pre_key.key.key),
            signature: c.signed_pre_key.signature.to_vec(),
        },
        adv_secret: SecretBytes::new(c.adv_secret.to_vec()),
        me: c.me.as_ref().map(|m| store::model::Me { jid: m.jid.clone(), lid: m.lid.clone() }),
        account: c.me.as_ref().map(|m| m.account.clone()),
        platform: c.me.as_ref().and_then(|m| m.platform.clone()),
        push_name: c.push_name.clone(),
        next_pre_key_id: c.next_pre_key_id,
        first_unuploaded_pre_key_id: c.next_pre_key_id,
        my_app_state_key_id: None,
        routing_info: None,
        last_prop_hash: None,
    }
}

/// The store's record as the core's creds. The primary's account key is read back out of the
/// stored `ADVSignedDeviceIdentity` (the store keeps the identity, not the key separately).
///
/// # Errors
/// [`CredsError`] when a field does not fit (never falls back to fresh creds).
pub fn creds_from_store(c: &store::Creds) -> Result<wa::Creds, CredsError> {
    let me = match &c.me {
        None => None,
        Some(m) => {
            let account =
                c.account.clone().ok_or_else(|| CredsError::Account { detail: "missing".into() })?;
            let ident = crate::wa::proto::AdvSignedDeviceIdentity::decode(account.as_slice())
                .map_err(|e| CredsError::Account { detail: e.to_string() })?;
            let key = ident
                .account_signature_key
                .as_deref()
                .ok_or_else(|| CredsError::Account { detail: "no account signature key".into() })?;
            Some(wa::Me {
                jid: m.jid.clone(),
                lid: m.lid.clone(),
                account,
                account_key: arr::<32>("account key", key)?,
                platform: c.platform.clone(),
            })
        }
    };
    Ok(wa::Creds {
        noise_key: key_pair_from_store("noise key", &c.noise_key)?,
        identity_key: key_pair_from_store("identity key", &c.identity_key)?,
        registration_id: c.registration_id,
        signed_pre_key: SignedPreKey {
            key: wa::PreKey {
                id: c.signed_pre_key.id,
                key: key_pair_from_store("signed pre-key", &c.signed_pre_key.key_pair)?,
            },
            signature: arr::<64>("signed pre-key signature", &c.signed_pre_key.signature)?,
        },
        adv_secret: Zeroizing::new(arr::<32>("adv secret", c.adv_secret.expose())?),
        me,
        push_name: c.push_name.clone(),
        next_pre_key_id: c.next_pre_key_id,
    })
}

/// A Signal address as stored (`name.device`, libsignal-node's form).
fn address_from_store(s: &str) -> Option<SignalAddress> {
    let (name, device) = s.rsplit_once('.')?;
    Some(SignalAddress::new(name, device.parse().ok()?))
}

/// The store's reference for a core key id.
pub fn key_ref(id: &KeyId) -> KeyRef {
    match id {
        KeyId::PreKey(n) => KeyRef::PreKey(*n),
        KeyId::Session(a) => KeyRef::Session(a.to_string()),
        KeyId::Identity(a) => KeyRef::Identity(a.to_string()),
        KeyId::SenderKey(n) => {
            KeyRef::SenderKey { group: n.group().to_owned(), sender: n.sender().to_string() }
        }
        KeyId::SenderKeyMemory(g) => KeyRef::SenderKeyMemory(g.clone()),
        KeyId::DeviceList(u) => KeyRef::DeviceList(u.clone()),
        KeyId::SentMessage(m) => KeyRef::SentMessage(m.clone()),
    }
}

/// The core key id of a stored reference; `None` for kinds the core does not load (app
/// state, LID mappings, …) and for malformed addresses.
pub fn key_id(r: &KeyRef) -> Option<KeyId> {
    Some(match r {
        KeyRef::PreKey(n) => KeyId::PreKey(*n),
        KeyRef::Session(a) => KeyId::Session(address_from_store(a)?),
        KeyRef::Identity(a) => KeyId::Identity(address_from_store(a)?),
        KeyRef::SenderKey { group, sender } => {
            KeyId::SenderKey(SenderKeyName::new(group.clone(), address_from_store(sender)?))
        }
        KeyRef::SenderKeyMemory(g) => KeyId::SenderKeyMemory(g.clone()),
        KeyRef::DeviceList(u) => KeyId::DeviceList(u.clone()),
        KeyRef::SentMessage(m) => KeyId::SentMessage(m.clone()),
        _ => return None,
    })
}

/// Builds the core's key cache from a tenant's stored keys. Entries that do not load are
/// returned (the caller logs them); the rest loads.
pub fn keys_from_store(keys: &BTreeMap<KeyRef, SecretBytes>) -> (KeyCache, Vec<KeyLoadError>) {
    KeyCache::from_entries(keys.iter().filter_map(|(r, v)| key_id(r).map(|id| (id, v.expose()))))
}

fn push_key_changes(batch: &mut DeltaBatch, changes: &[KeyChange]) {
    for c in changes {
        match c {
            KeyChange::Put { id, value } => batch.push(store::Delta::KeyPut {
                key: key_ref(id),
                value: SecretBytes::new(value.expose().to_vec()),
            }),
            KeyChange::Delete(id) => batch.push(store::Delta::KeyDelete(key_ref(id))),
        }
    }
}

/// Where a received message goes in the tenant's inbox: its id (sorting in arrival order)
/// and the arrival time.
#[derive(Debug, Clone, Copy)]
pub struct InboxSlot<'a> {
    /// The inbox item id.
    pub id: &'a str,
    /// Arrival time, unix ms.
    pub created_at: u64,
}

/// The tenant event a received message becomes (stored in the inbox, then published).
pub fn received_event(inbox_id: &str, message: &wa::ReceivedMessage) -> TenantEvent {
    TenantEvent::MessageReceived { inbox_id: inbox_id.to_owned(), message: message.clone() }
}

/// One core delta as a store batch (all or nothing). A `Delta::Received` with an `inbox` slot
/// also puts the inbox item (the serialised [`TenantEvent::MessageReceived`]) in the same
/// batch, so keys and message are durable together.
pub fn delta_to_batch_with_inbox(d: &wa::Delta, inbox: Option<InboxSlot<'_>>) -> DeltaBatch {
    let mut batch = delta_to_batch(d);
    if let (wa::Delta::Received { message, .. }, Some(slot)) = (d, inbox) {
        let payload = serde_json::to_vec(&received_event(slot.id, message)).unwrap_or_else(|e| {
            tracing::error!(error = %e, "received message does not serialise");
            Vec::new()
        });
        batch.push(store::Delta::InboxPut(InboxItem {
            id: slot.id.to_owned(),
            created_at: slot.created_at,
            payload: SecretBytes::new(payload),
        }));
    }
    batch
}

/// One core delta as a store batch (all or nothing).
pub fn delta_to_batch(d: &wa::Delta) -> DeltaBatch {
    let mut batch = DeltaBatch::new();
    match d {
        wa::Delta::Keys(changes) => push_key_changes(&mut batch, changes),
        wa::Delta::Received { keys, .. } => push_key_changes(&mut batch, keys),
        wa::Delta::Creds(c) => batch.push(store::Delta::CredsPut(Box::new(creds_to_store(c)))),
        wa::Delta::PreKeys(keys) => {
            for k in keys {
                batch.push(store::Delta::KeyPut {
                    key: KeyRef::PreKey(k.id),
                    value: SecretBytes::new(k.key.private().to_bytes().to_vec()),
                });
            }
        }
    }
    batch
}

/// Commits a tenant's deltas with its lease's fencing token.
#[derive(Debug, Clone)]
pub struct StorePersister {
    store: Arc<dyn Store>,
    tenant: TenantId,
    fence: FencingToken,
    metrics: Arc<Metrics>,
}

impl StorePersister {
    /// A persister for `tenant` holding the lease epoch `fence`.
    pub fn new(store: Arc<dyn Store>, tenant: TenantId, fence: FencingToken, metrics: Arc<Metrics>) -> Self {
        Self { store, tenant, fence, metrics }
    }

    /// Commits one delta; returns how many store deltas landed.
    ///
    /// # Errors
    /// The store's error, typed (`Fenced` means the lease is lost).
    pub async fn commit(&self, delta: &wa::Delta) -> Result<usize, StoreError> {
        self.commit_with(delta, None).await
    }

    /// Commits one delta; a `Delta::Received` also puts its inbox item `inbox_id` in the same
    /// batch (keys and message durable together).
    ///
    /// # Errors
    /// The store's error, typed (`Fenced` means the lease is lost).
    pub async fn commit_with(
        &self,
        delta: &wa::Delta,
        inbox: Option<InboxSlot<'_>>,
    ) -> Result<usize, StoreError> {
        self.commit_batch(&delta_to_batch_with_inbox(delta, inbox)).await
    }

    /// Commits a batch made by [`delta_to_batch_with_inbox`] (possibly trimmed); returns how
    /// many store deltas landed.
    ///
    /// # Errors
    /// The store's error, typed (`Fenced` means the lease is lost; `is_rejected` means this
    /// batch can never land).
    pub async fn commit_batch(&self, batch: &DeltaBatch) -> Result<usize, StoreError> {
        let started = tokio::time::Instant::now();
        let r = self.store.commit(&self.tenant, self.fence, batch).await;
        self.metrics.observe_commit(started.elapsed(), r.is_ok(), batch.len());
        r.map(|()| batch.len())
    }
}

impl Persister for StorePersister {
    async fn persist(&mut self, delta: &wa::Delta) -> Result<(), PersistError> {
        self.commit(delta).await.map(|_| ()).map_err(|e| PersistError(e.to_string()))
    }
}

/// Backoff between retries of a failed commit (the tenant is blocked meanwhile).
pub(crate) fn commit_retry_delay(failures: u32) -> Duration {
    Duration::from_millis(100).saturating_mul(1u32 << failures.min(6)).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Fresh creds survive the round trip through the store record unchanged.
    #[test]
    fn unpaired_creds_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let c = wa::Creds::generate(&mut rng);
        let back = creds_from_store(&creds_to_store(&c)).unwrap();
        assert_eq!(back.noise_key.public(), c.noise_key.public());
        assert_eq!(back.identity_key.public(), c.identity_key.public());
        assert_eq!(back.signed_pre_key.signature, c.signed_pre_key.signature);
        assert_eq!(*back.adv_secret, *c.adv_secret);
        assert_eq!((back.registration_id, back.next_pre_key_id), (c.registration_id, c.next_pre_key_id));
        assert!(back.me.is_none());
    }

    /// Paired creds keep `me`, the account identity and the account key derived from it.
    #[test]
    fn paired_creds_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut c = wa::Creds::generate(&mut rng);
        let ident = crate::wa::proto::AdvSignedDeviceIdentity {
            details: Some(vec![1, 2]),
            account_signature_key: Some(vec![9; 32]),
            account_signature: Some(vec![3; 64]),
            device_signature: Some(vec![4; 64]),
        };
        c.me = Some(wa::Me {
            jid: "15550001111:2@s.whatsapp.net".into(),
            lid: None,
            account: ident.encode_to_vec(),
            account_key: [9; 32],
            platform: Some("android".into()),
        });
        let back = creds_from_store(&creds_to_store(&c)).unwrap();
        assert_eq!(back.me, c.me);
    }

    /// Corrupt stored creds are an error value, never fresh creds or a panic.
    #[test]
    fn corrupt_creds_are_errors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut s = creds_to_store(&wa::Creds::generate(&mut rng));
        s.adv_secret = SecretBytes::new(vec![1, 2, 3]);
        assert!(matches!(creds_from_store(&s), Err(CredsError::BadLength { field: "adv secret", .. })));
        let mut s = creds_to_store(&wa::Creds::generate(&mut rng));
        s.noise_key.public = vec![0; 32];
        assert_eq!(creds_from_store(&s).unwrap_err(), CredsError::KeyMismatch { field: "noise key" });
        let mut s = creds_to_store(&wa::Creds::generate(&mut rng));
        s.me = Some(store::model::Me { jid: "1@s.whatsapp.net".into(), lid: None });
        s.account = Some(vec![0xff, 0xff]);
        assert!(matches!(creds_from_store(&s), Err(CredsError::Account { .. })));
    }

    /// Pre-key deltas become one key put per pre-key, in order, in one batch.
    #[test]
    fn prekeys_become_key_puts() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let keys = (5..8).map(|id| wa::PreKey { id, key: KeyPair::generate(&mut rng) }).collect();
        let b = delta_to_batch(&wa::Delta::PreKeys(keys));
        let ids: Vec<_> = b
            .deltas
            .iter()
            .map(|d| match d {
                store::Delta::KeyPut { key: KeyRef::PreKey(id), .. } => *id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![5, 6, 7]);
    }

    /// Every core key id maps to a store reference and back; other kinds are not loaded.
    #[test]
    fn key_refs_round_trip() {
        let addr = SignalAddress::new("15550001111@s.whatsapp.net", 3);
        let ids = [
            KeyId::PreKey(9),
            KeyId::Session(addr.clone()),
            KeyId::Identity(addr.clone()),
            KeyId::SenderKey(SenderKeyName::new("1203@g.us", addr)),
            KeyId::SenderKeyMemory("1203@g.us".into()),
            KeyId::DeviceList("15550001111@s.whatsapp.net".into()),
        ];
        for id in ids {
            let r = key_ref(&id);
            let back = KeyRef::parse_doc_id(&r.doc_id()).unwrap();
            assert_eq!(key_id(&back), Some(id));
        }
        assert_eq!(key_id(&KeyRef::LidMapping("x".into())), None);
        assert_eq!(key_id(&KeyRef::Session("no-device".into())), None);
    }

    /// Key changes become puts and deletes in one batch, in order; a received message's keys
    /// land in the same batch; stored prekeys (raw private bytes) hydrate back.
    #[test]
    fn key_changes_become_one_batch_and_hydrate() {
        let addr = SignalAddress::new("2@s.whatsapp.net", 1);
        let changes = vec![
            KeyChange::Put { id: KeyId::Session(addr.clone()), value: wa::KeyValue::new(vec![1, 2]) },
            KeyChange::Delete(KeyId::PreKey(4)),
        ];
        let b = delta_to_batch(&wa::Delta::Keys(changes.clone()));
        assert!(matches!(
            &b.deltas[..],
            [
                store::Delta::KeyPut { key: KeyRef::Session(_), .. },
                store::Delta::KeyDelete(KeyRef::PreKey(4))
            ]
        ));
        let msg = wa::ReceivedMessage {
            id: "X".into(),
            chat: "2@s.whatsapp.net".into(),
            sender: "2:1@s.whatsapp.net".into(),
            from_me: false,
            text: Some("t".into()),
            timestamp: 1,
            offline: false,
            push_name: None,
        };
        let r = delta_to_batch_with_inbox(
            &wa::Delta::Received { keys: changes, message: Box::new(msg) },
            Some(InboxSlot { id: "0000000000001-000001", created_at: 1 }),
        );
        match &r.deltas[..] {
            [store::Delta::KeyPut { .. }, store::Delta::KeyDelete(_), store::Delta::InboxPut(item)] => {
                assert_eq!(item.id, "0000000000001-000001");
                let v: serde_json::Value = serde_json::from_slice(item.payload.expose()).unwrap();
                assert_eq!(v["event"], "message.received");
                assert_eq!(v["data"]["inbox_id"], "0000000000001-000001");
                assert_eq!(v["data"]["message"]["text"], "t");
            }
            other => panic!("{other:?}"),
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let pk = wa::PreKey { id: 12, key: KeyPair::generate(&mut rng) };
        let b = delta_to_batch(&wa::Delta::PreKeys(vec![pk.clone()]));
        let mut stored = BTreeMap::new();
        for d in b.deltas {
            if let store::Delta::KeyPut { key, value } = d {
                stored.insert(key, value);
            }
        }
        stored.insert(KeyRef::Session(addr.to_string()), SecretBytes::new(vec![0xff]));
        let (keys, errors) = keys_from_store(&stored);
        assert_eq!((keys.pre_key_count(), errors.len()), (1, 1), "corrupt session skipped, prekey loaded");
    }
}
