//! Codec tests: Baileys golden vectors (tests/vectors/baileys.json), our Baileys-generated edge
//! vectors (tests/vectors/binary_edge.json), the worked examples of protocol §6, limits, and
//! property tests (in `prop`).

mod json;
mod prop;

use sha2::{Digest, Sha256};

use super::*;
use crate::wa::jid::{Jid, Server};
use json::{Json, node_from_spec, stringify_jids};

fn load(path: &str) -> Json {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    json::parse(&text)
}

/// Checks `bytes` against a vector's `encoded_hex`, or its `encoded_len` + `encoded_sha256` +
/// `encoded_prefix_hex` for long ones.
fn assert_encoded(name: &str, v: &Json, bytes: &[u8]) {
    if let Some(want) = v.get("encoded_hex").and_then(Json::as_str) {
        assert_eq!(hex::encode(bytes), want, "{name}: encoded bytes");
        return;
    }
    let len = v.get("encoded_len").and_then(Json::as_u64).unwrap();
    assert_eq!(bytes.len() as u64, len, "{name}: encoded length");
    let sha = v.get("encoded_sha256").and_then(Json::as_str).unwrap();
    assert_eq!(hex::encode(Sha256::digest(bytes)), sha, "{name}: encoded sha256");
    let prefix = hex::decode(v.get("encoded_prefix_hex").and_then(Json::as_str).unwrap()).unwrap();
    assert!(bytes.starts_with(&prefix), "{name}: encoded prefix");
}

/// All 7 Baileys golden vectors: marshal gives Baileys' exact bytes (the zlib one is decode
/// only) and unmarshal gives Baileys' decoded tree (JIDs compared in text form).
#[test]
fn baileys_golden_vectors() {
    let root = load("tests/vectors/baileys.json");
    let vectors = root.get("binary_nodes").and_then(Json::as_array).unwrap();
    assert_eq!(vectors.len(), 7);
    for v in vectors {
        let name = v.get("name").and_then(Json::as_str).unwrap();
        let stanza = match v.get("node") {
            Some(spec) => {
                let bytes = marshal(&node_from_spec(spec)).unwrap();
                assert_encoded(name, v, &bytes);
                bytes
            }
            None => hex::decode(v.get("encoded_hex").and_then(Json::as_str).unwrap()).unwrap(),
        };
        let decoded = unmarshal(&stanza).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = node_from_spec(v.get("decoded").unwrap());
        assert_eq!(stringify_jids(decoded), want, "{name}: decoded tree");
    }
}

/// Our edge vectors (encoded and decoded by Baileys 6.7.21): boundary lengths, packing limits,
/// empty strings, AD_JID devices and domains, server-only JIDs, LIST_8/LIST_16, depth 64.
#[test]
fn edge_encode_vectors() {
    let root = load("tests/vectors/binary_edge.json");
    let cases = root.get("encode").and_then(Json::as_array).unwrap();
    assert!(cases.len() >= 50);
    for v in cases {
        let name = v.get("name").and_then(Json::as_str).unwrap();
        let bytes = marshal(&node_from_spec(v.get("node").unwrap())).unwrap();
        assert_encoded(name, v, &bytes);
        let decoded = unmarshal(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stringify_jids(decoded), node_from_spec(v.get("decoded").unwrap()), "{name}: decoded");
    }
}

fn error_name(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::EmptyStanza => "EmptyStanza",
        DecodeError::UnexpectedEof { .. } => "UnexpectedEof",
        DecodeError::TrailingBytes { .. } => "TrailingBytes",
        DecodeError::InvalidNode { .. } => "InvalidNode",
        DecodeError::EmptyTag { .. } => "EmptyTag",
        DecodeError::InvalidTag { .. } => "InvalidTag",
        DecodeError::InvalidNibble { .. } => "InvalidNibble",
        DecodeError::EmptyJidServer { .. } => "EmptyJidServer",
        DecodeError::ListExceedsInput { .. } => "ListExceedsInput",
        DecodeError::TooDeep { .. } => "TooDeep",
        DecodeError::Inflate { .. } => "Inflate",
        DecodeError::InflatedTooLarge { .. } => "InflatedTooLarge",
    }
}

/// Decode-side edge vectors: each hostile or unusual stanza gives the expected typed error or
/// tree (where we deliberately differ from Baileys, its outcome is recorded in the file).
#[test]
fn edge_decode_vectors() {
    let root = load("tests/vectors/binary_edge.json");
    let cases = root.get("decode").and_then(Json::as_array).unwrap();
    assert!(cases.len() >= 20);
    for v in cases {
        let name = v.get("name").and_then(Json::as_str).unwrap();
        let stanza = hex::decode(v.get("stanza_hex").and_then(Json::as_str).unwrap()).unwrap();
        let expect = v.get("expect").unwrap();
        let got = unmarshal(&stanza);
        match (expect.get("error").and_then(Json::as_str), got) {
            (Some(want), Err(e)) => assert_eq!(error_name(&e), want, "{name}: {e}"),
            (Some(want), Ok(n)) => panic!("{name}: expected {want}, decoded {n}"),
            (None, Ok(n)) => {
                assert_eq!(stringify_jids(n), node_from_spec(expect.get("decoded").unwrap()), "{name}")
            }
            (None, Err(e)) => panic!("{name}: unexpected error {e}"),
        }
    }
}

fn hexs(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

/// The worked examples of protocol §6, byte for byte (typed server JID gives `FA 00 03`).
#[test]
fn worked_examples() {
    let server = Jid::server_jid(Server::User);
    let ping = Node::new("iq").attr("id", "1").attr("to", &server).attr("type", "get").attr("xmlns", "w:p");
    assert_eq!(marshal(&ping).unwrap(), hexs("00 f8 09 19 08 55 11 fa 00 03 04 29 16 57"));
    let ping_child = ping.clone().children([Node::new("ping")]);
    assert_eq!(
        marshal(&ping_child).unwrap(),
        hexs("00 f8 0a 19 08 55 11 fa 00 03 04 29 16 57 f8 01 f8 01 56")
    );
    let passive = Node::new("iq")
        .attr("id", "2")
        .attr("to", "@s.whatsapp.net")
        .attr("type", "set")
        .attr("xmlns", "passive")
        .children([Node::new("active")]);
    assert_eq!(
        marshal(&passive).unwrap(),
        hexs("00 f8 0a 19 08 45 11 fa 00 03 04 5a 16 ec 18 f8 01 f8 01 ec 01")
    );
    let stream_error = Node::new("stream:error").attr("code", "515");
    assert_eq!(marshal(&stream_error).unwrap(), hexs("00 f8 03 9d 70 ff 82 51 5f"));
    assert_eq!(marshal(&Node::new("xmlstreamend")).unwrap(), hexs("00 f8 01 02"));
    for (node, bytes) in [(&ping, "00f80919085511fa000304291657"), (&stream_error, "00f8039d70ff82515f")] {
        assert_eq!(&unmarshal(&hexs(bytes)).unwrap(), node);
    }
    // encode() is marshal() without the flags byte.
    assert_eq!(encode(&ping).unwrap(), marshal(&ping).unwrap()[1..]);
}

/// The sample stanzas used by benches encode, decode back unchanged, and look as documented.
#[test]
fn samples_round_trip() {
    for node in [samples::message_stanza(), samples::prekey_upload_iq()] {
        let bytes = marshal(&node).unwrap();
        assert_eq!(unmarshal(&bytes).unwrap(), node);
    }
    let iq = samples::prekey_upload_iq();
    assert_eq!(iq.child("list").map(|l| l.child_nodes().len()), Some(30));
    assert_eq!(
        iq.child("skey").and_then(|s| s.child("signature")).and_then(Node::content_bytes).map(<[u8]>::len),
        Some(64)
    );
    let msg = samples::message_stanza();
    assert_eq!(msg.child("enc").and_then(Node::content_bytes).map(<[u8]>::len), Some(200));
}

/// Deep nesting input (100k levels) is rejected with TooDeep, without overflowing the stack.
#[test]
fn depth_bomb_nodes() {
    let mut bytes = vec![0u8];
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[0xf8, 0x02, 0x19, 0xf8, 0x01]);
    }
    bytes.extend_from_slice(&[0xf8, 0x01, 0x19]);
    assert!(matches!(unmarshal(&bytes), Err(DecodeError::TooDeep { max: MAX_DEPTH, .. })));
}

/// JIDs nested inside JIDs (100k levels of JID_PAIR) are rejected with TooDeep too.
#[test]
fn depth_bomb_jids() {
    let mut bytes = vec![0x00, 0xf8, 0x03, 0x19, 0x11];
    bytes.extend(std::iter::repeat_n(0xfa, 100_000));
    assert!(matches!(unmarshal(&bytes), Err(DecodeError::TooDeep { .. })));
}

/// Exactly MAX_DEPTH levels decode; one more is rejected by both encoder and decoder.
#[test]
fn depth_limit_is_exact() {
    let nest = |levels: usize| {
        let mut node = Node::new("leaf");
        for _ in 1..levels {
            node = Node::new("n").children([node]);
        }
        node
    };
    let ok = nest(MAX_DEPTH);
    assert_eq!(unmarshal(&marshal(&ok).unwrap()).unwrap(), ok);
    assert_eq!(marshal(&nest(MAX_DEPTH + 1)), Err(EncodeError::TooDeep { max: MAX_DEPTH }));
}

/// Lists over 65535 entries and empty tags are refused by the encoder (Baileys would corrupt).
#[test]
fn encoder_limits() {
    let wide = Node::new("list").children(std::iter::repeat_n(Node::new("a"), 65_536));
    assert_eq!(marshal(&wide), Err(EncodeError::ListTooLong { len: 65_536, max: 65_535 }));
    let ok = Node::new("list").children(std::iter::repeat_n(Node::new("a"), 65_535));
    assert_eq!(unmarshal(&marshal(&ok).unwrap()).unwrap(), ok);
    let many_attrs =
        Node { attrs: (0..32_767).map(|i| (format!("k{i}"), "v".into())).collect(), ..Node::new("x") };
    assert_eq!(unmarshal(&marshal(&many_attrs).unwrap()).unwrap(), many_attrs);
    let too_many = Node { content: Content::Bytes(vec![]), ..many_attrs };
    assert_eq!(marshal(&too_many), Err(EncodeError::ListTooLong { len: 65_536, max: 65_535 }));
    assert_eq!(marshal(&Node::new("")), Err(EncodeError::EmptyTag));
}

/// Strict decoding reports leftover bytes with their offset; the lenient variant returns the
/// node and how much it used.
#[test]
fn trailing_bytes() {
    let mut bytes = encode(&Node::new("iq")).unwrap();
    bytes.extend_from_slice(&[0xaa, 0xbb]);
    assert_eq!(decode(&bytes), Err(DecodeError::TrailingBytes { offset: 3, count: 2 }));
    assert_eq!(decode_prefix(&bytes), Ok((Node::new("iq"), 3)));
}

/// zlib stanzas (flag 0x02) inflate; a zip bomb beyond MAX_INFLATED is a typed error.
#[test]
fn zlib_stanzas() {
    use flate2::{Compression, write::ZlibEncoder};
    use std::io::Write;
    let node = samples::prekey_upload_iq();
    let mut z = ZlibEncoder::new(vec![2u8], Compression::default());
    z.write_all(&encode(&node).unwrap()).unwrap();
    assert_eq!(unmarshal(&z.finish().unwrap()).unwrap(), node);

    let mut bomb = ZlibEncoder::new(vec![2u8], Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..17 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100_000);
    assert_eq!(unmarshal(&bomb), Err(DecodeError::InflatedTooLarge { max: MAX_INFLATED }));
    assert!(matches!(unmarshal(&[2, 0x78, 0x9c, 0xff]), Err(DecodeError::Inflate { .. })));
}

/// Errors carry offsets into the node bytes (after the flags byte).
#[test]
fn error_offsets() {
    // iq id=<nibble with code 0xC in the low nibble of the byte at node offset 6>
    assert_eq!(
        unmarshal(&hexs("00 f8 03 19 08 ff 01 1c")),
        Err(DecodeError::InvalidNibble { offset: 6, nibble: 0xc })
    );
    assert_eq!(unmarshal(&hexs("00 f8 03 19 08 f1")), Err(DecodeError::InvalidTag { offset: 4, tag: 0xf1 }));
    assert_eq!(
        unmarshal(&hexs("00 f8 03 19 08 fc 05 61")),
        Err(DecodeError::UnexpectedEof { offset: 6, needed: 4 })
    );
    assert_eq!(
        unmarshal(&hexs("00 f8 02 19 f9 ff ff 00")),
        Err(DecodeError::ListExceedsInput { offset: 3, len: 65_535, remaining: 1 })
    );
}
