//! Typed errors of the binary node codec: [`EncodeError`] for nodes we build, [`DecodeError`]
//! for bytes a peer sent. No formatting of node contents here (errors carry offsets and sizes,
//! never payload bytes, so they are safe to log).

use thiserror::Error;

/// Why a [`Node`](super::Node) could not be encoded. Every variant is a caller error: the
/// node cannot be represented on the wire (or would not decode again), so fix the node.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Caller error: a node tag is the empty string, which decoders reject as an invalid node.
    #[error("node tag is empty")]
    EmptyTag,
    /// Caller error: a list (attributes plus content of one node, or the children of one node)
    /// needs more entries than the 16-bit list header can count.
    #[error("list of {len} entries exceeds the limit of {max}")]
    ListTooLong {
        /// Entries the list would need.
        len: usize,
        /// The largest count a `LIST_16` header can carry (65535).
        max: usize,
    },
    /// Caller error: a byte string is longer than the 32-bit length prefix can describe.
    #[error("byte string of {len} bytes is too long for a 32-bit length")]
    BytesTooLong {
        /// Length of the offending byte string.
        len: usize,
    },
    /// Caller error: the node tree is nested deeper than decoders accept.
    #[error("node nested deeper than {max} levels")]
    TooDeep {
        /// The nesting limit ([`MAX_DEPTH`](super::MAX_DEPTH)).
        max: usize,
    },
    /// Caller error: a typed JID has an empty server, which decoders reject.
    #[error("jid {user:?} has an empty server")]
    EmptyJidServer {
        /// The JID's user part (a phone number or LID; not secret, but keep it out of info logs).
        user: String,
    },
}

/// Why a received stanza or node could not be decoded. Offsets are byte positions in the node
/// bytes (after the flags byte and after zlib inflation, if any). Every variant means the peer
/// sent bytes we do not accept; the caller drops the stanza (or the connection) and goes on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Peer misbehaved: the stanza buffer is empty (not even a flags byte).
    #[error("stanza is empty")]
    EmptyStanza,
    /// Peer misbehaved: the input ended in the middle of a value.
    #[error("input ended at offset {offset}, {needed} more bytes needed")]
    UnexpectedEof {
        /// Where the missing bytes should have started.
        offset: usize,
        /// How many bytes were missing at least.
        needed: usize,
    },
    /// Peer misbehaved: a complete node was decoded but bytes follow it (use
    /// [`decode_prefix`](super::decode_prefix) to accept that, as Baileys does).
    #[error("{count} bytes left over after the node, at offset {offset}")]
    TrailingBytes {
        /// Offset of the first unread byte.
        offset: usize,
        /// Number of unread bytes.
        count: usize,
    },
    /// Peer misbehaved: a node's list header announced zero entries or a non-list tag.
    #[error("invalid node list header {tag:#04x} at offset {offset}")]
    InvalidNode {
        /// Offset of the list header.
        offset: usize,
        /// The tag byte found there.
        tag: u8,
    },
    /// Peer misbehaved: a node tag decoded to the empty string.
    #[error("node tag is empty at offset {offset}")]
    EmptyTag {
        /// Offset of the tag value.
        offset: usize,
    },
    /// Peer misbehaved or is incompatible: a tag byte that means nothing where it was found
    /// (unassigned 240–244, or a list where a string is required).
    #[error("invalid tag {tag:#04x} at offset {offset}")]
    InvalidTag {
        /// Offset of the tag byte.
        offset: usize,
        /// The tag byte.
        tag: u8,
    },
    /// Peer misbehaved: a packed (nibble) string holds a code that is not a character.
    #[error("invalid nibble {nibble:#x} at offset {offset}")]
    InvalidNibble {
        /// Offset of the byte holding the nibble.
        offset: usize,
        /// The 4-bit code.
        nibble: u8,
    },
    /// Peer misbehaved: a JID pair has no server part.
    #[error("jid at offset {offset} has an empty server")]
    EmptyJidServer {
        /// Offset of the JID tag.
        offset: usize,
    },
    /// Peer misbehaved: a list claims more entries than the remaining input could hold.
    #[error("list at offset {offset} claims {len} entries but only {remaining} bytes remain")]
    ListExceedsInput {
        /// Offset of the list header.
        offset: usize,
        /// Entries claimed.
        len: usize,
        /// Bytes left in the input after the header.
        remaining: usize,
    },
    /// Peer misbehaved: nodes or JIDs are nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("node nested deeper than {max} levels at offset {offset}")]
    TooDeep {
        /// Offset where the limit was crossed.
        offset: usize,
        /// The nesting limit.
        max: usize,
    },
    /// Peer misbehaved: the zlib stream (flags bit `0x02`) is corrupt or truncated.
    #[error("zlib inflate failed: {detail}")]
    Inflate {
        /// The inflater's description of the failure.
        detail: String,
    },
    /// Peer misbehaved: the zlib stream inflates beyond the accepted size (a zip bomb).
    #[error("inflated stanza exceeds {max} bytes")]
    InflatedTooLarge {
        /// The cap ([`MAX_INFLATED`](super::MAX_INFLATED)).
        max: usize,
    },
}
