//! Maps the model onto Firestore documents (the layout in ARCHITECTURE.md). Plain fields go
//! through the `firestore` crate's serde mapping so they read naturally in the console; sealed
//! values are `bytes` fields with their key id beside them. Every decoder returns
//! `StoreError::Corrupt` for the tenant and document; none panics.

use std::collections::HashMap;

use ::firestore::FirestoreDb;
use gcloud_sdk::google::firestore::v1::{Document, MapValue, Value, value::ValueType};
use serde::Deserialize;
use serde::Serialize;

use crate::store::crypt::Keyring;
use crate::store::model::CredsPublic;
use crate::store::{Lease, StoreError, StoredEvent, TenantStatus};
use crate::types::TenantId;

/// Field names of the status doc written by status updates (the update mask). The lease field
/// is written only by the lease operations.
pub(crate) const STATUS_FIELDS: [&str; 13] = [
    "state",
    "me",
    "push_name",
    "presence",
    "linked_at",
    "last_connected_at",
    "last_disconnect",
    "reconnects",
    "devices_registered",
    "updated_at",
    "webhook_url",
    "webhook_secret",
    "pacing",
];

/// The lease field of the status doc.
pub(crate) const LEASE_FIELD: &str = "lease";
/// Sealed-value field.
pub(crate) const VALUE_FIELD: &str = "value";
/// Key-id field (beside every sealed value).
pub(crate) const KID_FIELD: &str = "kid";
/// Sealed creds-secret field.
pub(crate) const SECRET_FIELD: &str = "secret";

fn ser_fields<T: Serialize>(op: &'static str, value: &T) -> Result<HashMap<String, Value>, StoreError> {
    FirestoreDb::serialize_to_doc("", value).map(|d| d.fields).map_err(|e| StoreError::backend(op, e))
}

pub(crate) fn bytes(v: Vec<u8>) -> Value {
    Value { value_type: Some(ValueType::BytesValue(v)) }
}

pub(crate) fn string(v: impl Into<String>) -> Value {
    Value { value_type: Some(ValueType::StringValue(v.into())) }
}

pub(crate) fn int(v: u64) -> Value {
    Value { value_type: Some(ValueType::IntegerValue(i64::try_from(v).unwrap_or(i64::MAX))) }
}

fn get_bytes<'a>(doc: &'a Document, field: &str) -> Option<&'a [u8]> {
    match doc.fields.get(field)?.value_type.as_ref()? {
        ValueType::BytesValue(b) => Some(b),
        _ => None,
    }
}

/// Fields of the status doc for `status`.
pub(crate) fn status_fields(status: &TenantStatus) -> Result<HashMap<String, Value>, StoreError> {
    ser_fields("encode status", status)
}

/// The `lease` field value.
pub(crate) fn lease_fields(lease: &Lease) -> HashMap<String, Value> {
    let map = MapValue {
        fields: HashMap::from([
            ("holder".to_owned(), string(lease.holder.clone())),
            ("epoch".to_owned(), int(lease.epoch)),
            ("expires_at".to_owned(), int(lease.expires_at)),
        ]),
    };
    HashMap::from([(LEASE_FIELD.to_owned(), Value { value_type: Some(ValueType::MapValue(map)) })])
}

#[derive(Deserialize)]
struct LeaseHolder {
    #[serde(default)]
    lease: Option<Lease>,
}

/// Reads status (if the doc carries status fields) and lease from the status doc.
pub(crate) fn decode_status_doc(
    tenant: &TenantId,
    doc: &Document,
) -> Result<(Option<TenantStatus>, Option<Lease>), StoreError> {
    let lease = FirestoreDb::deserialize_doc_to::<LeaseHolder>(doc)
        .map_err(|e| StoreError::corrupt(tenant, "status.lease", e))?
        .lease;
    let status = if doc.fields.contains_key("state") {
        Some(
            FirestoreDb::deserialize_doc_to::<TenantStatus>(doc)
                .map_err(|e| StoreError::corrupt(tenant, "status", e))?,
        )
    } else {
        None
    };
    Ok((status, lease))
}

/// Fields of `tenants/{t}/creds/current`: plain public fields, the sealed secret and its key id.
pub(crate) fn creds_fields(
    public: &CredsPublic,
    sealed_secret: Vec<u8>,
) -> Result<HashMap<String, Value>, StoreError> {
    let mut f = ser_fields("encode creds", public)?;
    if let Some(kid) = Keyring::key_id_of(&sealed_secret) {
        f.insert(KID_FIELD.to_owned(), string(kid));
    }
    f.insert(SECRET_FIELD.to_owned(), bytes(sealed_secret));
    Ok(f)
}

/// Splits a creds doc into its public part and sealed secret.
pub(crate) fn decode_creds_doc(
    tenant: &TenantId,
    doc: &Document,
) -> Result<(CredsPublic, Vec<u8>), StoreError> {
    let public: CredsPublic =
        FirestoreDb::deserialize_doc_to(doc).map_err(|e| StoreError::corrupt(tenant, "creds/current", e))?;
    let secret = get_bytes(doc, SECRET_FIELD)
        .ok_or_else(|| StoreError::corrupt(tenant, "creds/current", "secret field missing or not bytes"))?;
    Ok((public, secret.to_vec()))
}

/// Fields of a key or outbox doc holding one sealed value (plus readable metadata).
pub(crate) fn sealed_fields(sealed: Vec<u8>, extra: &[(&str, Value)]) -> HashMap<String, Value> {
    let mut f: HashMap<String, Value> = extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    if let Some(kid) = Keyring::key_id_of(&sealed) {
        f.insert(KID_FIELD.to_owned(), string(kid));
    }
    f.insert(VALUE_FIELD.to_owned(), bytes(sealed));
    f
}

/// The sealed value of a key or outbox doc.
pub(crate) fn sealed_value<'a>(
    tenant: &TenantId,
    name: &str,
    doc: &'a Document,
) -> Result<&'a [u8], StoreError> {
    get_bytes(doc, VALUE_FIELD)
        .ok_or_else(|| StoreError::corrupt(tenant, name, "value field missing or not bytes"))
}

/// Fields of an event doc.
pub(crate) fn event_fields(e: &StoredEvent) -> Result<HashMap<String, Value>, StoreError> {
    ser_fields("encode event", e)
}

/// An event doc.
pub(crate) fn decode_event(tenant: &TenantId, doc: &Document) -> Result<StoredEvent, StoreError> {
    FirestoreDb::deserialize_doc_to(doc).map_err(|e| StoreError::corrupt(tenant, "events", e))
}

/// The last path segment (document id) of a document name.
pub(crate) fn doc_id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{LastDisconnect, LinkState};

    fn t() -> TenantId {
        TenantId::new("t").unwrap()
    }

    /// Every field a fully populated status serialises to is in the update mask, so a status
    /// write can never leave a stale field behind or touch the lease.
    #[test]
    fn status_mask_covers_all_fields() {
        let s = TenantStatus {
            state: LinkState::Connected,
            me: Some("1@s.whatsapp.net".into()),
            push_name: Some("x".into()),
            presence: Some(crate::store::model::PresenceType::Available),
            linked_at: Some(1),
            last_connected_at: Some(2),
            last_disconnect: Some(LastDisconnect { code: 428, reason: "r".into(), at: 3 }),
            reconnects: 4,
            devices_registered: vec!["d".into()],
            updated_at: 5,
            webhook_url: Some("https://example.com/hook".into()),
            webhook_secret: Some(crate::store::SecretBytes::new(b"s".to_vec())),
            pacing: Some(Box::new(crate::store::model::PacingOverride {
                per_minute: Some(5),
                ..Default::default()
            })),
        };
        let f = status_fields(&s).unwrap();
        for k in f.keys() {
            assert!(STATUS_FIELDS.contains(&k.as_str()), "{k} missing from STATUS_FIELDS");
        }
        let mut doc = Document { fields: f, ..Default::default() };
        doc.fields.extend(lease_fields(&Lease { holder: "h".into(), epoch: 9, expires_at: 10 }));
        let (status, lease) = decode_status_doc(&t(), &doc).unwrap();
        assert_eq!(status, Some(s));
        assert_eq!(lease.map(|l| l.epoch), Some(9));
    }

    /// A creds doc without its sealed secret is corrupt, not "no creds".
    #[test]
    fn creds_doc_without_secret_is_corrupt() {
        let doc = Document::default();
        assert!(matches!(decode_creds_doc(&t(), &doc), Err(StoreError::Corrupt { .. })));
    }
}
