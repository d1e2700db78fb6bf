//! Bytes → node for untrusted input (protocol/02-binary-node.md §2–§5, §7). Every read is
//! bounds-checked, nesting is capped at [`MAX_DEPTH`] (nodes and JIDs alike, without unbounded
//! recursion), list sizes are checked against the remaining input before anything is
//! allocated, and zlib stanzas inflate to at most [`MAX_INFLATED`] bytes. Errors carry byte
//! offsets into the node bytes. No IO; never panics.

use std::io::Read;

use super::error::DecodeError;
use super::node::{AttrValue, Content, Node};
use super::{MAX_DEPTH, MAX_INFLATED, tag, token};
use crate::wa::jid::{Jid, Server};

/// Flags bit meaning "the node bytes are zlib-compressed" (protocol/01-transport.md §6).
const FLAG_COMPRESSED: u8 = 0x02;
/// The smallest complete node: `F8 01 <token>`.
const MIN_NODE_LEN: usize = 3;

/// Decodes a stanza: the flags byte, then the node (zlib-inflated first if flags bit `0x02`
/// is set). Strict: bytes after the node are an error. Offsets in errors are relative to the
/// node bytes (after the flags byte, after inflation). Raw text in tags, keys and attribute
/// values is decoded lossily (invalid UTF-8 becomes U+FFFD), as Baileys does.
///
/// # Errors
/// [`DecodeError`] for an empty buffer, a corrupt or oversized zlib stream, or any node error.
pub fn unmarshal(stanza: &[u8]) -> Result<Node, DecodeError> {
    let (&flags, body) = stanza.split_first().ok_or(DecodeError::EmptyStanza)?;
    if flags & FLAG_COMPRESSED != 0 { decode(&inflate(body)?) } else { decode(body) }
}

/// Decodes exactly one node from `bytes` (no flags byte); trailing bytes are an error.
///
/// # Errors
/// [`DecodeError`] describing the first problem found, with its offset.
pub fn decode(bytes: &[u8]) -> Result<Node, DecodeError> {
    let (node, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes { offset: used, count: bytes.len() - used });
    }
    Ok(node)
}

/// Decodes the node at the start of `bytes` and returns it with the number of bytes it used;
/// anything after it is ignored (the lenient behaviour of Baileys).
///
/// # Errors
/// As [`decode`], minus [`DecodeError::TrailingBytes`].
pub fn decode_prefix(bytes: &[u8]) -> Result<(Node, usize), DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let node = r.node(1)?;
    Ok((node, r.pos))
}

fn inflate(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let limit = MAX_INFLATED as u64 + 1;
    flate2::read::ZlibDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Inflate { detail: e.to_string() })?;
    if out.len() > MAX_INFLATED {
        return Err(DecodeError::InflatedTooLarge { max: MAX_INFLATED });
    }
    Ok(out)
}

/// A decoded string-ish value before the caller decides what it becomes.
enum Value<'a> {
    Text(String),
    Static(&'static str),
    Raw(&'a [u8]),
    Jid(Jid),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::UnexpectedEof { offset: self.pos, needed: 1 })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let bytes = rest
            .get(..n)
            .ok_or_else(|| DecodeError::UnexpectedEof { offset: self.pos, needed: n - rest.len() })?;
        self.pos += n;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }

    fn be_len(&mut self, n: usize) -> Result<usize, DecodeError> {
        Ok(self.take(n)?.iter().fold(0usize, |acc, &b| acc << 8 | usize::from(b)))
    }

    /// List size for a list tag, or `None` if `t` is not a list tag.
    fn list_size(&mut self, t: u8) -> Result<Option<usize>, DecodeError> {
        Ok(match t {
            tag::LIST_EMPTY => Some(0),
            tag::LIST_8 => Some(usize::from(self.byte()?)),
            tag::LIST_16 => Some(usize::from(self.u16()?)),
            _ => None,
        })
    }

    fn node(&mut self, depth: usize) -> Result<Node, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: self.pos, max: MAX_DEPTH });
        }
        let start = self.pos;
        let t = self.byte()?;
        let size = match self.list_size(t)? {
            Some(size) if size > 0 => size,
            _ => return Err(DecodeError::InvalidNode { offset: start, tag: t }),
        };
        let tag_offset = self.pos;
        let tag = self.text()?;
        if tag.is_empty() {
            return Err(DecodeError::EmptyTag { offset: tag_offset });
        }
        let attr_count = (size - 1) / 2;
        // Each key and each value takes at least one byte.
        if attr_count > self.remaining() / 2 {
            return Err(DecodeError::ListExceedsInput {
                offset: start,
                len: size,
                remaining: self.remaining(),
            });
        }
        let mut attrs = Vec::with_capacity(attr_count);
        for _ in 0..attr_count {
            let key = self.text()?;
            let value = self.attr_value()?;
            attrs.push((key, value));
        }
        let content = if size % 2 == 0 { self.content(depth)? } else { Content::None };
        Ok(Node { tag, attrs, content })
    }

    fn content(&mut self, depth: usize) -> Result<Content, DecodeError> {
        let offset = self.pos;
        let t = self.byte()?;
        if let Some(len) = self.list_size(t)? {
            if len > self.remaining() / MIN_NODE_LEN {
                return Err(DecodeError::ListExceedsInput { offset, len, remaining: self.remaining() });
            }
            let mut children = Vec::with_capacity(len);
            for _ in 0..len {
                children.push(self.node(depth + 1)?);
            }
            return Ok(Content::Nodes(children));
        }
        Ok(match self.value(t, offset, 0)? {
            Value::Raw(bytes) => Content::Bytes(bytes.to_vec()),
            Value::Text(s) => Content::Str(s),
            Value::Static(s) => Content::Str(s.to_owned()),
            Value::Jid(j) => Content::Str(j.to_string()),
        })
    }

    fn attr_value(&mut self) -> Result<AttrValue, DecodeError> {
        let offset = self.pos;
        let t = self.byte()?;
        Ok(match self.value(t, offset, 0)? {
            Value::Jid(j) => AttrValue::Jid(j),
            other => AttrValue::Str(into_text(other)),
        })
    }

    /// A string in text position (tag, key, JID part): JIDs become their text form.
    fn text(&mut self) -> Result<String, DecodeError> {
        self.text_at(0)
    }

    fn text_at(&mut self, jid_depth: usize) -> Result<String, DecodeError> {
        let offset = self.pos;
        let t = self.byte()?;
        Ok(into_text(self.value(t, offset, jid_depth)?))
    }

    /// Reads the string-ish value introduced by tag byte `t` (already consumed, at `offset`).
    /// `jid_depth` counts JIDs nested inside JIDs, which only hostile input produces.
    fn value(&mut self, t: u8, offset: usize, jid_depth: usize) -> Result<Value<'a>, DecodeError> {
        match t {
            tag::LIST_EMPTY => Ok(Value::Static("")),
            t if usize::from(t) < token::single_len() => {
                token::single(t).map(Value::Static).ok_or(DecodeError::InvalidTag { offset, tag: t })
            }
            tag::DICTIONARY_0..=tag::DICTIONARY_3 => {
                let index = self.byte()?;
                token::double(t - tag::DICTIONARY_0, index)
                    .map(Value::Static)
                    .ok_or(DecodeError::InvalidTag { offset, tag: t })
            }
            tag::BINARY_8 => {
                let len = usize::from(self.byte()?);
                self.raw(len)
            }
            tag::BINARY_20 => {
                let b = self.take(3)?;
                let len = b.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x)) & 0x0f_ffff;
                self.raw(len)
            }
            tag::BINARY_32 => {
                let len = self.be_len(4)?;
                self.raw(len)
            }
            tag::NIBBLE_8 | tag::HEX_8 => self.packed(t).map(Value::Text),
            tag::JID_PAIR | tag::AD_JID | tag::FB_JID | tag::INTEROP_JID => {
                if jid_depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep { offset, max: MAX_DEPTH });
                }
                self.jid(t, offset, jid_depth + 1).map(Value::Jid)
            }
            _ => Err(DecodeError::InvalidTag { offset, tag: t }),
        }
    }

    fn raw(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        Ok(Value::Raw(self.take(len)?))
    }

    fn jid(&mut self, t: u8, offset: usize, jid_depth: usize) -> Result<Jid, DecodeError> {
        match t {
            tag::JID_PAIR => {
                let user = self.text_at(jid_depth)?;
                let server = self.text_at(jid_depth)?;
                if server.is_empty() {
                    return Err(DecodeError::EmptyJidServer { offset });
                }
                Ok(Jid { user, device: 0, server: Server::from_name(&server) })
            }
            tag::AD_JID => {
                let domain = self.byte()?;
                let device = self.byte()?;
                let user = self.text_at(jid_depth)?;
                Ok(Jid { user, device: u16::from(device), server: ad_domain_server(domain) })
            }
            tag::FB_JID => {
                let user = self.text_at(jid_depth)?;
                let device = self.u16()?;
                let server = self.text_at(jid_depth)?;
                if server.is_empty() {
                    return Err(DecodeError::EmptyJidServer { offset });
                }
                Ok(Jid { user, device, server: Server::from_name(&server) })
            }
            _ => {
                // INTEROP_JID: user, device, integrator, server; rendered `integrator-user`.
                let user = self.text_at(jid_depth)?;
                let device = self.u16()?;
                let integrator = self.u16()?;
                let server = self.text_at(jid_depth)?;
                if server.is_empty() {
                    return Err(DecodeError::EmptyJidServer { offset });
                }
                Ok(Jid { user: format!("{integrator}-{user}"), device, server: Server::from_name(&server) })
            }
        }
    }

    /// `NIBBLE_8` / `HEX_8` (protocol §4.2). Nibble codes 12–14 are invalid, and the filler 15
    /// is accepted only as the dropped odd tail (Baileys would turn it into U+0000).
    fn packed(&mut self, t: u8) -> Result<String, DecodeError> {
        let head = self.byte()?;
        let odd = head & 0x80 != 0;
        let start = self.pos;
        let bytes = self.take(usize::from(head & 0x7f))?;
        let mut s = String::with_capacity(bytes.len() * 2);
        let last = bytes.len().wrapping_sub(1);
        for (i, &b) in bytes.iter().enumerate() {
            for (k, nibble) in [(0, b >> 4), (1, b & 0x0f)] {
                let is_tail = odd && i == last && k == 1;
                let c = match (t, nibble) {
                    (_, 0..=9) => char::from(b'0' + nibble),
                    (tag::HEX_8, 10..=15) => char::from(b'A' + nibble - 10),
                    (_, 10) => '-',
                    (_, 11) => '.',
                    (_, 15) if is_tail => '\0',
                    _ => return Err(DecodeError::InvalidNibble { offset: start + i, nibble }),
                };
                s.push(c);
            }
        }
        if odd {
            s.pop();
        }
        Ok(s)
    }
}

/// AD_JID domain byte → server: 0 `s.whatsapp.net`, 1 `lid`, 128 `hosted`, 129 `hosted.lid`
/// (whatsmeow and newer Baileys; 6.7.21 maps 128 to `s.whatsapp.net` and 129 to `lid`), and
/// any other value `lid`, as Baileys 6.7.21 does.
fn ad_domain_server(domain: u8) -> Server {
    match domain {
        0 => Server::User,
        128 => Server::Hosted,
        129 => Server::HostedLid,
        _ => Server::Lid,
    }
}

fn into_text(v: Value<'_>) -> String {
    match v {
        Value::Text(s) => s,
        Value::Static(s) => s.to_owned(),
        Value::Jid(j) => j.to_string(),
        // Lossy, as Baileys decodes: one malformed push name must not make a whole stanza
        // (and its redeliveries) undecodable.
        Value::Raw(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}
