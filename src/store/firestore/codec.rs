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
use crate::store::{Lease, SecretBytes, StoreError, StoredEvent, TenantStatus};
use crate::types::TenantId;

/// Field names of the status doc written by runtime status updates (the update mask). The
/// operator-config fields ([`CONFIG_FIELDS`]) are written only by config writes and tenant
/// creation, the lease field only by the lease operations.
pub(crate) const RUNTIME_FIELDS: [&str; 9] = [
    "state",
    "me",
    "push_name",
    "linked_at",
    "last_connected_at",
    "last_disconnect",
    "reconnects",
    "devices_registered",
    "updated_at",
];

/// Operator-config fields of the status doc (written by API calls only).
pub(crate) const CONFIG_FIELDS: [&str; 5] =
    ["webhook_url", WEBHOOK_SECRET_FIELD, "pacing", "presence", "deleting"];

/// The webhook secret field: sealed bytes (AAD [`WEBHOOK_SECRET_NAME`]); older versions
/// stored it as base64 text, which still loads and is sealed by the next config write or
/// `staylinked rekey`.
pub(crate) const WEBHOOK_SECRET_FIELD: &str = "webhook_secret";
/// Storage name (AAD) of the sealed webhook secret.
pub(crate) const WEBHOOK_SECRET_NAME: &str = "status/webhook_secret";

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

/// Fields of the status doc for `status` named by `mask` (the webhook secret sealed).
pub(crate) fn status_fields(
    ring: &Keyring,
    tenant: &TenantId,
    status: &TenantStatus,
    mask: &[&str],
) -> Result<HashMap<String, Value>, StoreError> {
    let mut f = ser_fields("encode status", status)?;
    f.remove(WEBHOOK_SECRET_FIELD);
    if let Some(secret) = &status.webhook_secret {
        let sealed = ring.seal(tenant, WEBHOOK_SECRET_NAME, secret.expose())?;
        f.insert(WEBHOOK_SECRET_FIELD.to_owned(), bytes(sealed));
    }
    f.retain(|k, _| mask.contains(&k.as_str()));
    Ok(f)
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

/// Reads the lease of the status doc.
pub(crate) fn decode_lease(tenant: &TenantId, doc: &Document) -> Result<Option<Lease>, StoreError> {
    Ok(FirestoreDb::deserialize_doc_to::<LeaseHolder>(doc)
        .map_err(|e| StoreError::corrupt(tenant, "status.lease", e))?
        .lease)
}

/// Reads status (if the doc carries status fields) and lease from the status doc. The
/// webhook secret opens with `ring` (sealed bytes), or decodes from the base64 text older
/// versions wrote.
pub(crate) fn decode_status_doc(
    ring: &Keyring,
    tenant: &TenantId,
    doc: &Document,
) -> Result<(Option<TenantStatus>, Option<Lease>), StoreError> {
    let lease = decode_lease(tenant, doc)?;
    if !doc.fields.contains_key("state") {
        return Ok((None, lease));
    }
    let mut plain = doc.clone();
    let secret = plain.fields.remove(WEBHOOK_SECRET_FIELD);
    let mut status: TenantStatus =
        FirestoreDb::deserialize_doc_to(&plain).map_err(|e| StoreError::corrupt(tenant, "status", e))?;
    status.webhook_secret = match secret.and_then(|v| v.value_type) {
        Some(ValueType::BytesValue(sealed)) => {
            let open = ring
                .open(tenant, WEBHOOK_SECRET_NAME, &sealed)
                .map_err(|e| StoreError::corrupt(tenant, WEBHOOK_SECRET_NAME, e))?;
            Some(SecretBytes::new(open.to_vec()))
        }
        Some(ValueType::StringValue(text)) => {
            let text = zeroize::Zeroizing::new(text);
            Some(
                serde_json::from_value::<SecretBytes>(serde_json::Value::String(text.to_string()))
                    .map_err(|e| StoreError::corrupt(tenant, WEBHOOK_SECRET_NAME, e))?,
            )
        }
        Some(ValueType::NullValue(_)) | None => None,
        Some(_) => return Err(StoreError::corrupt(tenant, WEBHOOK_SECRET_NAME, "not bytes or text")),
    };
    Ok((Some(status), lease))
}

/// The raw webhook-secret value of a status doc: `Some(Ok(sealed))` for sealed bytes,
/// `Some(Err(()))` for legacy base64 text, `None` when absent.
pub(crate) fn raw_webhook_secret(doc: &Document) -> Option<Result<&[u8], ()>> {
    match doc.fields.get(WEBHOOK_SECRET_FIELD)?.value_type.as_ref()? {
        ValueType::BytesValue(b) => Some(Ok(b)),
        ValueType::StringValue(_) => Some(Err(())),
        _ => None,
    }
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

/// The bytes of field `field`, if it holds bytes.
pub(crate) fn sealed_field<'a>(doc: &'a Document, field: &str) -> Option<&'a [u8]> {
    get_bytes(doc, field)
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
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64T;

    fn t() -> TenantId {
        TenantId::new("t").unwrap()
    }

    /// Every field a fully populated status serialises to is in one of the two masks, so a
    /// write can never leave a stale field behind or touch the lease; the webhook secret is
    /// stored sealed (never its text) and opens again; the legacy base64 form still loads.
    #[test]
    fn status_masks_cover_all_fields_and_secret_is_sealed() {
        let ring = Keyring::new(&crate::store::crypt::MasterKey::generate(), &[]);
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
            webhook_secret: Some(SecretBytes::new(b"whsec_live".to_vec())),
            pacing: Some(Box::new(crate::store::model::PacingOverride {
                per_minute: Some(5),
                ..Default::default()
            })),
            deleting: true,
        };
        let all: Vec<&str> = RUNTIME_FIELDS.iter().chain(CONFIG_FIELDS.iter()).copied().collect();
        let full = ser_fields("t", &s).unwrap();
        for k in full.keys() {
            assert!(all.contains(&k.as_str()), "{k} missing from RUNTIME_FIELDS/CONFIG_FIELDS");
        }
        let f = status_fields(&ring, &t(), &s, &all).unwrap();
        let raw = format!("{:?}", f.get(WEBHOOK_SECRET_FIELD));
        assert!(!raw.contains("whsec_live") && !raw.contains(&B64T.encode("whsec_live")), "secret in clear");
        let runtime = status_fields(&ring, &t(), &s, &RUNTIME_FIELDS).unwrap();
        assert!(runtime.keys().all(|k| RUNTIME_FIELDS.contains(&k.as_str())));
        let mut doc = Document { fields: f, ..Default::default() };
        doc.fields.extend(lease_fields(&Lease { holder: "h".into(), epoch: 9, expires_at: 10 }));
        let (status, lease) = decode_status_doc(&ring, &t(), &doc).unwrap();
        assert_eq!(status, Some(s.clone()));
        assert_eq!(lease.map(|l| l.epoch), Some(9));
        // Moved to another tenant: the sealed secret does not open.
        let other = TenantId::new("u").unwrap();
        assert!(matches!(decode_status_doc(&ring, &other, &doc), Err(StoreError::Corrupt { .. })));
        // Written by an older version: base64 text.
        doc.fields.insert(WEBHOOK_SECRET_FIELD.to_owned(), string(B64T.encode("whsec_live")));
        assert_eq!(decode_status_doc(&ring, &t(), &doc).unwrap().0, Some(s));
    }

    /// A creds doc without its sealed secret is corrupt, not "no creds".
    #[test]
    fn creds_doc_without_secret_is_corrupt() {
        let doc = Document::default();
        assert!(matches!(decode_creds_doc(&t(), &doc), Err(StoreError::Corrupt { .. })));
    }
}
