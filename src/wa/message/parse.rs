//! Shared node-reading helpers for the parsers in this module: required attributes, children
//! and fixed-size byte fields, each failing with a [`StanzaError`]. No stanza knowledge here.

use super::error::{StanzaError, cut};
use crate::wa::binary::Node;
use crate::wa::jid::Jid;

/// Checks the node's tag.
pub(crate) fn expect_tag(node: &Node, tag: &'static str) -> Result<(), StanzaError> {
    if node.tag == tag {
        Ok(())
    } else {
        Err(StanzaError::UnexpectedTag { expected: tag, got: cut(&node.tag, 32) })
    }
}

/// An attribute as text (a typed JID is rendered), if present.
pub(crate) fn attr_text(node: &Node, attr: &str) -> Option<String> {
    node.attr_value(attr).map(ToString::to_string)
}

/// A required attribute as text.
pub(crate) fn req_attr(node: &Node, tag: &'static str, attr: &'static str) -> Result<String, StanzaError> {
    attr_text(node, attr).ok_or(StanzaError::MissingAttr { tag, attr })
}

/// An optional JID attribute; present but unparsable is an error.
pub(crate) fn opt_jid(
    node: &Node,
    tag: &'static str,
    attr: &'static str,
) -> Result<Option<Jid>, StanzaError> {
    match node.attr_value(attr) {
        None => Ok(None),
        Some(v) => v.to_jid().map(Some).ok_or_else(|| StanzaError::InvalidAttr {
            tag,
            attr,
            value: cut(&v.to_string(), 64),
        }),
    }
}

/// A required JID attribute.
pub(crate) fn req_jid(node: &Node, tag: &'static str, attr: &'static str) -> Result<Jid, StanzaError> {
    opt_jid(node, tag, attr)?.ok_or(StanzaError::MissingAttr { tag, attr })
}

/// An optional unsigned integer attribute.
pub(crate) fn opt_u64(
    node: &Node,
    tag: &'static str,
    attr: &'static str,
) -> Result<Option<u64>, StanzaError> {
    match attr_text(node, attr) {
        None => Ok(None),
        Some(v) => {
            v.parse().map(Some).map_err(|_| StanzaError::InvalidAttr { tag, attr, value: cut(&v, 64) })
        }
    }
}

/// A required child.
pub(crate) fn req_child<'a>(
    node: &'a Node,
    parent: &'static str,
    child: &'static str,
) -> Result<&'a Node, StanzaError> {
    node.child(child).ok_or(StanzaError::MissingChild { parent, child })
}

/// The byte content of a node (text content counts as its UTF-8 bytes).
pub(crate) fn bytes_of<'a>(node: &'a Node, tag: &'static str) -> Result<&'a [u8], StanzaError> {
    node.content_bytes()
        .or_else(|| node.content_str().map(str::as_bytes))
        .ok_or(StanzaError::MissingBytes { tag })
}

/// The byte content of child `child`, which must be exactly `N` bytes.
pub(crate) fn fixed_child<const N: usize>(
    node: &Node,
    parent: &'static str,
    child: &'static str,
) -> Result<[u8; N], StanzaError> {
    let bytes = bytes_of(req_child(node, parent, child)?, child)?;
    bytes.try_into().map_err(|_| StanzaError::BadLength { tag: child, len: bytes.len(), expected: N })
}

/// A big-endian unsigned integer from a fixed-size child (3-byte key ids, 4-byte reg ids).
pub(crate) fn be_child<const N: usize>(
    node: &Node,
    parent: &'static str,
    child: &'static str,
) -> Result<u32, StanzaError> {
    let bytes: [u8; N] = fixed_child(node, parent, child)?;
    Ok(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Fails with [`StanzaError::IqFailed`] unless the iq is `type="result"`.
pub(crate) fn expect_result_iq(node: &Node) -> Result<(), StanzaError> {
    expect_tag(node, "iq")?;
    let kind = attr_text(node, "type").unwrap_or_default();
    if kind == "result" {
        return Ok(());
    }
    let code = node.child("error").and_then(|e| attr_text(e, "code"));
    Err(StanzaError::IqFailed { kind: cut(&kind, 32), code })
}

/// The `<error>` child as a [`StanzaError::UserError`] for `jid`, if present.
pub(crate) fn user_error(node: &Node, jid: &Jid) -> Option<StanzaError> {
    node.child("error").map(|e| StanzaError::UserError {
        jid: jid.to_string(),
        code: cut(&attr_text(e, "code").unwrap_or_default(), 32),
        text: cut(&attr_text(e, "text").unwrap_or_default(), 128),
    })
}
