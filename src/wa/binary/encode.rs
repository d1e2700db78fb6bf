//! Node → bytes, byte-compatible with Baileys 6.7.21's `encodeBinaryNode` (protocol/
//! 02-binary-node.md §3–§5). Writes into one reserved `Vec` with no per-token allocation; it
//! never panics and refuses nodes that a decoder would reject. No IO, no compression.

use super::error::EncodeError;
use super::node::{AttrValue, Content, Node};
use super::token::{self, Token};
use super::{MAX_DEPTH, tag};
use crate::wa::jid::{Jid, Server};

/// The largest count a list header can carry (`LIST_16`).
const MAX_LIST: usize = u16::MAX as usize;
/// Packed (nibble/hex) strings are at most this long (`PACKED_MAX`).
const PACKED_MAX: usize = 127;

/// Encodes `node` without the flags byte.
///
/// # Errors
/// [`EncodeError`] if the node cannot be represented: empty tag, a list over 65535 entries, a
/// byte string over 4 GiB, nesting deeper than [`MAX_DEPTH`], or a typed JID with an empty server.
pub fn encode(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(size_hint(node, 1));
    write_node(&mut out, node, 1)?;
    Ok(out)
}

/// Encodes `node` as a stanza: the flags byte `0x00` (uncompressed) followed by the node; this
/// is the plaintext of a post-handshake transport frame.
///
/// # Errors
/// As [`encode`].
pub fn marshal(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(1 + size_hint(node, 1));
    out.push(0);
    write_node(&mut out, node, 1)?;
    Ok(out)
}

/// Appends the encoding of `node` (no flags byte) to `out`, reusing its allocation.
///
/// # Errors
/// As [`encode`]; on error `out` may hold a partial node.
pub fn encode_into(node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.reserve(size_hint(node, 1));
    write_node(out, node, 1)
}

/// An upper-bound-ish estimate of the encoded size, so `encode` allocates once.
fn size_hint(node: &Node, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return 0;
    }
    let attrs: usize = node
        .attrs
        .iter()
        .map(|(k, v)| {
            k.len()
                + 10
                + match v {
                    AttrValue::Str(s) => s.len(),
                    AttrValue::Jid(j) => j.user.len() + j.server.as_str().len(),
                }
        })
        .sum();
    let content = match &node.content {
        Content::None => 0,
        Content::Nodes(children) => 3 + children.iter().map(|c| size_hint(c, depth + 1)).sum::<usize>(),
        Content::Bytes(b) => b.len() + 5,
        Content::Str(s) => s.len() + 5,
    };
    node.tag.len() + 8 + attrs + content
}

fn write_node(out: &mut Vec<u8>, node: &Node, depth: usize) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError::TooDeep { max: MAX_DEPTH });
    }
    if node.tag.is_empty() {
        return Err(EncodeError::EmptyTag);
    }
    let has_content = !matches!(node.content, Content::None);
    let len = node.attrs.len().saturating_mul(2).saturating_add(1 + usize::from(has_content));
    write_list_start(out, len)?;
    write_str(out, &node.tag);
    for (key, value) in &node.attrs {
        write_str(out, key);
        match value {
            AttrValue::Str(s) => write_str(out, s),
            AttrValue::Jid(j) => write_jid(out, j)?,
        }
    }
    match &node.content {
        Content::None => {}
        Content::Nodes(children) => {
            write_list_start(out, children.len())?;
            for child in children {
                write_node(out, child, depth + 1)?;
            }
        }
        Content::Bytes(b) => write_bytes(out, b)?,
        Content::Str(s) => write_str(out, s),
    }
    Ok(())
}

fn write_list_start(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    match len {
        0 => out.push(tag::LIST_EMPTY),
        1..=255 => out.extend_from_slice(&[tag::LIST_8, len as u8]),
        256..=MAX_LIST => out.extend_from_slice(&[tag::LIST_16, (len >> 8) as u8, len as u8]),
        _ => return Err(EncodeError::ListTooLong { len, max: MAX_LIST }),
    }
    Ok(())
}

/// `BINARY_8` below 256, `BINARY_20` below 2^20, else `BINARY_32` (protocol §3.3).
fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = bytes.len();
    if len < 256 {
        out.extend_from_slice(&[tag::BINARY_8, len as u8]);
    } else if len < 1 << 20 {
        out.extend_from_slice(&[tag::BINARY_20, (len >> 16) as u8 & 0x0f, (len >> 8) as u8, len as u8]);
    } else {
        let len32 = u32::try_from(len).map_err(|_| EncodeError::BytesTooLong { len })?;
        out.push(tag::BINARY_32);
        out.extend_from_slice(&len32.to_be_bytes());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

/// Writes a string the way Baileys 6.7.21 does (protocol §4.1): token, double token, nibble,
/// hex, JID if it contains `@`, else raw. A JID's server is itself a string written by these
/// rules; that tail position is a loop here, so no input can recurse deeply.
///
/// One deliberate divergence: Baileys writes `x@` (empty server) as a `JID_PAIR` whose server
/// is `""`, which its own decoder rejects; we send such text raw, so it survives the trip.
fn write_str(out: &mut Vec<u8>, mut s: &str) {
    loop {
        if let Some(tok) = token::lookup(s) {
            match tok {
                Token::Single(i) => out.push(i),
                Token::Double(d, i) => out.extend_from_slice(&[tag::DICTIONARY_0 + d, i]),
            }
            return;
        }
        if is_packable(s, nibble_code) {
            write_packed(out, tag::NIBBLE_8, s, nibble_code);
            return;
        }
        if is_packable(s, hex_code) {
            write_packed(out, tag::HEX_8, s, hex_code);
            return;
        }
        let Some((user_part, server)) = s.split_once('@').filter(|(_, server)| !server.is_empty()) else {
            write_raw(out, s.as_bytes());
            return;
        };
        let (user_agent, device) = match user_part.split_once(':') {
            // Baileys splits on every ':' and keeps only the second piece as the device.
            Some((ua, rest)) => (ua, rest.split(':').next().filter(|d| !d.is_empty())),
            None => (user_part, None),
        };
        // Baileys drops an `_agent` suffix from the user.
        let user = user_agent.split('_').next().unwrap_or(user_agent);
        if let Some(device) = device {
            // Byte-identical to Baileys 6.7.21's text path (edge vector ad_jid_hosted_domain_0);
            // typed JIDs (`write_jid`) carry the hosted domains.
            let domain = if server == "lid" { 1 } else { 0 };
            out.extend_from_slice(&[tag::AD_JID, domain, js_device_byte(device)]);
            // `user` holds no '@' (we split at the first one), so this recursion is one level.
            write_str(out, user);
            return;
        }
        out.push(tag::JID_PAIR);
        if user.is_empty() {
            out.push(tag::LIST_EMPTY);
        } else {
            write_str(out, user);
        }
        s = server;
    }
}

/// Writes a typed JID like Baileys writes its text form, except that device 0 means "no
/// device" (so `JID_PAIR`) and the user is written verbatim (no `_agent` stripping).
/// `AD_JID` domain is 1 for `lid`, 128 for `hosted`, 129 for `hosted.lid` (whatsmeow
/// `binary/encoder.go` `writeJID`; Baileys 6.7.21 never writes hosted JIDs) and 0 for every
/// other server (protocol §5.2); the device byte is the device mod 256.
fn write_jid(out: &mut Vec<u8>, jid: &Jid) -> Result<(), EncodeError> {
    let server = jid.server.as_str();
    if server.is_empty() {
        return Err(EncodeError::EmptyJidServer { user: jid.user.clone() });
    }
    if jid.device != 0 {
        let domain = match jid.server {
            Server::Lid => 1,
            Server::Hosted => 128,
            Server::HostedLid => 129,
            _ => 0,
        };
        out.extend_from_slice(&[tag::AD_JID, domain, jid.device as u8]);
        write_str(out, &jid.user);
    } else {
        out.push(tag::JID_PAIR);
        if jid.user.is_empty() {
            out.push(tag::LIST_EMPTY);
        } else {
            write_str(out, &jid.user);
        }
        write_str(out, server);
    }
    Ok(())
}

fn write_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    // A &str is at most isize::MAX bytes, but BINARY_32 stops at 4 GiB; text that long cannot
    // occur in a stanza, so clamp rather than carry an error through every string write.
    if write_bytes(out, bytes).is_err() {
        write_bytes_clamped(out, bytes);
    }
}

#[cold]
fn write_bytes_clamped(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(u32::MAX as usize);
    out.push(tag::BINARY_32);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

/// The device byte Baileys writes for the text after `:`: JavaScript `+device`, then the
/// array-to-Buffer conversion (truncate, mod 256; NaN and ±Infinity become 0). Covers decimal
/// (with sign, fraction, exponent, surrounding whitespace) and `0x`/`0o`/`0b` integers.
fn js_device_byte(device: &str) -> u8 {
    let t = device.trim();
    if t.is_empty() {
        return 0;
    }
    let radix = |prefix: &str| t.get(..2).filter(|p| p.eq_ignore_ascii_case(prefix)).and(t.get(2..));
    for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = radix(prefix) {
            if digits.is_empty() {
                return 0;
            }
            let mut acc: u8 = 0;
            for c in digits.chars() {
                let Some(v) = c.to_digit(base) else { return 0 };
                acc = acc.wrapping_mul(base as u8).wrapping_add(v as u8);
            }
            return acc;
        }
    }
    // Rust also accepts "inf"/"nan" spellings JavaScript does not, but those map to 0 either way.
    let Ok(x) = t.parse::<f64>() else { return 0 };
    if !x.is_finite() {
        return 0;
    }
    x.trunc().rem_euclid(256.0) as u8
}

fn nibble_code(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'-' => Some(10),
        b'.' => Some(11),
        _ => None,
    }
}

fn hex_code(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_packable(s: &str, code: fn(u8) -> Option<u8>) -> bool {
    !s.is_empty() && s.len() <= PACKED_MAX && s.bytes().all(|b| code(b).is_some())
}

/// Packs two characters per byte, high nibble first; an odd tail gets the filler 0xF and
/// bit 7 of the length byte (protocol §4.2). Only called after `is_packable`.
fn write_packed(out: &mut Vec<u8>, tag: u8, s: &str, code: fn(u8) -> Option<u8>) {
    let bytes = s.as_bytes();
    let odd = bytes.len() % 2 == 1;
    out.push(tag);
    out.push(bytes.len().div_ceil(2) as u8 | if odd { 0x80 } else { 0 });
    let nib = |b: u8| code(b).unwrap_or(0x0f);
    for pair in bytes.chunks(2) {
        let hi = pair.first().map_or(0x0f, |&b| nib(b));
        let lo = pair.get(1).map_or(0x0f, |&b| nib(b));
        out.push(hi << 4 | lo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_bytes(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        hex::encode(out)
    }

    /// The string fragments of protocol §6 and the Baileys string quirks of §4.1/§5.
    #[test]
    fn string_forms() {
        assert_eq!(str_bytes("1234:5@s.whatsapp.net"), "f70005ff021234");
        assert_eq!(str_bytes("99:3@lid"), "f70103ff0199");
        assert_eq!(str_bytes("123@g.us"), "faff82123f1c");
        assert_eq!(str_bytes("3EB0AF"), "fb033eb0af");
        assert_eq!(str_bytes("123"), "ff82123f");
        assert_eq!(str_bytes("hello"), "fc0568656c6c6f");
        assert_eq!(str_bytes("pair-device"), "edee");
        assert_eq!(str_bytes(""), "00");
        assert_eq!(str_bytes("@s.whatsapp.net"), "fa0003");
        assert_eq!(str_bytes("s.whatsapp.net"), "03");
        assert_eq!(str_bytes("a@example.com"), "fafc0161fc0b6578616d706c652e636f6d");
        // `_agent` dropped, device from the second ':'-piece, lowercase hex stays raw.
        assert_eq!(str_bytes("12_1:2:3@s.whatsapp.net"), "f70002cf");
        assert_eq!(str_bytes("u:0@s.whatsapp.net"), "f70000fc0175");
        assert_eq!(str_bytes("u:@s.whatsapp.net"), "fafc017503");
        assert_eq!(str_bytes("3eb0"), "fc0433656230");
        // Divergence: empty server goes raw instead of an undecodable JID_PAIR.
        assert_eq!(str_bytes("x@"), "fc027840");
    }

    /// JavaScript number conversion of the device text (mod 256, NaN → 0).
    #[test]
    fn device_byte_conversion() {
        for (text, want) in [
            ("5", 5),
            ("300", 0x2c),
            ("abc", 0),
            (" 7 ", 7),
            ("-1", 255),
            ("1.9", 1),
            ("1e2", 100),
            ("0x10", 16),
            ("0b11", 3),
            ("Infinity", 0),
            ("0x", 0),
            ("99999999999999999999", 0),
        ] {
            assert_eq!(js_device_byte(text), want, "{text:?}");
        }
    }

    /// Typed JIDs: device 0 is JID_PAIR, lid gets domain 1, hosted 128 and hosted.lid 129
    /// (so a hosted device JID survives the wire; whatsmeow's encoding), others domain 0,
    /// device mod 256.
    #[test]
    fn typed_jid_forms() {
        let enc = |j: Jid| {
            let mut out = Vec::new();
            write_jid(&mut out, &j).unwrap();
            hex::encode(out)
        };
        assert_eq!(enc(Jid::server_jid(Server::User)), "fa0003");
        assert_eq!(enc(Jid::new("1234", Server::User).with_device(5)), "f70005ff021234");
        assert_eq!(enc(Jid::new("99", Server::Lid).with_device(3)), "f70103ff0199");
        assert_eq!(enc(Jid::new("1", Server::Hosted).with_device(5)), "f7800555");
        assert_eq!(enc(Jid::new("1", Server::HostedLid).with_device(99)), "f7816355");
        assert_eq!(enc(Jid::new("12345", Server::User).with_device(300)), "f7002cff8312345f");
        assert_eq!(enc(Jid::new("123", Server::Group)), "faff82123f1c");
        let mut out = Vec::new();
        assert_eq!(
            write_jid(&mut out, &Jid::new("1", Server::Other(String::new()))),
            Err(EncodeError::EmptyJidServer { user: "1".into() })
        );
    }
}
