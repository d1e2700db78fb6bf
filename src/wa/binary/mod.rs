//! The WhatsApp binary XML node codec ("WAP", token dictionary version 3): the [`Node`] model,
//! [`encode`]/[`marshal`] (byte-compatible with Baileys 6.7.21) and the hardened
//! [`decode`]/[`unmarshal`] for untrusted peer bytes (protocol/02-binary-node.md).
//!
//! A stanza is `flags || node`; flags bit `0x02` means the node bytes are zlib-compressed.
//! This module does no IO and no encryption: it turns frame plaintexts into nodes and back.

mod decode;
mod encode;
mod error;
mod node;
#[doc(hidden)]
pub mod samples;
mod token;

#[cfg(test)]
mod tests;

pub use decode::{decode, decode_prefix, unmarshal};
pub use encode::{encode, encode_into, marshal};
pub use error::{DecodeError, EncodeError};
pub use node::{AttrValue, Content, Node};

/// Deepest node nesting the codec accepts (the top-level node is depth 1); the same bound
/// caps JIDs nested inside JIDs. Real stanzas stay below 10 levels; the cap keeps hostile
/// input from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// Largest accepted size of an inflated (flags `0x02`) stanza: 16 MiB, the same ceiling as a
/// transport frame (3-byte length), so compression cannot be used to smuggle in more.
pub const MAX_INFLATED: usize = 16 << 20;

/// Tag byte values (protocol/02-binary-node.md §2; whatsmeow `binary/token/token.go`).
pub(crate) mod tag {
    /// Empty list, null value, empty string, or "no user" in a JID pair.
    pub(crate) const LIST_EMPTY: u8 = 0;
    /// First of the four double-byte dictionary selectors (236–239).
    pub(crate) const DICTIONARY_0: u8 = 236;
    /// Last double-byte dictionary selector.
    pub(crate) const DICTIONARY_3: u8 = 239;
    /// Interop JID: user, device u16, integrator u16, server.
    pub(crate) const INTEROP_JID: u8 = 245;
    /// Messenger JID: user, device u16, server.
    pub(crate) const FB_JID: u8 = 246;
    /// Device JID: domain byte, device byte, user.
    pub(crate) const AD_JID: u8 = 247;
    /// List with a 1-byte size.
    pub(crate) const LIST_8: u8 = 248;
    /// List with a 2-byte big-endian size.
    pub(crate) const LIST_16: u8 = 249;
    /// JID: user (or LIST_EMPTY), server.
    pub(crate) const JID_PAIR: u8 = 250;
    /// Packed uppercase hex string.
    pub(crate) const HEX_8: u8 = 251;
    /// Bytes with a 1-byte length.
    pub(crate) const BINARY_8: u8 = 252;
    /// Bytes with a 20-bit length in 3 bytes.
    pub(crate) const BINARY_20: u8 = 253;
    /// Bytes with a 4-byte big-endian length.
    pub(crate) const BINARY_32: u8 = 254;
    /// Packed decimal string (`0-9 - .`).
    pub(crate) const NIBBLE_8: u8 = 255;
}
