//! Helpers shared by the stored-record codecs: the leading format byte and checked extraction
//! of fixed-size keys from protobuf fields. Records are storage-only, never on the wire.

use prost::Message;

use super::error::SignalError;

/// Format byte written before every stored Signal record; bump on an incompatible change.
pub(crate) const RECORD_FORMAT: u8 = 1;

/// `RECORD_FORMAT || body`.
pub(crate) fn with_format(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(body);
    out
}

/// Checks the format byte and decodes the protobuf after it.
pub(crate) fn decode_record<M: Message + Default>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, SignalError> {
    match bytes {
        [RECORD_FORMAT, body @ ..] => {
            M::decode(body).map_err(|source| SignalError::Protobuf { what, source })
        }
        [other, ..] => Err(SignalError::RecordFormat { what, byte: *other, expected: RECORD_FORMAT }),
        [] => Err(SignalError::RecordFormat { what, byte: 0, expected: RECORD_FORMAT }),
    }
}

/// A 32-byte key from a slice.
pub(crate) fn key32(what: &'static str, bytes: &[u8]) -> Result<[u8; 32], SignalError> {
    bytes.try_into().map_err(|_| SignalError::BadKey { what, len: bytes.len() })
}

/// A required 32-byte key field.
pub(crate) fn required_key(
    what: &'static str,
    field: &'static str,
    bytes: Option<&[u8]>,
) -> Result<[u8; 32], SignalError> {
    key32(field, bytes.ok_or(SignalError::MissingField { what, field })?)
}
