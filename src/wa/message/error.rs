//! Typed errors of the message-stanza parsers and of plaintext framing. Owns only the error
//! enums; it never formats payload bytes (ciphertexts and keys stay out of messages).

use thiserror::Error;

/// Why a received stanza (message, receipt, ack, usync or prekey result) is malformed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StanzaError {
    /// Caller error: the node handed to the parser has another tag.
    #[error("expected a <{expected}> node, got <{got}>")]
    UnexpectedTag {
        /// The tag the parser handles.
        expected: &'static str,
        /// The tag received (cut to 32 bytes).
        got: String,
    },
    /// Peer error: a required attribute is absent.
    #[error("<{tag}> lacks attribute {attr}")]
    MissingAttr {
        /// The node's tag.
        tag: &'static str,
        /// The attribute name.
        attr: &'static str,
    },
    /// Peer error: an attribute has a value that does not parse.
    #[error("<{tag}> attribute {attr} has invalid value {value:?}")]
    InvalidAttr {
        /// The node's tag.
        tag: &'static str,
        /// The attribute name.
        attr: &'static str,
        /// The offending value (cut to 64 bytes).
        value: String,
    },
    /// Peer error: a required child node is absent.
    #[error("<{parent}> lacks child <{child}>")]
    MissingChild {
        /// The parent tag.
        parent: &'static str,
        /// The missing child tag.
        child: &'static str,
    },
    /// Peer error: a node that must carry bytes has other content.
    #[error("<{tag}> has no byte content")]
    MissingBytes {
        /// The node's tag.
        tag: &'static str,
    },
    /// Peer error: a byte field has the wrong length.
    #[error("<{tag}> content is {len} bytes, expected {expected}")]
    BadLength {
        /// The node's tag.
        tag: &'static str,
        /// The length received.
        len: usize,
        /// The length expected.
        expected: usize,
    },
    /// Server answer: an iq came back with `type` other than `result`.
    #[error("iq answered with type {kind:?} (error code {code:?})")]
    IqFailed {
        /// The iq's `type` attribute.
        kind: String,
        /// The `<error code>` when present.
        code: Option<String>,
    },
    /// Server answer: an `<error>` for one user of a usync or prekey query.
    #[error("server error for {jid}: code {code:?} text {text:?}")]
    UserError {
        /// The user or device the error names.
        jid: String,
        /// The `code` attribute (empty if absent).
        code: String,
        /// The `text` attribute (empty if absent).
        text: String,
    },
}

/// Why a decrypted plaintext cannot be unpadded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaintextError {
    /// Peer error: the plaintext is empty, so there is no padding length byte.
    #[error("plaintext is empty, no padding")]
    Empty,
    /// Peer error: the padding length byte is 0 or longer than the plaintext.
    #[error("padding length {pad} invalid for a {len}-byte plaintext")]
    BadPadLength {
        /// The last byte (the claimed padding length).
        pad: u8,
        /// The plaintext length.
        len: usize,
    },
    /// Peer error: a padding byte differs from the padding length.
    #[error("padding bytes are not all equal to {pad}")]
    BadPadBytes {
        /// The claimed padding length.
        pad: u8,
    },
    /// Peer error: the unpadded bytes are not a `Message` protobuf.
    #[error("message protobuf does not decode: {reason}")]
    Protobuf {
        /// prost's description.
        reason: String,
    },
}

/// Cuts peer-controlled text for error messages (at a char boundary).
pub(crate) fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
