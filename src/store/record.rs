//! Byte encodings shared by the memory and embedded backends (the Firestore backend maps the
//! same parts onto document fields in `firestore::codec`). Every decoder returns
//! `StoreError::Corrupt` naming the tenant and storage key; none panics.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypt::Keyring;
use super::model::{CredsPublic, CredsSecret, b64, escape_component};
use super::{
    Creds, InboxItem, KeyRef, Lease, OutboxItem, RekeyReport, SecretBytes, StoreError, TenantStatus,
};
use crate::types::TenantId;

/// Storage name (and AAD) of the creds.
pub(crate) const CREDS_NAME: &str = "creds/current";

/// Document id of an outbox item.
pub(crate) fn outbox_doc_id(id: &str) -> String {
    escape_component(id)
}

/// Document id of an inbox item.
pub(crate) fn inbox_doc_id(id: &str) -> String {
    escape_component(id)
}

/// The inbox item id of a document id (`Corrupt` when it is not one [`inbox_doc_id`] makes).
pub(crate) fn inbox_id(tenant: &TenantId, doc_id: &str) -> Result<String, StoreError> {
    super::model::unescape_component(doc_id)
        .ok_or_else(|| StoreError::corrupt(tenant, format!("inbox/{doc_id}"), "malformed document id"))
}

/// The tenant row: status fields plus the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TenantRow {
    #[serde(default)]
    pub(crate) status: Option<TenantStatus>,
    #[serde(default)]
    pub(crate) lease: Option<Lease>,
}

#[derive(Serialize, Deserialize)]
struct CredsRecord {
    public: CredsPublic,
    #[serde(with = "b64")]
    secret: Vec<u8>,
}

/// Seals the secret half of creds (shared with the Firestore codec).
pub(crate) fn seal_creds_secret(
    ring: &Keyring,
    tenant: &TenantId,
    secret: &CredsSecret,
) -> Result<Vec<u8>, StoreError> {
    let json =
        Zeroizing::new(serde_json::to_vec(secret).map_err(|e| StoreError::backend("encode creds", e))?);
    ring.seal(tenant, CREDS_NAME, &json)
}

/// Opens the secret half of creds.
pub(crate) fn open_creds_secret(
    ring: &Keyring,
    tenant: &TenantId,
    sealed: &[u8],
) -> Result<CredsSecret, StoreError> {
    let plain =
        ring.open(tenant, CREDS_NAME, sealed).map_err(|e| StoreError::corrupt(tenant, CREDS_NAME, e))?;
    serde_json::from_slice(&plain).map_err(|e| StoreError::corrupt(tenant, CREDS_NAME, e))
}

pub(crate) fn encode_creds(ring: &Keyring, tenant: &TenantId, creds: &Creds) -> Result<Vec<u8>, StoreError> {
    let (public, secret) = creds.split();
    let rec = CredsRecord { public, secret: seal_creds_secret(ring, tenant, &secret)? };
    serde_json::to_vec(&rec).map_err(|e| StoreError::backend("encode creds", e))
}

pub(crate) fn decode_creds(ring: &Keyring, tenant: &TenantId, bytes: &[u8]) -> Result<Creds, StoreError> {
    let rec: CredsRecord =
        serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(tenant, CREDS_NAME, e))?;
    let secret = open_creds_secret(ring, tenant, &rec.secret)?;
    Ok(Creds::join(rec.public, secret))
}

/// Separator between the kind and the keyed hash in a key document id (`session.<hex>`).
/// Legacy ids (`session-<escaped address>`) never contain it: `escape_component` escapes `.`.
const HASHED_SEP: char = '.';

/// The document id `key` is stored under: `{kind}.{keyed hash of tenant + real id}` (see
/// [`Keyring::id_hashes`]), so stored ids name no contact while the kind stays readable.
pub(crate) fn key_doc_id(ring: &Keyring, tenant: &TenantId, key: &KeyRef) -> String {
    let hash = ring.id_hashes(tenant, &key.doc_id()).into_iter().next().unwrap_or_default();
    format!("{}{HASHED_SEP}{hash}", key.kind().as_str())
}

/// Every document id `key` may be stored under: the current one, the ones hashed with older
/// master keys, and the legacy plain id. A delete removes them all.
pub(crate) fn key_doc_ids_all(ring: &Keyring, tenant: &TenantId, key: &KeyRef) -> Vec<String> {
    let kind = key.kind().as_str();
    let mut ids: Vec<String> =
        ring.id_hashes(tenant, &key.doc_id()).into_iter().map(|h| format!("{kind}{HASHED_SEP}{h}")).collect();
    ids.push(key.doc_id());
    ids
}

/// The kind part of a stored key document id (hashed or legacy), for display.
pub(crate) fn key_doc_kind(doc_id: &str) -> &str {
    match doc_id.split_once(HASHED_SEP) {
        Some((kind, _)) => kind,
        None => KeyRef::parse_doc_id(doc_id).map(|k| k.kind().as_str()).unwrap_or("unknown"),
    }
}

/// Seals `value` of `key` for its hashed document id; the sealed plaintext carries the real
/// id (`u16` big-endian length, id, value). Returns the document id and the sealed bytes.
pub(crate) fn encode_key(
    ring: &Keyring,
    tenant: &TenantId,
    key: &KeyRef,
    value: &SecretBytes,
) -> Result<(String, Vec<u8>), StoreError> {
    let id = key_doc_id(ring, tenant, key);
    let real = key.doc_id();
    let len = u16::try_from(real.len()).map_err(|_| StoreError::Invalid {
        what: "key",
        detail: format!("key id is {} bytes; the limit is {}", real.len(), u16::MAX),
    })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + real.len() + value.expose().len()));
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(real.as_bytes());
    plain.extend_from_slice(value.expose());
    let sealed = ring.seal(tenant, &format!("keys/{id}"), &plain)?;
    Ok((id, sealed))
}

/// One stored key document, opened.
pub(crate) struct KeyDoc {
    pub(crate) key: KeyRef,
    pub(crate) value: SecretBytes,
    /// Stored under the id [`key_doc_id`] gives now (not legacy, not an older master key's).
    pub(crate) canonical: bool,
}

/// Opens the key document stored under `doc_id`: a hashed id (the real id is inside the
/// sealed value, bound to the document id by the AAD) or a legacy plain id.
pub(crate) fn decode_key_doc(
    ring: &Keyring,
    tenant: &TenantId,
    doc_id: &str,
    bytes: &[u8],
) -> Result<KeyDoc, StoreError> {
    let name = format!("keys/{doc_id}");
    let Some((kind, _)) = doc_id.split_once(HASHED_SEP) else {
        // Legacy: the plain id is the document id.
        let key = KeyRef::parse_doc_id(doc_id).map_err(|e| StoreError::corrupt(tenant, name.clone(), e))?;
        let plain = ring.open(tenant, &name, bytes).map_err(|e| StoreError::corrupt(tenant, name, e))?;
        return Ok(KeyDoc { key, value: SecretBytes::new(plain.to_vec()), canonical: false });
    };
    let plain = ring.open(tenant, &name, bytes).map_err(|e| StoreError::corrupt(tenant, name.clone(), e))?;
    let bad = |why: &str| StoreError::corrupt(tenant, name.clone(), why.to_owned());
    let (len, rest) = plain.split_at_checked(2).ok_or_else(|| bad("truncated key record"))?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (real, value) = rest.split_at_checked(len).ok_or_else(|| bad("truncated key record"))?;
    let real = std::str::from_utf8(real).map_err(|_| bad("key id is not UTF-8"))?;
    let key = KeyRef::parse_doc_id(real).map_err(|e| StoreError::corrupt(tenant, name.clone(), e))?;
    if key.kind().as_str() != kind {
        return Err(bad("key kind does not match its document"));
    }
    let canonical = key_doc_id(ring, tenant, &key) == doc_id;
    Ok(KeyDoc { key, value: SecretBytes::new(value.to_vec()), canonical })
}

/// Collects opened key documents into a snapshot's key map: when one key is stored twice
/// (a legacy or older-key copy next to the current one), the current one wins.
#[derive(Default)]
pub(crate) struct KeyCollector {
    keys: std::collections::BTreeMap<KeyRef, (SecretBytes, bool)>,
}

impl KeyCollector {
    pub(crate) fn add(&mut self, doc: KeyDoc) {
        if matches!(self.keys.get(&doc.key), Some((_, true))) && !doc.canonical {
            return;
        }
        self.keys.insert(doc.key, (doc.value, doc.canonical));
    }

    pub(crate) fn into_keys(self) -> std::collections::BTreeMap<KeyRef, SecretBytes> {
        self.keys.into_iter().map(|(k, (v, _))| (k, v)).collect()
    }
}

/// Seals `value` of `key` the way stores written before hashed ids did (plain document id,
/// the value alone). Test hooks use it to build an old-format store.
pub(crate) fn encode_legacy_key(
    ring: &Keyring,
    tenant: &TenantId,
    key: &KeyRef,
    value: &[u8],
) -> Result<(String, Vec<u8>), StoreError> {
    let id = key.doc_id();
    let sealed = ring.seal(tenant, &format!("keys/{id}"), value)?;
    Ok((id, sealed))
}

/// The status a runtime write leaves behind: `new`'s runtime fields with the operator
/// config of `existing` (none if there is no row yet). See `Store::write_status`.
pub(crate) fn runtime_status(existing: Option<&TenantStatus>, new: &TenantStatus) -> TenantStatus {
    let mut s = new.clone();
    s.keep_config_of(existing.unwrap_or(&TenantStatus::default()));
    s
}

/// Counts `sealed` in `report` and re-seals it under the current key if it is not (`None`
/// when it already is). `name` is its storage name (AAD).
pub(crate) fn rekey_value(
    ring: &Keyring,
    tenant: &TenantId,
    name: &str,
    sealed: &[u8],
    report: &mut RekeyReport,
) -> Result<Option<Vec<u8>>, StoreError> {
    report.saw(sealed);
    let out = ring.reseal(tenant, name, sealed)?;
    if out.is_some() {
        report.resealed += 1;
    }
    Ok(out)
}

/// [`rekey_value`] for a creds record (its sealed secret inside the JSON record).
pub(crate) fn rekey_creds(
    ring: &Keyring,
    tenant: &TenantId,
    bytes: &[u8],
    report: &mut RekeyReport,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut rec: CredsRecord =
        serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(tenant, CREDS_NAME, e))?;
    match rekey_value(ring, tenant, CREDS_NAME, &rec.secret, report)? {
        None => Ok(None),
        Some(sealed) => {
            rec.secret = sealed;
            serde_json::to_vec(&rec).map(Some).map_err(|e| StoreError::backend("encode creds", e))
        }
    }
}

/// A whole item sealed as one JSON value; its storage name (and AAD) is
/// `{COLLECTION}/{doc id}`, so an outbox item and an inbox item never open as each other.
trait SealedItem: Serialize + DeserializeOwned {
    /// Collection name: the storage-name prefix (and AAD part) of every item.
    const COLLECTION: &'static str;
    /// The item's id.
    fn id(&self) -> &str;
}

impl SealedItem for OutboxItem {
    const COLLECTION: &'static str = "outbox";
    fn id(&self) -> &str {
        &self.id
    }
}

impl SealedItem for InboxItem {
    const COLLECTION: &'static str = "inbox";
    fn id(&self) -> &str {
        &self.id
    }
}

fn seal_item<T: SealedItem>(ring: &Keyring, tenant: &TenantId, item: &T) -> Result<Vec<u8>, StoreError> {
    let json = Zeroizing::new(serde_json::to_vec(item).map_err(|e| StoreError::backend("encode item", e))?);
    ring.seal(tenant, &format!("{}/{}", T::COLLECTION, escape_component(item.id())), &json)
}

fn open_item<T: SealedItem>(
    ring: &Keyring,
    tenant: &TenantId,
    doc_id: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let name = format!("{}/{doc_id}", T::COLLECTION);
    let plain = ring.open(tenant, &name, bytes).map_err(|e| StoreError::corrupt(tenant, name.clone(), e))?;
    let item: T = serde_json::from_slice(&plain).map_err(|e| StoreError::corrupt(tenant, name.clone(), e))?;
    if escape_component(item.id()) != doc_id {
        return Err(StoreError::corrupt(tenant, name, "item id does not match its document"));
    }
    Ok(item)
}

pub(crate) fn encode_outbox(
    ring: &Keyring,
    tenant: &TenantId,
    item: &OutboxItem,
) -> Result<Vec<u8>, StoreError> {
    seal_item(ring, tenant, item)
}

pub(crate) fn decode_outbox(
    ring: &Keyring,
    tenant: &TenantId,
    doc_id: &str,
    bytes: &[u8],
) -> Result<OutboxItem, StoreError> {
    open_item(ring, tenant, doc_id, bytes)
}

pub(crate) fn encode_inbox(
    ring: &Keyring,
    tenant: &TenantId,
    item: &InboxItem,
) -> Result<Vec<u8>, StoreError> {
    seal_item(ring, tenant, item)
}

pub(crate) fn decode_inbox(
    ring: &Keyring,
    tenant: &TenantId,
    doc_id: &str,
    bytes: &[u8],
) -> Result<InboxItem, StoreError> {
    open_item(ring, tenant, doc_id, bytes)
}

pub(crate) fn encode_row(row: &TenantRow) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(row).map_err(|e| StoreError::backend("encode status", e))
}

pub(crate) fn decode_row(tenant: &TenantId, bytes: &[u8]) -> Result<TenantRow, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(tenant, "status", e))
}

/// One write a batch turns into, after encoding. Backends apply these in order.
pub(crate) enum Op {
    PutCreds(Vec<u8>),
    PutKey(String, Vec<u8>),
    DeleteKey(String),
    PutStatus(TenantStatus),
    PutOutbox(String, Vec<u8>),
    DeleteOutbox(String),
    PutInbox(String, Vec<u8>),
    DeleteInbox(String),
}

/// `Invalid` when one sealed value is over [`MAX_VALUE_BYTES`](super::model::MAX_VALUE_BYTES).
fn within_limit(what: &'static str, bytes: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let max = super::model::MAX_VALUE_BYTES;
    if bytes.len() > max {
        return Err(StoreError::Invalid {
            what,
            detail: format!("stored value is {} bytes; the limit is {max}", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Encodes a batch into ops (sealing every secret). Encoding happens before any write; a value
/// over [`MAX_VALUE_BYTES`](super::model::MAX_VALUE_BYTES) fails the whole batch as `Invalid`.
pub(crate) fn encode_batch(
    ring: &Keyring,
    tenant: &TenantId,
    batch: &super::DeltaBatch,
) -> Result<Vec<Op>, StoreError> {
    use super::Delta;
    batch
        .deltas
        .iter()
        .map(|d| {
            Ok(match d {
                Delta::CredsPut(c) => {
                    vec![Op::PutCreds(within_limit("creds", encode_creds(ring, tenant, c)?)?)]
                }
                Delta::KeyPut { key, value } => {
                    // The write migrates the key: its legacy and older-key copies go.
                    let (id, sealed) = encode_key(ring, tenant, key, value)?;
                    let stale = key_doc_ids_all(ring, tenant, key).into_iter().filter(|o| *o != id);
                    std::iter::once(Op::PutKey(id.clone(), within_limit("key", sealed)?))
                        .chain(stale.map(Op::DeleteKey))
                        .collect()
                }
                Delta::KeyDelete(key) => {
                    key_doc_ids_all(ring, tenant, key).into_iter().map(Op::DeleteKey).collect()
                }
                Delta::StatusPut(s) => vec![Op::PutStatus(s.clone())],
                Delta::OutboxPut(item) => vec![Op::PutOutbox(
                    outbox_doc_id(&item.id),
                    within_limit("outbox item", encode_outbox(ring, tenant, item)?)?,
                )],
                Delta::OutboxDelete(id) => vec![Op::DeleteOutbox(outbox_doc_id(id))],
                Delta::InboxPut(item) => vec![Op::PutInbox(
                    inbox_doc_id(&item.id),
                    within_limit("inbox item", encode_inbox(ring, tenant, item)?)?,
                )],
                Delta::InboxDelete(id) => vec![Op::DeleteInbox(inbox_doc_id(id))],
            })
        })
        .collect::<Result<Vec<Vec<Op>>, StoreError>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// A one-shot "fail the next commit after N writes" switch.
#[derive(Debug, Default)]
pub(crate) struct FaultArm(std::sync::Mutex<Option<usize>>);

impl FaultArm {
    pub(crate) fn arm(&self, after: usize) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(after);
        }
    }

    pub(crate) fn take(&self) -> Option<usize> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// Garbage that is not a valid envelope (for corruption hooks).
pub(crate) const GARBAGE: &[u8] = b"\x00not-a-sealed-value\xff";

/// Flips one byte inside the sealed secret of a creds record, keeping the JSON valid, so the
/// record parses but fails to authenticate. Unparseable input becomes garbage.
pub(crate) fn tamper_creds_record(bytes: &[u8]) -> Vec<u8> {
    let Ok(mut rec) = serde_json::from_slice::<CredsRecord>(bytes) else {
        return GARBAGE.to_vec();
    };
    if let Some(last) = rec.secret.last_mut() {
        *last ^= 0x55;
    }
    serde_json::to_vec(&rec).unwrap_or_else(|_| GARBAGE.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::crypt::MasterKey;

    fn t() -> TenantId {
        TenantId::new("t").unwrap()
    }

    /// Inbox items are sealed under their own document name: an outbox item's sealed bytes with
    /// the same id never open as an inbox item (and vice versa), and an inbox item round-trips.
    #[test]
    fn inbox_aad_is_distinct_from_outbox() {
        let ring = Keyring::new(&MasterKey::generate(), &[]);
        let inbox =
            InboxItem { id: "1-a.b".into(), created_at: 7, payload: SecretBytes::new(b"ev".to_vec()) };
        let outbox =
            OutboxItem { id: "1-a.b".into(), created_at: 7, payload: SecretBytes::new(b"ev".to_vec()) };
        let doc = inbox_doc_id(&inbox.id);
        assert_eq!(doc, "1-a%2Eb");
        let sealed = encode_inbox(&ring, &t(), &inbox).unwrap();
        assert_eq!(decode_inbox(&ring, &t(), &doc, &sealed).unwrap(), inbox);
        let as_outbox = decode_outbox(&ring, &t(), &doc, &sealed);
        assert!(matches!(as_outbox, Err(StoreError::Corrupt { .. })), "{as_outbox:?}");
        let from_outbox = encode_outbox(&ring, &t(), &outbox).unwrap();
        let r = decode_inbox(&ring, &t(), &doc, &from_outbox);
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
        let other = decode_inbox(&ring, &t(), "2-x", &sealed);
        assert!(matches!(other, Err(StoreError::Corrupt { .. })), "moved to another id: {other:?}");
    }
}
