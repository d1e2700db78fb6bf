//! Deterministic sample stanzas for benchmarks, fuzz seeds and tests: a typical encrypted
//! message and a 30-prekey upload iq. Not protocol logic; the byte payloads are fixed fills,
//! not real keys. They are byte-identical to the inputs of `scripts/bench-codec-baileys.mjs`
//! (checked by a test against the SHA-256 that script prints), so both benches do the same work.

use super::node::Node;
use crate::wa::jid::{Jid, Server};

/// `len` copies of `byte` (Node's `Buffer.alloc(len, byte)`).
fn fill(byte: u8, len: usize) -> Vec<u8> {
    vec![byte; len]
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
        .children([Node::new("enc").attr("v", "2").attr("type", "msg").bytes(fill(0x5a, 200))])
}

/// The prekey upload iq a client sends when the server is low on one-time prekeys:
/// registration id, key type 0x05, identity key, 30 `<key>` entries (3-byte id, 32-byte
/// value) and the signed prekey with its 64-byte signature.
pub fn prekey_upload_iq() -> Node {
    let keys = (1u32..=30).map(|id| {
        Node::new("key").children([
            Node::new("id").bytes(id.to_be_bytes()[1..].to_vec()),
            Node::new("value").bytes(fill(id as u8, 32)),
        ])
    });
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "set")
        .attr("to", Jid::server_jid(Server::User))
        .attr("id", "1234.5678-9")
        .children([
            Node::new("registration").bytes(vec![0x00, 0x00, 0x30, 0x39]),
            Node::new("type").bytes(vec![0x05]),
            Node::new("identity").bytes(fill(0x11, 32)),
            Node::new("list").children(keys),
            Node::new("skey").children([
                Node::new("id").bytes(vec![0x00, 0x00, 0x01]),
                Node::new("value").bytes(fill(0x22, 32)),
                Node::new("signature").bytes(fill(0x33, 64)),
            ]),
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wa::binary::{marshal, unmarshal};
    use sha2::{Digest, Sha256};

    /// The samples encode to exactly the bytes Baileys 6.7.21 produces for the same nodes
    /// (`node scripts/bench-codec-baileys.mjs` prints these lengths and digests), and decode back.
    #[test]
    fn samples_match_the_baileys_bench_inputs() {
        for (node, len, digest) in [
            (message_stanza(), 249, "5e9d9060b513da9173019124cfe03ad9e7cca174bdb303ad6d67e9ecb212763d"),
            (prekey_upload_iq(), 1700, "29c9efff28b52260039ece8d5af1702dd8b18e0767b372bc628334e61e823756"),
        ] {
            let bytes = marshal(&node).unwrap();
            assert_eq!(bytes.len(), len, "{}", node.tag);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), digest, "{}", node.tag);
            assert_eq!(unmarshal(&bytes).unwrap(), node);
        }
    }
}
