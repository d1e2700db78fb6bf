//! Deterministic sample stanzas for benchmarks, fuzz seeds and tests: a typical encrypted
//! message and a 30-prekey upload iq. Not protocol logic; the byte payloads are fixed patterns,
//! not real keys.

use super::node::Node;
use crate::wa::jid::{Jid, Server};

/// A fixed byte pattern of length `len` (so samples are reproducible without an RNG).
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i as u8).wrapping_mul(31))).collect()
}

/// `<message to="15551234567@s.whatsapp.net" id="3EB0C431C26A1916D8A1" type="text"
/// t="1700000000"><enc v="2" type="msg">[200 bytes]</enc></message>`: a typical outbound
/// one-to-one message stanza.
pub fn message_stanza() -> Node {
    Node::new("message")
        .attr("to", Jid::new("15551234567", Server::User))
        .attr("id", "3EB0C431C26A1916D8A1")
        .attr("type", "text")
        .attr("t", "1700000000")
        .children([Node::new("enc").attr("v", "2").attr("type", "msg").bytes(pattern(7, 200))])
}

/// The prekey upload iq a client sends when the server is low on one-time prekeys:
/// registration id, key type 0x05, identity key, 30 `<key>` entries (3-byte id, 32-byte
/// value) and the signed prekey with its 64-byte signature.
pub fn prekey_upload_iq() -> Node {
    let keys = (1u32..=30).map(|id| {
        Node::new("key").children([
            Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
            Node::new("value").bytes(pattern(id as u8, 32)),
        ])
    });
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "set")
        .attr("to", Jid::server_jid(Server::User))
        .attr("id", "1700000000-42")
        .children([
            Node::new("registration").bytes(vec![0x00, 0x00, 0x30, 0x39]),
            Node::new("type").bytes(vec![0x05]),
            Node::new("identity").bytes(pattern(1, 32)),
            Node::new("list").children(keys),
            Node::new("skey").children([
                Node::new("id").bytes(vec![0x00, 0x00, 0x01]),
                Node::new("value").bytes(pattern(2, 32)),
                Node::new("signature").bytes(pattern(3, 64)),
            ]),
        ])
}
