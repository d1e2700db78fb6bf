//! Test-only helpers: turn the Baileys transcript's JSON stanzas
//! (protocol/14-baileys-messaging-transcript.jsonl) into [`Node`]s and compare built nodes
//! against them (tags, attributes as text, children in order, byte content or its prefix).

use serde_json::Value;

use crate::wa::binary::{Content, Node};

/// A node from a transcript JSON object; `hex_prefix` content is zero-filled to `len`.
pub(crate) fn node(json: &str) -> Node {
    from_value(&serde_json::from_str(json).unwrap())
}

fn from_value(v: &Value) -> Node {
    let mut n = Node::new(v["tag"].as_str().unwrap());
    if let Some(attrs) = v["attrs"].as_object() {
        for (k, val) in attrs {
            n.set_attr(k.clone(), val.as_str().unwrap());
        }
    }
    n.content = match &v["content"] {
        Value::Array(items) => Content::Nodes(items.iter().map(from_value).collect()),
        Value::Object(o) if o.contains_key("hex") => Content::Bytes(hex::decode(o["hex"].as_str().unwrap()).unwrap()),
        Value::Object(o) => {
            let mut b = hex::decode(o["hex_prefix"].as_str().unwrap()).unwrap();
            b.resize(usize::try_from(o["len"].as_u64().unwrap()).unwrap(), 0);
            Content::Bytes(b)
        }
        Value::String(s) => Content::Str(s.clone()),
        _ => Content::None,
    };
    n
}

/// Asserts that `built` has the transcript stanza's shape: same tag, same attributes (as text,
/// any order), same children in order, same bytes (or same length and prefix for `hex_prefix`).
pub(crate) fn assert_shape(expected_json: &str, built: &Node) {
    let v: Value = serde_json::from_str(expected_json).unwrap();
    check(&v, built, "");
}

fn check(v: &Value, n: &Node, path: &str) {
    let path = format!("{path}/{}", n.tag);
    assert_eq!(v["tag"].as_str().unwrap(), n.tag, "tag at {path}");
    let mut want: Vec<(String, String)> = v["attrs"]
        .as_object()
        .map(|o| o.iter().map(|(k, x)| (k.clone(), x.as_str().unwrap().to_owned())).collect())
        .unwrap_or_default();
    let mut got: Vec<(String, String)> = n.attrs.iter().map(|(k, x)| (k.clone(), x.to_string())).collect();
    want.sort();
    got.sort();
    assert_eq!(want, got, "attrs at {path}");
    match &v["content"] {
        Value::Array(items) => {
            let kids = n.child_nodes();
            assert_eq!(items.len(), kids.len(), "child count at {path}");
            for (item, kid) in items.iter().zip(kids) {
                check(item, kid, &path);
            }
        }
        Value::Object(o) if o.contains_key("hex") => {
            assert_eq!(o["hex"].as_str().unwrap(), hex::encode(n.content_bytes().unwrap()), "bytes at {path}");
        }
        Value::Object(o) => {
            let b = n.content_bytes().unwrap();
            assert_eq!(o["len"].as_u64().unwrap(), b.len() as u64, "len at {path}");
            assert!(hex::encode(b).starts_with(o["hex_prefix"].as_str().unwrap()), "prefix at {path}");
        }
        _ => assert!(n.child_nodes().is_empty() && n.content_bytes().is_none(), "no content at {path}"),
    }
}

/// Proptest strategy: arbitrary nodes (tags and attrs drawn from the stanza vocabulary so
/// parsers get past their first checks).
pub(crate) fn arb_node() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    let words = prop::sample::select(vec![
        "message", "receipt", "ack", "iq", "enc", "participants", "to", "usync", "list", "user", "devices",
        "device-list", "device", "key", "skey", "id", "value", "signature", "identity", "registration",
        "type", "retry", "keys", "error", "result", "device-identity", "x",
    ]);
    let keys = prop::sample::select(vec![
        "id", "from", "to", "type", "t", "participant", "recipient", "jid", "v", "count", "offline", "class",
        "key-index", "is_hosted", "code", "text", "error", "notify", "category", "addressing_mode",
    ]);
    let vals = prop::sample::select(vec![
        "1", "0", "2", "pkmsg", "msg", "skmsg", "result", "retry", "read", "x@s.whatsapp.net",
        "1:2@s.whatsapp.net", "120363@g.us", "bad", "", "99999999", "-1", "@", "a:b@c", "message",
    ]);
    let leaf = (words.clone(), prop::collection::vec((keys.clone(), vals.clone()), 0..5), prop::collection::vec(any::<u8>(), 0..40), any::<u8>())
        .prop_map(|(tag, attrs, bytes, mode)| {
            let mut n = Node::new(tag);
            for (k, v) in attrs {
                n.set_attr(k, v);
            }
            n.content = match mode % 3 {
                0 => Content::Bytes(bytes),
                1 => Content::None,
                _ => Content::Str(String::from_utf8_lossy(&bytes).into_owned()),
            };
            n
        });
    leaf.prop_recursive(4, 32, 6, move |inner| {
        (words.clone(), prop::collection::vec((keys.clone(), vals.clone()), 0..6), prop::collection::vec(inner, 0..6))
            .prop_map(|(tag, attrs, kids)| {
                let mut n = Node::new(tag);
                for (k, v) in attrs {
                    n.set_attr(k, v);
                }
                n.children(kids)
            })
    })
}
