//! The client's in-memory Signal key cache (one-time prekeys, sessions, peer identities, sender
//! keys, sender-key memory per group, cached device lists), its hydration from stored
//! `(key id, bytes)` entries and the [`KeyChange`]s that make each update durable.
//!
//! The cache is the core's working view; every change to it is also returned as a
//! [`KeyChange`] that the caller puts in an [`Output::Persist`](super::Output::Persist) before
//! anything depending on it leaves the core. No IO and no store types here: the host maps
//! [`KeyId`] to its own key references.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Instant;

use zeroize::Zeroizing;

use super::creds::PreKey;
use super::placeholder::Placeholders;
use super::sent::{SentLoadError, SentStore};
use crate::wa::noise::KeyPair;
use crate::wa::signal::{
    PreKeyRecord, PublicKey, SenderKeyName, SenderKeyRecord, SessionRecord, SignalAddress, SignalDelta,
    SignalError,
};

/// Which stored key an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyId {
    /// One-time prekey by id (value: the 32-byte private key).
    PreKey(u32),
    /// Pairwise session of a remote device (value: `SessionRecord::encode`).
    Session(SignalAddress),
    /// Identity key of a remote device (value: the raw 32-byte public key).
    Identity(SignalAddress),
    /// Sender key of one sender in one group (value: `SenderKeyRecord::encode`).
    SenderKey(SenderKeyName),
    /// Devices that hold our sender key for a group JID (value: JSON list of device JIDs).
    SenderKeyMemory(String),
    /// Cached device ids of a user JID (value: JSON list of device numbers).
    DeviceList(String),
    /// A message we sent, by message id, kept for retry receipts (value: a prost record of
    /// chat, time and the `waE2E.Message`; see `client::sent`).
    SentMessage(String),
}

/// A stored key value; `Debug` never prints it and it is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue(Zeroizing<Vec<u8>>);

impl KeyValue {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes (for the store).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0.len())
    }
}

/// One change to the stored keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChange {
    /// Store (replace) a key.
    Put {
        /// Which key.
        id: KeyId,
        /// Its bytes.
        value: KeyValue,
    },
    /// Delete a key (a consumed one-time prekey).
    Delete(KeyId),
}

/// A stored key entry that cannot be loaded; the entry is skipped, the rest loads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyLoadError {
    /// Store corruption or a foreign writer: a Signal record does not decode.
    #[error("stored {id:?} does not decode")]
    Record {
        /// The entry.
        id: KeyId,
        /// Why.
        #[source]
        source: SignalError,
    },
    /// Store corruption: a fixed-size key has the wrong length.
    #[error("stored {id:?} is {len} bytes, expected {want}")]
    BadLength {
        /// The entry.
        id: KeyId,
        /// Its length.
        len: usize,
        /// The required length.
        want: usize,
    },
    /// Store corruption: a sent-message record does not decode.
    #[error("stored {id:?} is not a valid sent-message record")]
    Sent {
        /// The entry.
        id: KeyId,
        /// Why.
        #[source]
        source: SentLoadError,
    },
    /// Store corruption: a JSON list does not decode.
    #[error("stored {id:?} is not a valid list")]
    BadList {
        /// The entry.
        id: KeyId,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// A cached device list: the device numbers and when usync returned them (`None`: loaded from
/// the store, so of unknown age; refreshed before use).
#[derive(Debug, Clone)]
pub(crate) struct DeviceList {
    pub(crate) devices: Vec<u16>,
    pub(crate) fetched: Option<Instant>,
}

/// Everything Signal-related the client keeps besides its creds.
#[derive(Default)]
pub struct KeyCache {
    pub(crate) pre_keys: HashMap<u32, PreKeyRecord>,
    pub(crate) sessions: HashMap<SignalAddress, SessionRecord>,
    pub(crate) identities: HashMap<SignalAddress, PublicKey>,
    pub(crate) sender_keys: HashMap<SenderKeyName, SenderKeyRecord>,
    pub(crate) sender_key_memory: HashMap<String, BTreeSet<String>>,
    pub(crate) device_lists: HashMap<String, DeviceList>,
    /// Messages we sent, for retry receipts (durable, bounded).
    pub(crate) sent: SentStore,
    /// Not persisted: retry receipts sent per inbound message id, carried across connections
    /// with the cache so a message redelivered on every new connection still reaches the
    /// final answer after [`MAX_RETRY_RECEIPTS`](super::recv::MAX_RETRY_RECEIPTS).
    pub(crate) retries_in: HashMap<String, u32>,
    /// Not persisted: placeholder-resend requests to our phone, carried across connections.
    pub(crate) placeholders: Placeholders,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("pre_keys", &self.pre_keys.len())
            .field("sessions", &self.sessions.len())
            .field("identities", &self.identities.len())
            .field("sender_keys", &self.sender_keys.len())
            .field("groups", &self.sender_key_memory.len())
            .field("device_lists", &self.device_lists.len())
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}

fn fixed<const N: usize>(id: &KeyId, bytes: &[u8]) -> Result<[u8; N], KeyLoadError> {
    <[u8; N]>::try_from(bytes).map_err(|_| KeyLoadError::BadLength {
        id: id.clone(),
        len: bytes.len(),
        want: N,
    })
}

impl KeyCache {
    /// An empty cache (a freshly paired device).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the cache from stored entries. Each entry that does not decode is reported and
    /// skipped (a lost session or prekey is recovered by a retry receipt; refusing to start
    /// would lose every other conversation).
    pub fn from_entries<'a>(
        entries: impl IntoIterator<Item = (KeyId, &'a [u8])>,
    ) -> (Self, Vec<KeyLoadError>) {
        let mut cache = Self::new();
        let mut errors = Vec::new();
        for (id, bytes) in entries {
            if let Err(e) = cache.load_one(id, bytes) {
                errors.push(e);
            }
        }
        (cache, errors)
    }

    fn load_one(&mut self, id: KeyId, bytes: &[u8]) -> Result<(), KeyLoadError> {
        let rec = |id: &KeyId, source| KeyLoadError::Record { id: id.clone(), source };
        match &id {
            KeyId::PreKey(n) => {
                // The prekey upload path stores the raw private key; accept a full record too.
                let record = if bytes.len() == 32 {
                    PreKeyRecord::new(*n, KeyPair::from_private_bytes(fixed::<32>(&id, bytes)?))
                } else {
                    PreKeyRecord::decode(bytes).map_err(|e| rec(&id, e))?
                };
                self.pre_keys.insert(*n, record);
            }
            KeyId::Session(a) => {
                let r = SessionRecord::decode(bytes).map_err(|e| rec(&id, e))?;
                self.sessions.insert(a.clone(), r);
            }
            KeyId::Identity(a) => {
                let k = PublicKey::from_raw(fixed::<32>(&id, bytes)?);
                self.identities.insert(a.clone(), k);
            }
            KeyId::SenderKey(n) => {
                let r = SenderKeyRecord::decode(bytes).map_err(|e| rec(&id, e))?;
                self.sender_keys.insert(n.clone(), r);
            }
            KeyId::SenderKeyMemory(g) => {
                let list: BTreeSet<String> = serde_json::from_slice(bytes)
                    .map_err(|source| KeyLoadError::BadList { id: id.clone(), source })?;
                self.sender_key_memory.insert(g.clone(), list);
            }
            KeyId::DeviceList(u) => {
                let devices: Vec<u16> = serde_json::from_slice(bytes)
                    .map_err(|source| KeyLoadError::BadList { id: id.clone(), source })?;
                self.device_lists.insert(u.clone(), DeviceList { devices, fetched: None });
            }
            KeyId::SentMessage(m) => {
                self.sent.load(m, bytes).map_err(|source| KeyLoadError::Sent { id: id.clone(), source })?;
            }
        }
        Ok(())
    }

    /// Number of one-time prekeys held.
    pub fn pre_key_count(&self) -> usize {
        self.pre_keys.len()
    }

    /// Number of pairwise sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// True when a current session with `address` exists.
    pub fn has_session(&self, address: &SignalAddress) -> bool {
        self.sessions.get(address).is_some_and(SessionRecord::has_current_session)
    }

    /// Adds freshly generated prekeys (already persisted by `Delta::PreKeys`).
    pub(crate) fn add_pre_keys(&mut self, keys: &[PreKey]) {
        for k in keys {
            self.pre_keys.insert(k.id, PreKeyRecord::new(k.id, k.key.clone()));
        }
    }

    /// Turns Signal deltas into key changes to persist, applying identity and prekey changes
    /// to the cache. Session and sender-key records are inserted by the caller from the
    /// operation's returned record (no re-decoding).
    pub(crate) fn apply_signal(&mut self, deltas: Vec<SignalDelta>, out: &mut Vec<KeyChange>) {
        for d in deltas {
            match d {
                SignalDelta::SessionPut { address, record } => {
                    out.push(KeyChange::Put { id: KeyId::Session(address), value: KeyValue::new(record) });
                }
                SignalDelta::PreKeyConsumed { id } => {
                    self.pre_keys.remove(&id);
                    out.push(KeyChange::Delete(KeyId::PreKey(id)));
                }
                SignalDelta::IdentityPut { address, key } => {
                    self.identities.insert(address.clone(), key);
                    out.push(KeyChange::Put {
                        id: KeyId::Identity(address),
                        value: KeyValue::new(key.raw().to_vec()),
                    });
                }
                SignalDelta::SenderKeyPut { name, record } => {
                    out.push(KeyChange::Put { id: KeyId::SenderKey(name), value: KeyValue::new(record) });
                }
            }
        }
    }

    /// Records that `devices` now hold our sender key for `group`.
    pub(crate) fn remember_skdm(&mut self, group: &str, devices: &[String], out: &mut Vec<KeyChange>) {
        if devices.is_empty() {
            return;
        }
        let set = self.sender_key_memory.entry(group.to_owned()).or_default();
        set.extend(devices.iter().cloned());
        let json = serde_json::to_vec(set).unwrap_or_default();
        out.push(KeyChange::Put { id: KeyId::SenderKeyMemory(group.to_owned()), value: KeyValue::new(json) });
    }

    /// Forgets that `device` holds our sender keys (its session was rebuilt, so it may have
    /// lost them): the next group send hands it an SKDM again (protocol/13 §4.8).
    pub(crate) fn forget_skdm_device(&mut self, device: &str, out: &mut Vec<KeyChange>) {
        for (group, set) in &mut self.sender_key_memory {
            if set.remove(device) {
                let json = serde_json::to_vec(set).unwrap_or_default();
                out.push(KeyChange::Put {
                    id: KeyId::SenderKeyMemory(group.clone()),
                    value: KeyValue::new(json),
                });
            }
        }
    }

    /// Stores a user's device list fetched at `now`.
    pub(crate) fn put_devices(
        &mut self,
        user: &str,
        devices: Vec<u16>,
        now: Instant,
        out: &mut Vec<KeyChange>,
    ) {
        let json = serde_json::to_vec(&devices).unwrap_or_default();
        self.device_lists.insert(user.to_owned(), DeviceList { devices, fetched: Some(now) });
        out.push(KeyChange::Put { id: KeyId::DeviceList(user.to_owned()), value: KeyValue::new(json) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::noise::testing::SeededRng;
    use crate::wa::signal::{LocalIdentity, PreKeyBundle, SignedPreKeyRecord, process_bundle};

    /// Entries written by the key changes load back; corrupt entries are typed errors and skipped.
    #[test]
    fn hydration_round_trip_and_corrupt_entries() {
        let mut rng = SeededRng::new(b"keys");
        let me = LocalIdentity::generate(&mut rng);
        let peer = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&peer, 1, &mut rng);
        let addr = SignalAddress::new("2@s.whatsapp.net", 1);
        let (record, deltas) =
            process_bundle(&me, &addr, None, &PreKeyBundle::from_local(&peer, &spk, None), &mut rng).unwrap();
        let mut cache = KeyCache::new();
        let mut changes = Vec::new();
        cache.apply_signal(deltas, &mut changes);
        cache.sessions.insert(addr.clone(), record);
        cache.remember_skdm("1@g.us", &["2:1@s.whatsapp.net".into()], &mut changes);
        #[expect(clippy::disallowed_methods, reason = "test origin")]
        let now = Instant::now();
        cache.put_devices("2@s.whatsapp.net", vec![0, 1], now, &mut changes);
        let pk = KeyPair::from_private_bytes([9; 32]);
        let mut entries: Vec<(KeyId, Vec<u8>)> = changes
            .iter()
            .filter_map(|c| match c {
                KeyChange::Put { id, value } => Some((id.clone(), value.expose().to_vec())),
                KeyChange::Delete(_) => None,
            })
            .collect();
        entries.push((KeyId::PreKey(7), pk.private().to_bytes().to_vec()));
        entries.push((KeyId::Session(SignalAddress::new("3@s.whatsapp.net", 0)), vec![1, 2, 3]));
        entries.push((KeyId::Identity(SignalAddress::new("3@s.whatsapp.net", 0)), vec![0; 5]));
        entries.push((KeyId::DeviceList("x".into()), b"nope".to_vec()));
        let (back, errors) = KeyCache::from_entries(entries.iter().map(|(i, b)| (i.clone(), b.as_slice())));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(back.has_session(&addr));
        assert_eq!(back.identities.len(), 1);
        assert_eq!(back.pre_keys.get(&7).map(|p| *p.key_pair().public()), Some(*pk.public()));
        assert_eq!(back.sender_key_memory["1@g.us"].len(), 1);
        assert_eq!(back.device_lists["2@s.whatsapp.net"].devices, vec![0, 1]);
        assert!(back.device_lists["2@s.whatsapp.net"].fetched.is_none());
        assert!(changes.iter().all(
            |c| !matches!(c, KeyChange::Put { value, .. } if !format!("{value:?}").starts_with("[redacted"))
        ));
    }
}
